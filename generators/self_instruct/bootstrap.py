"""The generate-filter-deduplicate loop shared by SELF-INSTRUCT (Wang et al. 2023, §2.2) and Alpaca.

Each round sends its prompts together (flow jobs, engine/flow.py), filters the new instructions of each
answer (named steps), runs the greedy ROUGE-L step against seeds + accepted, and accepts up to the
target. A method may run its later steps on each accepted item meanwhile (Growth). A round's size is
`batch_size`, or by default (`None`) what keeps the engine busy: in the throughput schedule enough
prompts to fill its slots, bounded by what the target still needs at the acceptance rate seen so far
(`round_size`); in the deterministic one the method's small fixed round. Prompts of one round all see
the pool as it was when the round began, so larger rounds show fewer freshly accepted machine
instructions as demonstrations (SELF-INSTRUCT's 2 machine demos come from the pool of earlier rounds).
Every random choice and every sampling seed derives from (run seed, round, prompt index), so a rerun
replays the same requests, hits the request cache, and takes the same decisions: kill -9 + rerun = the
same run. Answers are read in request order in both schedules (Growth.read); the throughput schedule
promises no identical completions, so its reruns may still differ. A method whose target may grow can
hold a round's answers past the target unread (`hold`) and read on when it grows (`raise_to`): the
surplus of a round that filled the engine is then used, not dropped, and a new round starts only when it
runs out.

    grown = grow_instructions(engine, prompter, target=50, batch_size=None, fixed_round=16, ...)
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Annotated, Any, Protocol

from pydantic import StringConstraints

from engine.flow import Job
from engine.run.progress import progress
from engine.run.steps import dropped
from engine.types import Request, Result, Runner
from generators.self_instruct.filters import InstructionFilters, RougeStep


class Prompter(Protocol):
    """How a method asks the model for new instructions (SELF-INSTRUCT's bootstrap prompt, Alpaca's)."""

    def request(self, round_: int, index: int, accepted: list[dict[str, Any]]) -> Request:
        """Prompt `index` of round `round_`, given what the pool has accepted so far."""
        ...

    def items(self, parsed: Any) -> list[dict[str, Any]]:
        """The candidates in one parsed answer, each with an "instruction" key."""
        ...

    def drop_reason(self, item: dict[str, Any]) -> str | None:
        """Why one candidate is dropped before the instruction filters (None: it goes on)."""
        ...


@dataclass
class GrowResult:
    """Accepted items (in acceptance order) and what happened to everything else."""

    accepted: list[dict[str, Any]] = field(default_factory=list)
    drops: Counter = field(default_factory=Counter)
    """Reason -> count: filter step names, "rouge", item checks, and "over_target"."""
    response_failures: Counter = field(default_factory=Counter)
    """"truncated" / "invalid" / "too_long" responses, discarded whole."""
    rounds: int = 0
    prompts: int = 0
    withdrawn: int = 0
    """Prompts withdrawn unanswered once the target was reached (throughput schedule)."""
    candidates: int = 0
    stalled: bool = False
    """True when the loop gave up after `max_stalled_rounds` rounds without a new instruction."""

    def stats(self) -> dict[str, Any]:
        return {
            "rounds": self.rounds,
            "prompts": self.prompts,
            "candidates": self.candidates,
            **({"withdrawn": self.withdrawn} if self.withdrawn else {}),
            "accepted": len(self.accepted),
            "stalled": self.stalled,
            "response_failures": dict(sorted(self.response_failures.items())),
            **dropped(self.drops),
        }


GUESS_POOL = 2_000
"""Pool instructions (the latest) and open guesses a guess is checked against, so that a guess costs the
same at any N; the reading checks each candidate against the whole pool."""


class Growth:
    """The loop as flow jobs (engine/flow.py), so that a method can run its later steps on each accepted
    item while the rounds go on: `start(target)` gives a round's jobs, `read(job, result)` takes one
    answer and returns what it accepted and, when it completed the round, the next round's jobs.

    Each answer is read as it arrives: the candidates of an answer that parsed (a cut or broken answer is
    discarded whole, as upstream discards a length-limited completion), the prompter's own drops (e.g.
    Alpaca's empty output), the named instruction filters, the greedy ROUGE-L step, then acceptance up to
    the target. Every step is per candidate and in order, so reading a round answer by answer in request
    order takes the decisions of reading it whole. A round ends when all its answers are read; the next
    starts then, while the target is not reached and fewer than `max_stalled_rounds` rounds in a row
    added nothing. A later `start(larger)` continues towards a larger target (its next round, its pool).
    """

    STAGE = 0
    """The flow stage of round prompts: before anything a method does with what they bring."""

    def __init__(
        self,
        engine: Runner,
        prompter: Prompter,
        *,
        batch_size: int | None,
        fixed_round: int,
        filters: InstructionFilters,
        rouge: RougeStep,
        max_stalled_rounds: int = 5,
    ):
        self.engine, self.prompter = engine, prompter
        self.batch_size, self.fixed_round = batch_size, fixed_round
        self.filters, self.rouge, self.max_stalled_rounds = filters, rouge, max_stalled_rounds
        self.grown = GrowResult()
        self.target = 0
        self.size = self.cursor = 0
        """The running round's prompts, and the next of its answers to read (equal: no round runs)."""
        self.arrived: dict[int, Result | None] = {}
        """Answers that finished before an earlier one of their round: read once it is."""
        self.round_kept = 0
        self.stalled_rounds = 0
        self.on_accept: Any = None
        """Called with the number of items each answer accepted (a progress bar's update)."""
        self.hold = False
        """Keep the round's answers past the target unread, in case the target grows (`raise_to`); a
        method that may grow it sets this and calls `release` once the pool is final."""
        self.spare: list[dict[str, Any]] = []
        """Held candidates of the answer that reached the target, read before the answers held after it."""
        self.foreseen: dict[str, int] = {}
        """Open guesses (`foresee`): instruction -> the answer it comes from, until the reader passes it."""

    def start(self, target: int) -> list[Job]:
        """The first round towards `target` (none if it is reached)."""
        self.target = target
        return self._round() if len(self.grown.accepted) < target else []

    def raise_to(self, target: int) -> tuple[list[dict[str, Any]], list[Job]]:
        """Grow towards a larger `target`: (what the answers held past the old target accept, the next
        round's jobs if they fall short). Those answers are made already, so a larger pool costs no new
        round while they last; read in request order, they take the decisions of a round read whole
        towards the larger target."""
        self.target = target
        running = self.running
        accepted, next_round = self._read_on()  # held answers, or the spare of the round's last one
        return accepted, next_round if running else self.start(target)

    def release(self) -> None:
        """The pool is final: read what is held, as over the target."""
        self.hold = False
        self._read_on()

    def _round(self) -> list[Job]:
        grown = self.grown
        size = round_size(
            self.engine, self.batch_size, self.fixed_round, self.target - len(grown.accepted), grown
        )
        self.size, self.cursor, self.round_kept, self.foreseen = size, 0, 0, {}
        return [
            Job(self.prompter.request(grown.rounds, i, grown.accepted), self.STAGE, tag=i)
            for i in range(size)
        ]

    def wants(self, job: Job) -> bool:
        """A round prompt is wanted until the target is reached (a flow withdraws the rest; those
        that finished before are still read, as over the target)."""
        return job.stage != self.STAGE or len(self.grown.accepted) < self.target

    def read(self, job: Job, result: Result | None) -> tuple[list[dict[str, Any]], list[Job]]:
        """(the items accepted by the answers now readable, the next round's jobs if the round ended).

        Answers are read in request order, whatever order they finish in: one that finishes early waits
        for those before it, so the greedy filters take the candidates in the paper's order and the
        decisions do not depend on timing. A withdrawn prompt's answer is None: counted, and read like
        any other."""
        self.arrived[job.tag] = result
        return self._read_on()

    def _read_on(self) -> tuple[list[dict[str, Any]], list[Job]]:
        """Read what can be read now (spare candidates first); end the round if this reached its end."""
        running = self.running
        accepted = self._accept([]) if self.spare else []
        while self.cursor in self.arrived and not (self.hold and len(self.grown.accepted) >= self.target):
            accepted += self._take(self.cursor, self.arrived.pop(self.cursor))
            self.cursor += 1
        held = {item["instruction"] for item in self.spare}
        self.foreseen = {t: k for t, k in self.foreseen.items() if k >= self.cursor or t in held}
        if self.on_accept is not None:
            self.on_accept(len(accepted))
        return accepted, (self._next_round() if running and self.cursor == self.size else [])

    def foresee(self, job: Job) -> list[str]:
        """The instructions an answer that waits for an earlier one will probably add, so that a method
        can start their later steps while it waits: its candidates that pass the prompter's drops, the
        named filters and ROUGE-L against the latest pool instructions and the open guesses, as many as
        the target has room for. A guess takes no decision: the answer's reading in request order does."""
        from engine.rouge.filter import best_rouge_l, rouge_l

        result = self.arrived.get(job.tag)
        room = self.target - len(self.grown.accepted) - len(self.foreseen)
        if result is None or not result.ok or room <= 0:
            return []
        texts = [item["instruction"] for item in self._screen(self.prompter.items(result.parsed), Counter())]
        rouge = self.rouge.filter
        pool = [*rouge.pool[-GUESS_POOL:], *list(self.foreseen)[-GUESS_POOL:]]
        guesses: list[str] = []
        for text, best in zip(texts, best_rouge_l(texts, pool, rouge.mode)):
            near = best > rouge.threshold or any(
                rouge_l(text, g, rouge.mode) > rouge.threshold for g in guesses
            )
            if not near and len(guesses) < room:
                guesses.append(text)
                self.foreseen[text] = job.tag
        return guesses

    def _take(self, index: int, result: Result | None) -> list[dict[str, Any]]:
        """One answer's candidates through the drops, the filters and ROUGE-L; what it accepted."""
        grown, prompter = self.grown, self.prompter
        items = []
        if result is None:
            grown.withdrawn += 1
        elif not result.ok:
            grown.response_failures[result.failure] += 1
        else:
            items = [
                {**it, "round": grown.rounds, "request_idx": index} for it in prompter.items(result.parsed)
            ]
        grown.candidates += len(items)
        kept = self.rouge.check(self._screen(items, grown.drops), grown.drops)
        self.round_kept += len(kept)
        return self._accept(kept)

    def _screen(self, items: list[dict[str, Any]], drops: Counter) -> list[dict[str, Any]]:
        """The candidates past the prompter's own drops and the named filters (drops counted in `drops`)."""
        items = [it for it in items if not _count(drops, self.prompter.drop_reason(it))]
        return self.filters.apply(items, drops)

    def _accept(self, kept: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Accept up to the target; the rest are over it, or held with the answers after them (`hold`).
        (They passed ROUGE-L and joined its pool, as every kept candidate does.)"""
        kept, room = self.spare + kept, max(0, self.target - len(self.grown.accepted))
        self.spare = kept[room:] if self.hold else []
        self.grown.drops["over_target"] += 0 if self.hold else len(kept[room:])
        self.grown.accepted.extend(kept[:room])
        return kept[:room]

    def _next_round(self) -> list[Job]:
        grown = self.grown
        grown.prompts += self.size
        grown.rounds += 1
        self.stalled_rounds = 0 if self.round_kept else self.stalled_rounds + 1
        if self.stalled_rounds >= self.max_stalled_rounds:
            grown.stalled = True
            return []
        return self._round() if len(grown.accepted) < self.target else []

    def grow(self, target: int, desc: str) -> GrowResult:
        """The loop alone towards `target`: its rounds as a flow, under a progress bar."""
        with progress(total=target, initial=len(self.grown.accepted), desc=desc, unit="instr") as bar:
            self.on_accept = bar.update
            self.engine.flow(self.start(target), lambda job, result: self.read(job, result)[1], self.wants)
        return self.grown

    @property
    def running(self) -> bool:
        """True while a round's answers are still coming or held (past them, `spare` may still hold the
        last one's candidates)."""
        return self.cursor < self.size


def grow_instructions(
    engine: Runner,
    prompter: Prompter,
    *,
    target: int,
    batch_size: int | None,
    fixed_round: int,
    filters: InstructionFilters,
    rouge: RougeStep,
    max_stalled_rounds: int = 5,
    desc: str = "instructions",
) -> GrowResult:
    """Run rounds until `target` items are accepted (or `max_stalled_rounds` rounds in a row add none):
    the Growth loop alone, as a flow of round jobs."""
    growth = Growth(
        engine,
        prompter,
        batch_size=batch_size,
        fixed_round=fixed_round,
        filters=filters,
        rouge=rouge,
        max_stalled_rounds=max_stalled_rounds,
    )
    return growth.grow(target, desc)


def round_size(
    engine: Runner, batch_size: int | None, fixed_round: int, remaining: int, grown: GrowResult
) -> int:
    """Prompts in the next round (see the module docstring).

    A round costs as many engine steps as its longest answer, and on a GPU a step costs about the same for
    16 or 256 requests: a round that falls short costs a whole further round, extra prompts in it almost
    nothing. So a throughput round fills the engine until an acceptance rate has been seen, then asks for
    twice what that rate says the target still needs (never fewer than the fixed round).
    """
    if batch_size is not None:
        return batch_size
    if engine.schedule != "throughput":
        return fixed_round
    slots = engine.capacity
    # What passed every filter, the over-target surplus included: the rate a prompt really brings.
    per_prompt = (len(grown.accepted) + grown.drops["over_target"]) / grown.prompts if grown.prompts else 0.0
    if not per_prompt:
        return slots
    return min(slots, max(fixed_round, math.ceil(2 * remaining / per_prompt)))


def _count(drops: Counter, reason: str | None) -> bool:
    if reason is not None:
        drops[reason] += 1
    return reason is not None


def bounded_text(max_chars: int, min_chars: int = 0) -> Any:
    """A schema string type of min_chars..max_chars characters."""
    return Annotated[str, StringConstraints(min_length=min_chars, max_length=max_chars)]


def instruction_text(max_chars: int) -> Any:
    """A generated instruction: bounded, and starting with an ASCII letter or digit, so the grammar rules
    out what upstream's first-character filters (punctuation, non-ASCII) would drop afterwards."""
    return Annotated[str, StringConstraints(min_length=1, max_length=max_chars, pattern=r"^[A-Za-z0-9]")]


def hits_bound(text: str, limit: int) -> bool:
    """True when a schema-bounded string reached its bound: the grammar closed it mid-thought."""
    return len(text) >= limit
