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
from collections.abc import Iterable
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
    instruction run beside the rounds still going, so no step waits for the previous one's longest answer;
    and while a round's reading waits for a slow answer, steps 2-3 begin on what the answers after it
    will probably add (Growth.foresee). The reading in request order still takes every decision on the
    answers it reads: steps 2-3 of a guess it does not accept are withdrawn, and an accepted one keeps the
    answers its guess already has. (Rows that come earlier can move a top-up's decision, and so which
    prompts still run then, as any timing does in this schedule.)
    """
    growth = Bootstrap(engine, config, seeds).growth
    accepted: set[str] = set()
    labels: dict[str, str] = {}  # instruction -> step 2's answer ("no" where it failed)
    rows: dict[str, dict[str, Any]] = {}  # instruction -> step 3's row
    clf_failed: set[str] = set()
    failures: dict[str, str] = {}  # instruction -> step 3's failed response
    started: set[str] = set()  # instructions whose steps 2-3 run or ran
    guessed: set[str] = set()  # instructions whose steps 2-3 began as a guess
    top_ups: list[dict[str, Any]] = []
    with_rows, looked_early = 0, False  # accepted instructions whose row is in; the early top-up's look

    def steps_2_3(new: list[dict[str, Any]], guesses: Iterable[str] = ()) -> list[Job]:
        """Newly accepted instructions (and guesses) to step 2, or to 3 when every task classifies."""
        nonlocal with_rows
        new_texts = [item["instruction"] for item in new]
        accepted.update(new_texts)
        with_rows += sum(t in rows for t in new_texts)  # a guess's row came first
        texts = [t for t in dict.fromkeys([*new_texts, *guesses]) if t not in started]
        started.update(texts)
        guessed.update(set(texts) - set(new_texts))
        if config.classification_only:  # every prompt asked for classification tasks
            return [instance_job(text, "yes") for text in texts]
        return [Job(classify_request(text), CLASSIFY, text) for text in texts]

    def instance_job(text: str, label: str) -> Job:
        labels[text] = label
        request = instance_request(
            text,
            label == "yes",
            max_instances=config.max_instances,
            max_chars=config.instance_chars,
            max_tokens=config.instance_max_tokens,
            presence_penalty=config.instance_presence_penalty,
        )
        return Job(request, INSTANCES, tag=text)

    def top_up() -> list[Job]:
        # Once the pool reached its target and every instruction in it has its row. Throughput looks
        # once early, when half the target has rows, and grows the pool then at the rate they show: the
        # round reads on into its held surplus, and guesses begin steps 2-3 for more of what waiting
        # answers hold. Refining that estimate before the rest arrive would only grow the pool by a few
        # at a time and spend the top-ups, so later ones wait for every row. A final pool is released.
        nonlocal looked_early
        pending = len(growth.grown.accepted) - with_rows
        early = growth.hold and not looked_early
        reached = len(growth.grown.accepted) >= growth.target
        ready = 2 * with_rows >= growth.target if early else reached and not pending
        if not with_rows or not ready:
            return []
        looked_early = looked_early or early
        done = [rows[a["instruction"]] for a in growth.grown.accepted if a["instruction"] in rows]
        with_instances = sum(1 for _ in tasks_with_instances(done, config))
        if (
            with_instances >= config.num_instructions
            or growth.grown.stalled
            or len(top_ups) == config.max_top_ups
        ):
            if reached and not pending:
                growth.release()  # steps 2-3 begun on guesses about held answers are withdrawn
            return []
        target = next_target(config, len(done), with_instances)
        if target <= growth.target:  # the pool already grows far enough for the rows expected
            return []
        top_ups.append(
            {
                "pool": len(done),
                "tasks_with_instances": with_instances,
                "grow_to": target,
                **({"pending": pending} if pending else {}),
                **({"read_on": True} if growth.running else {}),
            }
        )
        bar.total = target
        new, next_round = growth.raise_to(target)
        return steps_2_3(new) + next_round

    def on_result(job: Job, result: Result | None) -> list[Job]:
        nonlocal with_rows
        if job.stage == Growth.STAGE:
            new, next_round = growth.read(job, result)
            guesses = growth.foresee(job) if growth.hold else []
            return steps_2_3(new, guesses) + next_round + top_up()
        if result is None:  # steps 2-3 of a guess that the round's reading did not accept
            started.discard(job.tag)
            clf_failed.discard(job.tag)
            return []
        if job.stage == CLASSIFY:
            if not result.ok:
                clf_failed.add(job.tag)
            return [instance_job(job.tag, result.parsed if result.ok else "no")]
        rows[job.tag] = instance_row(job.tag, labels[job.tag] == "yes", result, config.instance_chars)
        with_rows += job.tag in accepted
        if not result.ok:
            failures[job.tag] = result.failure
        return top_up()

    def wanted(job: Job) -> bool:  # steps 2-3 of a guess only while the guess is open
        if job.stage == Growth.STAGE:
            return growth.wants(job)
        return job.tag in accepted or job.tag in growth.foreseen

    with progress(total=config.num_instructions, desc="bootstrapping", unit="instr") as bar:
        growth.on_accept = bar.update
        # Throughput holds a round's answers past the target for top-ups, and begins steps 2-3 on the
        # instructions an answer waiting for an earlier one will probably add.
        growth.hold = engine.schedule == "throughput" and config.max_top_ups > 0
        engine.flow(growth.start(config.num_instructions), on_result, wanted)
        growth.release()
    texts = [a["instruction"] for a in growth.grown.accepted]
    response_failures = Counter(failures[t] for t in texts if t in failures)
    return {
        "bootstrap": StepOutput(
            growth.grown.accepted,
            {
                **growth.grown.stats(),
                "top_ups": top_ups,
                # steps 2-3 begun on guesses, and how many of those the reading accepted
                **(
                    {"guesses": {"begun": len(guessed), "accepted": len(guessed & accepted)}}
                    if guessed
                    else {}
                ),
            },
        ),
        "classify": StepOutput(
            [{"instruction": t, "is_classification": labels[t]} for t in texts],
            {"failed": sum(t in clf_failed for t in texts)},
        ),
        "instances": StepOutput(
            [rows[t] for t in texts], {"response_failures": dict(sorted(response_failures.items()))}
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
