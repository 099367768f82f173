"""`instructforge tag`: InsTag intention tags for every user query of an SFT dataset (Lu et al., ICLR 2024).

Sharded and resumable: kill it and run the same command again to continue (tagger/shards.py). Writes
OUT/tags.jsonl (one row per query: id, turn, query, tags [{tag, explanation}], failure), the shards,
manifest.json and report.json.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from instructforge.engine_args import EngineArgs, with_engine_options
from instructforge.options import InputOpt, MaxTokensOpt, OutDirOpt

EXAMPLES = """\
Examples:

  instructforge tag --input alpaca_data.json --out runs/alpaca-tags

  instructforge tag --input sharegpt.jsonl --out runs/sg-tags --model ~/models/InsTagger --compiled

  instructforge tag --input data.parquet --out runs/t --query-field question --shard-size 5000
"""


@with_engine_options
def main(
    input: InputOpt,
    out: OutDirOpt,
    engine: EngineArgs,
    prompt_format: Annotated[
        str,
        typer.Option(
            "--prompt-format",
            help="auto (instagger when the model name contains 'instagger', else chat), "
            "chat, or instagger (Vicuna v1.1 raw prompt).",
        ),
    ] = "auto",
    shard_size: Annotated[
        Optional[int],
        typer.Option(
            "--shard-size",
            min=1,
            help="Queries per shard (one engine batch, one output file). Default: 4 x the engine's "
            "concurrent requests in the throughput schedule (it starts the model to ask), 1000 in the "
            "deterministic one.",
        ),
    ] = None,
    query_field: Annotated[
        Optional[str],
        typer.Option(
            "--query-field",
            help="Field holding the query (a string, or a list of turns); "
            "default: detect instruction/input, conversations, messages, prompt.",
        ),
    ] = None,
    id_field: Annotated[
        str,
        typer.Option(
            "--id-field", help="Field with the sample id (default `id`; else the 0-based record index)."
        ),
    ] = "id",
    max_tokens: MaxTokensOpt = 512,
    last_try_max_tokens: Annotated[
        int,
        typer.Option(
            "--last-try-max-tokens",
            help="Budget for one last try of answers still cut off after the engine's "
            "retry at 2 x --max-tokens (0 = no last try).",
        ),
    ] = 2048,
    max_query_chars: Annotated[
        int,
        typer.Option("--max-query-chars", help="Cut longer queries to this many characters (0 = never cut)."),
    ] = 6000,
) -> None:
    """Tag every user query of a dataset with fine-grained intention tags (JSON-constrained)."""
    from instructforge.publishing import describe
    from tagger.shards import DEFAULT_SHARD_SIZE, SHARD_SLOTS, TagRun, input_fingerprint, tag_pending_shards
    from tagger.tagging import TagConfig, resolve_prompt_format

    with engine.build("tagging shard") as llm:
        config = TagConfig(
            prompt_format=resolve_prompt_format(prompt_format, llm.model.name),
            max_tokens=max_tokens,
            max_query_chars=max_query_chars or None,
            last_try_max_tokens=last_try_max_tokens or None,
        )
        if shard_size is None:  # a shard keeps the engine full: it drains once per shard
            shard_size = SHARD_SLOTS * llm.capacity if llm.schedule == "throughput" else DEFAULT_SHARD_SIZE
        settings = {
            "input": input_fingerprint(input),
            "query_field": query_field,
            "id_field": id_field,
            "shard_size": shard_size,
            "model": llm.model_identity,
            "prompt_format": config.prompt_format,
            "format_version": config.format_version,
            "max_tokens": config.max_tokens,
            "last_try_max_tokens": config.last_try_max_tokens,
            "max_query_chars": config.max_query_chars,
        }
        run = TagRun(out, settings=settings)
        plan = run.prepare(input, shard_size=shard_size, query_field=query_field, id_field=id_field)
        speed = tag_pending_shards(llm, run, config)
        counts = run.merge()
        stats = llm.stats
        report = {"plan": plan, "outputs": counts, "this_run": speed, "engine": stats.to_dict()}
        run.dir.write_report(report)
        run.dir.write_manifest(
            command="tag",
            config={**settings, "engine": engine.to_config()},
            engine=llm,
            counts={**counts, "queries": plan["queries"]},
            outputs=[str(run.merged_path)],
            publication=describe("tag", run.dir.path),
        )
    failed = sum(v for k, v in counts.items() if k.startswith("failed_"))
    rate = f", {speed['samples_per_second']} samples/s" if speed["samples_per_second"] else ""
    typer.echo(
        f"tagged {counts.get('tagged', 0)}/{plan['queries']} queries ({failed} failed) into "
        f"{run.merged_path}; {speed['shards_run']} shards run{rate}; {stats.summary()}"
    )
