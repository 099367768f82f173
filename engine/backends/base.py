"""The seam between the engine and an inference library: one small base class, one file per backend.

A backend turns requests into raw generations and nothing else: the engine around it owns the cache,
parsing, retries, statistics and progress. Backends load lazily by name, so `import engine` never pulls
in vLLM or Ray.

    backend = load_backend("vllm")(model_ref, EngineOptions(enforce_eager=True))
    for index, generation in backend.stream(requests, constraints): ...
"""

from __future__ import annotations

import contextlib
import importlib
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.backends.ray_options import RayOptions
from engine.errors import ConfigError
from engine.models import ModelRef
from engine.structured import Constraint
from engine.types import Occupancy, Request

BACKENDS: dict[str, str] = {
    "vllm": "engine.backends.vllm:VLLMBackend",
    "ray": "engine.backends.ray:RayBackend",
}
"""Backend name -> `module:class`, imported only when asked for."""


SCHEDULES = {
    "throughput": "the whole batch goes to vLLM at once; its continuous batching refills each slot as a "
    "request finishes, the prefix cache lives as long as the engine, and the engine core runs "
    "in vLLM's own process. Completions may depend on what shared their steps.",
    "deterministic": "reruns reproduce every completion. On CPU: consecutive pieces of `piece_size`, each "
    "alone in an in-process engine from an empty prefix cache. On CUDA: the throughput "
    "schedule on vLLM's batch-invariant kernels (VLLM_BATCH_INVARIANT=1).",
}
"""The two ways a batch meets the model. Neither changes what a request means: not in cache keys."""


def has_cuda() -> bool:
    """True when a CUDA device is visible (then the GPU build of vLLM is expected)."""
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def default_schedule() -> str:
    """Throughput where a GPU would otherwise idle; deterministic on CPU, where vLLM has no
    batch-invariant kernels and pieces are the only way to reproduce a run."""
    return "throughput" if has_cuda() else "deterministic"


@dataclass(frozen=True)
class EngineOptions:
    """How to run the model. These never change what a request means, so they are not in cache keys
    (dtype and quantization change the model's numbers: they are part of the model identity instead)."""

    dtype: str = "auto"
    """Weights/activation dtype: auto (bf16 on CPU, the model's own on GPU), bfloat16, float16, float32."""
    max_model_len: int | None = None
    """Context length to serve; default: the model's own, capped at 4096 to bound KV-cache memory."""
    tensor_parallel_size: int = 1
    """GPUs one engine spans (vLLM tensor parallelism)."""
    gpu_memory_utilization: float = 0.9
    """Fraction of each GPU's memory vLLM may take (weights + KV cache); GPU only."""
    quantization: str | None = None
    """vLLM quantization method (awq, gptq, fp8, ...); None loads the weights as stored."""
    enforce_eager: bool = True
    """Eager mode starts in ~19 s on CPU; compiled (False) takes 60-75 s per start for ~25% more tok/s."""
    seed: int = 0
    """Engine-wide seed; requests without their own seed get this one (see Engine)."""
    schedule: str | None = None
    """How a batch meets the model (see SCHEDULES); None: `throughput` where CUDA is visible, else
    `deterministic`."""
    piece_size: int = 256
    """The deterministic schedule on CPU: requests that run together as one vLLM batch; a larger batch
    runs as consecutive pieces of this size, one after another in-process and spread over the replicas on
    Ray. What shares a step changes the last bits of the logits, so completions depend on the pieces;
    fixed pieces make them independent of the replica count. Default: vLLM's default `max_num_seqs` on
    GPU, the most it runs at once."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Any other `vllm.LLM` keyword (e.g. max_num_seqs), passed through unchanged."""
    ray: RayOptions = field(default_factory=RayOptions)
    """Scale-out settings, read by the `ray` backend only (a dict of RayOptions fields is accepted)."""

    def __post_init__(self) -> None:
        if isinstance(self.ray, dict):
            object.__setattr__(self, "ray", RayOptions(**self.ray))
        if self.schedule is not None and self.schedule not in SCHEDULES:
            raise ConfigError(
                f"`schedule` must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}.",
                parameter="schedule",
                value=self.schedule,
            )
        if self.dtype not in ("auto", "bfloat16", "float16", "float32", "half", "float"):
            raise ConfigError(
                f"`dtype` must be auto, bfloat16, float16 or float32, got {self.dtype!r}.",
                parameter="dtype",
                value=self.dtype,
            )
        if self.max_model_len is not None and self.max_model_len < 16:
            raise ConfigError(
                f"`max_model_len` must be >= 16, got {self.max_model_len}.",
                parameter="max_model_len",
                value=self.max_model_len,
            )
        if not isinstance(self.piece_size, int) or self.piece_size < 1:
            raise ConfigError(
                f"`piece_size` must be an int >= 1, got {self.piece_size!r}.",
                parameter="piece_size",
                value=self.piece_size,
            )
        if self.tensor_parallel_size < 1:
            raise ConfigError(
                f"`tensor_parallel_size` must be >= 1, got {self.tensor_parallel_size}.",
                parameter="tensor_parallel_size",
                value=self.tensor_parallel_size,
            )
        if not 0.0 < self.gpu_memory_utilization <= 1.0:
            raise ConfigError(
                f"`gpu_memory_utilization` must be in (0, 1], got {self.gpu_memory_utilization}.",
                parameter="gpu_memory_utilization",
                value=self.gpu_memory_utilization,
            )

    def identity(self) -> str:
        """The parts of the options that change the model's numbers (joined into the model identity)."""
        return f"dtype={self.dtype},quant={self.quantization}"


@dataclass
class Generation:
    """What a backend produced for one request: the raw material the cache stores."""

    completions: list[tuple[str, str, int]]
    """(text, finish_reason, output_tokens) per completion; finish_reason 'stop', 'length' or 'too_long'."""
    prompt_tokens: int

    def to_record(self) -> dict[str, Any]:
        return {"completions": [list(c) for c in self.completions], "prompt_tokens": self.prompt_tokens}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Generation:
        return cls([tuple(c) for c in record["completions"]], record["prompt_tokens"])


def pieces(n: int, size: int) -> list[range]:
    """The consecutive pieces a batch of n runs as (see `EngineOptions.piece_size`)."""
    return [range(start, min(start + size, n)) for start in range(0, n, size)]


class Backend(ABC):
    """An inference library behind the engine. Subclasses implement `stream`; `close` frees resources."""

    name: str = "base"
    slots: int = 0
    """The most requests the backend runs at once (vLLM's max_num_seqs, summed over replicas)."""

    def __init__(self, model: ModelRef, options: EngineOptions):
        self.model = model
        self.options = options

    @abstractmethod
    def stream(
        self,
        requests: Sequence[Request],
        constraints: Sequence[Constraint | None],
        withdrawn: Sequence[int] = (),
    ) -> Iterator[tuple[int, Generation]]:
        """Generate for every request; yield (index into `requests`, generation) as each finishes.

        `constraints[i]` is what request i's output must follow (None: free text). Requests whose
        prompt does not fit the context yield a 'too_long' generation instead of failing the batch. In the
        throughput schedule the lists are read again after every yield: a caller may append requests (a
        retry, say), and they join the running batch; and it may append to `withdrawn` the indices it no
        longer wants, which are then not started, or stopped and not yielded (a backend that cannot stop
        one may still yield it).
        """

    @property
    def occupancy(self) -> Occupancy:
        """What the engine's steps have run since it started (all zeros where it cannot be measured)."""
        return Occupancy()

    def close(self) -> None:  # noqa: B027 -- optional: a backend without resources keeps this
        """Release the model (processes, memory). Safe to call twice."""


def load_backend(name: str) -> type[Backend]:
    """The backend class registered under `name` (imported now, not at `import engine`)."""
    if name not in BACKENDS:
        raise ConfigError(
            f"Unsupported backend {name!r}; available: {', '.join(sorted(BACKENDS))}.",
            parameter="backend",
            value=name,
        )
    module_name, class_name = BACKENDS[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)


@contextlib.contextmanager
def scoped_environ(name: str, value: str) -> Iterator[None]:
    """Set one environment variable for the `with` block (what starts inside inherits it), then put the
    old value, or its absence, back."""
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old
