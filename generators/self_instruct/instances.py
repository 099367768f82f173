"""Instances of SELF-INSTRUCT (Wang et al. 2023, §2.3 "Instance Generation" and §2.4 "Filtering").

Classification tasks are generated output-first (the class labels, then an input for each label), so
the inputs are not all of one class; other tasks input-first (the input may be empty). Both are JSON
schema-constrained, greedy with presence penalty 1.5 (upstream). Then upstream's instance rules
(prepare_for_finetuning.py): drop an instance whose output is empty, whose input equals its output, or
whose input or output ends with ":" (cut off); drop every instance of a task in which one non-empty
input has two different outputs; dedup; keep at most 5 (a seeded sample, in generation order). Ours on
top: drop strings cut at their schema bound, and verbatim copies of a prompt demo.

    request = instance_request(instruction, is_clf, max_instances=5, ...)
    row = instance_row(instruction, is_clf, engine.run([request])[0], max_chars=600)
    kept = filter_instances(row["raw_instances"], random.Random(seed), 5, drops)
"""

from __future__ import annotations

import functools
import json
import random
from collections import Counter
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model

from engine.types import Request, Result, Sampling
from generators.self_instruct.bootstrap import bounded_text, hits_bound
from prompts import load_data, load_template

LABEL_CHARS = 100
"""Bound on one class label (ours); instance inputs and outputs get the run's `instance_chars`."""
MAX_LABELS = 10

_FORBID = ConfigDict(extra="forbid")


@functools.lru_cache(maxsize=None)
def instance_types(max_instances: int, max_chars: int) -> tuple[type[BaseModel], type[BaseModel]]:
    """(ClassificationInstances, GenerationInstances): labels then one input per label / input then output."""
    label, text = bounded_text(LABEL_CHARS, 1), bounded_text(max_chars)
    bounded = Field(min_length=1, max_length=max_instances)
    labeled = create_model("LabeledInput", __config__=_FORBID, label=(label, ...), input=(text, ...))
    pair = create_model(
        "InputOutput", __config__=_FORBID, input=(text, ...), output=(bounded_text(max_chars, 1), ...)
    )
    classification = create_model(
        "ClassificationInstances",
        __config__=_FORBID,
        class_labels=(list[label], Field(min_length=1, max_length=MAX_LABELS)),
        instances=(list[labeled], bounded),
    )
    generation = create_model("GenerationInstances", __config__=_FORBID, instances=(list[pair], bounded))
    return classification, generation


@functools.lru_cache(maxsize=None)
def demo_pairs() -> frozenset[tuple[str, str]]:
    """(input, output) of every few-shot demo instance: a small model copies them into unrelated tasks."""
    pairs = set()
    for kind, output_key in (("clf", "label"), ("gen", "output")):
        for demo in load_data("self_instruct", f"instance_demos_{kind}.jsonl"):
            pairs.update((i["input"].strip(), i[output_key].strip()) for i in demo["instances"])
    return frozenset(pairs)


@functools.lru_cache(maxsize=None)
def _demos(kind: str) -> list[dict[str, str]]:
    """Few-shot demos with their answers as compact JSON (what the grammar makes the model write)."""
    demos = load_data("self_instruct", f"instance_demos_{kind}.jsonl")
    return [
        {
            "instruction": d["instruction"],
            "answer": json.dumps(
                {k: v for k, v in d.items() if k != "instruction"}, ensure_ascii=False, separators=(",", ":")
            ),
        }
        for d in demos
    ]


def instance_request(
    instruction: str,
    is_classification: bool,
    *,
    max_instances: int,
    max_chars: int,
    max_tokens: int,
    presence_penalty: float,
) -> Request:
    kind = "classification" if is_classification else "generation"
    text = load_template("self_instruct", f"instances_{kind}.j2").render(
        demos=_demos("clf" if is_classification else "gen"),
        instruction=instruction,
        max_instances=max_instances,
    )
    return Request(
        messages=[{"role": "user", "content": text}],
        sampling=Sampling(temperature=0.0, max_tokens=max_tokens, presence_penalty=presence_penalty),
        output_type=instance_types(max_instances, max_chars)[0 if is_classification else 1],
        format_version=f"self_instruct.instances_{kind}@1",
    )


def instance_row(instruction: str, is_clf: bool, result: Result, max_chars: int) -> dict[str, Any]:
    """Step 3's row for one task: its raw instances, kept for step 4's rules, or the answer's failure."""

    def raw(input_: str, output: str, output_limit: int) -> dict[str, Any]:
        return {
            "input": input_,
            "output": output,
            "cut_off": hits_bound(output, output_limit) or hits_bound(input_, max_chars),
        }

    row: dict[str, Any] = {
        "instruction": instruction,
        "is_classification": is_clf,
        "class_labels": None,
        "raw_instances": [],
        "failure": result.failure,
    }
    if not result.ok:
        return row
    if is_clf:
        row["class_labels"] = list(result.parsed.class_labels)
        row["raw_instances"] = [raw(i.input, i.label, LABEL_CHARS) for i in result.parsed.instances]
    else:
        row["raw_instances"] = [raw(i.input, i.output, max_chars) for i in result.parsed.instances]
    return row


def instance_drop_reason(instance: dict[str, Any], drop_cut_off: bool = True) -> str | None:
    """Upstream's per-instance rules (plus our cut-off rule), on stripped text."""
    input_, output = instance["input"].strip(), instance["output"].strip()
    if drop_cut_off and instance.get("cut_off"):
        return "cut_off"
    if not output:
        return "empty_output"
    if input_ == output:
        return "input_equals_output"
    if input_.endswith(":") or output.endswith(":"):
        return "ends_with_colon"
    if (
        input_,
        output,
    ) in demo_pairs():  # ours: a verbatim copy of a prompt demo, not an instance of this task
        return "copied_demo"
    return None


def filter_instances(
    instances: list[dict[str, Any]],
    rng: random.Random,
    max_instances: int,
    drops: Counter,
    *,
    drop_cut_off: bool = True,
) -> list[dict[str, str]]:
    """Step 4 for one task: `{input, output}` survivors (stripped), each drop counted by reason."""
    valid = []
    for instance in instances:
        reason = instance_drop_reason(instance, drop_cut_off)
        if reason:
            drops[reason] += 1
        else:
            valid.append({"input": instance["input"].strip(), "output": instance["output"].strip()})
    outputs_of: dict[str, set[str]] = {}
    for instance in valid:
        if instance["input"]:
            outputs_of.setdefault(instance["input"], set()).add(instance["output"])
    if any(len(outputs) > 1 for outputs in outputs_of.values()):  # the task is ambiguous: drop it all
        drops["conflicting_outputs"] += len(valid)
        return []
    unique = list({(i["input"], i["output"]): i for i in valid}.values())  # first occurrences, in order
    drops["duplicate"] += len(valid) - len(unique)
    if len(unique) > max_instances:
        drops["over_max_instances"] += len(unique) - max_instances
        unique = [unique[i] for i in sorted(rng.sample(range(len(unique)), max_instances))]
    return unique
