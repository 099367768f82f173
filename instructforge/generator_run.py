"""What the `self-instruct` and `alpaca` commands share: seeds, run directory, engine, manifest and the
published card and report."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

import typer

from instructforge.engine_args import EngineArgs


def run_generator_command(
    command: str,
    engine: EngineArgs,
    out: Path,
    seed_tasks: Optional[Path],
    config: Any,
    run_method: Callable,
    outputs: list[str],
    counts: Callable[[dict], dict],
    data_format: str = "alpaca",
) -> tuple[dict, str]:
    """What `self-instruct` and `alpaca` share: seeds, the run directory, the engine and the manifest.

    Returns the run's report and the engine's one-line statistics.
    """
    from engine.run.steps import FINAL_FILE, export, open_run, prompts_digest
    from generators.self_instruct.seed_tasks import load_seed_tasks, seed_file_digest
    from instructforge.publishing import describe

    seeds = load_seed_tasks(seed_tasks)
    engine_settings = {k: v for k, v in engine.to_config().items() if k not in ("cache_dir", "no_cache")}
    run = open_run(
        out,
        command,
        {
            "generator": config.to_config(),
            "engine": engine_settings,
            "seed_tasks_xxh128": seed_file_digest(seed_tasks),
            "prompts_xxh128": prompts_digest(command.replace("-", "_")),
        },
    )
    with engine.build(command) as llm:
        report = run_method(llm, config, seeds, run).report
        exported = export(run / FINAL_FILE, data_format)
        outputs = outputs + ([exported.name] if exported else [])
        run.write_manifest(
            command=command,
            engine=llm,
            counts=counts(report),
            outputs=outputs,
            config={
                "generator": config.to_config(),
                "seed_tasks": str(seed_tasks or "default"),
                "num_seed_tasks": len(seeds),
                "engine": engine.to_config(),
            },
            publication=describe(command, run.path),
        )
        stats = llm.stats.summary()
    if report["instructions"] < config.num_instructions:
        typer.echo(
            f"warning: stopped after {config.max_stalled_rounds} rounds in a row without a new "
            f"instruction, with {report['instructions']} of {config.num_instructions}",
            err=True,
        )
    return report, stats
