"""`instructforge generate`: a raw batch of prompts through the engine, optionally constrained.

Input JSONL, one request per line: {"id": ..., "messages": [{"role", "content"}, ...]} (OpenAI),
{"id": ..., "conversations": [{"from", "value"}, ...]} (ShareGPT) or {"id": ..., "prompt": "..."}.
Output JSONL in the same order: the text, the parsed value (with --schema, --regex, --choice or
--grammar), failure (invalid / truncated / too_long), finish reason, token counts, cache flag; plus
OUTPUT.manifest.json with the run's statistics.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from engine.errors import ConfigError, InputError
from instructforge.engine_args import EngineArgs, with_engine_options
from instructforge.options import InputOpt, MaxTokensOpt, OutputOpt, TemperatureOpt

EXAMPLES = """\
Examples:

  instructforge generate -i prompts.jsonl -o out.jsonl

  instructforge generate -i prompts.jsonl -o out.jsonl --schema person.schema.json --temperature 0.7 --n 2

  instructforge generate -i prompts.jsonl -o out.jsonl --regex '[0-9]{4}-[0-9]{2}-[0-9]{2}'

  instructforge generate -i prompts.jsonl -o out.jsonl --choice positive --choice negative

  instructforge generate -i prompts.jsonl -o out.jsonl --grammar arithmetic.lark

  instructforge generate -i prompts.jsonl -o out.jsonl --model ~/models/Qwen2.5-7B-Instruct --compiled
"""


def output_type_of(
    schema: Path | None, regex: str | None, choices: list[str], grammar: Path | None
) -> tuple[object, dict | None]:
    """(output type, manifest fields naming it) from the one constraint flag given, if any."""
    from outlines.types import CFG, Choice, Regex

    given = [
        flag
        for flag, v in [
            ("--schema", schema),
            ("--regex", regex),
            ("--choice", choices),
            ("--grammar", grammar),
        ]
        if v not in (None, [])
    ]
    if len(given) > 1:
        raise ConfigError(
            f"give one output constraint at a time, not {' and '.join(given)}",
            parameter="output_type",
            value=given,
        )
    if regex is not None:
        return Regex(regex), {"regex": regex}
    if choices:
        return Choice(list(choices)), {"choice": list(choices)}
    if schema is None and grammar is None:
        return None, None
    path = schema or grammar
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"not readable ({e})", path=path) from e
    if grammar is not None:
        return CFG(text), {"grammar": str(grammar)}
    try:
        output_type = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"not a readable JSON schema ({e})", path=schema) from e
    if not isinstance(output_type, dict):
        raise InputError("a JSON schema must be an object", path=schema)
    return output_type, None  # the manifest's `schema` names it


def read_requests(path: Path, sampling, output_type, skip_bad: bool):
    """(ids, requests, skipped) from a prompts file; a bad line raises InputError unless skip_bad."""
    from engine.run.chat import alpaca_turn, chat_field, chat_turns
    from engine.run.io import read_records
    from engine.types import Request

    ids, requests, seen = [], [], set()
    bad_lines: list[InputError] = []
    for record in read_records(path, skipped=bad_lines if skip_bad else None):
        try:
            row = record.data
            shapes = [s for s in ("messages", "conversations", "instruction", "prompt") if s in row]
            if len(shapes) != 1:
                raise record.error(
                    "each line needs exactly one of `messages`, `conversations`, `instruction` (Alpaca, with "
                    "an optional `input`) or `prompt`"
                )
            chat = chat_field(record)
            if shapes == ["instruction"]:
                request = Request(messages=alpaca_turn(record), sampling=sampling, output_type=output_type)
            elif chat is not None:
                messages = chat_turns(record, chat)
                if not messages:
                    raise record.error("must not be empty", chat)
                request = Request(messages=messages, sampling=sampling, output_type=output_type)
            else:
                prompt = record.require("prompt")
                if not prompt.strip():
                    raise record.error("must not be empty", "prompt")
                request = Request(prompt=prompt, sampling=sampling, output_type=output_type)
            row_id = row.get("id", record.line)
            if not isinstance(row_id, (str, int)) or row_id in seen:
                raise record.error(f"must be a unique string or int, got {row_id!r}", "id")
        except InputError as e:
            if not skip_bad:
                raise
            bad_lines.append(e)
            continue
        seen.add(row_id)
        ids.append(row_id)
        requests.append(request)
    bad_lines.sort(key=lambda e: e.line or 0)
    return ids, requests, [str(e) for e in bad_lines]


def result_row(row_id, result) -> dict:
    from engine.structured import to_jsonable

    def completion_fields(c) -> dict:
        fields = {"text": c.text, "finish_reason": c.finish_reason, "output_tokens": c.output_tokens}
        if result.request.output_type is not None:
            fields["parsed"] = to_jsonable(c.parsed)
            fields["failure"] = c.failure
        return fields

    row = {
        "id": row_id,
        **completion_fields(result.completions[0]),
        "prompt_tokens": result.prompt_tokens,
        "cached": result.cached,
    }
    if len(result.completions) > 1:
        row["completions"] = [completion_fields(c) for c in result.completions]
    return row


@with_engine_options
def main(
    input: InputOpt,
    output: OutputOpt,
    engine: EngineArgs,
    schema: Annotated[
        Optional[Path],
        typer.Option("--schema", help="JSON schema file: every output must be a JSON value of this shape."),
    ] = None,
    regex: Annotated[
        Optional[str], typer.Option("--regex", help="Every output must fully match this regular expression.")
    ] = None,
    choice: Annotated[
        Optional[list[str]],
        typer.Option("--choice", help="Every output must be one of these strings (repeat the flag)."),
    ] = None,
    grammar: Annotated[
        Optional[Path],
        typer.Option("--grammar", help="Lark grammar file (rule `start`): every output must parse."),
    ] = None,
    temperature: TemperatureOpt = 0.0,
    max_tokens: MaxTokensOpt = 256,
    top_p: Annotated[float, typer.Option("--top-p", help="Nucleus sampling mass, in (0, 1].")] = 1.0,
    n: Annotated[int, typer.Option("--n", min=1, help="Completions per prompt.")] = 1,
    skip_bad: Annotated[
        bool,
        typer.Option(
            "--skip-bad", help="Skip malformed input lines (counted in the report) instead of stopping."
        ),
    ] = False,
) -> None:
    """Run a JSONL file of prompts through the local model; JSONL out, in input order."""
    from engine.run.directory import sidecar, write_manifest
    from engine.run.io import check_outputs, published_together, write_jsonl
    from engine.run.publish import places, publish_manifest
    from engine.types import Sampling
    from instructforge.publishing import describe

    sampling = Sampling(temperature=temperature, max_tokens=max_tokens, top_p=top_p, n=n, seed=engine.seed)
    from engine.structured import OutputSpec

    published = places(output, output.name)  # its card, config and page
    check_outputs(
        [output, sidecar(output), published.config, published.page],
        [input, *(p for p in (schema, grammar) if p)],
    )
    output_type, constraint = output_type_of(schema, regex, choice or [], grammar)
    if output_type is not None:
        OutputSpec.of(output_type)  # a constraint the backend cannot express fails before the model starts
    ids, requests, skipped = read_requests(input, sampling, output_type, skip_bad)
    if not requests:
        raise InputError("no requests to run", path=input)
    with engine.build("generating") as llm:
        results = llm.run(requests)
        stats = llm.stats
        with published_together():  # the rows and their manifest
            write_jsonl(output, (result_row(i, r) for i, r in zip(ids, results)))
            write_manifest(
                sidecar(output),
                command="generate",
                config={
                    "input": str(input),
                    "schema": str(schema) if schema else None,
                    **(constraint or {}),
                    "sampling": sampling.to_dict(),
                    "engine": engine.to_config(),
                },
                engine=llm,
                counts={"rows": len(results), "skipped_lines": len(skipped), "skipped": skipped[:100]},
                outputs=[str(output)],
            )
    publish_manifest(sidecar(output), describe("generate", output))
    for line in skipped[:5]:
        typer.echo(f"skipped {line}", err=True)
    typer.echo(f"wrote {len(results)} rows to {output}; {len(skipped)} bad lines skipped; {stats.summary()}")
