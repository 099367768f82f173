"""`instructforge batch`: an OpenAI Batch file answered by local models, in OpenAI's own output format.

Input: the JSONL a paid batch job takes, one `{custom_id, method, url, body}` per line (or
`{custom_id, body}`, the endpoint read from the body), for /v1/chat/completions, /v1/completions and
/v1/embeddings. Output: OUTPUT (`{id, custom_id, response: {status_code: 200, request_id, body}, error}`
per answered line, in input order), the error file (status 400 and an OpenAI error body per line that
cannot be served: the run goes on), and OUTPUT.batch.json (the batch object: status, request counts,
usage with cached tokens). Requests go through the request cache: a rerun makes no model calls and
writes the same files; a killed run resumes.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Optional

import typer

from instructforge.engine_args import EngineArgs, with_engine_options
from instructforge.options import EmbeddingModelOpt, InputOpt, OutputOpt

EXAMPLES = """\
Examples:

  instructforge batch --input requests.jsonl --output results.jsonl

  instructforge batch -i requests.jsonl -o results.jsonl --errors errors.jsonl \\
      --model-map gpt-4o-mini=~/models/Qwen2.5-7B-Instruct --model-map text-embedding-3-small=default
"""


def model_map(pairs: list[str]) -> dict[str, str]:
    from engine.errors import ConfigError

    mapping = {}
    for pair in pairs:
        name, sep, path = pair.partition("=")
        if not sep or not name or not path:
            raise ConfigError(
                f"`--model-map` takes NAME=PATH, got {pair!r}.", parameter="model_map", value=pair
            )
        mapping[name] = path
    return mapping


@with_engine_options
def main(
    input: InputOpt,
    output: OutputOpt,
    engine: EngineArgs,
    errors: Annotated[
        Optional[Path], typer.Option("--errors", help="Error file (default: OUTPUT's name + .errors.jsonl).")
    ] = None,
    model_maps: Annotated[
        Optional[list[str]],
        typer.Option(
            "--model-map",
            help="NAME=PATH: serve body.model NAME with this model (repeat the flag); with any map, a name "
            "not in it is an error line. Without one, --model serves every chat and completion request.",
        ),
    ] = None,
    embedding_model: EmbeddingModelOpt = "default",
) -> None:
    """Run an OpenAI Batch file on local models; OpenAI-format output, error and batch files."""
    from engine.embeddings import Embedder
    from engine.openai_batch.batch import run_batch
    from engine.openai_batch.requests import BatchError
    from engine.run.io import check_outputs

    mapping = model_map(model_maps or [])
    errors = errors or output.with_name(output.name.removesuffix(".jsonl") + ".errors.jsonl")
    engines: dict[str, object] = {}
    embedders: dict[str, object] = {}

    def path_of(name: str, fallback: str) -> str | BatchError:
        if not mapping:
            return fallback
        if name in mapping:
            return mapping[name]
        return BatchError(
            f"model {name!r} is not served here (--model-map has {', '.join(sorted(mapping))})",
            "model",
            "model_not_found",
            status_code=404,
        )

    def engine_for(name: str):
        path = path_of(name, engine.model)
        if isinstance(path, BatchError):
            return path
        if path not in engines:
            engines[path] = dataclasses.replace(engine, model=path).build("answering")
        return engines[path]

    def embedder_for(name: str):
        path = path_of(name, embedding_model)
        if isinstance(path, BatchError):
            return path
        if path not in embedders:
            embedders[path] = Embedder(path, cache_dir=engine.cache_dir, use_cache=not engine.no_cache)
        return embedders[path]

    check_outputs([output, errors, output.with_name(output.name + ".batch.json")], [input])
    try:
        summary = run_batch(input, output, errors, engine_for=engine_for, embedder_for=embedder_for)
    finally:
        for opened in [*engines.values(), *embedders.values()]:
            opened.close()
    counts = summary["request_counts"]
    stats = "; ".join(s.summary() for s in summary["engines"]) or "no generation requests"
    typer.echo(
        f"batch: {counts['completed']} answered -> {output}, {counts['failed']} errors -> {errors}; {stats}"
    )
