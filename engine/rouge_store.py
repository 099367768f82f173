"""Pool storage and inverted index behind engine.rouge.RougeFilter: growable arrays, global element order.

The pool is kept as flat token-id arrays (CSR: `ptok[poff[j]:poff[j+1]]` = entry j), plus each entry's
elements (token, occurrence) sorted rarest-first, plus an inverted index over those elements' prefixes:
a CSR "base" built in one pass, and a "delta" of linked postings for entries added since. When the delta
outgrows half the base, or most elements were ranked only by arrival, the element order is recomputed
from the current frequencies and the base rebuilt (geometric, so amortized linear). Memory is linear in
the pool's tokens; nothing is pool x pool.

    store = PoolStore(0.7, threads=2, tokenize=tokenize_default)  # used by RougeFilter only
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numba import set_num_threads, typed, types

from engine import rouge_kernel as K


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
    def __init__(self, threshold: float, threads: int, tokenize: Callable[[str], list[str]]) -> None:
        self.t, self.tl, self.threads, self.tokenize = threshold, threshold - K.SLACK, threads, tokenize
        self.vocab: dict[str, int] = {}
        self.first = np.full(0, -1, np.int64)        # token id -> element id of its first occurrence
        self.repeats = typed.Dict.empty(types.int64, types.int64)  # (occurrence << 32 | token) -> element
        self.n_elems = 0
        self.rank = np.zeros(0, np.int64)            # element -> position in the global order (low = rare)
        self.rank_floor = 0                          # elements met after a rebuild rank below every older one
        self.ranked = 0                              # elements ordered by frequency at the last rebuild
        self.n = 0                                   # pool entries
        self.ptok = np.zeros(0, np.int32)
        self.pelm = np.zeros(0, np.int32)
        self.poff = np.zeros(1, np.int64)
        self.plen = np.zeros(0, np.int32)
        self.base = (np.zeros(1, np.int64), np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0, np.int32), 0)
        self.dhead = np.zeros(0, np.int32)
        self.dnext = self.dpid = self.dpos = self.dlen = np.zeros(0, np.int32)
        self.dcount = 0
        self.occ = np.zeros(0, np.int32)             # scratch for occurrence counting
        self.mask1 = np.zeros((threads, 0), np.uint64)
        self.loc = np.full((threads, 0), -1, np.int32)
        self.stamp = np.full((threads, 0), -1, np.int64)
        self.qid = 0
        self.work = np.zeros((threads, 3), np.int64)  # postings visited, bound-pruned, scored (per thread)

    # -- encoding ---------------------------------------------------------------------------------
    def encode(self, texts: list[str]) -> Encoded:
        vocab = self.vocab
        token_lists = [self.tokenize(text) for text in texts]
        ids = [vocab.setdefault(w, len(vocab)) for words in token_lists for w in words]
        tok = np.array(ids, np.int32)
        off = np.zeros(len(texts) + 1, np.int64)
        np.cumsum([len(words) for words in token_lists], out=off[1:])
        v = len(vocab)
        self.first = _grow(self.first, v, -1)
        self.occ = _grow(self.occ, v, 0)
        self.mask1 = _grow(self.mask1, v, 0)
        self.loc = _grow(self.loc, v, -1)
        old = self.n_elems
        elm, self.n_elems = K.assign_elements(tok, off, self.first, self.occ, self.repeats, old)
        elm = elm.astype(np.int32, copy=False)
        new = self.n_elems - old
        self.rank = _grow(self.rank, self.n_elems, 0)
        self.rank[old:self.n_elems] = np.arange(self.rank_floor - new, self.rank_floor)
        self.rank_floor -= new
        self.dhead = _grow(self.dhead, self.n_elems, -1)
        K.sort_by_rank(elm, off, 0, self.rank)
        return Encoded(tok, elm, off)

    # -- storage ----------------------------------------------------------------------------------
    def _reserve(self, entries: int, tokens: int) -> None:
        n, used = self.n, int(self.poff[self.n])
        self.ptok = _grow(self.ptok, used + tokens)
        self.pelm = _grow(self.pelm, used + tokens)
        self.poff = _grow(self.poff, n + entries + 1)
        self.plen = _grow(self.plen, n + entries)
        self.stamp = _grow(self.stamp, n + entries, -1)
        need = self.dcount + tokens
        self.dnext, self.dpid, self.dpos, self.dlen = (
            _grow(a, need) for a in (self.dnext, self.dpid, self.dpos, self.dlen))

    @property
    def _pool(self):
        return self.ptok, self.poff, self.plen

    @property
    def _delta(self):
        return self.dhead, self.dnext, self.dpid, self.dpos, self.dlen

    def add(self, enc: Encoded) -> None:
        count = len(enc.off) - 1
        self._reserve(count, len(enc.tok))
        self.dcount = K.append_all(enc.tok, enc.elm, enc.off, self._pool, self.pelm, self.n, self._delta,
                                   self.dcount, self.tl)
        self.n += count

    # -- index ------------------------------------------------------------------------------------
    def _maybe_rebuild(self, enc: Encoded, c0: int) -> None:
        """Rebuild the base index when the delta outgrew half of it; re-rank first if the order is stale."""
        stale = self.n_elems - self.ranked > self.ranked  # most elements are ordered only by arrival
        if not stale and self.dcount <= len(self.base[1]) // 2 + 1024:
            return
        if stale:  # global order = ascending frequency over the pool and the candidates still to decide
            used = int(self.poff[self.n])
            counts = np.bincount(self.pelm[:used], minlength=self.n_elems)
            counts += np.bincount(enc.elm[enc.off[c0]:], minlength=self.n_elems)
            self.rank[np.argsort(counts, kind="stable")] = np.arange(self.n_elems)
            self.rank_floor, self.ranked = 0, self.n_elems
            K.sort_by_rank(self.pelm, self.poff[:self.n + 1], 0, self.rank)
            K.sort_by_rank(enc.elm, enc.off, c0, self.rank)
        self.base = (*K.build_base(self.pelm, self.poff, self.n, self.n_elems, self.tl), self.n)
        self.dhead[:] = -1
        self.dcount = 0

    # -- kernels ----------------------------------------------------------------------------------
    def decide(self, enc: Encoded, c0: int, c1: int, best_j, best_s, keep, pos) -> None:
        """Greedy decisions for candidates c0..c1-1 (see rouge_kernel.greedy_chunk); kept ones are stored."""
        self._maybe_rebuild(enc, c0)
        self._reserve(c1 - c0, int(enc.off[c1] - enc.off[c0]))
        set_num_threads(self.threads)
        qid = self.qid
        self.qid += 2 * (c1 - c0)
        K.probe_chunk(enc.tok, enc.elm, enc.off, c0, c1, self.n, self.t, self.tl, self._pool, self.base,
                      self._delta, self.mask1, self.loc, self.stamp, qid - c0, self.work, best_j, best_s)
        self.n, self.dcount = K.greedy_chunk(
            enc.tok, enc.elm, enc.off, c0, c1, self.n, self.t, self.tl, self._pool, self.pelm, self.base,
            self._delta, self.dcount, self.mask1[0], self.loc[0], self.stamp[0], qid + (c1 - c0) - c0,
            self.work[0], best_j, best_s, keep, pos)

    def details(self, enc: Encoded, cands: np.ndarray, limits: np.ndarray, k: int):
        """Exact top-k (indices, scores) and score sums of kept candidates against entries 0..limit-1."""
        top_j = np.full((len(cands), k), -1, np.int64)
        top_s = np.full((len(cands), k), -1.0)
        sums = np.zeros(len(cands))
        set_num_threads(self.threads)
        K.details_chunk(enc.tok, enc.off, cands.astype(np.int64), limits.astype(np.int64), self._pool,
                        self.mask1, self.loc, top_j, top_s, sums)
        return top_j, top_s, sums
