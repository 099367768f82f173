"""SELF-INSTRUCT (Wang et al., ACL 2023, §2): bootstrap instructions from seed tasks, then make instances.

Steps (§2.1-2.4; parameters from yizhongw/self-instruct, see ../shared/METHODS.md):
1. bootstrap    8 in-context instructions per prompt (6 human seeds + 2 machine ones once 2 exist,
                8 human before), shuffled; the model answers a JSON list of new instructions; named
                filters, then greedy ROUGE-L > 0.7 against seeds + accepted; until N are accepted.
2. classify     is each instruction a classification task? a few-shot, greedy "yes" / "no" enum.
3. instances    output-first for classification (labels, then an input per label), input-first
                otherwise; greedy, presence penalty 1.5, at most 5 per task.
4. filter       instance rules (generators/self_instruct/instances.py), then `{instruction, input, output}`
                rows.

Every output is JSON-schema-constrained (no regex parsing); every random choice and sampling seed is
derived from the run seed, so kill -9 + rerun replays through the request cache to the same files.

    result = run_self_instruct(engine, SelfInstructConfig(num_instructions=50), load_seed_tasks(), run)
"""

from __future__ import annotations

import functools
import math
import random
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from engine.errors import ConfigError, InputError, require_positive
from engine.run.directory import RunDir
from engine.run.seeds import derive_seed
from engine.run.steps import StepOutput, dropped, run_steps, write_final
from engine.types import Request, Runner, Sampling
from generators.self_instruct.bootstrap import (
    GrowResult,
    grow_instructions,
    hits_bound,
    instruction_text,
)
from generators.self_instruct.filters import (
    InstructionFilters,
    RougeStep,
    clean_instruction,
    seed_similarity_report,
)
from generators.self_instruct.instances import filter_instances, generate_instances
from generators.self_instruct.seed_tasks import SeedTask
from prompts import load_data, load_template

FIXED_ROUND = 16
"""Bootstrap prompts per round in the deterministic schedule unless `batch_size` says otherwise."""

IsClassification = Literal["yes", "no"]
"""Step 2's answer: a choice of two raw words, so the grammar allows nothing else."""


@functools.lru_cache(maxsize=None)
def new_instructions_type(max_items: int, max_chars: int) -> type[BaseModel]:
    """`{"instructions": [str, ...]}` with 1..max_items bounded strings (one type object per bound)."""
    return create_model(
        "NewInstructions",
        __config__=ConfigDict(extra="forbid"),
        instructions=(list[instruction_text(max_chars)], Field(min_length=1, max_length=max_items)),
    )


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


def bootstrap_request(
    config: SelfInstructConfig, seeds: list[str], round_: int, index: int, accepted: list[dict[str, Any]]
) -> Request:
    """One step-1 prompt: 6 human + 2 machine instructions (8 human before 2 machine ones exist), shuffled."""
    rng = random.Random(derive_seed(config.seed, "bootstrap", round_, index))
    machine = [item["instruction"] for item in accepted]
    shown = (
        rng.sample(machine, config.num_machine_instructions)
        if config.num_machine_instructions and len(machine) >= config.num_machine_instructions
        else []
    )
    shown += rng.sample(seeds, min(len(seeds), config.num_prompt_instructions - len(shown)))
    rng.shuffle(shown)
    text = load_template("self_instruct", "bootstrap.j2").render(
        examples=[clean_instruction(s).rstrip(":") for s in shown],
        count=config.max_new_per_prompt,
        classification=config.classification_only,
    )
    sampling = Sampling(
        temperature=config.temperature,
        top_p=config.top_p,
        max_tokens=config.max_tokens,
        presence_penalty=config.presence_penalty,
        seed=derive_seed(config.seed, "bootstrap-sampling", round_, index),
    )
    return Request(
        messages=[{"role": "user", "content": text}],
        sampling=sampling,
        output_type=new_instructions_type(config.max_new_per_prompt, config.instruction_chars),
        format_version="self_instruct.bootstrap@2",
    )


class Bootstrap:
    """Step 1 as a pool that can keep growing: `grow(target)` runs rounds until `target` are accepted, and
    a later `grow(larger)` continues from the next round with the same ROUGE-L pool (the top-ups). It is
    also the prompter of those rounds (bootstrap.Prompter)."""

    def __init__(self, engine: Runner, config: SelfInstructConfig, seeds: list[SeedTask]):
        self.engine, self.config = engine, config
        self.seed_texts = [s.instruction for s in seeds]
        self.rouge = RougeStep(self.seed_texts, config.rouge_threshold)
        self.grown: GrowResult | None = None

    def grow(self, target: int) -> GrowResult:
        config = self.config
        self.grown = grow_instructions(
            self.engine,
            self,
            target=target,
            batch_size=config.batch_size,
            fixed_round=FIXED_ROUND,
            grown=self.grown,
            filters=config.filters,
            rouge=self.rouge,
            max_stalled_rounds=config.max_stalled_rounds,
            desc="bootstrapping",
        )
        return self.grown

    def request(self, round_: int, index: int, accepted: list[dict[str, Any]]) -> Request:
        return bootstrap_request(self.config, self.seed_texts, round_, index, accepted)

    def items(self, parsed: Any) -> list[dict[str, Any]]:
        return [{"instruction": text} for text in parsed.instructions]

    def drop_reason(self, item: dict[str, Any]) -> str | None:
        cut_off = self.config.drop_cut_off and hits_bound(item["instruction"], self.config.instruction_chars)
        return "cut_off" if cut_off else None


def bootstrap(engine: Runner, config: SelfInstructConfig, seeds: list[SeedTask]) -> GrowResult:
    """Step 1: grow the pool to `num_instructions` new instructions."""
    return Bootstrap(engine, config, seeds).grow(config.num_instructions)


def identify_classification(engine: Runner, instructions: list[str]) -> tuple[list[str], int]:
    """Step 2: "yes" / "no" per instruction (few-shot, greedy); failed answers count and become "no"."""
    template, demos = (
        load_template("self_instruct", "classify.j2"),
        load_data("self_instruct", "clf_demos.jsonl"),
    )
    requests = [
        Request(
            messages=[{"role": "user", "content": template.render(demos=demos, instruction=text)}],
            sampling=Sampling(temperature=0.0, max_tokens=8),
            output_type=IsClassification,
            format_version="self_instruct.classify@3",  # @3: a raw-word choice, not a JSON string
        )
        for text in instructions
    ]
    results = engine.run(requests)
    return [r.parsed if r.ok else "no" for r in results], sum(not r.ok for r in results)


def next_target(config: SelfInstructConfig, pool: int, with_instances: int) -> int:
    """The pool size expected to bring `num_instructions` tasks with instances, at the rate seen so far
    (at least 1 in 5, so a run that kept nothing yet still grows by a bounded step)."""
    rate = max(with_instances / pool if pool else 0.0, 0.2)
    return pool + math.ceil((config.num_instructions - with_instances) / rate)


def make_tasks(engine: Runner, config: SelfInstructConfig, seeds: list[SeedTask]) -> dict[str, StepOutput]:
    """Steps 1-3, topped up: while fewer than `num_instructions` tasks keep an instance after step 4's
    rules, grow the pool and classify and instantiate only the new instructions (at most `max_top_ups`
    times; a small model loses many tasks to the instance rules)."""
    pool = Bootstrap(engine, config, seeds)
    tasks: list[dict[str, Any]] = []
    clf_rows: list[dict[str, str]] = []
    clf_failed, failures, top_ups = 0, Counter(), []
    target = config.num_instructions
    for top_up in range(config.max_top_ups + 1):  # the first growth, then the top-ups
        grown = pool.grow(target)  # step 1
        new = [item["instruction"] for item in grown.accepted[len(tasks) :]]
        if config.classification_only:  # every prompt asked for classification tasks
            labels, failed = ["yes"] * len(new), 0
        else:
            labels, failed = identify_classification(engine, new)  # step 2
        clf_rows += [{"instruction": t, "is_classification": y} for t, y in zip(new, labels)]
        clf_failed += failed
        rows, new_failures = generate_instances(  # step 3
            engine,
            new,
            [y == "yes" for y in labels],
            max_instances=config.max_instances,
            max_chars=config.instance_chars,
            max_tokens=config.instance_max_tokens,
            presence_penalty=config.instance_presence_penalty,
        )
        tasks += rows
        failures.update(new_failures)
        with_instances = sum(1 for _ in tasks_with_instances(tasks, config))
        if with_instances >= config.num_instructions or grown.stalled or top_up == config.max_top_ups:
            break
        target = next_target(config, len(tasks), with_instances)
        top_ups.append({"pool": len(tasks), "tasks_with_instances": with_instances, "grow_to": target})
    return {
        "bootstrap": StepOutput(grown.accepted, {**grown.stats(), "top_ups": top_ups}),
        "classify": StepOutput(clf_rows, {"failed": clf_failed}),
        "instances": StepOutput(tasks, {"response_failures": dict(sorted(failures.items()))}),
    }


def tasks_with_instances(
    tasks: list[dict[str, Any]], config: SelfInstructConfig, drops: Counter | None = None
):
    """(task, kept instances) for each task that keeps at least one after step 4's rules, in order."""
    drops = drops if drops is not None else Counter()
    for index, task in enumerate(tasks):
        rng = random.Random(derive_seed(config.seed, "instances", index))
        kept = filter_instances(
            task["raw_instances"], rng, config.max_instances, drops, drop_cut_off=config.drop_cut_off
        )
        if kept:
            yield task, kept


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
