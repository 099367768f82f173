"""What a run's main data file holds, read once: its row count, the words per row of its text fields, its
columns, and a seeded sample of rows to show.

    summary = summarize(Path("runs/si-50/data.jsonl"), ["instruction", "input", "output"])
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SAMPLE_ROWS = 8


@dataclass
class RowsSummary:
    rows: int = 0
    lengths: dict[str, list[int]] = field(default_factory=dict)
    """Text field -> words per row (rows where the field is a string or a list of strings)."""
    columns: list[str] = field(default_factory=list)
    sample: list[dict[str, Any]] = field(default_factory=list)
    unreadable: str = ""
    """Why the file could not be read, if it could not."""


def words(value: Any) -> int | None:
    """Words of a string, a list of strings, or a chat (OpenAI `content` / ShareGPT `value` turns)."""
    if isinstance(value, str):
        return len(value.split())
    if isinstance(value, list) and value and all(isinstance(v, (str, dict)) for v in value):
        texts = [v if isinstance(v, str) else v.get("content", v.get("value", "")) for v in value]
        return sum(len(t.split()) for t in texts if isinstance(t, str))
    return None


def summarize(path: Path, text_fields: list[str], *, sample_size: int = SAMPLE_ROWS) -> RowsSummary:
    """Read `path` (JSONL) once; the sample is a reservoir sample with a fixed seed (same page each time)."""
    summary = RowsSummary(lengths={name: [] for name in text_fields})
    if not path.is_file():
        summary.unreadable = f"{path.name} is missing"
        return summary
    rng = random.Random(0)
    columns: dict[str, None] = {}
    with path.open(encoding="utf-8", errors="replace") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                summary.unreadable = f"{path.name}:{number} is not JSON"
                continue
            if not isinstance(row, dict):
                continue
            summary.rows += 1
            columns.update(dict.fromkeys(row))
            for name in text_fields:
                count = words(row.get(name))
                if count is not None:
                    summary.lengths[name].append(count)
            if len(summary.sample) < sample_size:
                summary.sample.append(row)
            else:
                slot = rng.randrange(summary.rows)
                if slot < sample_size:
                    summary.sample[slot] = row
    summary.columns = list(columns)
    return summary
