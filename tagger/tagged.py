"""Reading tagged queries back: the rows `instructforge tag` or `normalize` wrote (InsTag, Lu et al. 2024).

A row is `{"id", "turn", "query"?, "tags", "failure"?}` with `tags` either `[{"tag", "explanation"}]`
(raw tagger output) or `["tag", ...]` (normalized). Rows with a `failure` were never tagged and are
skipped (and counted). A run directory of `tag` or `normalize` may be given instead of its tags.jsonl.

    tagged = load_tag_sets("runs/tags")      # tagged.tag_sets[i] = the i-th tagged query's tags
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.run.io import Record, UniqueIds, read_records


def resolve_tags_path(path: str | os.PathLike) -> Path:
    """A tags file, or the tags.jsonl inside a `tag` / `normalize` run directory."""
    path = Path(path)
    if path.is_dir() and (path / "tags.jsonl").is_file():
        return path / "tags.jsonl"
    return path


def row_tags(record: Record) -> list[str]:
    """The distinct tag strings of one row, in order, whitespace-trimmed, empty ones dropped."""
    items = record.require("tags", list)
    tags = []
    for i, item in enumerate(items):
        tag = item.get("tag") if isinstance(item, dict) else item
        if not isinstance(tag, str):
            raise record.error(f'item {i} must be a string or {{"tag": str, ...}}, got {item!r}', "tags")
        tag = tag.strip()
        if tag:
            tags.append(sys.intern(tag))  # a tag repeats across many queries: store it once
    return list(dict.fromkeys(tags))


def iter_tagged(path: str | os.PathLike) -> Iterator[tuple[Record, list[str] | None]]:
    """(record, its tags) for every row in file order; tags is None for a row whose tagging failed.

    Rows are keyed by (id, turn): a key seen before is refused (it would merge two samples' tags)."""
    keys = UniqueIds()
    for record in read_records(resolve_tags_path(path)):
        turn = record.data.get("turn", 0)
        if not isinstance(turn, int) or isinstance(turn, bool):
            raise record.error(f"must be an int, got {type(turn).__name__}", "turn")
        if "id" in record.data:
            keys.check(record, record.data["id"], turn, what=f" for turn {turn}")
        yield record, None if record.data.get("failure") else row_tags(record)


@dataclass
class TagSets:
    """The tags of every successfully tagged query of one file, in file order."""

    tag_sets: list[list[str]] = field(default_factory=list)
    keys: list[tuple[Any, int]] = field(default_factory=list)
    """(id, turn) of each tagged query."""
    failed: int = 0

    def __len__(self) -> int:
        return len(self.tag_sets)


def load_tag_sets(path: str | os.PathLike, *, keep_keys: bool = True) -> TagSets:
    """Tags per tagged query (query texts are not kept: a second pass can stream them)."""
    out = TagSets()
    for record, tags in iter_tagged(path):
        if tags is None:
            out.failed += 1
            continue
        out.tag_sets.append(tags)
        if keep_keys:
            out.keys.append((record.data.get("id", record.line), record.data.get("turn", 0)))
    return out
