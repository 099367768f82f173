"""DYNOSAUR instances (Yin et al., EMNLP 2023, §2.3): a designed task applied to the dataset's own rows.

One input field gives its raw value as the input; several give one sentence per field; list fields that
hold answer options are lettered. The output is the output field's value and must be a scalar. Short
label outputs add "Answers must be one of <labels>." to the instruction (labels sorted, so the text is
deterministic; upstream's order came from a `set`).

    rows, counts = build_instances(task, meta, max_instances=200, seed=0)
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

from engine.run.seeds import derive_seed
from generators.dynosaur.metadata import DatasetMeta

MAX_CHARS = 2000  # upstream organize_data: input and output cut to 2000 chars
MAX_INSTANCES = 200  # paper §2.3: at most 200 instances per task
MAX_LABELS = 10  # upstream: a label space has <= 10 distinct values ...
MAX_LABEL_CHARS = 15  # ... each <= 15 characters ...
MAX_SHARE_BINARY = 0.7  # ... and is not badly imbalanced: upstream allows a majority of 70 of
MAX_SHARE_MULTI = 0.5  # 100 rows for 2 labels, 50 of 100 for more (here as shares of the rows)
OPTION_FIELD = re.compile(r"choice|option|candidate|ending", re.IGNORECASE)  # upstream: "choice"
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def field_words(name: str) -> str:
    """`premise_text` / `answers.text` -> `premise text` / `answers text`, for the input sentences."""
    return " ".join(re.split(r"[_.\-\s]+", name)).strip() or name


def scalar_text(value: Any) -> str | None:
    """A scalar as text (None for lists, dicts and missing values)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value).strip()
    return None


def options_text(values: Sequence[Any]) -> str:
    """(A) first (B) second ... : answer options, lettered as upstream does for `choice` fields."""
    return " ".join(f"({LETTERS[i % 26]}) {str(v).strip()}" for i, v in enumerate(values))


def render_value(name: str, value: Any) -> str | None:
    """A field value as input text; None if it cannot be shown (missing, nested, empty)."""
    text = scalar_text(value)
    if text is not None:
        return text or None
    if isinstance(value, list) and value and all(scalar_text(v) is not None for v in value):
        if OPTION_FIELD.search(name):
            return options_text(value)
        return ", ".join(f'"{scalar_text(v)}"' for v in value)
    return None


def render_input(row: dict[str, Any], input_fields: Sequence[str]) -> str | None:
    """One field -> its value; several -> one sentence per field. None when any field is unusable."""
    parts = []
    for name in input_fields:
        text = render_value(name, row.get(name))
        if text is None:
            return None
        parts.append((name, text))
    if len(parts) == 1:
        return parts[0][1]
    sentences = []
    for name, text in parts:
        if isinstance(row.get(name), list) and OPTION_FIELD.search(name):
            sentences.append(f"The {field_words(name)} are: {text}.")
        else:
            sentences.append(f'The {field_words(name)} is "{text}".')
    return " ".join(sentences)


def label_space(outputs: Sequence[str], class_names: Sequence[str] | None = None) -> list[str] | None:
    """Sorted labels when the outputs look like a small, balanced label set (paper §2.3), else None.

    Upstream's conditions, on the task's rows: <= 10 distinct outputs, each <= 15 chars, the most
    frequent one <= 70% of rows for 2 labels and <= 50% for more. Ours adds: at least 2 labels, and
    (unless the field is a ClassLabel) each distinct value seen twice on average (rows >= 2 x labels),
    so a handful of unique short answers ("Paris", "1969") is not mistaken for a label set.
    A ClassLabel field offers all its names, not just those seen in the rows.
    """
    if not outputs:
        return None
    counts = Counter(outputs)
    labels = set(class_names) if class_names else set(counts)
    if not 2 <= len(labels) <= MAX_LABELS or any(len(x) > MAX_LABEL_CHARS for x in labels):
        return None
    if not class_names and len(outputs) < 2 * len(counts):
        return None
    share = max(counts.values()) / len(outputs)
    if share > (MAX_SHARE_BINARY if len(labels) == 2 else MAX_SHARE_MULTI):
        return None
    return sorted(labels)


def with_label_suffix(instruction: str, labels: Sequence[str] | None) -> str:
    if not labels:
        return instruction
    return f"{instruction.rstrip()} Answers must be one of {', '.join(labels)}."


def build_instances(
    task: dict[str, Any], meta: DatasetMeta, *, max_instances: int = MAX_INSTANCES, seed: int = 0
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Instance rows `{instruction, input, output, license, task_name}` and the task's counters.

    counts: rows (seen), dropped_output_not_scalar, dropped_empty_output, dropped_bad_input,
    sampled_out (over max_instances), label_space (list or None).
    """
    counts: dict[str, Any] = {
        "rows": len(meta.rows),
        "dropped_output_not_scalar": 0,
        "dropped_empty_output": 0,
        "dropped_bad_input": 0,
        "sampled_out": 0,
    }
    pairs = []
    for row in meta.rows:
        value = row.get(task["output_field"])
        output = scalar_text(value)
        if output is None and isinstance(value, (list, dict)):
            counts["dropped_output_not_scalar"] += 1
            continue
        if not output:
            counts["dropped_empty_output"] += 1
            continue
        text = render_input(row, task["input_fields"])
        if text is None:
            counts["dropped_bad_input"] += 1
            continue
        pairs.append((text[:MAX_CHARS], output[:MAX_CHARS]))
    labels = label_space([o for _, o in pairs], meta.label_names.get(task["output_field"]))
    counts["label_space"] = labels
    if len(pairs) > max_instances:  # seeded per task: adding other tasks never changes this sample
        rng = random.Random(derive_seed(seed, "instances", task["task_id"]))
        keep = sorted(rng.sample(range(len(pairs)), max_instances))
        counts["sampled_out"] = len(pairs) - max_instances
        pairs = [pairs[i] for i in keep]
    instruction = with_label_suffix(task["instruction"], labels)
    rows = [
        {"instruction": instruction, "input": i, "output": o, "license": meta.license, "task_name": meta.name}
        for i, o in pairs
    ]
    return rows, counts
