"""The engine: one object that answers batches of requests, with a request cache in front of the model.

    engine = Engine("default", cache_dir="~/.cache/instructforge")
    results = engine.run([Request(messages=[{"role": "user", "content": "Hi"}])])

Batch-first and order-preserving (as vLLM's `LLM.generate`): put every prompt of a step into one `run`
call; results come back in the order of the requests. Cached requests never reach the model, and the
model itself starts only when the first uncached request arrives, so a fully cached rerun is instant and
makes zero model calls. Identical requests in one batch are generated once.

Seeds: a request without its own seed gets the engine's seed when it samples (temperature > 0), so
every sampled completion is reproducible whatever batch it runs in; ask for different samples of the
same prompt with different seeds or with `n`. Greedy requests drop the seed (it cannot matter), so
they share cache entries across seeds.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from engine.backends.base import Backend, EngineOptions, Generation, default_schedule, load_backend
from engine.cache import RequestCache, canonical_json, request_key
from engine.errors import ConfigError
from engine.flow import Job, OnResult, Wanted, in_waves
from engine.models import DEFAULT_MODEL, ModelRef, cache_root, resolve_model
from engine.run.progress import progress
from engine.structured import Constraint, OutputSpec
from engine.types import Completion, Request, Result, RunStats

log = logging.getLogger(__name__)


def _spec_key(output_type: Any) -> Any:
    """What identifies an output type for the spec memo: a schema by its content, a type by itself (equal
    types built twice share one spec), and an unhashable type by its identity."""
    if isinstance(output_type, dict):
        return "schema", canonical_json(output_type)
    try:
        hash(output_type)
    except TypeError:
        return "id", id(output_type)
    return "type", output_type


class _Batch:
    """One backend call: the requests sent (a retry may join while it runs), the result positions
    waiting for each key, and the requests no position waits for any more. Identical requests are sent
    once."""

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.requests: list[Request] = []
        self.constraints: list[Constraint | None] = []
        self.waiting: dict[str, list[int]] = {}
        self.withdrawn: list[int] = []

    def send(self, key: str, request: Request, spec: OutputSpec | None, position: int | None) -> None:
        if key not in self.waiting:
            self.keys.append(key)
            self.requests.append(request)
            self.constraints.append(spec.constraint if spec is not None else None)
            self.waiting[key] = []
        if position is not None:
            self.waiting[key].append(position)

    def withdraw(self, key: str, position: int) -> None:
        """Position no longer waits; a request nothing waits for is withdrawn from the backend."""
        positions = self.waiting.get(key)
        if positions is not None and position in positions:
            positions.remove(position)
            if not positions:
                del self.waiting[key]
                self.withdrawn.append(len(self.keys) - 1 - self.keys[::-1].index(key))

    def in_order_of(self, keys: list[str]) -> None:
        """Reorder (before it runs) by each key's first position among `keys`."""
        rank = {key: n for n, key in reversed(list(enumerate(keys)))}
        order = sorted(range(len(self.keys)), key=lambda j: rank[self.keys[j]])
        self.keys, self.requests, self.constraints = (
            [xs[j] for j in order] for xs in (self.keys, self.requests, self.constraints)
        )


class Engine:
    """Answers batches of `Request`s with `Result`s through a backend and the request cache.

    Args:
        model: "default" (embedded SmolLM2-135M-Instruct), a local HF folder, a cached hub id, or a
            ModelRef already resolved.
        backend: registered backend name ("vllm").
        cache_dir: root of the request cache and converted models (default ~/.cache/instructforge).
        use_cache: False neither reads nor writes the request cache.
        retry_truncated: retry a truncated JSON completion once with twice the token budget.
        progress_desc: label of the progress bar shown while the model works.
        **options: `EngineOptions` fields (dtype, max_model_len, tensor_parallel_size,
            gpu_memory_utilization, quantization, enforce_eager, seed, schedule, piece_size, extra, and
            `ray`, the Ray backend's RayOptions or a dict of them).
    """

    def __init__(
        self,
        model: str | ModelRef = DEFAULT_MODEL,
        *,
        backend: str = "vllm",
        cache_dir: str | Path | None = None,
        use_cache: bool = True,
        retry_truncated: bool = True,
        progress_desc: str = "generating",
        **options: Any,
    ):
        unknown = set(options) - {f.name for f in dataclasses.fields(EngineOptions)}
        if unknown:
            raise ConfigError(
                f"Unknown engine option(s): {', '.join(sorted(unknown))}.",
                parameter="options",
                value=sorted(unknown),
            )
        self.options = EngineOptions(**options)
        self.cache_dir = cache_root(cache_dir)
        self.model = model if isinstance(model, ModelRef) else resolve_model(model, self.cache_dir)
        self.model_identity = f"{self.model.identity}|{self.options.identity()}"
        self.backend_name = backend
        self._backend_class = load_backend(backend)  # fail on an unknown name now, not mid-run
        self.cache = RequestCache(self.cache_dir / "requests.sqlite") if use_cache else None
        self.retry_truncated = retry_truncated
        self.progress_desc = progress_desc
        self.stats = RunStats()
        self._backend: Backend | None = None
        self._owner: Engine | None = None  # set on forks: the engine whose model they share
        self._specs: dict[Any, tuple[Any, OutputSpec]] = {}

    @property
    def backend(self) -> Backend:
        """The started backend (starts it on first use; a fork uses its owner's)."""
        if self._owner is not None:
            return self._owner.backend
        if self._backend is None:
            self.schedule  # noqa: B018 -- resolved before the backend reads the options
            start = time.perf_counter()
            self._backend = self._backend_class(self.model, self.options)
            log.info("%s backend started in %.1f s", self.backend_name, time.perf_counter() - start)
        return self._backend

    @property
    def schedule(self) -> str:
        """The schedule batches run on (`EngineOptions.schedule`, resolved for this machine)."""
        if self.options.schedule is None:
            self.options = dataclasses.replace(self.options, schedule=default_schedule())
        return self.options.schedule

    @property
    def capacity(self) -> int:
        """The most requests the model runs at once (all replicas); starts the model to ask it."""
        return max(1, self.backend.slots)

    def run(self, requests: Sequence[Request]) -> list[Result]:
        """Answer every request; results are in the order of `requests`."""
        results = self._answer(requests)
        # A truncated JSON answer is retried once with twice the budget: in the throughput schedule it has
        # joined the running batch already (see _answer); in the deterministic one the retries run as a
        # second batch after the first, so that each batch is the same on every rerun.
        retry_at = [i for i, r in enumerate(results) if self._truncated(r)]
        if retry_at and self.retry_truncated and not self._retries_join():
            retried = self._answer([self._bigger(results[i].request) for i in retry_at])
            for i, result in zip(retry_at, retried):
                results[i] = result
            self.stats.retried += len(retry_at)
        for result in results:
            self.stats.count(result)
        return results

    def flow(self, jobs: Iterable[Job], on_result: OnResult, wanted: Wanted | None = None) -> None:
        """Run jobs and the jobs their answers lead to (engine/flow.py): in waves of `run` batches in the
        deterministic schedule; in the throughput one as one continuous batch that each answer's
        follow-ups join the moment it is read, and that drops the jobs no longer `wanted`."""
        if self.schedule != "throughput":
            in_waves(self.run, jobs, on_result, wanted)
            return
        jobs = list(jobs)

        def then(i: int, result: Result | None) -> list[Request]:
            if result is not None:
                self.stats.count(result)
            else:
                self.stats.withdrawn += 1
            follow = list(on_result(jobs[i], result))
            jobs.extend(follow)
            return [job.request for job in follow]

        self._answer(
            [job.request for job in jobs], then, None if wanted is None else lambda i: wanted(jobs[i])
        )

    def _retries_join(self) -> bool:
        return self.retry_truncated and self.schedule == "throughput"

    @staticmethod
    def _truncated(result: Result) -> bool:
        return result.request.output_type is not None and any(
            c.failure == "truncated" for c in result.completions
        )

    @staticmethod
    def _bigger(request: Request) -> Request:
        """The retry of a truncated request: the same request with twice the token budget."""
        s = request.sampling
        return dataclasses.replace(request, sampling=dataclasses.replace(s, max_tokens=s.max_tokens * 2))

    def _effective(self, request: Request) -> Request:
        s = request.sampling
        seed = None if s.temperature == 0 else (s.seed if s.seed is not None else self.options.seed)
        if seed == s.seed:
            return request
        return dataclasses.replace(request, sampling=dataclasses.replace(s, seed=seed))

    def _spec(self, output_type: Any) -> OutputSpec | None:
        if output_type is None:
            return None
        key = _spec_key(output_type)
        if key not in self._specs:  # the type stays alive beside its spec: an id key is never reused
            self._specs[key] = (output_type, OutputSpec.of(output_type))
        return self._specs[key][1]

    def _answer(
        self,
        requests: Sequence[Request],
        then: Callable[[int, Result | None], list[Request]] | None = None,
        wanted: Callable[[int], bool] | None = None,
    ) -> list[Result | None]:
        """Results from the cache, else from the model. In the throughput schedule the retry of a
        truncated JSON answer comes from the cache or joins the running batch as soon as it arrives, and
        so do the requests `then(i, result)` returns for each final result (a flow's follow-ups): they
        take the next positions, and the results returned include theirs. After each, a position still
        open that is no longer `wanted(i)` is withdrawn: its result stays None, and `then(i, None)`."""
        requests = [self._effective(r) for r in requests]  # a retried position holds its bigger request
        specs = [self._spec(r.output_type) for r in requests]
        keys = [request_key(self.model_identity, r, s) for r, s in zip(requests, specs)]
        cached = self.cache.lookup(keys) if self.cache is not None else {}
        results: list[Result | None] = [None] * len(requests)
        batch = _Batch()
        retried: set[int] = set()
        withdrawn: set[int] = set()
        unanswered = set(range(len(requests)))  # neither answered nor withdrawn: what `wanted` is asked of

        def place(i: int, generation: Generation, from_cache: bool) -> None:
            result = result_of(requests[i], specs[i], generation, cached=from_cache)
            if i not in retried and self._retries_join() and self._truncated(result):
                retried.add(i)
                self.stats.retried += 1
                requests[i] = self._bigger(requests[i])
                keys[i] = request_key(self.model_identity, requests[i], specs[i])
                ask(i)
                return
            results[i] = result
            unanswered.discard(i)
            go_on(i, result)

        def go_on(i: int, result: Result | None) -> None:  # a flow's follow-ups and withdrawals
            for request in then(i, result) if then is not None else ():
                request = self._effective(request)
                requests.append(request)
                specs.append(self._spec(request.output_type))
                keys.append(request_key(self.model_identity, request, specs[-1]))
                results.append(None)
                unanswered.add(len(requests) - 1)
                ask(len(requests) - 1)
            for k in sorted(unanswered) if wanted else ():
                if k in unanswered and not wanted(k):
                    withdrawn.add(k)
                    unanswered.discard(k)
                    batch.withdraw(keys[k], k)
                    go_on(k, None)

        def ask(i: int) -> None:  # a retry or a follow-up: the cache's answer, else it joins the batch
            found = self.cache.lookup([keys[i]]) if self.cache is not None else {}
            if keys[i] in found:
                place(i, Generation.from_record(found[keys[i]][0]), True)
            else:
                batch.send(keys[i], requests[i], specs[i], i)

        for i, key in enumerate(list(keys)):
            if i in withdrawn:  # by an earlier cached answer's reader, before its turn came
                continue
            if key in cached:
                place(i, Generation.from_record(cached[key][0]), True)
            else:
                batch.send(key, requests[i], specs[i], i)
        if batch.keys:
            # Deterministic: entries of a batch a kill interrupted are generated again beside the missing
            # ones, so the missing ones share their batch with the same requests as in the uninterrupted
            # run (on CPU that decides their text); the cached answer is kept (first write wins).
            # Throughput promises no such thing: only what is missing is generated.
            if self.schedule == "deterministic":
                for i, key in enumerate(keys):
                    if key in cached and not cached[key][1]:
                        batch.send(key, requests[i], specs[i], None)
                batch.in_order_of(keys)
            self._generate(batch, place)
        missing = sorted(unanswered)
        if missing:  # a backend that drops requests is a bug, never a silent loss
            raise RuntimeError(f"backend {self.backend_name} returned no result for requests {missing}")
        return results  # type: ignore[return-value]

    def _generate(self, batch: _Batch, place: Any) -> None:
        """Run the batch through the backend; cache and place each answer as it arrives."""
        backend = self.backend  # start it before the clock: tok/s measures generation only
        batch_id = uuid.uuid4().hex
        if self.cache is not None:
            self.cache.begin_batch(batch_id)
        start, steps_before, answered = time.perf_counter(), backend.occupancy, 0
        with progress(total=len(batch.keys), desc=self.progress_desc, unit="req") as bar:
            for j, generation in backend.stream(batch.requests, batch.constraints, batch.withdrawn):
                key = batch.keys[j]
                if self.cache is not None:
                    self.cache.put(key, generation.to_record(), batch_id)
                positions = batch.waiting.pop(key, None)
                if positions is None:  # withdrawn, but finished before the backend stopped it: kept
                    self.stats.output_tokens_generated += sum(c[2] for c in generation.completions)
                    positions = []
                elif not positions:  # a replayed entry: only regenerated to rebuild its batch
                    self.stats.replayed += 1
                    self.stats.output_tokens_generated += sum(c[2] for c in generation.completions)
                for i in positions:
                    place(i, generation, False)
                bar.total = len(batch.keys) - len(batch.withdrawn)  # retries may have joined
                bar.update(1)
                answered += 1
        if self.cache is not None:
            self.cache.end_batch(batch_id)
        self.stats.generation_seconds += time.perf_counter() - start
        self.stats.occupancy += backend.occupancy - steps_before
        self.stats.model_calls += answered

    def fork(
        self, *, cache_dir: str | Path | None = None, use_cache: bool = True, progress_desc: str | None = None
    ) -> Engine:
        """A new engine on the same (started) model with its own request cache and statistics.

        The fork does not own the model: closing it closes only its cache.
        """
        other = Engine(
            self.model,
            backend=self.backend_name,
            cache_dir=cache_dir if cache_dir is not None else self.cache_dir,
            use_cache=use_cache,
            retry_truncated=self.retry_truncated,
            progress_desc=progress_desc or self.progress_desc,
            **{f.name: getattr(self.options, f.name) for f in dataclasses.fields(EngineOptions)},
        )
        other._owner = self._owner or self
        return other

    def close(self) -> None:
        """Stop the backend (unless this is a fork) and close the cache."""
        if self._owner is None and self._backend is not None:  # a fork does not own the model
            self._backend.close()
        self._backend = None
        if self.cache is not None:
            self.cache.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def result_of(request: Request, spec: OutputSpec | None, generation: Generation, cached: bool) -> Result:
    """A generation read as a Result: each completion parsed against the spec (the engine's and the test
    doubles' one reading of model text)."""
    completions = []
    for text, finish_reason, tokens in generation.completions:
        completion = Completion(text=text, finish_reason=finish_reason, output_tokens=tokens)
        if finish_reason == "too_long":
            completion.failure = "too_long"
        elif spec is not None:
            completion.parsed, completion.failure = spec.parse(text, finish_reason)
        completions.append(completion)
    return Result(
        request=request, completions=completions, prompt_tokens=generation.prompt_tokens, cached=cached
    )
