"""`instructforge dynosaur`: instruction data from existing datasets (DYNOSAUR, Yin et al. EMNLP 2023).

Reads each dataset offline (a `save_to_disk` folder, a folder of JSONL/CSV/parquet files with an
optional README.md card, one data file, or a hub id already in the local HF cache; a folder of such
folders is expanded), lets the model design up to 3 tasks per dataset and setting under a schema of
the dataset's real field names, and builds instances from the rows. Writes into --out: tasks.jsonl,
instances.jsonl (`{instruction, input, output, license, task_name}`), datasets.jsonl, report.json,
manifest.json. Rerunning over a larger collection only processes the new datasets.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from engine.errors import InputError
from instructforge.engine_args import EngineArgs, with_engine_options
from instructforge.options import DataFormat, FormatOpt, MaxTokensOpt, OutDirOpt

EXAMPLES = """\
Examples:

  instructforge dynosaur --datasets data/sentiment data/qa data/nli --out runs/dyno

  instructforge dynosaur --datasets data/ --out runs/dyno --settings unaware --max-instances 50

  instructforge dynosaur --datasets glue/sst2 --out runs/dyno --exclude-licenses other,unknown
"""


@with_engine_options
def main(
    datasets: Annotated[
        list[str],
        typer.Option(
            "--datasets",
            help="Dataset folders, data files, cached hub ids, or folders of datasets; "
            "more can follow as plain arguments (--datasets A B C).",
        ),
    ],
    out: OutDirOpt,
    engine: EngineArgs,
    more: Annotated[
        Optional[list[str]],
        typer.Argument(
            help="More datasets (lets `--datasets A B C` list several after one flag).", show_default=False
        ),
    ] = None,
    settings: Annotated[
        str,
        typer.Option(
            "--settings",
            help="Prompt settings, comma-separated: aware (with the card summary), unaware (without).",
        ),
    ] = "aware,unaware",
    max_instances: Annotated[
        int, typer.Option("--max-instances", help="Most instances per task (a seeded sample of the rows).")
    ] = 200,
    max_tasks: Annotated[int, typer.Option("--max-tasks", help="Most tasks per dataset and setting.")] = 3,
    max_tokens: MaxTokensOpt = 768,
    demos: Annotated[
        int,
        typer.Option("--demos", help="Worked examples in the prompt, 0-2 (fewer fit small context windows)."),
    ] = 2,
    max_instruction_chars: Annotated[
        int, typer.Option("--max-instruction-chars", help="Longest instruction the output schema allows.")
    ] = 400,
    exclude_licenses: Annotated[
        Optional[str],
        typer.Option(
            "--exclude-licenses",
            help="Comma-separated licenses whose datasets are skipped "
            "(default: other, unknown, cc-by-nc-nd-4.0, cc-by-nd-4.0, "
            "cc-by-nc-nd-3.0, ofl).",
        ),
    ] = None,
    data_format: FormatOpt = DataFormat.alpaca,
    rows_per_split: Annotated[
        int, typer.Option("--rows-per-split", min=1, help="Rows read from each train/validation split.")
    ] = 100,
) -> None:
    """Turn local datasets into instruction tasks and instances (DYNOSAUR)."""
    from engine.run.directory import RunDir
    from engine.run.steps import export
    from generators.dynosaur.metadata import EXCLUDED_LICENSES
    from generators.dynosaur.pipeline import DynosaurConfig, run_dynosaur
    from generators.dynosaur.sources import collect_metadata
    from instructforge.publishing import describe

    config = DynosaurConfig(
        settings=tuple(s.strip() for s in settings.split(",") if s.strip()),
        max_tasks=max_tasks,
        max_tokens=max_tokens,
        max_instances=max_instances,
        seed=engine.seed,
        num_demos=demos,
        max_instruction_chars=max_instruction_chars,
    )
    excluded = (
        EXCLUDED_LICENSES
        if exclude_licenses is None
        else tuple(x.strip() for x in exclude_licenses.split(",") if x.strip())
    )
    paths = list(datasets) + list(more or [])
    collection = collect_metadata(paths, excluded_licenses=excluded, rows_per_split=rows_per_split)
    if not collection.datasets and not collection.skipped:
        raise InputError("no datasets found", path=", ".join(paths))
    for skip in collection.skipped:
        typer.echo(f"skipped {skip.name}: {skip.reason} ({skip.detail})", err=True)
    run = RunDir(out)
    run.claim("dynosaur", {})  # grows over new datasets, each keyed by its own config: see run_dynosaur
    with engine.build("designing tasks") as llm:
        report = run_dynosaur(llm, collection, run, config)
        exported = export(run / "instances.jsonl", data_format.value)
        run.write_manifest(
            command="dynosaur",
            engine=llm,
            config={
                "datasets": [str(Path(p)) for p in paths],
                **report["config"],
                "excluded_licenses": list(excluded),
                "rows_per_split": rows_per_split,
                "engine": engine.to_config(),
            },
            counts={
                "datasets": report["datasets"]["usable"],
                "tasks": report["tasks"]["total"],
                "instances": report["instances"]["total"],
            },
            outputs=[
                "tasks.jsonl",
                "instances.jsonl",
                "datasets.jsonl",
                "report.json",
                *([exported.name] if exported else []),
            ],
            publication=describe("dynosaur", run.path),
        )
        summary = llm.stats.summary()
    added = report["added_this_run"]
    typer.echo(
        f"{report['datasets']['usable']} datasets ({sum(report['datasets']['skipped'].values())} "
        f"skipped), {report['tasks']['total']} tasks, {report['instances']['total']} instances "
        f"in {out}; added this run: {len(added['datasets'])} datasets, {added['tasks']} tasks, "
        f"{added['instances']} instances; {summary}"
    )
