"""Numba kernels of the ROUGE-L filter: bit-parallel LCS, prefix-filtered probes, the inverted index.

Pairs are scored as rouge_score does (F1 = 2PR/(P+R), P = LCS/n, R = LCS/m, same float operations in the same
order), with the LCS from Hyyrö's bit-parallel recurrence (V' = (V + (V & M)) | (V - (V & M)), one machine word
per 64 candidate tokens). Which pairs get scored is decided by prefix filtering (Bayardo et al. 2007, "Scaling
up all pairs similarity search"; positional bound from Xiao et al. 2008, PPJoin): a candidate of m tokens can
only reach F1 > t with a pool entry of n tokens if their multiset overlap O >= LCS satisfies 2·O/(m+n) > t,
so both share an element among their first m - o(m) + 1 rarest ones (o(m) = the least overlap any partner
length could need). Elements are (token, occurrence number) pairs, which makes multiset overlap set overlap.
Bounds are compared against t - 1e-9, so float rounding can never prune a pair that the exact score keeps.

    j, s = probe(...)  # used through engine.rouge.RougeFilter; not a public API
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

SLACK = 1e-9  # bounds use t - SLACK: a pair is only skipped when its exact score is clearly <= t
_ONES = np.uint64(0xFFFFFFFFFFFFFFFF)
_U1 = np.uint64(1)


@njit(cache=True, inline="always")
def _popcount(x):
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return int((x * np.uint64(0x0101010101010101)) >> np.uint64(56))


@njit(cache=True, inline="always")
def fmeasure(lcs, m, n):
    """rouge_score's `_score_lcs` + `scoring.fmeasure`, operation for operation (m, n > 0)."""
    if lcs == 0:
        return 0.0
    precision = lcs / n
    recall = lcs / m
    return 2.0 * precision * recall / (precision + recall)


@njit(cache=True, inline="always")
def prefix_len(m, tl):
    """How many of an entry's rarest elements must be indexed/probed so no pair with F1 >= tl is missed."""
    if m == 0:
        return 0
    # least overlap any partner could need: 2·o/(m+n) >= tl with n >= m·tl/(2-tl) (the length window)
    o = int(np.ceil(tl * m / (2.0 - tl) - SLACK))
    o = max(o, 1)
    return max(m - o + 1, 0)


@njit(cache=True)
def set_query(qtok, a, m, mask1, loc):
    """Load the candidate's match masks: mask1[token] bits (m <= 64), or loc[token] -> row of a local table."""
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


@njit(cache=True, inline="always")
def _consider(j, n, i, jp, m, t, tl, ptok, poff, mask1, loc, local, stamp, qid, stats, best_j, best_s):
    """Score pair (candidate, entry j of n tokens) met at candidate element i = entry element jp."""
    # Met first at (i, jp), every shared element lies at or after it on both sides (same global order), so
    # overlap <= min(m - i, n - jp). A later meeting has a smaller bound, so skipping by it before the
    # stamp check is safe: a pair cut at its first meeting is cut at every one.
    if 2.0 * min(m - i, n - jp) < tl * (m + n):
        stats[1] += 1
        return best_j, best_s
    if stamp[j] == qid:
        return best_j, best_s
    stamp[j] = qid
    stats[2] += 1
    s = fmeasure(lcs(m, mask1, loc, local, ptok, poff[j], poff[j + 1]), m, n)
    if s > t and (s > best_s or (s == best_s and j < best_j)):
        return j, s
    return best_j, best_s


@njit(cache=True)
def probe(qtok, qelm, a, m, lo, hi, t, tl, pool, base, delta, mask1, loc, stamp, qid, stats):
    """Best (index, F1) over pool entries lo <= j < hi with F1 > t, or (-1, -1.0).

    stats += [postings visited, pairs cut by the positional bound, LCS computed].
    """
    ptok, poff, plen = pool
    boff, bpid, bpos, blen, nbase = base
    dhead, dnext, dpid, dpos, dlen = delta
    local = set_query(qtok, a, m, mask1, loc)
    best_j, best_s = -1, -1.0
    n_lo = int(tl * m / (2.0 - tl)) - 1  # the length window, widened by one: the exact test is per pair
    for i in range(prefix_len(m, tl)):
        n_hi = int((2.0 * (m - i) - tl * m) / tl) + 1 if tl > 0 else 1 << 40
        if n_hi < n_lo:
            break  # no entry length can still pass the positional bound
        e = qelm[a + i]
        if lo < nbase and e + 1 < boff.shape[0]:
            # base postings are sorted by (length, id): jump straight to the length window
            q, q_end = boff[e], boff[e + 1]
            q += np.searchsorted(blen[q:q_end], n_lo)
            while q < q_end and blen[q] <= n_hi:
                j = bpid[q]
                if lo <= j < hi:
                    stats[0] += 1
                    best_j, best_s = _consider(j, blen[q], i, bpos[q], m, t, tl, ptok, poff, mask1, loc,
                                               local, stamp, qid, stats, best_j, best_s)
                q += 1
        q = dhead[e]  # delta postings: newest (highest j) first
        while q >= 0:
            j = dpid[q]
            if j < lo:
                break
            if j < hi:
                stats[0] += 1
                best_j, best_s = _consider(j, dlen[q], i, dpos[q], m, t, tl, ptok, poff, mask1, loc, local,
                                           stamp, qid, stats, best_j, best_s)
            q = dnext[q]
    clear_query(qtok, a, m, mask1, loc)
    return best_j, best_s


@njit(cache=True, parallel=True)
def probe_chunk(qtok, qelm, qoff, c0, c1, hi, t, tl, pool, base, delta, mask1, loc, stamp, qid0, stats,
                out_j, out_s):
    """Candidates c0..c1-1 against pool entries 0..hi-1, on mask1.shape[0] threads (interleaved)."""
    threads = mask1.shape[0]
    for th in prange(threads):
        for c in range(c0 + th, c1, threads):
            a, m = qoff[c], qoff[c + 1] - qoff[c]
            out_j[c], out_s[c] = probe(qtok, qelm, a, m, 0, hi, t, tl, pool, base, delta, mask1[th],
                                       loc[th], stamp[th], qid0 + c, stats[th])


@njit(cache=True)
def append_entry(qtok, qelm, a, m, pool, pelm, p, delta, dcount, tl):
    """Store tokens/elements as pool entry p and post its prefix elements to the delta index."""
    ptok, poff, plen = pool
    dhead, dnext, dpid, dpos, dlen = delta
    start = poff[p]
    for k in range(m):
        ptok[start + k] = qtok[a + k]
        pelm[start + k] = qelm[a + k]
    poff[p + 1] = start + m
    plen[p] = m
    for i in range(prefix_len(m, tl)):
        e = pelm[start + i]
        dpid[dcount], dpos[dcount], dlen[dcount], dnext[dcount] = p, i, m, dhead[e]
        dhead[e] = dcount
        dcount += 1
    return dcount


@njit(cache=True)
def append_all(qtok, qelm, qoff, pool, pelm, p0, delta, dcount, tl):
    for c in range(qoff.shape[0] - 1):
        dcount = append_entry(qtok, qelm, qoff[c], qoff[c + 1] - qoff[c], pool, pelm, p0 + c, delta,
                              dcount, tl)
    return dcount


@njit(cache=True)
def greedy_chunk(qtok, qelm, qoff, c0, c1, p0, t, tl, pool, pelm, base, delta, dcount, mask1, loc, stamp,
                 qid0, stats, best_j, best_s, keep, pos):
    """Upstream's greedy rule for candidates c0..c1-1, in order, given their best match in entries 0..p0-1.

    Each candidate is probed against the entries accepted earlier in this chunk (p0..p-1); it is dropped iff
    its best F1 > t, otherwise it joins the pool at once. Returns (new pool size, new delta posting count).
    """
    p = p0
    for c in range(c0, c1):
        a, m = qoff[c], qoff[c + 1] - qoff[c]
        j, s = probe(qtok, qelm, a, m, p0, p, t, tl, pool, base, delta, mask1, loc, stamp, qid0 + c, stats)
        if s > best_s[c]:  # equal scores keep the earlier (older) entry
            best_j[c], best_s[c] = j, s
        if best_s[c] > t:
            keep[c] = False
        else:
            keep[c], pos[c] = True, p
            dcount = append_entry(qtok, qelm, a, m, pool, pelm, p, delta, dcount, tl)
            p += 1
    return p, dcount


@njit(cache=True)
def build_base(pelm, poff, n_entries, n_elems, tl):
    """CSR inverted index over every entry's prefix elements; an element's postings sorted by (length, id)."""
    boff = np.zeros(n_elems + 1, np.int64)
    lengths = np.empty(n_entries, np.int64)
    for j in range(n_entries):
        lengths[j] = poff[j + 1] - poff[j]
        for i in range(prefix_len(lengths[j], tl)):
            boff[pelm[poff[j] + i] + 1] += 1
    for e in range(n_elems):
        boff[e + 1] += boff[e]
    bpid = np.empty(boff[n_elems], np.int32)
    bpos = np.empty(boff[n_elems], np.int32)
    blen = np.empty(boff[n_elems], np.int32)
    cursor = boff[:-1].copy()
    for j in np.argsort(lengths, kind="mergesort"):  # stable: equal lengths stay in pool order
        for i in range(prefix_len(lengths[j], tl)):
            e = pelm[poff[j] + i]
            bpid[cursor[e]], bpos[cursor[e]], blen[cursor[e]] = j, i, lengths[j]
            cursor[e] += 1
    return boff, bpid, bpos, blen


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


@njit(cache=True)
def assign_elements(qtok, qoff, first, occ, repeats, next_id):
    """Element ids for (token, occurrence number) pairs: first[token] for occurrence 0, a dict for repeats."""
    qelm = np.empty_like(qtok)
    for c in range(qoff.shape[0] - 1):
        for k in range(qoff[c], qoff[c + 1]):
            tok = qtok[k]
            o = occ[tok]
            occ[tok] = o + 1
            if o == 0:
                e = first[tok]
                if e < 0:
                    e = next_id
                    first[tok] = e
                    next_id += 1
            else:
                key = (np.int64(o) << 32) | np.int64(tok)
                e = repeats.get(key, -1)
                if e < 0:
                    e = next_id
                    repeats[key] = e
                    next_id += 1
            qelm[k] = e
        for k in range(qoff[c], qoff[c + 1]):
            occ[qtok[k]] = 0
    return qelm, next_id


@njit(cache=True)
def sort_by_rank(qelm, qoff, c0, rank):
    """Order each entry's elements rarest-first (ascending rank), for entries c0.. on."""
    for c in range(c0, qoff.shape[0] - 1):
        a, b = qoff[c], qoff[c + 1]
        if b - a > 1:
            seg = qelm[a:b].copy()
            qelm[a:b] = seg[np.argsort(rank[seg])]
