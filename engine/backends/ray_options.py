"""The `ray` backend's settings, and what each replica reserves. Read by engine/backends/ray.py only; the
other backends ignore them.

    Engine("default", backend="ray", ray=RayOptions(replicas=2))    # CLI: --ray --replicas 2
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

from engine.errors import ConfigError, require

log = logging.getLogger(__name__)

RAY_SOCKET_SUFFIX = 64  # Ray's socket paths add ~64 characters below its temp dir ...
AF_UNIX_PATH_MAX = 107  # ... and a Unix socket path must fit 107 bytes


@dataclass(frozen=True)
class RayOptions:
    """Scale-out settings: data-parallel replicas and the cluster they run on. Validated when built."""

    replicas: int = 1
    """Data-parallel engine replicas, each one `vllm.LLM` (tensor-parallel over its own GPUs)."""
    cpus_per_replica: float | None = None
    """CPUs each replica reserves; default: the cores split evenly on a CPU-only machine, else 1."""
    gpus_per_replica: float | None = None
    """GPUs each replica reserves; default: tensor_parallel_size where the cluster has GPUs, else 0."""
    address: str | None = None
    """Attach to this running Ray cluster (`HOST:6379`); None starts a private local one."""
    temp_dir: str | None = None
    """Folder for Ray's session files (a fresh subfolder per run); default: the system temp folder."""
    timeout_s: float = 1800.0
    """Longest wait for a replica to start or to finish any request before the run stops."""

    def __post_init__(self) -> None:
        require(self, "replicas", isinstance(self.replicas, int) and self.replicas >= 1, "an int >= 1")
        require(self, "cpus_per_replica", self.cpus_per_replica is None or self.cpus_per_replica > 0, "> 0")
        require(self, "gpus_per_replica", self.gpus_per_replica is None or self.gpus_per_replica >= 0, ">= 0")
        require(self, "timeout_s", self.timeout_s > 0, "> 0")
        if self.temp_dir is not None:
            # mkdtemp adds "/ifray-XXXXXXXX" (15 characters) below the folder the user gave.
            longest = AF_UNIX_PATH_MAX - RAY_SOCKET_SUFFIX - 15
            resolved = str(Path(self.temp_dir).expanduser().resolve())
            if len(resolved) > longest:
                raise ConfigError(
                    f"`temp_dir` must be at most {longest} characters (Ray's socket paths "
                    f"below it must fit {AF_UNIX_PATH_MAX} bytes), got {resolved!r}.",
                    parameter="temp_dir",
                    value=resolved,
                )


@dataclass(frozen=True)
class ReplicaPlan:
    """What each replica reserves, and on a CPU-only local cluster the cores each one is bound to."""

    replicas: int
    cpus: float
    gpus: float
    cores: list[list[int]] | None = None

    def fits(self, nodes: list[dict[str, float]]) -> int:
        """How many replicas the nodes' total resources can hold at once."""

        def per_node(resources: dict[str, float]) -> int:
            by_cpu = int(resources.get("CPU", 0) // self.cpus) if self.cpus else self.replicas
            by_gpu = int(resources.get("GPU", 0) // self.gpus) if self.gpus else self.replicas
            return min(by_cpu, by_gpu)

        return sum(per_node(r) for r in nodes)


def plan_replicas(
    options: RayOptions,
    *,
    tensor_parallel_size: int = 1,
    gpus: bool,
    cores: list[int] | None,
    node_cpus: list[float] | None = None,
) -> ReplicaPlan:
    """Resources per replica: GPU replicas take tensor_parallel_size GPUs each; CPU replicas split the
    cores of this machine (`cores`, local cluster) or of the smallest node (`node_cpus`, attached)."""
    n = options.replicas
    if gpus:
        gpus_each = options.gpus_per_replica
        return ReplicaPlan(
            n,
            options.cpus_per_replica or 1.0,
            gpus_each if gpus_each is not None else float(tensor_parallel_size),
        )
    gpus_each = options.gpus_per_replica or 0.0
    if cores is None:  # an attached CPU cluster: share the smallest node among its share of replicas
        per_node = math.ceil(n / max(1, len(node_cpus or [])))
        return ReplicaPlan(
            n, options.cpus_per_replica or max(1.0, min(node_cpus or [1.0]) // per_node), gpus_each
        )
    width = int(options.cpus_per_replica or max(1, len(cores) // n))
    width = max(1, min(width, len(cores)))
    if n * width > len(cores):
        log.warning(
            "%d replicas x %d cores exceed this machine's %d cores: replicas share cores",
            n,
            width,
            len(cores),
        )
    bound = [[cores[(k * width + j) % len(cores)] for j in range(width)] for k in range(n)]
    return ReplicaPlan(n, float(options.cpus_per_replica or width), gpus_each, bound)
