"""Work that grows as answers arrive: a method's steps as one flow instead of one batch per step.

A method whose next requests depend on earlier answers (an accepted instruction is classified, then
given instances) hands the engine its first jobs and a function that reads each answer and returns the
jobs it leads to:

    def on_result(job: Job, result: Result) -> list[Job]: ...
    engine.flow([Job(request, stage=0, tag=...) for ...], on_result)

How the jobs meet the model is the schedule's business, not the method's:
  deterministic  waves: all pending jobs of the lowest stage run as one `run` batch and are read in
                 request order; what they lead to waits for its own wave. A method that numbers its
                 steps as stages gets exactly the batches of running them one after another, so reruns
                 stay byte-identical.
  throughput     one continuous batch: each answer is read the moment it finishes and the jobs it leads
                 to join the running batch, so one step's long answers overlap the next step's work
                 instead of draining the engine (a round-synchronous method is otherwise paced by its
                 longest answers). Answers are read in the order they finish (a method that needs
                 request order keeps early ones until those before them are read, as Growth does).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from engine.types import Request, Result


@dataclass(frozen=True)
class Job:
    """One request of a flow, with what the method needs to read its answer."""

    request: Request
    stage: int = 0
    """The method's step; in waves, the lowest pending stage runs first."""
    tag: Any = None
    """Whatever tells the method what the answer is for (a round and index, an instruction...)."""


OnResult = Callable[[Job, "Result | None"], Iterable[Job]]
"""Reads one answer; returns the jobs it leads to (none when that line of work is done). A withdrawn
job's answer is None."""

Wanted = Callable[[Job], bool]
"""Whether a job's answer is still wanted. Asked of every unanswered job after each answer is read (in
waves: before its wave runs); one no longer wanted is withdrawn: not started, or stopped where the
backend can, and read as None. (Self-Instruct's round prompts once the target is reached.)"""


def in_waves(
    run: Callable[[Sequence[Request]], list[Result]],
    jobs: Iterable[Job],
    on_result: OnResult,
    wanted: Wanted | None = None,
    *,
    by_stage: bool = True,
) -> None:
    """The deterministic flow: the lowest pending stage as one batch at a time, read in request order
    (`by_stage=False`: every pending job in the next batch, as the test doubles' throughput)."""
    pending: list[Job] = list(jobs)
    while pending:
        stage = min(job.stage for job in pending) if by_stage else None
        wave = [job for job in pending if stage is None or job.stage == stage]
        pending = [job for job in pending if stage is not None and job.stage != stage]
        if wanted is not None:
            for job in [job for job in wave if not wanted(job)]:
                wave.remove(job)
                pending.extend(on_result(job, None))
        for job, result in zip(wave, run([job.request for job in wave])):
            pending.extend(on_result(job, result))
