"""The queries InsTag tags: every user turn of an SFT dataset, one query each (Lu et al., ICLR 2024, §3.1).

InsTag tags each query of a multi-turn conversation separately; InsTagger users build a single-turn
query as instruction + "\\n" + input. Records are read lazily (engine.run.io.read_records), so a million-row
dataset streams through in constant memory. Shapes recognised per record:

    {"instruction", "input"?, ...}                          Alpaca / Self-Instruct style
    {"conversations": [{"from": "human"|"gpt", "value"}]}  ShareGPT style
    {"messages": [{"role": "user"|..., "content"}]}         OpenAI style
    {"prompt": str}                                         bare prompt

`query_field` overrides detection: a string field is the query; a list field is read as a conversation.

    for query in iter_queries("alpaca.jsonl"): query.id, query.turn, query.text
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from engine.run.chat import user_turns
from engine.run.io import Record, UniqueIds, read_records

SHAPES = "instruction[+input], conversations (ShareGPT), messages (OpenAI) or prompt"


@dataclass(frozen=True)
class Query:
    """One user turn to tag: the sample it came from (its `id`, or its 0-based position when the record
    has none) and the turn's 0-based index among that sample's user turns."""

    id: Any
    turn: int
    text: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> Query:
        return cls(row["id"], int(row["turn"]), row["text"])


@dataclass
class QueryStats:
    """What reading the dataset found: records, queries, and what was skipped and why."""

    records: int = 0
    queries: int = 0
    records_without_user_turn: int = 0
    empty_queries: int = 0
    """User turns whose text is empty or whitespace only: nothing to tag."""


def iter_queries(
    path: str | os.PathLike,
    *,
    query_field: str | None = None,
    id_field: str = "id",
    stats: QueryStats | None = None,
) -> Iterator[Query]:
    """Yield the queries of a dataset in file order; raise InputError (one line) on an unknown shape."""
    stats = stats if stats is not None else QueryStats()
    ids = UniqueIds()  # a tag row is keyed by (id, turn): two samples under one id would merge downstream
    for index, record in enumerate(read_records(path)):
        stats.records += 1
        sample_id = record.data.get(id_field, index)
        what = "" if id_field in record.data else " (its position: it has no id)"
        ids.check(record, sample_id, what=what, field=id_field)
        texts = record_queries(record, query_field)
        if not texts:
            stats.records_without_user_turn += 1
        for turn, text in enumerate(texts):
            if not text.strip():
                stats.empty_queries += 1
                continue
            stats.queries += 1
            yield Query(sample_id, turn, text)


def record_queries(record: Record, query_field: str | None = None) -> list[str]:
    """The user turns of one record, in order (detected shape, or `query_field`)."""
    data = record.data
    if query_field is not None:
        value = record.require(query_field, (str, list))
        return [value] if isinstance(value, str) else user_turns(record, query_field)
    if "instruction" in data:
        instruction = record.require("instruction", str)
        extra = data.get("input")
        if extra is not None and not isinstance(extra, str):
            raise record.error(f"must be a string, got {type(extra).__name__}", "input")
        # InsTagger usage: instruction + "\n" + input when there is an input.
        return [f"{instruction}\n{extra}" if extra and extra.strip() else instruction]
    for field in ("conversations", "messages"):
        if field in data:
            return user_turns(record, field)
    if "prompt" in data:
        return [record.require("prompt", str)]
    raise record.error(
        f"no known query shape (expected {SHAPES}; record has: "
        f"{', '.join(sorted(data)) or 'no fields'}); pass --query-field FIELD"
    )
