"""DYNOSAUR (Yin et al., EMNLP 2023, §2): instruction data from the metadata of existing datasets.

For each dataset the model designs up to 3 tasks `{instruction, input_fields, output_field}` in two
settings: description-aware (name, card summary, fields, 2 rows) and description-unaware (no summary).
Decoding is constrained by a JSON schema built per dataset, whose field names are enums of the
dataset's real fields and whose `output_field` is one name, so a task can neither name a field the data
lacks nor several output fields (upstream needed a filter for the first and silently took the first of
2-7 outputs in 257 released tasks). The remaining filters, each counted: empty / degenerate instruction,
input-output overlap, duplicate instruction within and across settings (exact, then ROUGE-L > 0.7).
The prompt, schema and filters are in generators/dynosaur/tasks.py; instances come from the dataset's own
rows (generators/dynosaur/instances.py); datasets are found and read by generators/dynosaur/sources.py.

Growth: each dataset gets a completion marker after its outputs, keyed by its content and the config,
so a rerun over a larger collection sends only the new datasets' prompts (and the cache answers any
prompt seen before).

    report = run_dynosaur(engine, collect_metadata(["data/"]), RunDir("runs/dyno"), DynosaurConfig())
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

from engine.errors import ConfigError
from engine.run.directory import RunDir
from engine.run.io import write_json, write_jsonl
from engine.run.steps import dropped as dropped_counts
from engine.types import Runner
from generators.dynosaur.instances import MAX_INSTANCES, build_instances
from generators.dynosaur.metadata import Collection, DatasetMeta
from generators.dynosaur.tasks import (
    FORMAT_VERSION,
    MAX_INSTRUCTION_CHARS,
    MAX_TASKS,
    MAX_TOKENS,
    NUM_DEMOS,
    ROUGE_THRESHOLD,
    compact,
    demo_instructions,
    example_texts,
    filter_tasks,
    proposals_of,
    task_request,
)

SETTINGS = ("aware", "unaware")  # paper §2.2: description-aware and description-unaware generation
FILTERS = (
    "empty_instruction",
    "degenerate_instruction",
    "copied_demo",
    "copied_example",
    "io_overlap",
    "duplicate_within_setting",
    "duplicate_across_settings",
    "near_duplicate",
    "no_instances",
)


@dataclass(frozen=True)
class DynosaurConfig:
    settings: tuple[str, ...] = SETTINGS
    """Which prompt settings to run: aware (with the card summary), unaware (without)."""
    max_tasks: int = MAX_TASKS
    """Most tasks the model may propose per dataset and setting."""
    max_tokens: int = MAX_TOKENS
    """Token budget of one task-design reply."""
    max_instances: int = MAX_INSTANCES
    """Most instances kept per task (a seeded sample of the rows)."""
    rouge_threshold: float = ROUGE_THRESHOLD
    """Instructions of one dataset with ROUGE-L F1 above this against a kept one are dropped."""
    seed: int = 0
    """Seeds the instance sampling (task design is greedy, as upstream: temperature 0)."""
    num_demos: int = NUM_DEMOS
    """Worked examples in the prompt (0-2); fewer fit small context windows."""
    max_instruction_chars: int = MAX_INSTRUCTION_CHARS
    """Longest instruction the schema allows."""

    def __post_init__(self) -> None:
        bad = [s for s in self.settings if s not in SETTINGS]
        if bad or not self.settings:
            raise ConfigError(
                f"`settings` must be a non-empty subset of {', '.join(SETTINGS)}, got "
                f"{','.join(self.settings) or 'nothing'}.",
                parameter="settings",
                value=self.settings,
            )
        if self.num_demos not in range(NUM_DEMOS + 1):
            raise ConfigError(
                f"`num_demos` must be in [0, {NUM_DEMOS}], got {self.num_demos!r}.",
                parameter="num_demos",
                value=self.num_demos,
            )
        for name, low in (
            ("max_tasks", 1),
            ("max_tokens", 64),
            ("max_instances", 1),
            ("max_instruction_chars", 10),
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or value < low:
                raise ConfigError(
                    f"`{name}` must be an int >= {low}, got {value!r}.", parameter=name, value=value
                )
        if not 0.0 < self.rouge_threshold <= 1.0:
            raise ConfigError(
                f"`rouge_threshold` must be in (0, 1], got {self.rouge_threshold}.",
                parameter="rouge_threshold",
                value=self.rouge_threshold,
            )

    def digest(self) -> str:
        """Changes whenever a setting could change a dataset's outputs (part of its marker name)."""
        import xxhash

        text = json.dumps({**asdict(self), "format": FORMAT_VERSION, "filters": FILTERS}, sort_keys=True)
        return xxhash.xxh3_64_hexdigest(text)


# ---------------------------------------------------------------------------------- prompts


def design_dataset(meta: DatasetMeta, results: dict[str, Any], config: DynosaurConfig) -> dict[str, Any]:
    """One dataset's outcome from its task-design results (setting -> Result or a skip reason)."""
    proposals: list[dict[str, Any]] = []
    requests: dict[str, str] = {}
    for setting in config.settings:
        result = results.get(setting, "skipped_no_summary")
        if isinstance(result, str):
            requests[setting] = result
        elif not result.ok:
            requests[setting] = f"failed_{result.failure}"
        else:
            requests[setting] = "ok"
            proposals += proposals_of(meta, setting, result.parsed)
    kept, dropped = filter_tasks(proposals, config.rouge_threshold, demo_instructions(), example_texts(meta))
    tasks, instances, row_drops = [], [], Counter()
    for task in kept:
        rows, counts = build_instances(task, meta, max_instances=config.max_instances, seed=config.seed)
        row_drops.update({k: v for k, v in counts.items() if k.startswith("dropped_") and v})
        if not rows:
            dropped.append({**task, "reason": "no_instances"})
            continue
        tasks.append(
            {
                **task,
                "instruction": rows[0]["instruction"],
                "base_instruction": task["instruction"],
                "label_space": counts["label_space"],
                "license": meta.license,
                "instances": len(rows),
                "examples": [{"input": r["input"], "output": r["output"]} for r in rows[:3]],
            }
        )
        instances += rows
    return {
        "name": meta.name,
        "source": meta.source,
        "license": meta.license,
        "fields": meta.fields,
        "dropped_fields": meta.dropped_fields,
        "rows": len(meta.rows),
        "requests": requests,
        "proposed": dict(Counter(t["setting"] for t in proposals)),
        "task_drops": dropped_counts(Counter(t["reason"] for t in dropped)),
        "dropped_tasks": dropped,
        "row_drops": dict(sorted(row_drops.items())),
        "tasks": tasks,
        "instances": instances,
    }


def dataset_key(meta: DatasetMeta, config: DynosaurConfig) -> str:
    """File-safe, content-addressed name: a changed dataset or config is processed again."""
    import xxhash

    digest = xxhash.xxh3_64_hexdigest(compact(meta.to_dict()) + config.digest())
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", meta.name).strip("._")[:60] or "dataset"
    return f"{slug}-{digest[:12]}"


# ---------------------------------------------------------------------------------- the run


def run_dynosaur(
    engine: Runner, collection: Collection, run: RunDir, config: DynosaurConfig = DynosaurConfig()
) -> dict[str, Any]:
    """Design tasks for every dataset not yet done in `run`, then write the combined outputs.

    One engine batch holds every new prompt. Per dataset: `datasets/<key>.json`, then its marker.
    Combined: tasks.jsonl, instances.jsonl, datasets.jsonl, report.json (over the whole collection).
    """
    keys = {m.name: dataset_key(m, config) for m in collection.datasets}
    todo = [m for m in collection.datasets if not run.is_done(f"dataset-{keys[m.name]}")]
    plan = [(m, s) for m in todo for s in config.settings if s == "unaware" or m.summary]
    results = engine.run([task_request(m, s, config) for m, s in plan]) if plan else []
    by_dataset: dict[str, dict[str, Any]] = {}
    for (meta, setting), result in zip(plan, results):
        by_dataset.setdefault(meta.name, {})[setting] = result
    (run / "datasets").mkdir(exist_ok=True)
    for meta in todo:
        outcome = design_dataset(meta, by_dataset.get(meta.name, {}), config)
        write_json(run / "datasets" / f"{keys[meta.name]}.json", outcome)
        run.mark_done(f"dataset-{keys[meta.name]}")
    outcomes = [
        json.loads((run / "datasets" / f"{keys[m.name]}.json").read_text(encoding="utf-8"))
        for m in collection.datasets
    ]
    write_jsonl(run / "tasks.jsonl", (t for o in outcomes for t in o["tasks"]))
    write_jsonl(run / "instances.jsonl", (r for o in outcomes for r in o["instances"]))
    write_jsonl(
        run / "datasets.jsonl",
        ({k: v for k, v in o.items() if k not in ("tasks", "instances", "dropped_tasks")} for o in outcomes),
    )
    report = build_report(collection, outcomes, {m.name for m in todo}, engine, config)
    previous = run / "report.json"
    history = (
        json.loads(previous.read_text(encoding="utf-8")).get("history", []) if previous.is_file() else []
    )
    report["history"] = history + [report["added_this_run"]]
    run.write_report(report)
    return report


def build_report(
    collection: Collection,
    outcomes: list[dict[str, Any]],
    added: set[str],
    engine: Runner,
    config: DynosaurConfig,
) -> dict[str, Any]:
    def total(key: str, pick=lambda o: True) -> Counter:
        counts: Counter = Counter()
        for o in outcomes:
            if pick(o):
                counts.update(o[key])
        return counts

    requests = Counter(v for o in outcomes for v in o["requests"].values())
    kept = Counter(t["setting"] for o in outcomes for t in o["tasks"])
    new = [o for o in outcomes if o["name"] in added]
    return {
        "datasets": {
            "seen": len(collection.datasets) + len(collection.skipped),
            "usable": len(collection.datasets),
            "skipped": collection.skip_counts(),
            "skipped_list": [asdict(s) for s in collection.skipped],
            "with_tasks": sum(1 for o in outcomes if o["tasks"]),
        },
        "requests": dict(sorted(requests.items())),
        "tasks": {
            "proposed": dict(total("proposed")),
            "kept": {s: kept.get(s, 0) for s in config.settings},
            "total": sum(kept.values()),
            **{f"dropped_{f}": total("task_drops").get(f"dropped_{f}", 0) for f in FILTERS},
            "with_label_space": sum(1 for o in outcomes for t in o["tasks"] if t["label_space"]),
        },
        "instances": {
            "total": sum(len(o["instances"]) for o in outcomes),
            **dict(sorted(total("row_drops").items())),
        },
        "added_this_run": {
            "datasets": [o["name"] for o in new],
            "tasks": sum(len(o["tasks"]) for o in new),
            "instances": sum(len(o["instances"]) for o in new),
            "model_calls": engine.stats.model_calls,
            "requests": engine.stats.requests,
        },
        "engine": engine.stats.to_dict(),
        "config": asdict(config),
    }
