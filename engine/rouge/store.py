"""Pool storage and inverted index behind engine.rouge.filter.RougeFilter: growable arrays, global element
order.

The pool is kept as flat token-id arrays (CSR: `ptok[poff[j]:poff[j+1]]` = entry j), plus each entry's
elements (token, occurrence) sorted rarest-first, plus an inverted index over those elements' prefixes in
three levels, like a log-structured merge: a sorted "base" over the oldest entries, a sorted "mid" over
the entries since, rebuilt before each chunk of candidates, and a "delta" of linked postings for entries
accepted within the chunk. When the mid outgrows an eighth of the base, the base is rebuilt over
everything (geometric growth: amortized linear); when most elements were ranked only by arrival, the
element order is first recomputed from current frequencies. Memory is linear in the pool's tokens.

    store = PoolStore(0.7, threads=2, tokenize=tokenize_default)  # used by RougeFilter only
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numba import set_num_threads, typed, types

from engine.rouge import index as rouge_index
from engine.rouge import kernel as rouge_kernel
from engine.rouge import lcs as rouge_lcs

# Below these sizes a parallel launch costs more than it saves (thread wake-up, barrier).
PARALLEL_MIN_CANDIDATES = 64
PARALLEL_MIN_PAIRS = 1 << 18


@dataclass
class Encoded:
    """A batch of texts as kernels see them: tokens and rarest-first elements, CSR by `off`."""

    tok: np.ndarray  # int32 token ids
    elm: np.ndarray  # int32 element ids, each entry's segment sorted by rank
    off: np.ndarray  # int64, len(texts) + 1


def _grow(arr: np.ndarray, need: int, fill=None) -> np.ndarray:
    """`arr` with a last axis of at least `need` (doubling), new cells set to `fill`."""
    size = arr.shape[-1]
    if size >= need:
        return arr
    new = np.empty(arr.shape[:-1] + (max(need, 2 * size, 16),), arr.dtype)
    new[..., :size] = arr
    if fill is not None:
        new[..., size:] = fill
    return new


class PoolStore:
    """The pool as arrays, its index, and per-thread scratch; `decide` and `details` run the kernels."""

    def __init__(self, threshold: float, threads: int, tokenize: Callable[[str], list[str]]) -> None:
        self.t, self.tl = threshold, threshold - rouge_index.SLACK
        self.threads, self.tokenize = threads, tokenize
        self.vocab: dict[str, int] = {}
        self.first = np.full(0, -1, np.int64)  # token id -> element id of its first occurrence
        self.repeats = typed.Dict.empty(types.int64, types.int64)  # (occurrence << 32 | token) -> element
        self.n_elems = 0
        self.rank = np.zeros(0, np.int64)  # element -> position in the global order (low = rare)
        self.rank_floor = 0  # elements met after a rebuild rank below every older one
        self.ranked = 0  # elements ordered by frequency at the last rebuild
        self.n = 0  # pool entries
        self.ptok = np.zeros(0, np.int32)
        self.pelm = np.zeros(0, np.int32)
        self.poff = np.zeros(1, np.int64)
        self.plen = np.zeros(0, np.int32)
        self.base = self.mid = rouge_index.build_index(self.pelm, self.poff, 0, 0, 0, self.tl)
        self.dhead = np.zeros(0, np.int32)
        self.dnext = self.dpid = self.dpos = self.dlen = np.zeros(0, np.int32)
        self.dcount = 0
        self.occ = np.zeros(0, np.int32)  # scratch for occurrence counting
        # per-thread scratch: the candidate's match masks by token (see rouge_lcs.set_query), pair states and
        # the entries met (see rouge_kernel._meet), and work counters (postings visited, cut, scored)
        self.mask1 = np.zeros((threads, 0), np.uint64)
        self.loc = np.full((threads, 0), -1, np.int32)
        self.seen = np.zeros((threads, 0), np.uint8)
        self.touched = np.zeros((threads, 0), np.int32)
        self.work = np.zeros((threads, 3), np.int64)

    # -- encoding ---------------------------------------------------------------------------------
    def encode(self, texts: list[str], block: int = 1 << 16) -> Encoded:
        """Token ids (new words get new ids) and rarest-first element ids of `texts`."""
        vocab, tokenize = self.vocab, self.tokenize
        toks, lengths = [], []
        for b in range(0, len(texts), block):  # in blocks: Python lists of a million texts' tokens are big
            token_lists = [tokenize(text) for text in texts[b : b + block]]
            toks.append(
                np.array([vocab.setdefault(w, len(vocab)) for words in token_lists for w in words], np.int32)
            )
            lengths += map(len, token_lists)
        tok = np.concatenate(toks) if toks else np.zeros(0, np.int32)
        off = np.zeros(len(texts) + 1, np.int64)
        np.cumsum(lengths, out=off[1:])
        v = len(vocab)
        self.first = _grow(self.first, v, -1)
        self.occ = _grow(self.occ, v, 0)
        self.mask1 = _grow(self.mask1, v, 0)
        self.loc = _grow(self.loc, v, -1)
        old = self.n_elems
        elm, self.n_elems = rouge_index.assign_elements(tok, off, self.first, self.occ, self.repeats, old)
        elm = elm.astype(np.int32, copy=False)
        new = self.n_elems - old
        self.rank = _grow(self.rank, self.n_elems, 0)
        self.rank[old : self.n_elems] = np.arange(self.rank_floor - new, self.rank_floor)
        self.rank_floor -= new
        self.dhead = _grow(self.dhead, self.n_elems, -1)
        rouge_index.sort_by_rank(elm, off, 0, self.rank)
        return Encoded(tok, elm, off)

    # -- storage ----------------------------------------------------------------------------------
    def _reserve(self, entries: int, tokens: int) -> None:
        n, used = self.n, int(self.poff[self.n])
        self.ptok = _grow(self.ptok, used + tokens)
        self.pelm = _grow(self.pelm, used + tokens)
        self.poff = _grow(self.poff, n + entries + 1)
        self.plen = _grow(self.plen, n + entries)
        self.seen = _grow(self.seen, n + entries, 0)
        self.touched = _grow(self.touched, n + entries)
        need = self.dcount + tokens
        self.dnext, self.dpid, self.dpos, self.dlen = (
            _grow(a, need) for a in (self.dnext, self.dpid, self.dpos, self.dlen)
        )

    @property
    def _pool(self):
        return self.ptok, self.poff, self.plen

    @property
    def _delta(self):
        return self.dhead, self.dnext, self.dpid, self.dpos, self.dlen

    def add(self, enc: Encoded) -> None:
        count = len(enc.off) - 1
        self._reserve(count, len(enc.tok))
        self.dcount = rouge_index.append_all(
            enc.tok, enc.elm, enc.off, self._pool, self.pelm, self.n, self._delta, self.dcount, self.tl
        )
        self.n += count

    # -- index ------------------------------------------------------------------------------------
    def _reindex(self, enc: Encoded, c0: int) -> None:
        """Index every entry in base + mid before a chunk (the delta then starts empty)."""
        stale = self.n_elems - self.ranked > self.ranked  # most elements are ordered only by arrival
        if stale:  # global order = ascending frequency over the pool and the candidates still to decide
            used = int(self.poff[self.n])
            counts = np.bincount(self.pelm[:used], minlength=self.n_elems)
            counts += np.bincount(enc.elm[enc.off[c0] :], minlength=self.n_elems)
            self.rank[np.argsort(counts, kind="stable")] = np.arange(self.n_elems)
            self.rank_floor, self.ranked = 0, self.n_elems
            rouge_index.sort_by_rank(self.pelm, self.poff[: self.n + 1], 0, self.rank)
            rouge_index.sort_by_rank(enc.elm, enc.off, c0, self.rank)
        nbase = self.base[6]
        if stale or int(self.poff[self.n] - self.poff[nbase]) > int(self.poff[nbase]) // 8 + 4096:
            self.base = rouge_index.build_index(self.pelm, self.poff, 0, self.n, self.n_elems, self.tl)
            nbase = self.n
        if self.mid[5:] != (nbase, self.n):
            self.mid = rouge_index.build_index(self.pelm, self.poff, nbase, self.n, self.n_elems, self.tl)
        if self.dcount:
            self.dhead[:] = -1
            self.dcount = 0

    # -- kernels ----------------------------------------------------------------------------------
    def decide(self, enc: Encoded, c0: int, c1: int, best_j, best_s, keep, pos) -> None:
        """Greedy decisions for candidates c0..c1-1 (see rouge_kernel.greedy_chunk); kept ones are stored."""
        self._reindex(enc, c0)
        self._reserve(c1 - c0, int(enc.off[c1] - enc.off[c0]))
        # phase 1, parallel: each candidate against the pool as it stood before the chunk (worth a thread
        # launch only for enough candidates; otherwise phase 2 probes the whole pool)
        lo = 0
        if self.threads > 1 and self.n > 0 and c1 - c0 >= PARALLEL_MIN_CANDIDATES:
            set_num_threads(self.threads)
            rouge_kernel.probe_chunk(
                enc.tok,
                enc.elm,
                enc.off,
                c0,
                c1,
                self.n,
                self.t,
                self.tl,
                self._pool,
                self.base,
                self.mid,
                self._delta,
                self.mask1,
                self.loc,
                self.seen,
                self.touched,
                self.work,
                best_j,
                best_s,
            )
            lo = self.n
        # phase 2, in order: against the chunk's earlier keeps (and the rest of the pool), then keep or drop
        self.n, self.dcount = rouge_kernel.greedy_chunk(
            enc.tok,
            enc.elm,
            enc.off,
            c0,
            c1,
            self.n,
            lo,
            self.t,
            self.tl,
            self._pool,
            self.pelm,
            self.base,
            self.mid,
            self._delta,
            self.dcount,
            self.mask1[0],
            self.loc[0],
            self.seen[0],
            self.touched[0],
            self.work[0],
            best_j,
            best_s,
            keep,
            pos,
        )

    def details(self, enc: Encoded, cands: np.ndarray, limits: np.ndarray, k: int):
        """Exact top-k (indices, scores) and score sums of kept candidates against entries 0..limit-1."""
        k = max(1, min(k, int(limits.max(initial=0))))  # no wider than the pool
        top_j = np.full((len(cands), k), -1, np.int64)
        top_s = np.full((len(cands), k), -1.0)
        sums = np.zeros(len(cands))
        set_num_threads(self.threads if int(limits.sum()) >= PARALLEL_MIN_PAIRS else 1)
        rouge_lcs.details_chunk(
            enc.tok,
            enc.off,
            cands.astype(np.int64),
            limits.astype(np.int64),
            self._pool,
            self.mask1,
            self.loc,
            top_j,
            top_s,
            sums,
        )
        return top_j, top_s, sums
