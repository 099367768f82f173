"""`instructforge replay`: pick earlier-stage tasks to replay beside a new stage (DYNOSAUR §4).

Inputs are tasks.jsonl files (from `instructforge dynosaur`) or instance files (rows grouped into tasks
by task_name + instruction). Writes the selected tasks' rows to --output, in selection order, plus
OUTPUT.manifest.json with the strategy, the picked tasks and their ranks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from instructforge.options import CacheDirOpt, EmbeddingModelOpt, OutputOpt, SeedOpt

EXAMPLES = """\
Examples:

  instructforge replay --previous runs/stage1/tasks.jsonl --current runs/stage2/tasks.jsonl -k 50 \\
      -o replay.jsonl

  instructforge replay --previous s1/instances.jsonl --previous s2/instances.jsonl \\
      --current s3/instances.jsonl --strategy data-diverse -k 100 -o replay.jsonl

  instructforge replay --previous s1/tasks.jsonl --strategy instr-support -k 20 -o replay.jsonl
"""


def main(
    previous: Annotated[
        list[Path],
        typer.Option("--previous", help="Tasks or instances of earlier stages (repeat for several files)."),
    ],
    output: OutputOpt,
    k: Annotated[int, typer.Option("-k", "--k", help="How many earlier tasks to replay.")],
    current: Annotated[
        Optional[list[Path]],
        typer.Option(
            "--current",
            help="Tasks or instances of the current stage (needed by instr-diverse, "
            "instr-similar and data-diverse).",
        ),
    ] = None,
    strategy: Annotated[
        str,
        typer.Option(
            "--strategy",
            help="instr-diverse (paper's best), instr-similar, instr-support, data-diverse or random.",
        ),
    ] = "instr-diverse",
    embedding_model: EmbeddingModelOpt = "default",
    cache_dir: CacheDirOpt = None,
    seed: SeedOpt = 0,
) -> None:
    """Select k earlier-stage tasks to replay (DYNOSAUR continual learning)."""
    from engine.errors import InputError
    from engine.run.directory import sidecar, write_manifest
    from engine.run.io import check_outputs, published_together, write_jsonl
    from generators.dynosaur.replay import read_tasks, select

    check_outputs([output, sidecar(output)], [*previous, *(current or [])])

    earlier = read_tasks(previous)
    now = read_tasks(current or [])
    if not earlier:
        raise InputError("no tasks in the earlier stages", path=", ".join(map(str, previous)))
    embedder = None
    if strategy != "random":
        from engine.embeddings import Embedder

        embedder = Embedder(embedding_model, cache_dir=cache_dir)
    picked = select(earlier, now, strategy, k, embed=embedder.embed if embedder else None, seed=seed)
    rows = [r for i in picked for r in earlier[i].records]
    with published_together():  # the rows and their manifest
        write_jsonl(output, rows)
        write_manifest(
            sidecar(output),
            command="replay",
            config={
                "strategy": strategy,
                "k": k,
                "seed": seed,
                "previous": [str(p) for p in previous],
                "current": [str(p) for p in current or []],
                "embedding_model": embedding_model if embedder else None,
            },
            counts={
                "earlier_tasks": len(earlier),
                "current_tasks": len(now),
                "picked": [
                    {"rank": r, "task_name": earlier[i].task_name, "instruction": earlier[i].instruction}
                    for r, i in enumerate(picked, 1)
                ],
                "embedding_stats": embedder.stats if embedder else None,
            },
            outputs=[str(output)],
        )
    if embedder:
        embedder.close()
    typer.echo(
        f"picked {len(picked)} of {len(earlier)} earlier tasks by {strategy} ({len(rows)} rows) -> {output}"
    )
