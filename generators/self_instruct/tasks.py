"""SELF-INSTRUCT's steps 1-3 (Wang et al. 2023, §2.1-2.3) as one flow of model requests.

1. bootstrap    rounds of prompts showing 8 in-context instructions (6 human seeds + 2 machine ones once
                2 exist, 8 human before), shuffled; the model answers a JSON list of new instructions;
                named filters, then greedy ROUGE-L > 0.7 against seeds + accepted (bootstrap.Growth).
2. classify     each accepted instruction: a classification task? a few-shot, greedy "yes" / "no".
3. instances    output-first for classification, input-first otherwise (instances.py).
Then, while fewer than N tasks keep an instance after step 4's rules, the pool grows (top-ups).

    steps = make_tasks(engine, config, seeds)   # {"bootstrap", "classify", "instances"}: StepOutputs
"""

from __future__ import annotations

import functools
import math
import random
from collections import Counter
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from engine.flow import Job
from engine.run.progress import progress
from engine.run.seeds import derive_seed
from engine.run.steps import StepOutput
from engine.types import Request, Result, Runner, Sampling
from generators.self_instruct.bootstrap import GrowResult, Growth, hits_bound, instruction_text
from generators.self_instruct.filters import RougeStep, clean_instruction
from generators.self_instruct.instances import filter_instances, instance_request, instance_row
from generators.self_instruct.seed_tasks import SeedTask
from prompts import load_data, load_template

if TYPE_CHECKING:
    from generators.self_instruct.pipeline import SelfInstructConfig

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
    """Step 1's prompter (bootstrap.Prompter) and its pool, which can keep growing: `grow(target)` runs
    rounds until `target` are accepted, and a later `grow(larger)` continues from the next round with
    the same ROUGE-L pool (the top-ups). `growth` is the same loop as flow jobs, for make_tasks."""

    def __init__(self, engine: Runner, config: SelfInstructConfig, seeds: list[SeedTask]):
        self.engine, self.config = engine, config
        self.seed_texts = [s.instruction for s in seeds]
        self.growth = Growth(
            engine,
            self,
            batch_size=config.batch_size,
            fixed_round=FIXED_ROUND,
            filters=config.filters,
            rouge=RougeStep(self.seed_texts, config.rouge_threshold),
            max_stalled_rounds=config.max_stalled_rounds,
        )

    def grow(self, target: int) -> GrowResult:
        return self.growth.grow(target, "bootstrapping")

    def request(self, round_: int, index: int, accepted: list[dict[str, Any]]) -> Request:
        return bootstrap_request(self.config, self.seed_texts, round_, index, accepted)

    def items(self, parsed: Any) -> list[dict[str, Any]]:
        return [{"instruction": text} for text in parsed.instructions]

    def drop_reason(self, item: dict[str, Any]) -> str | None:
        cut_off = self.config.drop_cut_off and hits_bound(item["instruction"], self.config.instruction_chars)
        return "cut_off" if cut_off else None


def bootstrap(engine: Runner, config: SelfInstructConfig, seeds: list[SeedTask]) -> GrowResult:
    """Step 1 alone: grow the pool to `num_instructions` new instructions."""
    return Bootstrap(engine, config, seeds).grow(config.num_instructions)


def classify_request(instruction: str) -> Request:
    """Step 2: is this instruction a classification task? (few-shot, greedy "yes" / "no")."""
    template, demos = (
        load_template("self_instruct", "classify.j2"),
        load_data("self_instruct", "clf_demos.jsonl"),
    )
    return Request(
        messages=[{"role": "user", "content": template.render(demos=demos, instruction=instruction)}],
        sampling=Sampling(temperature=0.0, max_tokens=8),
        output_type=IsClassification,
        format_version="self_instruct.classify@3",  # @3: a raw-word choice, not a JSON string
    )


def next_target(config: SelfInstructConfig, pool: int, with_instances: int) -> int:
    """The pool size expected to bring `num_instructions` tasks with instances, at the rate seen so far
    among the `pool` tasks whose instances are in (at least 1 in 5, so a run that kept nothing yet still
    grows by a bounded step)."""
    rate = max(with_instances / pool if pool else 0.0, 0.2)
    return pool + math.ceil((config.num_instructions - with_instances) / rate)


CLASSIFY, INSTANCES = 1, 2
"""Flow stages after the bootstrap rounds' (Growth.STAGE): each accepted instruction's step 2, then 3."""


def make_tasks(engine: Runner, config: SelfInstructConfig, seeds: list[SeedTask]) -> dict[str, StepOutput]:
    """Steps 1-3 as one flow (engine/flow.py), topped up.

    1. bootstrap rounds; each accepted instruction goes on at once to
    2. classify, whose answer ("yes" / "no"; a failed one counts and becomes "no") picks the prompt of
    3. instances (output-first for classification, input-first otherwise).
    When every accepted instruction has its instances and fewer than `num_instructions` tasks keep one
    after step 4's rules, the pool grows towards `next_target` and only the new instructions go on (at
    most `max_top_ups` times; a small model loses many tasks to the instance rules). The throughput
    schedule decides this once half the rows are in, at the rate they show, and a round still being read
    then reads on: its surplus answers, made already, fill the larger pool before any new round.

    In the deterministic schedule the flow runs stage by stage: all rounds, then one classify batch, then
    one instances batch, then a top-up, as the paper's steps run. In the throughput one, steps 2-3 of an
    instruction run beside the rounds still going, so no step waits for the previous one's longest answer.
    """
    pool = Bootstrap(engine, config, seeds)
    growth = pool.growth
    labels: dict[int, str] = {}  # acceptance index -> step 2's answer
    rows: dict[int, dict[str, Any]] = {}  # acceptance index -> step 3's row
    clf_failed, failures, top_ups = 0, Counter(), []

    def instance_job(index: int, label: str) -> Job:
        labels[index] = label
        instruction = growth.grown.accepted[index]["instruction"]
        request = instance_request(
            instruction,
            label == "yes",
            max_instances=config.max_instances,
            max_chars=config.instance_chars,
            max_tokens=config.instance_max_tokens,
            presence_penalty=config.instance_presence_penalty,
        )
        return Job(request, INSTANCES, tag=index)

    def go_on(accepted: list[dict[str, Any]]) -> list[Job]:  # newly accepted instructions, to step 2 or 3
        first = len(growth.grown.accepted) - len(accepted)
        if config.classification_only:  # every prompt asked for classification tasks
            return [instance_job(first + k, "yes") for k in range(len(accepted))]
        return [Job(classify_request(a["instruction"]), CLASSIFY, first + k) for k, a in enumerate(accepted)]

    def top_up() -> list[Job]:
        # Once the pool reached its target and every instruction in it has its row. Throughput decides
        # its first top-up once half have, at the rate they show, so that more instructions come while
        # the slowest instance answers run, from the round still held if one is (its surplus answers are
        # made already); refining that estimate before the rest arrive would only grow the pool by a few
        # at a time and spend the top-ups, so later ones wait for every row.
        pending = len(growth.grown.accepted) - len(rows)
        early = growth.hold and not top_ups
        ready = pending <= len(rows) if early else not pending
        if not rows or not ready or len(growth.grown.accepted) < growth.target:
            return []
        with_instances = sum(1 for _ in tasks_with_instances([rows[i] for i in sorted(rows)], config))
        if (
            with_instances >= config.num_instructions
            or growth.grown.stalled
            or len(top_ups) == config.max_top_ups
        ):
            return []
        target = next_target(config, len(rows), with_instances)
        if target <= growth.target:  # the pool already grows far enough for the rows expected
            return []
        top_ups.append(
            {
                "pool": len(rows),
                "tasks_with_instances": with_instances,
                "grow_to": target,
                **({"pending": pending} if pending else {}),
                **({"read_on": True} if growth.running else {}),
            }
        )
        bar.total = target
        accepted, next_round = growth.raise_to(target)
        return go_on(accepted) + next_round

    def on_result(job: Job, result: Result | None) -> list[Job]:
        nonlocal clf_failed
        if job.stage == Growth.STAGE:
            accepted, next_round = growth.read(job, result)
            return go_on(accepted) + next_round + top_up()
        if job.stage == CLASSIFY:
            clf_failed += not result.ok
            return [instance_job(job.tag, result.parsed if result.ok else "no")]
        rows[job.tag] = instance_row(
            growth.grown.accepted[job.tag]["instruction"],
            labels[job.tag] == "yes",
            result,
            config.instance_chars,
        )
        if not result.ok:
            failures[result.failure] += 1
        return top_up()

    with progress(total=config.num_instructions, desc="bootstrapping", unit="instr") as bar:
        growth.on_accept = bar.update
        growth.hold = engine.schedule == "throughput" and config.max_top_ups > 0
        engine.flow(growth.start(config.num_instructions), on_result, growth.wants)
        growth.release()
    accepted = growth.grown.accepted
    return {
        "bootstrap": StepOutput(accepted, {**growth.grown.stats(), "top_ups": top_ups}),
        "classify": StepOutput(
            [
                {"instruction": a["instruction"], "is_classification": labels[i]}
                for i, a in enumerate(accepted)
            ],
            {"failed": clf_failed},
        ),
        "instances": StepOutput(
            [rows[i] for i in range(len(accepted))], {"response_failures": dict(sorted(failures.items()))}
        ),
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
