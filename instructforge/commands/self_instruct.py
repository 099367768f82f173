"""`instructforge self-instruct`: SELF-INSTRUCT (Wang et al. 2023) on the local model, into a run directory.

Writes machine_generated_instructions.jsonl (with most_similar_instructions / avg_similarity_score),
is_clf_or_not.jsonl, machine_generated_instances.jsonl, data.jsonl (`{instruction, input, output}`),
manifest.json and report.json. Rerunning the same command resumes (or replays) the run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer

from instructforge.engine_args import EngineArgs, with_engine_options
from instructforge.options import OutDirOpt

EXAMPLES = """\
Examples:

  instructforge self-instruct --num-instructions 50 --out runs/si-50

  instructforge self-instruct --num-instructions 200 --out runs/si-clf --classification-only --seed 7

  instructforge self-instruct -n 1000 --out runs/si-1k --seed-tasks seed_tasks.jsonl \\
      --model ~/models/Qwen2.5-7B-Instruct
"""

NumInstructionsOpt = Annotated[
    int,
    typer.Option(
        "--num-instructions",
        "-n",
        help="How many new instructions to accept (after filtering); the pool grows "
        "further (--max-top-ups) until this many tasks keep an instance.",
    ),
]
SeedTasksOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--seed-tasks",
        help="Seed tasks: upstream seed_tasks.jsonl format, or JSONL/CSV with `instruction` "
        "[+ input, output, is_classification]. Default: instructforge's own ~40 tasks.",
    ),
]
BatchSizeOpt = Annotated[
    Optional[int],
    typer.Option(
        "--batch-size",
        min=1,
        help="Bootstrap prompts per engine call. Default: sized to the engine (in the throughput schedule "
        "enough to fill its slots, bounded by what the target still needs at the acceptance rate seen "
        "so far; 16 for self-instruct, 8 for alpaca in the deterministic one).",
    ),
]
MinWordsOpt = Annotated[int, typer.Option("--min-words", help="Drop instructions with fewer words.")]
MaxWordsOpt = Annotated[int, typer.Option("--max-words", help="Drop instructions with more words.")]
KeepCutOffOpt = Annotated[
    bool,
    typer.Option(
        "--keep-cut-off",
        help="Keep generated strings that reached their length bound (dropped by default: "
        "the grammar closed them mid-sentence).",
    ),
]


def run_generator_command(
    command: str,
    engine: EngineArgs,
    out: Path,
    seed_tasks: Optional[Path],
    config: Any,
    run_method: Callable,
    outputs: list[str],
    counts: Callable[[dict], dict],
) -> tuple[dict, str]:
    """What `self-instruct` and `alpaca` share: seeds, the run directory, the engine and the manifest.

    Returns the run's report and the engine's one-line statistics.
    """
    from engine.run.steps import open_run, prompts_digest
    from generators.self_instruct.seed_tasks import load_seed_tasks, seed_file_digest

    seeds = load_seed_tasks(seed_tasks)
    engine_settings = {k: v for k, v in engine.to_config().items() if k not in ("cache_dir", "no_cache")}
    run = open_run(
        out,
        {
            "command": command,
            "generator": config.to_config(),
            "engine": engine_settings,
            "seed_tasks_sha256": seed_file_digest(seed_tasks),
            "prompts_sha256": prompts_digest(command.replace("-", "_")),
        },
    )
    with engine.build(command) as llm:
        report = run_method(llm, config, seeds, run).report
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
        )
        stats = llm.stats.summary()
    if report["instructions"] < config.num_instructions:
        typer.echo(
            f"warning: stopped after {config.max_stalled_rounds} rounds in a row without a new "
            f"instruction, with {report['instructions']} of {config.num_instructions}",
            err=True,
        )
    return report, stats


@with_engine_options
def main(
    num_instructions: NumInstructionsOpt,
    out: OutDirOpt,
    engine: EngineArgs,
    seed_tasks: SeedTasksOpt = None,
    classification_only: Annotated[
        bool,
        typer.Option(
            "--classification-only", help="Prompt with classification seeds only; ask for labelled tasks."
        ),
    ] = False,
    batch_size: BatchSizeOpt = None,
    max_new_per_prompt: Annotated[
        int, typer.Option("--max-new-per-prompt", help="Most new instructions one response may list.")
    ] = 8,
    max_instances: Annotated[int, typer.Option("--max-instances", help="Instances per task.")] = 5,
    min_words: MinWordsOpt = 4,
    max_words: MaxWordsOpt = 150,
    keep_cut_off: KeepCutOffOpt = False,
    max_top_ups: Annotated[
        int,
        typer.Option(
            "--max-top-ups",
            help="Times to grow the pool while fewer than N tasks keep an instance (0: never).",
        ),
    ] = 3,
) -> None:
    """SELF-INSTRUCT: bootstrap instructions from seed tasks, classify them, generate instances, filter."""
    from engine.run.steps import FINAL_FILE
    from generators.self_instruct.filters import InstructionFilters
    from generators.self_instruct.pipeline import SelfInstructConfig, run_self_instruct

    config = SelfInstructConfig(
        num_instructions=num_instructions,
        seed=engine.seed,
        batch_size=batch_size,
        max_new_per_prompt=max_new_per_prompt,
        classification_only=classification_only,
        max_instances=max_instances,
        drop_cut_off=not keep_cut_off,
        max_top_ups=max_top_ups,
        filters=InstructionFilters.self_instruct(min_words=min_words, max_words=max_words),
    )
    report, stats = run_generator_command(
        "self-instruct",
        engine,
        out,
        seed_tasks,
        config,
        run_self_instruct,
        outputs=[
            "machine_generated_instructions.jsonl",
            "is_clf_or_not.jsonl",
            "machine_generated_instances.jsonl",
            FINAL_FILE,
            "report.json",
        ],
        counts=lambda r: {
            "instructions": r["instructions"],
            "tasks_with_instances": r["tasks_with_instances"],
            "rows": r["rows"],
            "classification": r["classification"]["yes"],
        },
    )
    kept, top_ups = report["tasks_with_instances"], len(report["bootstrap"]["top_ups"])
    if kept < num_instructions <= report["instructions"]:
        typer.echo(
            f"warning: {kept} of {num_instructions} tasks kept an instance after {top_ups} top-ups of "
            "the pool (--max-top-ups)",
            err=True,
        )
    typer.echo(
        f"{report['instructions']} instructions ({report['classification']['share']:.0%} classification), "
        f"{report['tasks_with_instances']} with instances, {report['rows']} rows in "
        f"{Path(out) / FINAL_FILE}; "
        f"{stats}"
    )
