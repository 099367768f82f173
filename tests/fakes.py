"""A scripted engine double for method-logic tests: same Request/Result types, same parsing and
validation as the real engine, answers chosen by a function instead of a model."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from engine.backends.base import Generation
from engine.engine import result_of
from engine.flow import Job, OnResult, Wanted, in_waves
from engine.models import ModelRef
from engine.structured import OutputSpec
from engine.types import Request, Result, RunStats

Answer = Any
"""A string (the completion text), a JSON-able object (dumped to JSON), or a list of those for n > 1."""


class ScriptedEngine:
    """`run(requests)` answers each request with `respond(request)`; records every batch in `batches`."""

    def __init__(
        self,
        respond: Callable[[Request], Answer],
        *,
        schedule: str = "deterministic",
        capacity: int = 256,
        steps: Callable[[Request], int] | None = None,
    ):
        self.respond = respond
        self.schedule, self.capacity = schedule, capacity
        self.steps = steps
        """With it, a throughput flow is timed: each job finishes `steps(request)` engine steps after it
        joined, and answers are read in the order they finish (as vLLM's continuous batch hands them)."""
        self.batches: list[list[Request]] = []
        self.stats = RunStats()
        self.model = ModelRef("scripted", "scripted", "scripted@0")
        self.model_identity = "scripted@0"

    def run(self, requests: Sequence[Request]) -> list[Result]:
        self.batches.append(list(requests))
        results = []
        for request in requests:
            answer = self.respond(request)
            answers = answer if isinstance(answer, list) and request.sampling.n > 1 else [answer]
            texts = [a if isinstance(a, str) else json.dumps(a) for a in answers]
            generation = Generation([(t, "stop", max(1, len(t) // 4)) for t in texts], prompt_tokens=1)
            spec = OutputSpec.of(request.output_type) if request.output_type is not None else None
            result = result_of(request, spec, generation, cached=False)
            self.stats.count(result)
            self.stats.model_calls += 1
            results.append(result)
        return results

    def flow(self, jobs: Iterable[Job], on_result: OnResult, wanted: Wanted | None = None) -> None:
        """Waves in the deterministic schedule; in the throughput one every pending job in the next batch
        (follow-ups join the next batch, not the running one), or timed by `steps`: one running batch
        whose answers are read as they finish, follow-ups joining it, unwanted jobs withdrawn."""
        if self.schedule != "throughput" or self.steps is None:
            in_waves(self.run, jobs, on_result, wanted, by_stage=self.schedule != "throughput")
            return
        running: list[tuple[int, int, Job]] = []  # (finishes at, joined as, job)
        joined = 0

        def join(new: Iterable[Job], now: int) -> None:
            nonlocal joined
            for job in new:
                running.append((now + max(1, self.steps(job.request)), joined, job))
                joined += 1

        join(jobs, 0)
        while running:
            running.sort(key=lambda entry: entry[:2])
            now, _, job = running.pop(0)
            join(on_result(job, self.run([job.request])[0]), now)
            for entry in [e for e in running if wanted is not None and not wanted(e[2])]:
                running.remove(entry)
                join(on_result(entry[2], None), now)

    @property
    def requests(self) -> list[Request]:
        return [r for batch in self.batches for r in batch]

    def close(self) -> None:
        pass
