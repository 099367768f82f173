"""`instructforge self-instruct`: SELF-INSTRUCT (Wang et al. 2023) on the local model, into a run directory.

Writes machine_generated_instructions.jsonl (with most_similar_instructions / avg_similarity_score),
is_clf_or_not.jsonl, machine_generated_instances.jsonl, data.jsonl (`{instruction, input, output}`),
manifest.json and report.json. Rerunning the same command resumes (or replays) the run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from instructforge.engine_args import EngineArgs, with_engine_options
from instructforge.generator_run import run_generator_command
from instructforge.options import (
    BatchSizeOpt,
    DataFormat,
    FormatOpt,
    KeepCutOffOpt,
    MaxWordsOpt,
    MinWordsOpt,
    NumInstructionsOpt,
    OutDirOpt,
    SeedTasksOpt,
)

EXAMPLES = """\
Examples:

  instructforge self-instruct --num-instructions 50 --out runs/si-50

  instructforge self-instruct --num-instructions 200 --out runs/si-clf --classification-only --seed 7

  instructforge self-instruct -n 1000 --out runs/si-1k --seed-tasks seed_tasks.jsonl \\
      --model ~/models/Qwen2.5-7B-Instruct
"""


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
    data_format: FormatOpt = DataFormat.alpaca,
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
        data_format=data_format.value,
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
