"""SELF-INSTRUCT (Wang et al., ACL 2023, §2): bootstrap instructions from seed tasks, then make instances.

Steps (§2.1-2.4; parameters from yizhongw/self-instruct, see ../shared/METHODS.md):
1. bootstrap    8 in-context instructions per prompt (6 human seeds + 2 machine ones once 2 exist,
                8 human before), shuffled; the model answers a JSON list of new instructions; named
                filters, then greedy ROUGE-L > 0.7 against seeds + accepted; until N are accepted.
2. classify     is each instruction a classification task? a few-shot, greedy "yes" / "no" choice.
3. instances    output-first for classification (labels, then an input per label), input-first
                otherwise; greedy, presence penalty 1.5, at most 5 per task.
4. filter       instance rules (generators/self_instruct/instances.py), then `{instruction, input, output}`
                rows.
Steps 1-3 run as one flow of model requests (tasks.py): each accepted instruction goes on to steps 2-3
at once, which the throughput schedule overlaps with the rounds still going.

Every output is JSON-schema-constrained (no regex parsing); every random choice and sampling seed is
derived from the run seed, so kill -9 + rerun replays through the request cache to the same files.

    result = run_self_instruct(engine, SelfInstructConfig(num_instructions=50), load_seed_tasks(), run)
"""

from __future__ import annotations

import functools
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from engine.errors import ConfigError, InputError, require_positive
from engine.run.directory import RunDir
from engine.run.steps import dropped, run_steps, write_final
from engine.types import Runner
from generators.self_instruct.filters import InstructionFilters, seed_similarity_report
from generators.self_instruct.seed_tasks import SeedTask
from generators.self_instruct.tasks import make_tasks, tasks_with_instances


@dataclass(frozen=True)
class SelfInstructConfig:
    """Settings of one SELF-INSTRUCT run; defaults are upstream's unless a comment says otherwise."""

    num_instructions: int
    """Instructions to accept (N)."""
    seed: int = 0
    """Run seed: every prompt sample, shuffle and sampling seed derives from it."""
    batch_size: int | None = None
    """Bootstrap prompts per engine call; None: sized to the engine (bootstrap.round_size), FIXED_ROUND in
    the deterministic schedule (upstream: 5 API requests; vLLM wants bigger batches)."""
    num_prompt_instructions: int = 8
    """In-context instructions per prompt (upstream: 8)."""
    num_machine_instructions: int = 2
    """Of those, machine-generated ones once that many exist (upstream: 2)."""
    max_new_per_prompt: int = 8
    """Bound of the JSON list per response (upstream stops at item 16 after 8 shown: up to 7 new)."""
    classification_only: bool = False
    """Prompt with classification seeds only and ask for tasks with label sets (upstream option)."""
    temperature: float = 0.7
    top_p: float = 0.5
    presence_penalty: float = 2.0
    max_tokens: int = 1024
    """Bootstrap completion budget (upstream: 1024); a completion cut by it is discarded."""
    instruction_chars: int = 400
    """Schema bound on one new instruction (ours: ~100 tokens, far above a normal instruction)."""
    rouge_threshold: float = 0.7
    """Drop a new instruction whose ROUGE-L F1 with any pool instruction is above this (upstream: 0.7)."""
    max_instances: int = 5
    """Instances per task, asked for and kept (upstream: 5)."""
    instance_presence_penalty: float = 1.5
    instance_max_tokens: int = 1024
    """Instance completion budget (upstream: 300 tokens of free text; JSON needs more room)."""
    instance_chars: int = 600
    """Schema bound on one generated input or output (ours)."""
    drop_cut_off: bool = True
    """Drop strings that reached their schema bound: the grammar closed them mid-sentence (ours; the
    counterpart of upstream discarding length-cut completions)."""
    max_stalled_rounds: int = 5
    """Give up after this many rounds in a row accept nothing (upstream loops forever)."""
    max_top_ups: int = 3
    """Times to grow the pool when fewer than `num_instructions` tasks keep an instance after the instance
    rules (ours: upstream counts instructions; a small model loses many tasks to those rules)."""
    filters: InstructionFilters = field(default_factory=InstructionFilters.self_instruct)

    def __post_init__(self) -> None:
        require_positive(
            self,
            "num_instructions",
            "num_prompt_instructions",
            "max_new_per_prompt",
            "max_tokens",
            "instruction_chars",
            "max_instances",
            "instance_max_tokens",
            "instance_chars",
            "max_stalled_rounds",
        )
        if self.batch_size is not None:
            require_positive(self, "batch_size")
        if not 0 <= self.num_machine_instructions <= self.num_prompt_instructions:
            raise ConfigError(
                f"`num_machine_instructions` must be in [0, num_prompt_instructions="
                f"{self.num_prompt_instructions}], got {self.num_machine_instructions}.",
                parameter="num_machine_instructions",
                value=self.num_machine_instructions,
            )
        if not isinstance(self.max_top_ups, int) or self.max_top_ups < 0:
            raise ConfigError(
                f"`max_top_ups` must be an int >= 0, got {self.max_top_ups!r}.",
                parameter="max_top_ups",
                value=self.max_top_ups,
            )

    def to_config(self) -> dict[str, Any]:
        return {**asdict(self), "filters": self.filters.to_config()}


@dataclass
class SelfInstructResult:
    rows: list[dict[str, str]]
    """The final `{instruction, input, output}` rows."""
    report: dict[str, Any]


def pool_seeds(seeds: list[SeedTask], classification_only: bool) -> list[SeedTask]:
    """The seeds prompts sample from (upstream: only the classification ones in that mode)."""
    if not classification_only:
        return seeds
    chosen = [s for s in seeds if s.is_classification]
    if not chosen:
        raise InputError(
            "--classification-only needs seed tasks marked `is_classification`; none are",
            path=seeds[0].source.rsplit(":", 1)[0],
        )
    return chosen


STEP_FILES = {
    "bootstrap": "machine_generated_instructions.jsonl",
    "classify": "is_clf_or_not.jsonl",
    "instances": "machine_generated_instances.jsonl",
}


def run_self_instruct(
    engine: Runner, config: SelfInstructConfig, seeds: list[SeedTask], run: RunDir
) -> SelfInstructResult:
    """All four steps into `run` (resumable); returns the final rows and the report."""
    seeds = pool_seeds(seeds, config.classification_only)
    steps = run_steps(run, STEP_FILES, functools.partial(make_tasks, engine, config, seeds))
    bootstrapped, classified, instantiated = steps["bootstrap"], steps["classify"], steps["instances"]
    instructions = [item["instruction"] for item in bootstrapped.rows]
    is_clf = [row["is_classification"] == "yes" for row in classified.rows]
    tasks = instantiated.rows

    final, drops, kept_per_task = [], Counter(), []
    for task, kept in tasks_with_instances(tasks, config, drops):
        final.extend({"instruction": task["instruction"], **instance} for instance in kept)
        kept_per_task.append(len(kept))
    per_task = Counter(kept_per_task)
    per_task[0] = len(tasks) - len(kept_per_task)
    write_final(run, final)

    clf_share = sum(is_clf) / len(is_clf) if is_clf else 0.0
    report = {
        "method": "self-instruct",
        "num_instructions_requested": config.num_instructions,
        "instructions": len(instructions),
        "tasks_with_instances": len(kept_per_task),
        "rows": len(final),
        "bootstrap": bootstrapped.stats,
        **seed_similarity_report(instructions, [s.instruction for s in seeds]),
        "classification": {
            "yes": sum(is_clf),
            "no": len(is_clf) - sum(is_clf),
            "share": round(clf_share, 4),
            "failed": classified.stats["failed"],
        },
        "instances": {
            "tasks": len(tasks),
            "tasks_with_instances": len(kept_per_task),
            "response_failures": instantiated.stats["response_failures"],
            **dropped(drops),
            "per_task": {str(k): per_task[k] for k in sorted(per_task) if per_task[k]},
        },
    }
    run.write_report(report)
    return SelfInstructResult(final, report)
