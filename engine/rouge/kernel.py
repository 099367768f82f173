"""The greedy ROUGE-L filter's probe: prefix-filtered candidate search with exact verification (numba).

A candidate probes the inverted index (engine/rouge/index.py) with its rarest elements. Each pool entry met
is checked against the positional bound of PPJoin (Xiao et al. 2008) -- met for the c-th time at candidate
position i = entry position jp, the overlap is at most c - 1 + min(m - i, n - jp) -- and only entries met
twice (see index.prefix_len) and never cut are scored exactly (engine/rouge/lcs.py). Postings are
grouped by jp and sorted by entry length, so only entries that can pass the bound are read.
Chunks of candidates are probed in parallel against the pool as it stood before the chunk, then decided
in order against the chunk's own earlier keeps: upstream's greedy rule, on all cores.

    probe_chunk(...); greedy_chunk(...)  # driven by engine.rouge.store.PoolStore
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from engine.rouge.index import append_entry, prefix_len
from engine.rouge.lcs import clear_query, fmeasure, lcs, set_query


@njit(cache=True, inline="always")
def _n_min(jp, m, tl):
    """Least entry length n with 2(n - jp) >= tl(m + n), evaluated exactly as the per-pair test."""
    n = max(int((2.0 * jp + tl * m) / (2.0 - tl)) - 2, 0)
    while 2.0 * (n - jp) < tl * (m + n):
        n += 1
    return n


@njit(cache=True, inline="always")
def _n_max(i, m, tl):
    """Greatest entry length n with 2(m - i) >= tl(m + n) (-1 if none), evaluated as the per-pair test."""
    if tl <= 0:
        return 1 << 40
    n = int((2.0 * (m - i) - tl * m) / tl) + 2
    while n >= 0 and 2.0 * (m - i) < tl * (m + n):
        n -= 1
    return n


# Per probe, seen[j] is an entry's state: 0 = not met, 1 = met once, 2 = met twice (to score), 3 = cut. Every
# entry met is listed in `touched` and reset to 0 after the probe, so seen can be one byte per entry: the
# array stays in cache where a per-probe stamp would miss it.
@njit(cache=True, inline="always")
def _meet(j, n, i, jp, m, tl, seen, touched, n_touched):
    """Record that entry j (n tokens) met the candidate at its element i = the entry's element jp.
    Returns (n_touched, 1 if the pair was cut now else 0)."""
    state = seen[j]
    if state >= 2:
        return n_touched, 0
    if state == 0:
        touched[n_touched] = j
        n_touched += 1
    met = 1 if state == 1 else 0  # meetings before this one: all shared elements so far lie before it
    if 2.0 * (met + min(m - i, n - jp)) < tl * (m + n):
        seen[j] = 3
        return n_touched, 1
    seen[j] = 2 if met else 1
    return n_touched, 0


@njit(cache=True)
def _scan_index(index, e, i, m, lo, hi, n_lo, n_hi, tl, seen, touched, n_touched, counts):
    """Meet the postings of element e in a CSR index (see build_index) that can pass the positional bound.

    A group's postings share jp and are sorted by entry length n, so the bound is a range of n: a first
    meeting needs n in [_n_min(jp), _n_max(i)], a second one n in [_n_min(jp - 1), _n_max(i - 1)] (one
    looser), the range scanned. Same outcomes as _meet, with integer compares only.
    """
    eg, gjp, goff, bpid, blen, j0, j1 = index
    if lo >= j1 or hi <= j0 or e + 1 >= eg.shape[0]:
        return n_touched
    whole = lo <= j0 and j1 <= hi  # every entry of this index is in range: skip the per-posting check
    first_hi = _n_max(i, m, tl)
    for g in range(eg[e], eg[e + 1]):  # groups by the entry's element position jp, ascending
        jp = gjp[g]
        n_min = max(n_lo, _n_min(max(jp - 1, 0), m, tl))
        if n_min > n_hi:
            break
        first_lo = _n_min(jp, m, tl)
        q, q_end = goff[g], goff[g + 1]
        lo_q, hi_q = q, q_end
        while lo_q < hi_q:  # first posting with n >= n_min (no slice objects in this hot loop)
            mid_q = (lo_q + hi_q) >> 1
            if blen[mid_q] < n_min:
                lo_q = mid_q + 1
            else:
                hi_q = mid_q
        q = lo_q
        while q < q_end and blen[q] <= n_hi:
            j, n = bpid[q], blen[q]
            q += 1
            if not whole and (j < lo or j >= hi):
                continue
            counts[0] += 1
            state = seen[j]
            if state == 0:
                touched[n_touched] = j
                n_touched += 1
                if first_lo <= n <= first_hi:
                    seen[j] = 1
                else:
                    seen[j] = 3
                    counts[1] += 1
            elif state == 1:
                seen[j] = 2
    return n_touched


@njit(cache=True)
def probe(qtok, qelm, a, m, lo, hi, t, tl, pool, base, mid, delta, mask1, loc, seen, touched, stats):
    """Best (index, F1) over pool entries lo <= j < hi with F1 > t, or (-1, -1.0).

    base, mid: CSR indexes over two ranges of entries (build_index); delta: linked postings of the rest.
    seen, touched: pool-sized scratch (seen all 0). stats += [postings visited, pairs cut, LCS computed].
    """
    ptok, poff, plen = pool
    dhead, dnext, dpid, dpos, dlen = delta
    n_touched = 0
    counts = np.zeros(3, np.int64)  # visited, cut, scored: local, as threads' stats rows share cache lines
    n_lo = _n_min(0, m, tl)  # entry lengths that can pass at all
    for i in range(prefix_len(m, tl)):
        n_hi = _n_max(max(i - 1, 0), m, tl)  # i - 1: as for jp above
        if n_hi < n_lo:
            break  # no entry length can pass the positional bound from here on
        e = qelm[a + i]
        n_touched = _scan_index(base, e, i, m, lo, hi, n_lo, n_hi, tl, seen, touched, n_touched, counts)
        n_touched = _scan_index(mid, e, i, m, lo, hi, n_lo, n_hi, tl, seen, touched, n_touched, counts)
        d = dhead[e]  # delta: linked postings, newest (highest j) first
        while d >= 0:
            j = dpid[d]
            if j < lo:
                break
            if j < hi:
                n_touched, cut = _meet(j, dlen[d], i, dpos[d], m, tl, seen, touched, n_touched)
                counts[0] += 1
                counts[1] += cut
            d = dnext[d]
    best_j, best_s = -1, -1.0
    local = set_query(qtok, a, m, mask1, loc)
    for r in range(n_touched):
        j = touched[r]
        state = seen[j]
        seen[j] = 0
        if state == 3:
            continue
        n = plen[j]
        # met twice, or once where an overlap of 1 could be enough (1-token texts)
        if state == 2 or (state == 1 and 2.0 >= tl * (m + n)):
            counts[2] += 1
            s = fmeasure(lcs(m, mask1, loc, local, ptok, poff[j], poff[j + 1]), m, n)
            if s > t and (s > best_s or (s == best_s and j < best_j)):
                best_j, best_s = j, s
        elif state == 1:
            counts[1] += 1
    clear_query(qtok, a, m, mask1, loc)
    stats += counts
    return best_j, best_s


@njit(cache=True, parallel=True)
def probe_chunk(
    qtok,
    qelm,
    qoff,
    c0,
    c1,
    hi,
    t,
    tl,
    pool,
    base,
    mid,
    delta,
    mask1,
    loc,
    seen,
    touched,
    stats,
    out_j,
    out_s,
):
    """Candidates c0..c1-1 against pool entries 0..hi-1, on mask1.shape[0] threads (interleaved)."""
    threads = mask1.shape[0]
    for th in prange(threads):
        for c in range(c0 + th, c1, threads):
            a, m = qoff[c], qoff[c + 1] - qoff[c]
            out_j[c], out_s[c] = probe(
                qtok,
                qelm,
                a,
                m,
                0,
                hi,
                t,
                tl,
                pool,
                base,
                mid,
                delta,
                mask1[th],
                loc[th],
                seen[th],
                touched[th],
                stats[th],
            )


@njit(cache=True)
def greedy_chunk(
    qtok,
    qelm,
    qoff,
    c0,
    c1,
    p0,
    lo,
    t,
    tl,
    pool,
    pelm,
    base,
    mid,
    delta,
    dcount,
    mask1,
    loc,
    seen,
    touched,
    stats,
    best_j,
    best_s,
    keep,
    pos,
):
    """Upstream's greedy rule for candidates c0..c1-1, in order, given their best match in entries 0..lo-1
    (probe_chunk's; lo = 0 when it did not run). The pool holds p0 entries before the chunk.

    Each candidate is probed against entries lo..p-1 (p grows with the chunk's keeps); it is dropped iff its
    best F1 > t, otherwise it joins the pool at once. Returns (new pool size, new delta posting count).
    """
    p = p0
    for c in range(c0, c1):
        a, m = qoff[c], qoff[c + 1] - qoff[c]
        j, s = probe(qtok, qelm, a, m, lo, p, t, tl, pool, base, mid, delta, mask1, loc, seen, touched, stats)
        if s > best_s[c]:  # equal scores keep the earlier (older) entry
            best_j[c], best_s[c] = j, s
        if best_s[c] > t:
            keep[c] = False
        else:
            keep[c], pos[c] = True, p
            dcount = append_entry(qtok, qelm, a, m, pool, pelm, p, delta, dcount, tl)
            p += 1
    return p, dcount
