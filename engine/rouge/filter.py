"""ROUGE-L near-duplicate filter of SELF-INSTRUCT (Wang et al. 2023, §2.2) and Alpaca: exact and fast.

Upstream keeps a new instruction only if its ROUGE-L F1 (rouge_score, no stemming) against every instruction
already in the pool is <= 0.7; kept ones join the pool at once, and each keeps its 10 most similar pool
instructions and the mean score. `RougeFilter` makes the same decisions (tests compare every one against
rouge_score) with a bit-parallel LCS and prefix filtering that never skips a pair that could exceed the
threshold (engine/rouge/index.py, kernel.py, lcs.py), on all cores, with memory linear in
the pool's token count.

    flt = RougeFilter(0.7); flt.add(seed_instructions); decisions = flt.check(new_instructions)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields

import numpy as np

from engine.errors import ConfigError
from engine.rouge.tokenize import MODES, get_tokenizer, tokenize

__all__ = ["Decision", "FilterStats", "RougeFilter", "best_rouge_l", "rouge_l", "tokenize"]


def rouge_l(a: str, b: str, mode: str = "default") -> float:
    """ROUGE-L F1 of two texts, equal to rouge_score's `score(a, b)["rougeL"].fmeasure` (pure Python)."""
    tok = get_tokenizer(mode)
    x, y = tok(a), tok(b)
    if not x or not y:
        return 0.0
    masks: dict[str, int] = {}
    for i, w in enumerate(x):  # Hyyrö's bit-parallel LCS on Python ints: any length, one pass over y
        masks[w] = masks.get(w, 0) | (1 << i)
    full = (1 << len(x)) - 1
    v = full
    for w in y:
        u = v & masks.get(w, 0)
        v = ((v + u) | (v - u)) & full
    lcs = len(x) - v.bit_count()
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(y), lcs / len(x)  # rouge_score's order of float operations
    return 2 * precision * recall / (precision + recall)


def best_rouge_l(texts: Sequence[str], references: Sequence[str], mode: str = "default") -> list[float]:
    """For each text, its highest ROUGE-L F1 against `references` (e.g. the seed tasks), each score equal
    to rouge_score's to the last bit: the LCS lengths come from rapidfuzz (integers, exact), the F1 from
    them in rouge_score's order of float operations, as `rouge_l` does."""
    from rapidfuzz import process
    from rapidfuzz.distance import LCSseq

    if not texts or not references:
        return [0.0] * len(texts)
    tok = get_tokenizer(mode)
    queries, refs = [tok(t) for t in texts], [tok(r) for r in references]
    lcs = process.cdist(queries, refs, scorer=LCSseq.similarity, workers=-1).astype(np.float64)
    m = np.array([len(q) for q in queries], dtype=np.float64)[:, None]
    n = np.array([len(r) for r in refs], dtype=np.float64)[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        precision, recall = lcs / n, lcs / m
        f1 = 2 * precision * recall / (precision + recall)
    f1[lcs == 0] = 0.0  # rouge_score: no common subsequence (or an empty side) scores 0
    return f1.max(axis=1).tolist()


@dataclass(frozen=True, slots=True)
class Decision:
    """The filter's verdict on one candidate."""

    keep: bool
    """True: the candidate joined the pool. False: a pool entry scores above the threshold."""
    score: float | None
    """Highest F1 against the pool: always set for a drop; for a keep only with `details` (None vs an empty
    pool)."""
    match: str | None
    """Drops: the pool entry with that score (the earliest one on ties)."""
    match_index: int | None
    """Drops: the position of `match` in `RougeFilter.pool`."""
    most_similar: dict[str, float] | None
    """Keeps with `details`: the `top_k` most similar pool entries -> F1, highest first (upstream's
    `most_similar_instructions`; ties in pool order)."""
    avg_similarity: float | None
    """Keeps with `details`: mean F1 over the whole pool it was checked against (upstream's
    `avg_similarity_score`); None for an empty pool."""


@dataclass
class FilterStats:
    """Work counters, summed over every `check`."""

    candidates: int = 0
    kept: int = 0
    dropped: int = 0
    pairs: int = 0
    """Pairs a plain greedy loop scores: each candidate times the pool size it is checked against."""
    postings: int = 0
    """Inverted-index postings read: pool entries sharing one of a candidate's rarest elements."""
    bound_pruned: int = 0
    """Pairs met there but cut without an LCS: by the positional overlap bound, or met only once."""
    scored: int = 0
    """Pairs whose LCS was computed to decide (no other pair of `pairs` could exceed the threshold)."""
    detail_pairs: int = 0
    """Pairs scored for `most_similar` / `avg_similarity` (a full scan per kept candidate)."""

    @property
    def pruned(self) -> int:
        return self.pairs - self.scored

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)} | {"pruned": self.pruned}


class RougeFilter:
    """Greedy ROUGE-L near-duplicate filter over a growing pool (upstream semantics, exact scores).

    Args:
        threshold: a candidate is dropped iff its F1 against some pool entry is strictly greater
            (upstream: 0.7 in SELF-INSTRUCT and Alpaca).
        mode: "default" = rouge_score's tokenizer; "stem" = rouge_score with `use_stemmer=True`;
            "unicode" = all scripts (a deviation, see engine/rouge/tokenize.py).
        top_k: how many most-similar pool entries a kept candidate records (upstream: 10).
        details: compute `most_similar` / `avg_similarity` for kept candidates. That is an exact scan of the
            whole pool per kept candidate, O(kept x pool): cheap to 100K, turn it off for million-row runs.
        workers: threads for the kernels (default: every core numba may use).
        chunk_size: candidates decided per parallel step; progress is reported per chunk.

    `add(texts)` puts texts in the pool unconditionally (e.g. seed tasks). `check(candidates)` decides the
    candidates in order, one `Decision` each, and appends the kept ones to the pool (`pool` lists it).
    """

    def __init__(
        self,
        threshold: float = 0.7,
        *,
        mode: str = "default",
        top_k: int = 10,
        details: bool = True,
        workers: int | None = None,
        chunk_size: int = 4096,
    ) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ConfigError(
                f"threshold must be in [0, 1], got {threshold}.", parameter="threshold", value=threshold
            )
        if mode not in MODES:
            raise ConfigError(
                f"mode must be one of {', '.join(MODES)}, got {mode!r}.", parameter="mode", value=mode
            )
        if top_k < 0:
            raise ConfigError(f"top_k must be >= 0, got {top_k}.", parameter="top_k", value=top_k)
        if chunk_size < 1:
            raise ConfigError(
                f"chunk_size must be >= 1, got {chunk_size}.", parameter="chunk_size", value=chunk_size
            )
        import numba

        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        self.threads = max(1, min(workers or cores, numba.config.NUMBA_NUM_THREADS))
        self.threshold, self.mode, self.top_k, self.details = float(threshold), mode, top_k, details
        self.chunk_size = chunk_size
        self.pool: list[str] = []
        self.stats = FilterStats()
        from engine.rouge.store import PoolStore

        self._store = PoolStore(self.threshold, self.threads, get_tokenizer(mode))

    def __len__(self) -> int:
        return len(self.pool)

    def add(self, texts: Iterable[str]) -> None:
        """Append texts to the pool as they are (no filtering), e.g. the seed instructions."""
        texts = list(texts)
        self._store.add(self._store.encode(texts))
        self.pool.extend(texts)

    def check(
        self, candidates: Sequence[str], *, on_progress: Callable[[int], None] | None = None
    ) -> list[Decision]:
        """Decide candidates in order with upstream's greedy rule; kept ones join the pool at once.

        Returns one Decision per candidate, in input order. `on_progress(n)` is called after each chunk of
        n candidates.
        """
        texts = list(candidates)
        store, stats = self._store, self.stats
        enc = store.encode(texts)
        n = len(texts)
        best_j, best_s = np.full(n, -1, np.int64), np.full(n, -1.0)  # best match above the threshold
        keep, pos = np.zeros(n, np.bool_), np.full(n, -1, np.int64)  # pos: a kept one's pool index
        out: list[Decision] = []
        for c0 in range(0, n, self.chunk_size):
            c1 = min(n, c0 + self.chunk_size)
            work_before, p0 = store.work.sum(axis=0), len(self.pool)
            store.decide(enc, c0, c1, best_j, best_s, keep, pos)
            kept = np.flatnonzero(keep[c0:c1]) + c0
            details = None
            if self.details and len(kept):  # top-1 is also the kept candidate's `score`
                details = store.details(enc, kept, pos[kept], max(self.top_k, 1))
            out += self._decisions(texts, range(c0, c1), keep, best_j, best_s, pos, details)
            work = store.work.sum(axis=0) - work_before
            stats.postings += int(work[0])
            stats.bound_pruned += int(work[1])
            stats.scored += int(work[2])
            stats.pairs += (c1 - c0) * p0 + _pairs_within(keep[c0:c1])
            stats.detail_pairs += int(pos[kept].sum()) if self.details else 0
            stats.candidates += c1 - c0
            stats.kept += len(kept)
            stats.dropped += c1 - c0 - len(kept)
            if on_progress is not None:
                on_progress(c1 - c0)
        return out

    def _decisions(self, texts, chunk, keep, best_j, best_s, pos, details) -> list[Decision]:
        """Decisions for one chunk, appending its kept texts to `pool` in order."""
        pool, out, row = self.pool, [], 0
        if details is not None:
            top_j, top_s, sums = (a.tolist() for a in details)  # Python numbers once, not per row
        for c in chunk:
            if not keep[c]:
                j = int(best_j[c])
                out.append(Decision(False, float(best_s[c]), pool[j], j, None, None))
                continue
            limit = int(pos[c])  # it was checked against pool entries 0..limit-1
            if details is not None and limit:
                shown = min(self.top_k, limit)
                similar = {pool[j]: s for j, s in zip(top_j[row][:shown], top_s[row][:shown])}
                out.append(Decision(True, top_s[row][0], None, None, similar, sums[row] / limit))
            else:
                out.append(Decision(True, None, None, None, {} if self.details else None, None))
            pool.append(texts[c])
            row += 1
        return out


def _pairs_within(keep: np.ndarray) -> int:
    """Pairs a plain loop scores inside one chunk: each candidate against the chunk's earlier keeps."""
    earlier = np.cumsum(keep) - keep
    return int(earlier.sum())
