"""The ROUGE-L filter's inverted index: element ids, the global rarity order, prefix postings (numba).

Prefix filtering (Bayardo et al. 2007, "Scaling up all pairs similarity search"): a candidate of m tokens
can only reach F1 > t with a pool entry of n tokens if their multiset overlap O >= LCS has 2·O/(m+n) > t.
Under one global order (rarest first), an overlap of at least o puts the k first shared elements among
each side's first m - o + k (and n - o + k) elements. Entries are indexed, and candidates probe, with
o = o(m), the least overlap any partner length could need, and k = 2: a pair must meet twice in the
prefixes to be scored. Elements are (token, occurrence number) pairs, which turns multiset overlap into
set overlap. Bounds use t - SLACK, so float rounding can never prune a pair the exact score keeps.

    base = build_index(pelm, poff, 0, n_entries, n_elems, threshold - SLACK)
"""

from __future__ import annotations

import numpy as np
from numba import njit

SLACK = 1e-9  # bounds use t - SLACK: a pair is only skipped when its exact score is clearly <= t


@njit(cache=True, inline="always")
def prefix_len(m, tl):
    """How many of an entry's rarest elements are indexed/probed: every pair with F1 >= tl meets twice in
    them (once if they could need an overlap of only 1)."""
    if m == 0:
        return 0
    # least overlap any partner could need: 2·o/(m+n) >= tl with n >= m·tl/(2-tl) (the length window)
    o = max(int(np.ceil(tl * m / (2.0 - tl) - SLACK)), 1)
    return min(max(m - o + min(o, 2), 0), m)


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


@njit(cache=True)
def _counting_order(keys, n_keys, order):
    """`order` stably re-sorted by keys[order] (a counting sort)."""
    starts = np.zeros(n_keys + 1, np.int64)
    for x in order:
        starts[keys[x] + 1] += 1
    for k in range(n_keys):
        starts[k + 1] += starts[k]
    out = np.empty_like(order)
    for x in order:
        out[starts[keys[x]]] = x
        starts[keys[x]] += 1
    return out


@njit(cache=True)
def build_index(pelm, poff, j0, j1, n_elems, tl):
    """Inverted index over the prefix elements of entries j0..j1-1, postings sorted by (element, position
    in the entry, entry length, id): eg (element -> groups), gjp (a group's position), goff (group ->
    postings), bpid (entry ids), blen (entry lengths), j0, j1."""
    count = j1 - j0
    lengths = np.empty(count, np.int64)
    total, widest = 0, 1
    for r in range(count):
        lengths[r] = poff[j0 + r + 1] - poff[j0 + r]
        total += prefix_len(lengths[r], tl)
        widest = max(widest, prefix_len(lengths[r], tl))
    pid, pjp, pe = np.empty(total, np.int32), np.empty(total, np.int64), np.empty(total, np.int64)
    k = 0
    for r in np.argsort(lengths, kind="mergesort"):  # by (length, id); the stable sorts below keep it
        for i in range(prefix_len(lengths[r], tl)):
            pid[k], pjp[k], pe[k] = j0 + r, i, pelm[poff[j0 + r] + i]
            k += 1
    order = _counting_order(pe, n_elems, _counting_order(pjp, widest, np.arange(total)))
    eg = np.zeros(n_elems + 1, np.int64)
    gjp, goff = np.empty(total, np.int32), np.empty(total + 1, np.int64)
    bpid, blen = np.empty(total, np.int32), np.empty(total, np.int32)
    groups = 0
    for k in range(total):
        x = order[k]
        bpid[k], blen[k] = pid[x], lengths[pid[x] - j0]
        if k == 0 or pe[x] != pe[order[k - 1]] or pjp[x] != pjp[order[k - 1]]:
            gjp[groups], goff[groups] = pjp[x], k
            eg[pe[x] + 1] += 1
            groups += 1
    goff[groups] = total
    for e in range(n_elems):
        eg[e + 1] += eg[e]
    return eg, gjp[:groups].copy(), goff[: groups + 1].copy(), bpid, blen, j0, j1


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
        dcount = append_entry(
            qtok, qelm, qoff[c], qoff[c + 1] - qoff[c], pool, pelm, p0 + c, delta, dcount, tl
        )
    return dcount
