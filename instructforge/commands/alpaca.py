"""`instructforge alpaca`: Alpaca's SELF-INSTRUCT variant (Taori et al. 2023) on the local model.

Writes machine_generated_instructions.jsonl (each task with its input, output, most_similar_instructions
and avg_similarity_score), data.jsonl (`{instruction, input, output}`, "" for no input), manifest.json
and report.json. Rerunning the same command resumes (or replays) the run.
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

  instructforge alpaca --num-instructions 100 --out runs/alpaca-100

  instructforge alpaca -n 2000 --out runs/alpaca-2k --seed-tasks seed_tasks.jsonl \\
      --model ~/models/Qwen2.5-7B-Instruct
"""


@with_engine_options
def main(
    num_instructions: NumInstructionsOpt,
    out: OutDirOpt,
    engine: EngineArgs,
    seed_tasks: SeedTasksOpt = None,
    batch_size: BatchSizeOpt = None,
    tasks_per_prompt: Annotated[
        int, typer.Option("--tasks-per-prompt", help="Most new tasks one response may list (upstream: 20).")
    ] = 20,
    min_words: MinWordsOpt = 4,
    max_words: MaxWordsOpt = 150,
    keep_cut_off: KeepCutOffOpt = False,
    data_format: FormatOpt = DataFormat.alpaca,
) -> None:
    """Alpaca: 3 seed tasks per prompt, up to 20 new {instruction, input, output} per response, filtered."""
    from engine.run.steps import FINAL_FILE
    from generators.alpaca import AlpacaConfig, run_alpaca
    from generators.self_instruct.filters import InstructionFilters

    config = AlpacaConfig(
        num_instructions=num_instructions,
        seed=engine.seed,
        batch_size=batch_size,
        num_tasks_per_prompt=tasks_per_prompt,
        drop_cut_off=not keep_cut_off,
        filters=InstructionFilters.alpaca(min_words=min_words, max_words=max_words),
    )
    report, stats = run_generator_command(
        "alpaca",
        engine,
        out,
        seed_tasks,
        config,
        run_alpaca,
        outputs=["machine_generated_instructions.jsonl", FINAL_FILE, "report.json"],
        counts=lambda r: {"instructions": r["instructions"], "rows": r["rows"]},
        data_format=data_format.value,
    )
    typer.echo(
        f"{report['instructions']} instructions, {report['rows']} rows in {Path(out) / FINAL_FILE}; {stats}"
    )
