"""Resumable steps of the generators, and their final dataset file.

A run directory belongs to one command and configuration (RunDir.claim, in run_config.json); reusing it
with other settings is an error, not a silent mix. A step here is RunDir.step with JSONL rows: it writes
its rows (atomically), then its stats, then its completion marker, so a rerun skips finished steps and
redoes the interrupted one through the request cache.

    run = open_run(out, "self-instruct", config)
    rows, stats = run_step(run, "bootstrap", "machine_generated_instructions.jsonl", compute)
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from engine.run.directory import RunDir
from engine.run.fingerprints import fingerprint
from engine.run.io import published_together, read_records, write_json, write_jsonl

FINAL_FILE = "data.jsonl"
"""The dataset: one `{instruction, input, output}` per line (`datasets.load_dataset("json", ...)` reads
it)."""
STATS_FILE = "step_stats.json"


def open_run(out: str | Path, command: str, config: dict[str, Any]) -> RunDir:
    """The run directory for `command` with `config` (RunDir.claim refuses one holding another run)."""
    run = RunDir(out)
    run.claim(command, config)
    return run


def prompts_digest(method: str) -> str:
    """The fingerprint of prompts/<method>/* (names and bytes): a run records it, so edited templates or
    demos are not mistaken for the run's own (the request cache keeps both versions' generations)."""
    from prompts import PROMPTS_DIR

    folder = PROMPTS_DIR / method
    return fingerprint(sorted(p for p in folder.iterdir() if p.is_file()), root=folder, name_end=b"\0")


def dropped(counts: Mapping[str, int]) -> dict[str, int]:
    """Drop counters as every report names them: `dropped_<reason>`, sorted, zeros left out."""
    return {f"dropped_{reason}": n for reason, n in sorted(counts.items()) if n}


class StepOutput(NamedTuple):
    """What one step leaves: its rows (saved as JSONL) and its statistics (saved in the run's stats)."""

    rows: list[dict[str, Any]]
    stats: dict[str, Any]


def run_step(
    run: RunDir, name: str, filename: str, compute: Callable[[], tuple[list[dict[str, Any]], dict[str, Any]]]
) -> StepOutput:
    """Rows and stats of step `name`: read back if it finished before, else computed and saved."""
    return run_steps(run, {name: filename}, lambda: {name: compute()})[name]


def run_steps(
    run: RunDir,
    files: dict[str, str],
    compute: Callable[[], dict[str, tuple[list[dict[str, Any]], dict[str, Any]]]],
) -> dict[str, StepOutput]:
    """Steps computed together (name -> file): read back if all finished before, else all computed, then
    all saved and marked (rows of every step, stats, markers last)."""
    stats_path = run / STATS_FILE
    all_stats = json.loads(stats_path.read_text(encoding="utf-8")) if stats_path.is_file() else {}

    def load() -> dict[str, StepOutput]:
        return {
            name: StepOutput([record.data for record in read_records(run / filename)], all_stats[name])
            for name, filename in files.items()
        }

    def save(computed: dict[str, tuple[list[dict[str, Any]], dict[str, Any]]]) -> None:
        with published_together():  # the steps' rows and their stats, as one set
            for name, filename in files.items():
                write_jsonl(run / filename, computed[name][0])
                all_stats[name] = json.loads(json.dumps(computed[name][1]))
            write_json(stats_path, all_stats)

    def intact() -> bool:
        return all(name in all_stats and (run / filename).is_file() for name, filename in files.items())

    computed = run.step(list(files), compute, save, load, intact=intact)
    return {name: StepOutput(computed[name][0], all_stats[name]) for name in files}


def export(path: Path, fmt: str) -> Path | None:
    """The `{instruction, input, output}` rows of `path` again as `fmt` (engine/run/chat.py FORMATS), in
    PATH.<fmt>.jsonl beside it; nothing for Alpaca, which `path` already is."""
    from engine.run.chat import as_format

    if fmt == "alpaca":
        return None
    target = path.with_name(f"{path.stem}.{fmt}.jsonl")
    write_jsonl(target, (as_format(record.data, fmt) for record in read_records(path)))
    return target


def write_final(run: RunDir, rows: list[dict[str, str]]) -> Path:
    """data.jsonl with exactly `instruction`, `input`, `output` ("" for no input), atomically."""
    write_jsonl(
        run / FINAL_FILE,
        ({"instruction": r["instruction"], "input": r["input"], "output": r["output"]} for r in rows),
    )
    return run / FINAL_FILE
