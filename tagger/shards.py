"""Sharded, resumable InsTag tagging of a whole dataset (Lu et al., ICLR 2024, §3.1, at corpus scale).

A run directory holds, in the order they are written:

    run_config.json           the command and what the run depends on (input, query options, shard size,
                              model, prompt): RunDir.claim
    queries/queries-00000.jsonl ...   the dataset's queries, `shard_size` per file, streamed from the input
    queries/plan.json         query and shard counts                                  -> marker `queries`
    shards/tags-00000.jsonl ...       tagged rows of each query shard              -> marker `tags-00000`
    tags.jsonl                all shards merged in order                               -> marker `merge`

Each output is written atomically before its completion marker (datatrove's rule), so a killed run
resumes at the first unfinished shard; with the request cache even the shard that was in flight replays
its finished requests. The local driver is `tag_pending_shards`; a cluster driver uses the same pieces:
`run.pending_shards()`, `run.read_shard(k)`, `tag_shard(engine, queries, config)`, `run.write_shard(k, rows)`.

    run = TagRun("runs/tags", settings={...}); run.prepare("data.jsonl", shard_size=1000)
    tag_pending_shards(engine, run, TagConfig()); run.merge()
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from engine.errors import ConfigError
from engine.run.directory import RunDir
from engine.run.io import atomic_writer, to_json_line, write_json, write_jsonl
from engine.run.progress import progress
from engine.types import Runner
from tagger.queries import Query, QueryStats, iter_queries
from tagger.tagging import TagConfig, tag_shard

DEFAULT_SHARD_SIZE = 1000  # queries per shard: one engine batch, one output file, one completion marker
SHARD_SLOTS = 4  # throughput schedule: a shard is this many times what the engine runs at once


def input_fingerprint(path: str | os.PathLike) -> dict[str, Any]:
    """Path, total size and content hash of an input file or folder: changes when the data does, not
    when an upstream step rewrites the same bytes (a rerun of the generator before `tag`)."""
    from engine.run.fingerprints import fingerprint

    path = Path(path).resolve()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return {"path": str(path), "bytes": sum(p.stat().st_size for p in files), "xxh128": fingerprint(files)}


class TagRun:
    """The run directory of one tagging job (see the module docstring for its layout).

    `settings` are what the outputs depend on; a rerun into the same folder with different settings is
    refused rather than mixing shards of two configurations.
    """

    def __init__(self, out: str | os.PathLike, *, settings: dict[str, Any]):
        self.dir = RunDir(out)
        self.path = self.dir.path
        self.dir.claim("tag", settings)
        self.settings = settings

    def query_path(self, k: int) -> Path:
        return self.path / "queries" / f"queries-{k:05d}.jsonl"

    def shard_path(self, k: int) -> Path:
        return self.path / "shards" / f"tags-{k:05d}.jsonl"

    @property
    def merged_path(self) -> Path:
        return self.path / "tags.jsonl"

    def prepare(
        self,
        input_path: str | os.PathLike,
        *,
        shard_size: int = DEFAULT_SHARD_SIZE,
        query_field: str | None = None,
        id_field: str = "id",
    ) -> dict[str, Any]:
        """Stream the input into query shards (once per run); return the plan (counts)."""
        if not isinstance(shard_size, int) or shard_size < 1:
            raise ConfigError(
                f"`shard_size` must be an int >= 1, got {shard_size!r}.",
                parameter="shard_size",
                value=shard_size,
            )
        plan_path = self.path / "queries" / "plan.json"
        if self.dir.is_done("queries"):
            return json.loads(plan_path.read_text(encoding="utf-8"))
        stats, shards, chunk = QueryStats(), 0, []
        for query in progress(
            iter_queries(input_path, query_field=query_field, id_field=id_field, stats=stats),
            desc="reading queries",
            unit="query",
        ):
            chunk.append(query.to_dict())
            if len(chunk) == shard_size:
                write_jsonl(self.query_path(shards), chunk)
                shards, chunk = shards + 1, []
        if chunk:
            write_jsonl(self.query_path(shards), chunk)
            shards += 1
        plan = {
            "queries": stats.queries,
            "shards": shards,
            "shard_size": shard_size,
            "input": {
                "records": stats.records,
                "records_without_user_turn": stats.records_without_user_turn,
                "empty_queries": stats.empty_queries,
            },
        }
        write_json(plan_path, plan)
        self.dir.mark_done("queries")
        return plan

    @property
    def plan(self) -> dict[str, Any]:
        return json.loads((self.path / "queries" / "plan.json").read_text(encoding="utf-8"))

    def shard_done(self, k: int) -> bool:
        return self.dir.is_done(f"tags-{k:05d}")

    def pending_shards(self) -> list[int]:
        return [k for k in range(self.plan["shards"]) if not self.shard_done(k)]

    def read_shard(self, k: int) -> list[Query]:
        with open(self.query_path(k), encoding="utf-8") as f:
            return [Query.from_dict(json.loads(line)) for line in f if line.strip()]

    def write_shard(self, k: int, rows: list[dict[str, Any]]) -> None:
        """Outputs first, completion marker last."""
        write_jsonl(self.shard_path(k), rows)
        self.dir.mark_done(f"tags-{k:05d}")

    def iter_rows(self) -> Iterator[dict[str, Any]]:
        """Every tagged row, shard by shard, in query order (all shards must be done)."""
        for k in range(self.plan["shards"]):
            with open(self.shard_path(k), encoding="utf-8") as f:
                yield from (json.loads(line) for line in f if line.strip())

    def merge(self) -> dict[str, Any]:
        """Concatenate the shards into tags.jsonl (streamed, atomic); return the output counts."""
        pending = self.pending_shards()
        if pending:
            raise ConfigError(
                f"cannot merge: {len(pending)} shards are not tagged yet (first: {pending[0]}).",
                parameter="shards",
                value=pending[:5],
            )
        counts: Counter[str] = Counter()
        with atomic_writer(self.merged_path) as out:
            for row in self.iter_rows():
                counts["rows"] += 1
                counts["tags"] += len(row["tags"])
                counts[f"failed_{row['failure']}" if row["failure"] else "tagged"] += 1
                out.write(to_json_line(row))
        self.dir.mark_done("merge")
        return dict(sorted(counts.items()))


def tag_pending_shards(
    engine: Runner, run: TagRun, config: TagConfig, *, tag: Callable[..., list[dict[str, Any]]] = tag_shard
) -> dict[str, Any]:
    """The local driver: tag every unfinished shard in order; return how many queries ran and how fast.

    The bar counts queries (rate = samples/s, ETA over the whole run, resumed shards counted as done).
    """
    plan, pending = run.plan, run.pending_shards()
    done_queries = plan["queries"] - sum(_shard_len(k, plan) for k in pending)
    tagged, start = 0, time.perf_counter()
    with progress(total=plan["queries"], initial=done_queries, desc="tagging", unit="query") as bar:
        for k in pending:
            rows = tag(engine, run.read_shard(k), config)
            run.write_shard(k, rows)
            tagged += len(rows)
            bar.update(len(rows))
    seconds = time.perf_counter() - start
    return {
        "shards_run": len(pending),
        "queries_run": tagged,
        "seconds": round(seconds, 2),
        "samples_per_second": round(tagged / seconds, 3) if tagged and seconds else None,
    }


def _shard_len(k: int, plan: dict[str, Any]) -> int:
    """Queries in shard k: all full but the last."""
    last = plan["queries"] - plan["shard_size"] * (plan["shards"] - 1)
    return last if k == plan["shards"] - 1 else plan["shard_size"]
