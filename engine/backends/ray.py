"""Scale-out on Ray: N data-parallel vLLM engine replicas behind the engine's `Backend` seam.

Ray (Moritz et al., OSDI 2018) runs each replica as a long-lived actor holding one in-process
`VLLMBackend` (tensor-parallel over its own GPUs when asked), so prompt rendering, sampling settings,
per-request seeds, structured outputs and token counts are the in-process backend's own. In the CPU's
deterministic schedule a batch is cut into the same pieces the in-process backend runs one after another
(`EngineOptions.piece_size`), and each piece goes whole to whichever replica is free, one piece in flight
per replica (Ray Data's `ActorPoolStrategy(max_tasks_in_flight_per_actor=1)` pattern): every request
shares its steps with the same neighbours as in-process, so completions are identical for any replica
count (on CPU, given as many threads per replica as the in-process engine has: the kernels' results
depend on it). In the throughput schedule each replica gets its whole share of the batch at once, so its
engine's continuous batching stays fed until the share runs out; requests appended while the batch runs
(retries) go to the first replica free. Each finished request streams back at once, so the engine
caches it at once; each replica reports what its engine steps ran (occupancy), summed here. Not a Ray
Data dataset per batch
(`map_batches`, `ray.data.llm`): its actor pool lives as long as one dataset, so every `engine.run` (one
per generator round or tagging shard) would start the engines again, 20-60 s each here; `ray.data.llm`
also ran 25-35% below the in-process engine on this box (DESIGN.md, "Ray on this box").

Failures heal or stop, never hang: a dead replica (killed, out of memory, crashed engine) is replaced
and its piece is queued again, whole in the deterministic schedule (its unfinished requests alone would
share steps differently; the answers already returned are not returned twice), else what is unanswered,
at most MAX_PIECE_ATTEMPTS times per piece, then the
run stops naming the piece; every wait has a timeout (`RayOptions.timeout_s`). The cluster itself is started
or attached to network-safely in engine/backends/ray_cluster.py.

    engine = Engine("default", backend="ray", ray=RayOptions(replicas=2))      # CLI: --ray --replicas 2
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.backends.base import Backend, EngineOptions, Generation, has_cuda, pieces
from engine.backends.ray_cluster import NETWORK_SAFETY_ENV, RayCluster, remove_leaked_segments
from engine.backends.ray_options import RayOptions, plan_replicas
from engine.backends.ray_replica import CPU_REPLICA_ENV, REPLICA_ENV, THREAD_ENV, Replica
from engine.errors import ConfigError, ModelError
from engine.models import ModelRef
from engine.structured import Constraint
from engine.types import Occupancy, Request

log = logging.getLogger(__name__)

MAX_PIECE_ATTEMPTS = 3  # a piece that kills its replica three times is poison, or the cluster is broken
MAX_START_FAILURES = 2  # a replica slot whose replacement fails to start twice in a row is given up
CLOSE_GRACE_S = 60.0  # time a replica gets to shut its engine down before it is killed


@dataclass
class _Piece:
    number: int
    first: int
    last: int
    remaining: dict[int, None]  # batch indices not yet returned, in order
    attempts: int = 0

    def __str__(self) -> str:
        return f"piece {self.number} (requests {self.first}-{self.last} of the batch)"

    def sent(self, payload: list[Any], whole: bool) -> list[Any]:
        """What a replica runs: the whole piece (deterministic), or what is still unanswered."""
        return payload[self.first : self.last + 1] if whole else [payload[i] for i in self.remaining]


@dataclass
class _Slot:
    """A replica position: its actor, whether it is starting, and the piece it runs."""

    number: int
    actor: Any = None
    starting: Any = None  # ObjectRef of describe() until the replica has started
    info: dict[str, Any] = field(default_factory=dict)
    task: Any = None  # the streaming ObjectRefGenerator of the running piece
    piece: _Piece | None = None
    start_failures: int = 0
    retired: bool = False

    def __str__(self) -> str:
        where = f", pid {self.info['pid']}" if self.info else ""
        return f"replica {self.number}{where}"


class RayBackend(Backend):
    """`options.ray.replicas` vLLM replicas as Ray actors, on a private local cluster or an attached one."""

    name = "ray"

    def __init__(self, model: ModelRef, options: EngineOptions, *, ray: Any = None, cluster: Any = None):
        """`ray` and `cluster` replace the ray module and the RayCluster (test doubles)."""
        super().__init__(model, options)
        ray_options = options.ray
        self._occupancy = Occupancy()
        self.timeout = ray_options.timeout_s
        self._segments: set[str] = set()
        self._failed = False
        self._last_error = ""
        self._slots: list[_Slot] = []
        local, num_cpus, tp = ray_options.address is None, None, options.tensor_parallel_size
        if local:
            gpus = has_cuda()
            cores = None if gpus else sorted(os.sched_getaffinity(0))
            self.plan = plan_replicas(ray_options, tensor_parallel_size=tp, gpus=gpus, cores=cores)
            num_cpus = None if gpus else math.ceil(self.plan.replicas * self.plan.cpus)
        self.cluster = cluster or RayCluster(
            address=ray_options.address, temp_base=ray_options.temp_dir, num_cpus=num_cpus
        )
        try:
            if ray is None:
                import ray

            self._ray = ray
            nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
            if not local:
                gpus = any(r.get("GPU", 0) for r in nodes)
                node_cpus = [r.get("CPU", 0) for r in nodes]
                self.plan = plan_replicas(
                    ray_options, tensor_parallel_size=tp, gpus=gpus, cores=None, node_cpus=node_cpus
                )
            self._check_fits(nodes)
            # The CPU's deterministic schedule: the same pieces as in-process, whole, one per replica at a
            # time. Otherwise each replica's engine takes its whole share of a batch at once.
            schedule = options.schedule or ("throughput" if gpus else "deterministic")
            self.whole_pieces = schedule == "deterministic" and not gpus
            # One engine per replica: its own data-parallel share, tensor parallel inside the actor.
            extra = dict(options.extra)
            if options.tensor_parallel_size > 1:
                extra.setdefault("distributed_executor_backend", "mp")
            self._replica_options = dataclasses.replace(
                options, ray=RayOptions(), extra=extra, schedule=schedule
            )
            env = {k: v for k, v in os.environ.items() if k.startswith("VLLM_") or k in THREAD_ENV}
            cpu_defaults = {} if gpus else CPU_REPLICA_ENV
            self._replica_env = {**cpu_defaults, **env, **NETWORK_SAFETY_ENV, **REPLICA_ENV}
            self._replica_env.pop("VLLM_CPU_OMP_THREADS_BIND", None)
            self._driver_node = ray.get_runtime_context().get_node_id()
            self._actor_class = ray.remote(Replica).options(
                num_cpus=self.plan.cpus, num_gpus=self.plan.gpus, max_restarts=0, max_concurrency=1
            )
            self._slots = [_Slot(k) for k in range(self.plan.replicas)]
            for slot in self._slots:
                self._start(slot)
            self._await_first_start()
        except BaseException:
            self._failed = True
            self.close()
            raise

    def _check_fits(self, nodes: list[dict[str, float]]) -> None:
        room = self.plan.fits(nodes)
        if room < self.plan.replicas:
            total = {k: sum(r.get(k, 0) for r in nodes) for k in ("CPU", "GPU")}
            raise ConfigError(
                f"`replicas` {self.plan.replicas} x ({self.plan.cpus:g} CPU, {self.plan.gpus:g} GPU) do not "
                f"fit the cluster ({total['CPU']:g} CPUs, {total['GPU']:g} GPUs in {len(nodes)} nodes; "
                f"room for {room}): use fewer replicas or less per replica.",
                parameter="replicas",
                value=self.plan.replicas,
            )

    def _start(self, slot: _Slot) -> None:
        cores = self.plan.cores[slot.number] if self.plan.cores else None
        slot.actor = self._actor_class.remote(self.model, self._replica_options, self._replica_env, cores)
        slot.starting = slot.actor.describe.remote()
        slot.info = {}

    def _await_first_start(self) -> None:
        """Wait for every replica: a model that cannot start on one fails the run now, not later."""
        pending = {slot.starting: slot for slot in self._slots}
        while pending:
            ready, _ = self._ray.wait(list(pending), num_returns=1, timeout=self.timeout)
            if not ready:
                raise ModelError(
                    f"{len(pending)} Ray replicas did not start within {self.timeout:g} s "
                    f"(logs: {self.cluster.logs()})"
                )
            slot = pending.pop(ready[0])
            try:
                self._started(slot)
            except self._ray.exceptions.RayError as e:
                raise ModelError(f"{slot} could not start: {_brief(e)}") from e

    def _started(self, slot: _Slot) -> None:
        slot.info = self._ray.get(slot.starting, timeout=self.timeout)
        slot.starting, slot.start_failures = None, 0
        if slot.info["node"] == self._driver_node:
            self._segments.update(slot.info["segments"])
        log.info("%s started (cores %s)", slot, slot.info["cores"])

    @property
    def occupancy(self) -> Occupancy:
        return dataclasses.replace(self._occupancy)

    @property
    def slots(self) -> int:
        """Requests all replicas run at once."""
        return sum(slot.info.get("slots", 0) for slot in self._slots)

    def _cut(self, payload: list[Any], start: int, numbered: int) -> list[_Piece]:
        """Pieces for payload[start:]: of `piece_size` in the deterministic schedule; in the throughput
        one a share per replica, so each replica's engine holds its whole share at once."""
        n = len(payload) - start
        size = self.options.piece_size if self.whole_pieces else -(-n // max(1, len(self._slots)))
        return [
            _Piece(
                numbered + k,
                start + p.start,
                start + p.stop - 1,
                dict.fromkeys(range(start + p.start, start + p.stop)),
            )
            for k, p in enumerate(pieces(n, size))
        ]

    def stream(
        self,
        requests: Sequence[Request],
        constraints: Sequence[Constraint | None],
        withdrawn: Sequence[int] = (),
    ) -> Iterator[tuple[int, Generation]]:
        # `withdrawn` is not acted on: a replica's piece runs whole, so what the caller withdrew is
        # still answered (the engine caches it and reads it no further).
        # Output types may be classes the replicas cannot import; the constraint carries what they need.
        payload: list[Any] = []
        queue: deque[_Piece] = deque()
        numbered = 0
        try:
            while True:
                if len(payload) < len(requests):  # at first, and when a caller appended (a retry)
                    start = len(payload)
                    payload.extend(
                        (i, dataclasses.replace(requests[i], output_type=None), constraints[i])
                        for i in range(start, len(requests))
                    )
                    queue.extend(cut := self._cut(payload, start, numbered))
                    numbered += len(cut)
                if not queue and all(slot.task is None for slot in self._slots):
                    return
                self._dispatch(queue, payload)
                waiting = {s.task: s for s in self._slots if s.task is not None}
                waiting.update({s.starting: s for s in self._slots if s.starting is not None})
                if not waiting:
                    raise self._stop(
                        f"every replica is gone ({len(queue)} pieces left; last error: {self._last_error})"
                    )
                ready, _ = self._ray.wait(list(waiting), num_returns=1, timeout=self.timeout)
                if not ready:
                    busy = ", ".join(f"{s} on {s.piece}" for s in self._slots if s.piece)
                    raise self._stop(
                        f"no replica finished a request or started within "
                        f"{self.timeout:g} s ({busy or 'none busy'})"
                    )
                slot = waiting[ready[0]]
                if slot.task is None:
                    self._on_start(slot)
                    continue
                try:
                    index, record = self._ray.get(next(slot.task), timeout=self.timeout)
                except StopIteration:
                    slot.task = slot.piece = None
                    continue
                except self._ray.exceptions.RayError as e:
                    self._on_failure(slot, e, queue)
                    continue
                if index is None:  # the piece is done: what the replica's engine steps ran for it
                    self._occupancy += Occupancy(**record)
                elif index in slot.piece.remaining:  # a retried piece repeats the answers already given
                    del slot.piece.remaining[index]
                    yield index, Generation.from_record(record)
        finally:
            for slot in self._slots:  # abandoned mid-batch: those engines still hold stale requests
                if slot.task is not None:
                    self._ray.kill(slot.actor, no_restart=True)
                    slot.task = slot.piece = slot.actor = None

    def _dispatch(self, queue: deque[_Piece], payload: list[Any]) -> None:
        for slot in self._slots:
            if not queue:
                return
            if slot.retired or slot.starting is not None or slot.task is not None:
                continue
            if slot.actor is None:  # killed when an earlier batch was abandoned
                self._start(slot)
                continue
            piece = queue.popleft()
            slot.piece = piece
            slot.task = slot.actor.generate.options(num_returns="streaming").remote(
                piece.sent(payload, self.whole_pieces)
            )

    def _on_start(self, slot: _Slot) -> None:
        try:
            self._started(slot)
        except self._ray.exceptions.RayError as e:
            slot.start_failures += 1
            self._last_error = _brief(e)
            log.warning(
                "%s could not start (%d/%d): %s", slot, slot.start_failures, MAX_START_FAILURES, _brief(e)
            )
            slot.starting = None
            if slot.start_failures >= MAX_START_FAILURES:
                slot.retired = True
            else:
                self._start(slot)

    def _on_failure(self, slot: _Slot, error: Exception, queue: deque[_Piece]) -> None:
        """The replica died or its engine failed mid-piece: requeue what is left, replace the replica."""
        piece = slot.piece
        piece.attempts += 1
        self._last_error = _brief(error)
        slot.task = slot.piece = None
        if piece.attempts >= MAX_PIECE_ATTEMPTS:
            raise self._stop(f"{piece} failed {piece.attempts} times, last on {slot}: {_brief(error)}")
        log.warning(
            "%s failed while running %s: %s; running the piece again for its %d unfinished "
            "requests (attempt %d of %d)",
            slot,
            piece,
            _brief(error),
            len(piece.remaining),
            piece.attempts + 1,
            MAX_PIECE_ATTEMPTS,
        )
        queue.appendleft(piece)
        self._ray.kill(slot.actor, no_restart=True)
        self._start(slot)

    def _stop(self, reason: str) -> ModelError:
        self._failed = True
        if "low on memory" in reason:  # Ray's monitor ends workers once the whole node passes 95% memory
            reason += (
                " (Ray's memory monitor: use fewer replicas or a smaller KV cache, or set "
                "RAY_memory_usage_threshold)"
            )
        return ModelError(
            f"Ray backend stopped: {reason}. Finished requests are cached: rerun the same "
            f"command to resume. Ray logs: {self.cluster.logs()}"
        )

    def close(self) -> None:
        slots, self._slots = self._slots, []
        ray = getattr(self, "_ray", None)
        if ray is not None and ray.is_initialized():
            live = [s.actor for s in slots if s.actor is not None and s.starting is None]
            closing = [actor.close.remote() for actor in live]
            if closing:  # let each engine shut down cleanly (frees its memory), then end the actors
                ray.wait(closing, num_returns=len(closing), timeout=CLOSE_GRACE_S)
            for slot in slots:
                if slot.actor is not None:
                    ray.kill(slot.actor, no_restart=True)
        cluster = self.__dict__.pop("cluster", None)
        if cluster is not None:
            cluster.shutdown(keep_logs=self._failed)
        remove_leaked_segments(self._segments)
        self._segments = set()


def _brief(error: Exception) -> str:
    """The telling line of a Ray error: the innermost `SomeError: message`, else the first line."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    telling = [line for line in lines if "Error:" in line or "Error(" in line]
    return (telling[-1] if telling else lines[0] if lines else type(error).__name__)[:400]
