"""The request cache: content-addressed, one SQLite file, written as each request finishes.

The key hashes everything that can change a completion: the model's identity (name and weights
fingerprint), the messages or prompt, every sampling setting (seed included), the output schema and the
prompt-format version. It leaves out what cannot (batch size, progress options, post-processing), so
fixing a filter does not throw away generations. A rerun of the same command is served from here and
costs zero model calls; a crash loses at most the requests in flight.

Each engine call that generates is a batch: its entries carry the batch id, and the batch is marked
finished when the call returns. On CPU a completion can depend on what else shares its batch, so a
rerun after a kill regenerates the interrupted batch whole (see `Engine`), not just its missing part.

    cache = RequestCache(Path("~/.cache/instructforge/requests.sqlite"))
    key = request_key(model_id, request, spec)
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import xxhash

from engine.errors import ConfigError
from engine.structured import OutputSpec
from engine.types import Request

KEY_VERSION = "1"
"""Version of the key layout itself; bump only if `request_key` changes what it hashes."""


def canonical_json(value: Any) -> bytes:
    """Sorted-key, whitespace-free JSON; refuses values it cannot represent exactly."""
    try:
        return json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        ).encode("utf-8")
    except (TypeError, ValueError) as e:
        # A random fallback key would make the cache miss silently; refuse instead.
        raise ConfigError(f"Cannot build a cache key: {e}", parameter="request", value=value) from e


def request_key(model_id: str, request: Request, spec: OutputSpec | None) -> str:
    """128-bit xxhash of the canonical request payload (hex, 32 chars)."""
    payload = {
        "key_version": KEY_VERSION,
        "model": model_id,
        "messages": list(request.messages) if request.messages is not None else None,
        "prompt": request.prompt,
        "sampling": request.sampling.to_dict(),
        "schema": spec.schema if spec is not None else None,
        "format_version": request.format_version,
    }
    if spec is not None and spec.constraint.kind != "json":  # JSON keys stay as they were before kinds
        payload["constraint"] = {"kind": spec.constraint.kind, "value": spec.constraint.value}
    return xxhash.xxh128_hexdigest(canonical_json(payload))


SQLITE_MAX_PARAMS = 500  # below SQLite's historical 999 bound parameters per statement


def open_sqlite(path: Path) -> sqlite3.Connection:
    """How every cache opens its SQLite file: folder made, one connection its threads share (callers hold
    a lock), WAL so readers in other processes work alongside, NORMAL sync (WAL keeps commits crash-safe),
    a 60 s busy timeout."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, check_same_thread=False, timeout=60)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    return db


def chunks(keys: Sequence[Any], size: int = SQLITE_MAX_PARAMS) -> Iterator[Sequence[Any]]:
    """`keys` in slices small enough for one `IN (?, ...)` statement."""
    for start in range(0, len(keys), size):
        yield keys[start : start + size]


class RequestCache:
    """Key -> raw generation record (completion texts, finish reasons, token counts).

    Parsed objects are not stored: they are re-derived from the text, so validation fixes apply to old
    entries too. Safe for one writer per process; WAL lets readers in other processes work alongside.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path).expanduser()
        self._lock = threading.Lock()
        self._db = open_sqlite(self.path)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS generations ("
            "key TEXT PRIMARY KEY, record TEXT NOT NULL, created REAL NOT NULL)"
        )
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(generations)")}
        if "batch" not in columns:  # caches written before batches were recorded: entries count as finished
            self._db.execute("ALTER TABLE generations ADD COLUMN batch TEXT")
        self._db.execute("CREATE TABLE IF NOT EXISTS unfinished_batches (batch TEXT PRIMARY KEY)")
        self._db.commit()

    def get_many(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        """The cached records among `keys` (missing keys are absent from the result)."""
        return {key: record for key, (record, _) in self.lookup(keys).items()}

    def lookup(self, keys: list[str]) -> dict[str, tuple[dict[str, Any], bool]]:
        """key -> (record, finished): `finished` is False for an entry of a batch that was interrupted."""
        found: dict[str, tuple[dict[str, Any], bool]] = {}
        unique = list(dict.fromkeys(keys))
        with self._lock:
            for chunk in chunks(unique):
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(
                    f"SELECT key, record, batch IN (SELECT batch FROM unfinished_batches) "
                    f"FROM generations WHERE key IN ({marks})",
                    chunk,
                )
                found.update((k, (json.loads(r), not unfinished)) for k, r, unfinished in rows)
        return found

    def begin_batch(self, batch: str) -> None:
        """Record `batch` as unfinished until `end_batch`; a kill leaves it so."""
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO unfinished_batches VALUES (?)", (batch,))
            self._db.commit()

    def end_batch(self, batch: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM unfinished_batches WHERE batch = ?", (batch,))
            self._db.commit()

    def put(self, key: str, record: dict[str, Any], batch: str | None = None) -> None:
        """Store one finished request; committed at once so a crash keeps it.

        The first entry for a key wins: on CPU a greedy completion can differ with batch composition, so a
        second process racing on the same request must not replace what earlier runs already replayed.
        """
        import time

        with self._lock:
            # A replayed entry keeps its record but joins the batch that replayed it (once that batch
            # finishes, the entry counts as finished).
            self._db.execute(
                "INSERT INTO generations VALUES (?, ?, ?, ?) ON CONFLICT(key) DO UPDATE SET "
                "batch = excluded.batch WHERE generations.batch IN "
                "(SELECT batch FROM unfinished_batches)",
                (key, json.dumps(record, ensure_ascii=False), time.time(), batch),
            )
            self._db.commit()

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM generations").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()
