"""Seed tasks of SELF-INSTRUCT (Wang et al. 2023, §2.1 "the task pool is initiated with 175 tasks") and
Alpaca.

Two input shapes load into one `SeedTask` list:
- the upstream format, one task per line: `{id, name, instruction, instances[{input, output}],
  is_classification}` (yizhongw/self-instruct `data/seed_tasks.jsonl` loads unchanged);
- a simple table (JSONL, JSON, CSV, parquet): `instruction` [+ `input`, `output`, `is_classification`].

Every malformed record is one line naming file, line and field. Without a file, the project's own ~40
seed tasks (prompts/self_instruct/seed_tasks.jsonl, written for instructforge) are used.

    tasks = load_seed_tasks("seed_tasks.jsonl")   # or load_seed_tasks(None) for ours
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from engine.errors import InputError
from engine.run.io import Record, read_records
from prompts import PROMPTS_DIR

DEFAULT_SEED_TASKS = PROMPTS_DIR / "self_instruct" / "seed_tasks.jsonl"

# CSV cells are strings; these spell a boolean `is_classification` (an empty cell means no).
_TRUE, _FALSE = {"true", "yes", "1", "y", "t"}, {"false", "no", "0", "n", "f", ""}


@dataclass(frozen=True)
class Instance:
    input: str
    output: str


@dataclass(frozen=True)
class SeedTask:
    """One human-written task: its instruction, example instances and whether it is classification."""

    id: str
    name: str
    instruction: str
    instances: tuple[Instance, ...]
    is_classification: bool
    source: str
    """`FILE:LINE` it came from, for error messages about this task later on."""


def load_seed_tasks(path: str | Path | None = None) -> list[SeedTask]:
    """Seed tasks from `path` (upstream or simple format, see the module docstring); None = ours."""
    path = Path(path) if path is not None else DEFAULT_SEED_TASKS
    tasks = [_task(record, index) for index, record in enumerate(read_records(path))]
    if not tasks:
        raise InputError("no seed tasks in this file", path=path)
    return tasks


def seed_file_digest(path: str | Path | None = None) -> str:
    """The fingerprint of the seed file's bytes: a run records it so a changed seed file is not mistaken for
    the same run."""
    from engine.run.fingerprints import fingerprint

    return fingerprint([Path(path) if path is not None else DEFAULT_SEED_TASKS])


def _task(record: Record, index: int) -> SeedTask:
    instruction = record.require("instruction", str).strip()
    if not instruction:
        raise record.error("must not be empty", "instruction")
    if "instances" in record.data:  # upstream format
        raw = record.require("instances", list)
        instances = tuple(_instance(record, item, i) for i, item in enumerate(raw))
    elif "output" in record.data or "input" in record.data:  # simple format with one example
        instances = (Instance(_text(record, "input"), _text(record, "output")),)
    else:  # instructions only: fine for bootstrapping, Alpaca asks for outputs
        instances = ()
    task_id = record.data.get("id", f"seed_task_{index}")
    name = record.data.get("name", "")
    if not isinstance(task_id, (str, int)):
        raise record.error(f"must be a string or int, got {type(task_id).__name__}", "id")
    if not isinstance(name, str):
        raise record.error(f"must be a string, got {type(name).__name__}", "name")
    return SeedTask(
        id=str(task_id),
        name=name,
        instruction=instruction,
        instances=instances,
        is_classification=_flag(record),
        source=f"{record.path}:{record.line}",
    )


def _instance(record: Record, item: object, i: int) -> Instance:
    field = f"instances[{i}]"
    if not isinstance(item, dict):
        raise record.error(f"must be an object {{input, output}}, got {type(item).__name__}", field)
    for key in ("input", "output"):
        if not isinstance(item.get(key), str):
            raise record.error(f"`{key}` must be a string, got {type(item.get(key)).__name__}", field)
    return Instance(item["input"], item["output"])


def _text(record: Record, field: str) -> str:
    value = record.data.get(field)
    if value is None:  # a missing cell (CSV/parquet null) means no input / no output
        return ""
    if not isinstance(value, str):
        raise record.error(f"must be a string, got {type(value).__name__}", field)
    return value


def _flag(record: Record) -> bool:
    value = record.data.get("is_classification", False)
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise record.error(f"must be true/false (or yes/no), got {value!r}", "is_classification")
