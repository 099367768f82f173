"""DYNOSAUR's task design (Yin et al., EMNLP 2023, §2.2): the prompt that shows a dataset's metadata and
asks for up to 3 tasks, the JSON schema that keeps every named field real, and the filters that each
proposed task must pass (each drop counted by its reason).

    request = task_request(meta, "aware", DynosaurConfig())
    kept, dropped = filter_tasks(proposals, threshold, demo_instructions(), example_texts(meta))
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from engine.types import Request, Sampling
from generators.dynosaur.metadata import DatasetMeta

if TYPE_CHECKING:
    from generators.dynosaur.pipeline import DynosaurConfig

MAX_TASKS = 3  # paper §2.2 / upstream prompt: "up to three different tasks"
# Upstream asked for 3 tasks in 256 tokens and lost truncated replies. A task here is at most ~100
# tokens of instruction (400 chars) plus its field names and JSON syntax, so 3 fit in 768 tokens;
# the engine retries a truncated reply once at twice the budget.
MAX_TOKENS = 768
MAX_INSTRUCTION_CHARS = 400
NUM_DEMOS = 2  # upstream prompt: two worked examples (ours: prompts/dynosaur/demos.json)
ROUGE_THRESHOLD = 0.7  # the SELF-INSTRUCT near-duplicate rule (ROUGE-L F1 > 0.7 drops)
FORMAT_VERSION = "dynosaur.tasks@2"  # bump when prompts/dynosaur/* change meaning


def task_schema(
    fields: list[str], max_tasks: int = MAX_TASKS, max_instruction_chars: int = MAX_INSTRUCTION_CHARS
) -> dict[str, Any]:
    """JSON schema of one reply, built per dataset: field names are enums of its real fields.

    One branch per possible output field, whose input fields may be any OTHER field: the grammar
    cannot produce a non-existent field, several output fields, or an output that is also an input.
    Fields come before the instruction, so the instruction is written knowing the chosen fields.
    """

    def task(output: str) -> dict[str, Any]:
        others = [f for f in fields if f != output]
        return {
            "type": "object",
            "properties": {
                "input_fields": {
                    "type": "array",
                    "items": {"type": "string", "enum": others},
                    "minItems": 1,
                    "maxItems": len(others),
                },
                "output_field": {"type": "string", "enum": [output]},
                "instruction": {"type": "string", "minLength": 1, "maxLength": max_instruction_chars},
            },
            "required": ["input_fields", "output_field", "instruction"],
            "additionalProperties": False,
        }

    return {
        "type": "object",
        "properties": {
            "tasks": {
                "type": "array",
                "items": {"anyOf": [task(f) for f in fields]},
                "minItems": 1,
                "maxItems": max_tasks,
            }
        },
        "required": ["tasks"],
        "additionalProperties": False,
    }


def compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def task_messages(
    meta: DatasetMeta, setting: str, max_tasks: int = MAX_TASKS, num_demos: int = NUM_DEMOS
) -> list[dict[str, str]]:
    """System + user messages asking for tasks for `meta` in one setting, with our 2 worked demos."""
    from prompts import load_data, load_template, prompt_path

    aware = setting == "aware"
    demos = []
    for demo in load_data("dynosaur", "demos.json")[:num_demos]:
        view = {
            "name": demo["name"],
            **({"description": demo["description"]} if aware else {}),
            "fields": demo["fields"],
            "examples": demo["examples"],
        }
        demos.append({"dataset": compact(view), "tasks": compact({"tasks": demo["tasks"]})})
    user = load_template("dynosaur", "tasks.j2").render(
        description_aware=aware,
        max_tasks=max_tasks,
        demos=demos,
        dataset=compact(meta.prompt_view(with_summary=aware)),
    )
    system = prompt_path("dynosaur", "system.txt").read_text(encoding="utf-8").strip()
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def task_request(meta: DatasetMeta, setting: str, config: DynosaurConfig) -> Request:
    # Greedy as upstream (temperature 0): one deterministic design per dataset and setting.
    return Request(
        messages=task_messages(meta, setting, config.max_tasks, config.num_demos),
        sampling=Sampling(temperature=0.0, max_tokens=config.max_tokens),
        output_type=task_schema(list(meta.fields), config.max_tasks, config.max_instruction_chars),
        format_version=FORMAT_VERSION,
    )


# ---------------------------------------------------------------------------------- task filters


def normalize(text: str) -> str:
    return " ".join(text.lower().split())


def is_degenerate(instruction: str) -> bool:
    """Too short to be an instruction (< 3 words), mostly non-letters, or a runaway repetition
    (a word trigram repeated 3+ times, or < 40% distinct words among 10+)."""
    words = instruction.split()
    if len(words) < 3:
        return True
    chars = [c for c in instruction if not c.isspace()]
    if sum(c.isalpha() for c in chars) < 0.5 * len(chars):
        return True
    lowered = [re.sub(r"\W+", "", w.lower()) for w in words]
    trigrams = Counter(zip(lowered, lowered[1:], lowered[2:]))
    if trigrams and max(trigrams.values()) >= 3:
        return True
    return len(words) >= 10 and len(set(lowered)) < 0.4 * len(words)


def demo_instructions() -> list[str]:
    from prompts import load_data

    return [t["instruction"] for demo in load_data("dynosaur", "demos.json") for t in demo["tasks"]]


def example_texts(meta: DatasetMeta) -> list[str]:
    """The text values of the rows shown in the prompt."""
    rows = meta.prompt_view(with_summary=False)["examples"]
    return [v for row in rows for v in row.values() if isinstance(v, str) and v.strip()]


def filter_tasks(
    proposals: list[dict[str, Any]],
    threshold: float = ROUGE_THRESHOLD,
    demos: Sequence[str] = (),
    examples: Sequence[str] = (),
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(kept, dropped) of one dataset's proposals (aware ones first); each dropped one has `reason`.

    Per task: empty / degenerate instruction; a copy (ROUGE-L above the threshold) of a demo
    instruction, which describes another dataset, or of a value in the rows the prompt showed (ours,
    not upstream: small models copy their context); output field among the inputs; then exact
    duplicates (normalized case and spaces) within the setting and across settings; then ROUGE-L
    near-duplicates greedily against the kept ones.
    """
    from engine.rouge.filter import RougeFilter, rouge_l

    survivors, dropped = [], []
    seen: dict[str, str] = {}  # normalized instruction -> setting of the first kept one
    for task in proposals:
        key = normalize(task["instruction"])
        reason = None
        if not key:
            reason = "empty_instruction"
        elif is_degenerate(task["instruction"]):
            reason = "degenerate_instruction"
        elif any(rouge_l(task["instruction"], d) > threshold for d in demos):
            reason = "copied_demo"
        elif any(rouge_l(task["instruction"], v) > threshold for v in examples):
            reason = "copied_example"
        elif task["output_field"] in task["input_fields"]:
            reason = "io_overlap"
        elif key in seen:
            reason = (
                "duplicate_within_setting" if seen[key] == task["setting"] else "duplicate_across_settings"
            )
        if reason:
            dropped.append({**task, "reason": reason})
            continue
        seen[key] = task["setting"]
        survivors.append(task)
    flt = RougeFilter(threshold=threshold)
    kept = []
    for task, decision in zip(survivors, flt.check([t["instruction"] for t in survivors])):
        if decision.keep:
            kept.append(task)
        else:
            dropped.append(
                {
                    **task,
                    "reason": "near_duplicate",
                    "similar_to": decision.match,
                    "rouge_l": round(decision.score, 4),
                }
            )
    return kept, dropped


def proposals_of(meta: DatasetMeta, setting: str, parsed: dict[str, Any]) -> list[dict[str, Any]]:
    """The model's tasks as records (input fields de-duplicated, order kept)."""
    tasks = []
    for i, task in enumerate(parsed.get("tasks", []), 1):
        tasks.append(
            {
                "task_id": f"{meta.name}#{setting}-{i}",
                "task_name": meta.name,
                "setting": setting,
                "instruction": " ".join(task["instruction"].split()),
                "input_fields": list(dict.fromkeys(task["input_fields"])),
                "output_field": task["output_field"],
            }
        )
    return tasks


# ---------------------------------------------------------------------------------- one dataset
