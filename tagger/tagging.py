"""InsTag tagging: one schema-constrained request per query (Lu et al., ICLR 2024, §3.1; InsTagger §4).

The tagger answers a JSON list of `{"tag", "explanation"}` naming the query's fine-grained intentions.
Two prompt formats, both in prompts/instag/:

    instagger  the Vicuna v1.1 conversation InsTagger (LLaMA-2-7B) was trained on, as one raw prompt
    chat       a chat-template request with fuller instructions, for any instruct model

Decoding is greedy with 512 new tokens, as InsTagger users run it. `tag_shard` is the unit of work a
driver (tagger/shards.py locally, a Ray backend on a cluster) hands to an engine:

    rows = tag_shard(engine, queries, TagConfig(prompt_format="chat"))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from engine.errors import ConfigError
from engine.types import Request, Runner, Sampling
from prompts import load_template
from tagger.queries import Query

PromptFormat = Literal["chat", "instagger"]
PROMPT_FORMATS = ("chat", "instagger")
MAX_TAGS = 10  # bound on the list; InsTag's pool averages 2.5 tags/query, its Cf-D picks 16.56 per sample
MAX_TAG_CHARS = 64
MAX_EXPLANATION_CHARS = 256
# Bump when a template's meaning changes: the version is part of every request's cache key.
FORMAT_VERSIONS = {"chat": "instag.tag.chat@1", "instagger": "instag.tag.instagger@1"}


class IntentTag(BaseModel):
    """One intention of the user query: a short tag and why it applies."""

    model_config = ConfigDict(extra="forbid")
    tag: str = Field(min_length=1, max_length=MAX_TAG_CHARS)
    explanation: str = Field(max_length=MAX_EXPLANATION_CHARS)


TagList = Annotated[list[IntentTag], Field(min_length=1, max_length=MAX_TAGS)]
"""The output type of every tagging request."""


@dataclass(frozen=True)
class TagConfig:
    """How queries are turned into tagging requests."""

    prompt_format: PromptFormat = "chat"
    """`instagger` for InsTagger checkpoints (Vicuna v1.1 raw prompt), `chat` for any chat model."""
    max_tokens: int = 512
    """New tokens per answer: InsTagger usage (greedy, max 512 new tokens, 2048 context)."""
    last_try_max_tokens: int | None = 2048
    """A verbose model can still be cut off after the engine's own retry at 2 x max_tokens; such answers
    are asked once more with this budget (the schema bounds an answer at ~3.5K characters: 10 tags x
    (64 + 256) plus JSON). None (or a budget <= 2 x max_tokens) keeps them as `truncated` failures.
    Greedy, so the answer starts as the cut-off one did."""
    max_query_chars: int | None = 6000
    """Longer queries are cut to this many characters: InsTagger's 2048-token context minus the
    512-token answer leaves ~1,500 prompt tokens, ~6,000 characters of English. None keeps them whole
    (a prompt that does not fit then fails as `too_long`)."""

    def __post_init__(self) -> None:
        if self.prompt_format not in PROMPT_FORMATS:
            raise ConfigError(
                f"`prompt_format` must be one of {', '.join(PROMPT_FORMATS)}, got {self.prompt_format!r}.",
                parameter="prompt_format",
                value=self.prompt_format,
            )
        if not isinstance(self.max_tokens, int) or self.max_tokens < 16:
            raise ConfigError(
                f"`max_tokens` must be an int >= 16, got {self.max_tokens!r}.",
                parameter="max_tokens",
                value=self.max_tokens,
            )
        if self.last_try_max_tokens is not None and (
            not isinstance(self.last_try_max_tokens, int) or self.last_try_max_tokens < 1
        ):
            raise ConfigError(
                f"`last_try_max_tokens` must be an int >= 1 or None, got {self.last_try_max_tokens!r}.",
                parameter="last_try_max_tokens",
                value=self.last_try_max_tokens,
            )
        if self.max_query_chars is not None and (
            not isinstance(self.max_query_chars, int) or self.max_query_chars < 1
        ):
            raise ConfigError(
                f"`max_query_chars` must be an int >= 1 or None, got {self.max_query_chars!r}.",
                parameter="max_query_chars",
                value=self.max_query_chars,
            )

    @property
    def format_version(self) -> str:
        return FORMAT_VERSIONS[self.prompt_format]


def resolve_prompt_format(requested: str | None, model_name: str) -> PromptFormat:
    """`requested` when given (`chat` | `instagger`), else `instagger` for a model named like InsTagger."""
    if requested in (None, "auto"):
        return "instagger" if "instagger" in model_name.lower() else "chat"
    if requested not in PROMPT_FORMATS:
        raise ConfigError(
            f"`prompt_format` must be auto, chat or instagger, got {requested!r}.",
            parameter="prompt_format",
            value=requested,
        )
    return requested  # type: ignore[return-value]


def build_request(text: str, config: TagConfig, max_tokens: int | None = None) -> Request:
    """The tagging request of one query (greedy, constrained to `TagList`)."""
    if config.max_query_chars is not None:
        text = text[: config.max_query_chars]
    sampling = Sampling(temperature=0.0, max_tokens=max_tokens or config.max_tokens)
    if config.prompt_format == "instagger":
        user_turn = load_template("instag", "query.j2").render(query=text).strip()
        prompt = load_template("instag", "instagger.j2").render(user_turn=user_turn).strip()
        return Request(
            prompt=prompt, sampling=sampling, output_type=TagList, format_version=config.format_version
        )
    content = load_template("instag", "chat.j2").render(query=text).strip()
    return Request(
        messages=[{"role": "user", "content": content}],
        sampling=sampling,
        output_type=TagList,
        format_version=config.format_version,
    )


def tag_shard(engine: Runner, queries: Sequence[Query], config: TagConfig) -> list[dict[str, Any]]:
    """Tag one shard of queries in one engine batch (plus one for answers still cut off); rows in order.

    A row is `{"id", "turn", "query", "tags": [{"tag", "explanation"}], "failure"}` (each tag once, with
    its first explanation; blank tags dropped); a failed request
    (`invalid` / `truncated` / `too_long`) keeps its row with no tags, so nothing is lost silently.
    Rows hold nothing run-dependent (no timings, no cache flags): a resumed run writes the same bytes.
    """
    results = engine.run([build_request(q.text, config) for q in queries])
    cut = [i for i, r in enumerate(results) if r.failure == "truncated"]
    if cut and config.last_try_max_tokens and config.last_try_max_tokens > 2 * config.max_tokens:
        last = engine.run([build_request(queries[i].text, config, config.last_try_max_tokens) for i in cut])
        for i, result in zip(cut, last):
            results[i] = result
    rows = []
    for query, result in zip(queries, results):
        tags: dict[str, str] = {}  # a query's tags are a set: small models repeat one tag to the limit
        for item in result.parsed if result.ok else ():
            if item.tag.strip():
                tags.setdefault(item.tag.strip(), item.explanation.strip())
        rows.append(
            {
                "id": query.id,
                "turn": query.turn,
                "query": query.text,
                "tags": [{"tag": t, "explanation": e} for t, e in tags.items()],
                "failure": result.failure,
            }
        )
    return rows
