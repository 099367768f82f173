"""ROUGE-L scoring kernels: rouge_score's F1 and a bit-parallel LCS over token ids (numba).

The F1 is rouge_score's (`_score_lcs` + `scoring.fmeasure`): P = LCS/n, R = LCS/m, F = 2PR/(P+R), the same
float operations in the same order, so scores are bit-identical. The LCS is Hyyrö's bit-parallel recurrence
(2004; Allison & Dix 1986) V' = (V + (V & M)) | (V - (V & M)) with one machine word per 64 candidate tokens:
the candidate's match masks are loaded once, then each pool entry costs one pass over its tokens.

    local = set_query(tok, 0, m, mask1, loc); n_lcs = lcs(m, mask1, loc, local, ptok, a, b)
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

_ONES = np.uint64(0xFFFFFFFFFFFFFFFF)
_U1 = np.uint64(1)


@njit(cache=True, inline="always")
def _popcount(x):
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return np.int64((x * np.uint64(0x0101010101010101)) >> np.uint64(56))  # int64: uint64 + int64 -> float


@njit(cache=True, inline="always")
def fmeasure(lcs, m, n):
    """rouge_score's `_score_lcs` + `scoring.fmeasure`, operation for operation (m, n > 0)."""
    if lcs == 0:
        return 0.0
    precision = lcs / n
    recall = lcs / m
    return 2.0 * precision * recall / (precision + recall)


@njit(cache=True)
def set_query(qtok, a, m, mask1, loc):
    """Load the candidate's match masks: mask1[token] bits (m <= 64), or loc[token] -> row of a local
    table."""
    if m <= 64:
        for i in range(m):
            mask1[qtok[a + i]] |= _U1 << np.uint64(i)
        return np.zeros((0, 0), np.uint64)
    nd = 0
    for i in range(m):
        if loc[qtok[a + i]] < 0:
            loc[qtok[a + i]] = nd
            nd += 1
    words = (m + 63) // 64
    local = np.zeros((nd, words), np.uint64)
    for i in range(m):
        local[loc[qtok[a + i]], i // 64] |= _U1 << np.uint64(i % 64)
    return local


@njit(cache=True)
def clear_query(qtok, a, m, mask1, loc):
    for i in range(m):
        mask1[qtok[a + i]] = 0
        loc[qtok[a + i]] = -1


@njit(cache=True, inline="always")
def lcs(m, mask1, loc, local, ptok, a, b):
    """LCS length of the loaded candidate (m tokens) and pool tokens ptok[a:b]."""
    if m <= 64:
        v = _ONES
        for k in range(a, b):
            bits = mask1[ptok[k]]
            if bits:
                u = v & bits
                v = (v + u) | (v - u)
        x = ~v
        if m < 64:
            x &= (_U1 << np.uint64(m)) - _U1
        return _popcount(x)
    words = local.shape[1]
    v = np.full(words, _ONES)
    for k in range(a, b):
        row = loc[ptok[k]]
        if row >= 0:
            carry = np.uint64(0)
            for w in range(words):  # multi-word addition, carries ripple upward
                vw = v[w]
                u = vw & local[row, w]
                t1 = vw + carry
                c1 = t1 < vw
                s = t1 + u
                c2 = s < t1
                v[w] = s | (vw - u)
                carry = _U1 if (c1 or c2) else np.uint64(0)
    total = 0
    for w in range(words):
        x = ~v[w]
        rest = m - 64 * w
        if rest < 64:
            x &= (_U1 << np.uint64(rest)) - _U1
        total += _popcount(x)
    return total


@njit(cache=True, parallel=True)
def details_chunk(qtok, qoff, cands, limits, pool, mask1, loc, top_j, top_s, sums):
    """Exact scan for kept candidates: cands[r] against entries 0..limits[r]-1 -> top-k and score sum.

    Top-k order: score descending, then pool order (ties keep the earlier entry). Zero scores count, as in
    upstream's argsort over every pool score.
    """
    ptok, poff, plen = pool
    threads, k = mask1.shape[0], top_j.shape[1]
    for th in prange(threads):
        m1, lc = mask1[th], loc[th]
        for r in range(th, cands.shape[0], threads):
            c = cands[r]
            a, m = qoff[c], qoff[c + 1] - qoff[c]
            local = set_query(qtok, a, m, m1, lc)
            total, filled = 0.0, 0
            for j in range(limits[r]):
                n = plen[j]
                s = 0.0
                if m > 0 and n > 0:
                    s = fmeasure(lcs(m, m1, lc, local, ptok, poff[j], poff[j + 1]), m, n)
                total += s
                if k == 0 or (filled == k and s <= top_s[r, k - 1]):
                    continue
                slot = min(filled, k - 1)
                while slot > 0 and top_s[r, slot - 1] < s:
                    top_s[r, slot], top_j[r, slot] = top_s[r, slot - 1], top_j[r, slot - 1]
                    slot -= 1
                top_s[r, slot], top_j[r, slot] = s, j
                filled = min(filled + 1, k)
            sums[r] = total
            clear_query(qtok, a, m, m1, loc[th])
