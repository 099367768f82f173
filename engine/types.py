"""The engine's vocabulary: what a request asks for and what a result holds. No vLLM types here.

req = Request(messages=[{"role": "user", "content": "Name a colour."}],
              sampling=Sampling(temperature=0.7, max_tokens=64, seed=1), output_type=Colour)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from engine.errors import ConfigError, require

if TYPE_CHECKING:
    from collections.abc import Iterable

    from engine.flow import Job, OnResult, Wanted

Failure = Literal["invalid", "truncated", "too_long"]
"""Why a completion has no parsed object: its JSON did not validate, it hit `max_tokens` before the
object closed, or the prompt did not fit the model's context (nothing was generated)."""


@dataclass(frozen=True)
class Sampling:
    """Decoding settings of one request. Every field is part of the request-cache key."""

    temperature: float = 0.0
    """Randomness of sampling; 0 means greedy."""
    top_p: float = 1.0
    """Nucleus sampling: keep the smallest token set whose probability reaches top_p, in (0, 1]."""
    max_tokens: int = 256
    """Most tokens generated per completion."""
    n: int = 1
    """Completions per request (each is its own sample; with a seed the n samples are reproducible)."""
    seed: int | None = None
    """Per-request seed: the same request + seed gives the same completion whatever batch it runs in."""
    presence_penalty: float = 0.0
    """Penalty on tokens already present in the output (Self-Instruct uses 2.0 for bootstrapping)."""
    frequency_penalty: float = 0.0
    """Penalty proportional to how often a token already appeared in the output."""
    stop: tuple[str, ...] = ()
    """Strings that end a completion (not included in its text)."""

    def __post_init__(self) -> None:
        require(self, "temperature", math.isfinite(self.temperature) and self.temperature >= 0, ">= 0")
        require(self, "top_p", 0.0 < self.top_p <= 1.0, "in (0, 1]")
        require(self, "max_tokens", isinstance(self.max_tokens, int) and self.max_tokens >= 1, "an int >= 1")
        require(self, "n", isinstance(self.n, int) and self.n >= 1, "an int >= 1")
        require(self, "seed", self.seed is None or isinstance(self.seed, int), "an int or None")
        require(self, "presence_penalty", -2.0 <= self.presence_penalty <= 2.0, "in [-2, 2]")
        require(self, "frequency_penalty", -2.0 <= self.frequency_penalty <= 2.0, "in [-2, 2]")
        if isinstance(self.stop, str) or not all(isinstance(s, str) for s in self.stop):
            raise ConfigError(
                f"`stop` must be a tuple of strings, got {self.stop!r}.", parameter="stop", value=self.stop
            )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "stop": list(self.stop)}


@dataclass(frozen=True)
class Request:
    """One prompt for the model: chat `messages` or a raw `prompt` (exactly one of them).

    `output_type` constrains decoding to JSON of that shape: a pydantic model, any type pydantic can
    describe (`list[Item]`, a `Literal`, a TypedDict), or a JSON schema dict. `format_version` names the
    prompt format that built this request; bump it when a template change should invalidate old
    generations (it goes into the cache key, the library version does not).
    """

    messages: tuple[dict[str, str], ...] | list[dict[str, str]] | None = None
    prompt: str | None = None
    sampling: Sampling = field(default_factory=Sampling)
    output_type: Any = None
    format_version: str = ""

    def __post_init__(self) -> None:
        given = sum(x is not None for x in (self.messages, self.prompt))
        if given == 0:
            raise ConfigError("A request needs `messages` or `prompt`; none is specified.")
        if given == 2:
            raise ConfigError("A request takes `messages` or `prompt`; both are specified.")
        if self.prompt is not None and not self.prompt.strip():
            raise ConfigError("`prompt` must not be empty.", parameter="prompt", value=self.prompt)
        if self.messages is not None:
            if not self.messages:
                raise ConfigError("`messages` must not be empty.", parameter="messages", value=[])
            for i, m in enumerate(self.messages):
                if not (
                    isinstance(m, dict)
                    and isinstance(m.get("role"), str)
                    and isinstance(m.get("content"), str)
                ):
                    raise ConfigError(
                        f"`messages[{i}]` must be {{'role': str, 'content': str}}, got {m!r}.",
                        parameter="messages",
                        value=m,
                    )
            object.__setattr__(self, "messages", tuple(dict(m) for m in self.messages))
        if not isinstance(self.sampling, Sampling):
            raise ConfigError(
                f"`sampling` must be a Sampling, got {type(self.sampling).__name__}.",
                parameter="sampling",
                value=self.sampling,
            )


@dataclass
class Completion:
    """One generated completion (a request with n > 1 has n of them)."""

    text: str
    finish_reason: str
    """'stop' (end of sequence or a stop string), 'length' (hit max_tokens) or 'too_long' (prompt did
    not fit the context; nothing generated)."""
    output_tokens: int
    parsed: Any = None
    """The validated object when the request had an output_type and the text conforms."""
    failure: Failure | None = None

    @property
    def ok(self) -> bool:
        return self.failure is None


@dataclass
class Result:
    """The answer to one request: its completions, prompt size and whether it came from the cache."""

    request: Request
    completions: list[Completion]
    prompt_tokens: int
    cached: bool

    @property
    def text(self) -> str:
        return self.completions[0].text

    @property
    def parsed(self) -> Any:
        return self.completions[0].parsed

    @property
    def failure(self) -> Failure | None:
        return self.completions[0].failure

    @property
    def ok(self) -> bool:
        return self.completions[0].ok


@dataclass
class Occupancy:
    """How full the engine ran, read from vLLM's own scheduler: what each engine step scheduled.

    On a GPU a decode step costs about the same for 16 or 256 sequences (it is memory-bound), so the
    number of steps is the cost and the running requests per step are the throughput; the scheduler is
    the same code on CPU and GPU, so these figures measured on CPU are the ones a GPU would see.
    """

    steps: int = 0
    running: int = 0
    """Requests scheduled, summed over steps (prefills and decodes)."""
    tokens: int = 0
    """Tokens computed, summed over steps (prompt and generated)."""
    slots: int = 0
    """The most requests the engine runs at once (vLLM's max_num_seqs; summed over Ray replicas)."""

    @property
    def mean_running(self) -> float:
        return self.running / self.steps if self.steps else 0.0

    @property
    def percent(self) -> float:
        """Mean running requests per step as a share of the slots (per replica on Ray)."""
        return 100.0 * self.running / (self.steps * self.slots) if self.steps and self.slots else 0.0

    @property
    def tokens_per_step(self) -> float:
        return self.tokens / self.steps if self.steps else 0.0

    def __add__(self, other: Occupancy) -> Occupancy:
        return Occupancy(
            self.steps + other.steps,
            self.running + other.running,
            self.tokens + other.tokens,
            max(self.slots, other.slots),
        )

    def __sub__(self, earlier: Occupancy) -> Occupancy:
        return Occupancy(
            self.steps - earlier.steps,
            self.running - earlier.running,
            self.tokens - earlier.tokens,
            self.slots,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "engine_steps": self.steps,
            "slots": self.slots,
            "mean_running": round(self.mean_running, 2),
            "occupancy_pct": round(self.percent, 1),
            "tokens_per_step": round(self.tokens_per_step, 1),
        }

    def summary(self) -> str:
        if not self.steps:
            return "0 engine steps"
        return (
            f"occupancy {self.percent:.0f}% ({self.mean_running:.1f} of {self.slots} slots running, "
            f"{self.tokens_per_step:.0f} tok/step, {self.steps} steps)"
        )


@dataclass
class RunStats:
    """Counters of one engine's life; `summary()` is the run's one-line report."""

    requests: int = 0
    cache_hits: int = 0
    model_calls: int = 0
    prompt_tokens: int = 0
    output_tokens: int = 0
    output_tokens_generated: int = 0
    """Output tokens the model produced in this run (the rest were replayed from the cache)."""
    generation_seconds: float = 0.0
    invalid: int = 0
    truncated: int = 0
    too_long: int = 0
    retried: int = 0
    replayed: int = 0
    """Cached requests of an interrupted batch generated again beside its missing ones (see Engine)."""
    withdrawn: int = 0
    """Flow jobs dropped unanswered because nothing wanted their answer any more (engine/flow.py)."""
    occupancy: Occupancy = field(default_factory=Occupancy)
    """What the engine's steps ran while this engine generated (absent: nothing was generated)."""

    @property
    def tokens_per_second(self) -> float:
        """Output tokens per second of model time (cache hits cost no model time)."""
        return self.output_tokens_generated / self.generation_seconds if self.generation_seconds else 0.0

    def count(self, result: Result) -> None:
        self.requests += 1
        self.cache_hits += result.cached
        self.prompt_tokens += result.prompt_tokens
        for c in result.completions:
            self.output_tokens += c.output_tokens
            if not result.cached:
                self.output_tokens_generated += c.output_tokens
            if c.failure == "invalid":
                self.invalid += 1
            elif c.failure == "truncated":
                self.truncated += 1
            elif c.failure == "too_long":
                self.too_long += 1

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "tokens_per_second": round(self.tokens_per_second, 1),
            "occupancy": self.occupancy.to_dict(),
        }

    def summary(self) -> str:
        if not self.requests:  # a finished run read back, or a run that had nothing to ask
            return "0 requests, 0 model calls: nothing needed the model (done before, or nothing to ask)"
        hit_rate = 100.0 * self.cache_hits / self.requests
        return (
            f"{self.requests} requests, {self.cache_hits} cache hits ({hit_rate:.0f}%), "
            f"{self.model_calls} model calls, {self.prompt_tokens} prompt + {self.output_tokens} "
            f"output tokens, {self.tokens_per_second:.0f} tok/s, {self.invalid} invalid, "
            f"{self.truncated} truncated, {self.too_long} too long, "
            + (f"{self.withdrawn} withdrawn, " if self.withdrawn else "")
            + self.occupancy.summary()
        )


class Runner(Protocol):
    """What a method asks of an engine: the Engine (in-process or on Ray) and the test doubles alike.

    Answer a batch of requests, results in request order; run a flow, jobs whose answers lead to more
    jobs (engine/flow.py); say which schedule batches run on and how many requests run at once (methods
    size their batches by these); keep the run's statistics.
    """

    stats: RunStats

    @property
    def schedule(self) -> str: ...

    @property
    def capacity(self) -> int: ...

    def run(self, requests: Sequence[Request]) -> list[Result]: ...

    def flow(self, jobs: Iterable[Job], on_result: OnResult, wanted: Wanted | None = None) -> None: ...
