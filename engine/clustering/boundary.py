"""How scikit-learn decides `cosine_distance(x_i, x_j) <= eps`, reproduced bit for bit.

`sklearn.cluster.DBSCAN(metric="cosine")` finds neighbours with a brute-force `radius_neighbors`:
`pairwise_distances_chunked` splits the rows into chunks of `working_memory` MiB (8 bytes per distance),
and `cosine_distances` normalizes both sides (`sklearn.preprocessing.normalize`), takes one BLAS product
`Xn_chunk @ Xn.T` in the input's float type (float32 stays float32, anything else is float64), computes
`clip(1 - S, 0, 2)` and keeps `d <= eps`. When all rows fit one chunk the query *is* the fitted array:
the product is a SYRK and the self-distance is forced to 0. This module pins down each of those steps:

- the decision is monotone in the similarity S, so it is exactly `S >= threshold` for one float
  `threshold` found by bisection over the float lattice with sklearn's own arithmetic;
- sklearn's S differs from the exact dot product of its normalized rows by at most
  `gamma_d * |x||y|` (the classic bound for any summation order), so a pair whose exact similarity is
  further than `window` from `threshold` is decided without knowing BLAS internals;
- the rare pairs inside the window get sklearn's own float: the same normalized rows, the same BLAS,
  the same call shape (SYRK vs GEMM, GEMV for one-row chunks, the whole chunk when it is small). A
  large GEMM gives each element the same value whatever rows and columns surround it (checked by the
  tests against sklearn), so big products are rebuilt from gathered blocks.

    Xn, rule = prepare(X, eps=0.05)
    s = sklearn_similarities(Xn, rule, rows, cols)  # sklearn's float for each (row, col) pair
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass

import numpy as np

from engine.errors import ConfigError

# Products at most this big (M*N*K) may take BLAS small-matrix paths whose summation differs from the
# big GEMM kernel: those are recomputed in exactly sklearn's shape. Measured: the paths switch near 1e6.
SMALL_PRODUCT = 1 << 24
MIN_GATHER_SIDE = 128  # rows/cols of a gathered block, so it never looks like a skinny product


@dataclass(frozen=True)
class SklearnRule:
    """What sklearn would do for one (X, eps)."""

    dtype: np.dtype
    """float32 when X is float32, else float64 (sklearn's `check_pairwise_arrays`)."""
    threshold: float
    """Smallest similarity (a `dtype` value) that sklearn counts as `<= eps`; -inf when all pairs do."""
    window: float
    """Bound on |sklearn's similarity - exact dot of the normalized rows| for any pair."""
    chunk_rows: int
    """Rows per `pairwise_distances_chunked` chunk under the current `working_memory`."""
    n: int
    query_is_fit: bool = True
    """sklearn's query array is its fitted array (False when validation copied a non-C-ordered X twice)."""

    @property
    def single_chunk(self) -> bool:
        """One chunk for all rows: the whole query array goes into `pairwise_distances` at once."""
        return self.chunk_rows >= self.n

    @property
    def same_sides(self) -> bool:
        """One chunk and one array on both sides: a SYRK, and each self-distance forced to 0."""
        return self.single_chunk and self.query_is_fit


def prepare(X: object, eps: float) -> tuple[np.ndarray, SklearnRule]:
    """sklearn's normalized rows (C-contiguous, its dtype) and the decision rule for `eps`."""
    if isinstance(eps, bool) or not isinstance(eps, (int, float, np.floating, np.integer)):
        raise ConfigError(f"eps must be a number, got {type(eps).__name__}.", parameter="eps", value=eps)
    if not eps > 0:
        raise ConfigError(f"eps must be > 0, got {eps}.", parameter="eps", value=eps)
    # DBSCAN validates X, then NearestNeighbors copies it to C order for both fit and query: a non-C
    # ndarray becomes two different arrays, so sklearn's `X is Y` shortcuts do not apply.
    query_is_fit = not (isinstance(X, np.ndarray) and not X.flags.c_contiguous)
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[1] == 0:
        raise ConfigError(
            f"X must be a 2-D array (n_samples, n_features), got shape {X.shape}.",
            parameter="X",
            value=X.shape,
        )
    if not (np.issubdtype(X.dtype, np.number) or X.dtype == bool):
        raise ConfigError(f"X must be numeric, got dtype {X.dtype}.", parameter="X", value=X.dtype)
    dtype = np.dtype(np.float32 if X.dtype == np.float32 else np.float64)
    X = np.ascontiguousarray(X, dtype=dtype)
    if not np.isfinite(X).all():
        raise ConfigError("X contains NaN or infinity.", parameter="X", value="non-finite")
    Xn = normalize_like_sklearn(X)
    n, d = Xn.shape
    # Same rounding as sklearn's get_chunk_n_rows: 8 bytes per distance, whatever the dtype.
    chunk_rows = max(1, int(_working_memory() * 2**20 // (8 * max(n, 1))))
    norm = float(np.sqrt(np.einsum("ij,ij->i", Xn, Xn, dtype=np.float64).max())) if n else 1.0
    window = (_gamma(d, dtype) + _gamma(d, np.dtype(np.float64))) * norm * norm
    rule = SklearnRule(
        dtype=dtype,
        threshold=_threshold(eps, dtype),
        window=window,
        chunk_rows=min(chunk_rows, max(n, 1)),
        n=n,
        query_is_fit=query_is_fit,
    )
    return Xn, rule


def normalize_like_sklearn(X: np.ndarray) -> np.ndarray:
    """`sklearn.preprocessing.normalize(X)` with the same float operations (norms under 10 ulp -> 1)."""
    norms = np.sqrt(np.einsum("ij,ij->i", X, X))
    norms[norms < 10 * np.finfo(X.dtype).eps] = 1.0
    return X / norms[:, None]


def _working_memory() -> float:
    """sklearn's `working_memory` (MiB) as sklearn would read it now, without importing sklearn."""
    if "sklearn" in sys.modules:
        from sklearn import get_config

        return get_config()["working_memory"]
    return int(os.environ.get("SKLEARN_WORKING_MEMORY", 1024))


def _gamma(d: int, dtype: np.dtype) -> float:
    """Higham's gamma_d = d*u / (1 - d*u): error bound of a d-term dot product in any order."""
    u = float(np.finfo(dtype).eps) / 2
    return d * u / (1 - d * u) * 1.01  # 1% slack for the norms of rounded rows


def sklearn_decides(S: np.ndarray, eps: float) -> np.ndarray:
    """sklearn's `cosine_distances` tail and `radius_neighbors` test on similarities S (any shape)."""
    D = np.array(S, copy=True)
    D *= -1
    D += 1
    D = np.clip(D, 0.0, 2.0)
    return D <= eps  # eps keeps sklearn's promotion: a Python float compares in S's dtype


def _threshold(eps: float, dtype: np.dtype) -> float:
    """The least `dtype` value S with `sklearn_decides(S)`, by bisection on the ordered bit patterns."""
    itype = np.int32 if dtype == np.float32 else np.int64
    flip = np.array(np.iinfo(itype).max, dtype=itype)

    def key(x: float) -> int:  # monotone map float -> int (negative floats reversed)
        i = np.array(x, dtype=dtype).view(itype)
        return int(i ^ flip) if i < 0 else int(i)

    def value(k: int) -> np.ndarray:
        i = np.array(k, dtype=itype)
        return (i ^ flip if k < 0 else i).view(dtype)

    def yes(k: int) -> bool:
        return bool(sklearn_decides(value(k)[None], eps)[0])

    lo, hi = key(-3.0), key(1.0)  # S = 1 is distance 0 (always in); S = -3 clips to 2
    if yes(lo):
        return -math.inf
    if not yes(hi):  # cannot happen for eps > 0; kept as an invariant
        raise AssertionError(f"eps={eps} admits no similarity")
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if yes(mid) else (mid, hi)
    return float(value(hi))


def sklearn_similarities(Xn: np.ndarray, rule: SklearnRule, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """sklearn's own similarity float for each pair (rows[k], cols[k]) as seen from row rows[k].

    The self-pair is 1 when sklearn forces that distance to 0 (`rule.same_sides`).
    """
    rows = np.asarray(rows, dtype=np.int64)
    cols = np.asarray(cols, dtype=np.int64)
    out = np.empty(len(rows), dtype=rule.dtype)
    if not len(rows):
        return out
    n, d = Xn.shape
    chunk = rows // rule.chunk_rows
    chunk_size = np.minimum(rule.chunk_rows, n - chunk * rule.chunk_rows)
    exact_shape = (chunk_size == 1) | (chunk_size.astype(np.float64) * n * d <= SMALL_PRODUCT)
    for c in np.unique(chunk[exact_shape]):  # GEMV rows and small chunks: redo sklearn's own call
        sel = np.flatnonzero(exact_shape & (chunk == c))
        start = int(c) * rule.chunk_rows
        block = _product_like_sklearn(Xn, start, min(start + rule.chunk_rows, n), rule)
        out[sel] = block[rows[sel] - start, cols[sel]]
    rest = np.flatnonzero(~exact_shape)
    for part in np.array_split(rest, max(1, math.ceil(len(rest) / 1024))):
        if len(part):
            out[part] = _gathered(Xn, rows[part], cols[part], rule)
    if rule.same_sides:
        out[rows == cols] = 1
    return out


def _product_like_sklearn(Xn: np.ndarray, start: int, stop: int, rule: SklearnRule) -> np.ndarray:
    if rule.same_sides:
        return Xn @ Xn.T  # same buffer on both sides: numpy calls SYRK, as sklearn's `X is Y` path does
    return Xn[start:stop].copy() @ Xn.T  # two buffers: GEMM (GEMV for one row), as sklearn's chunks


def _gathered(Xn: np.ndarray, rows: np.ndarray, cols: np.ndarray, rule: SklearnRule) -> np.ndarray:
    """Pairs from one big product over just the rows/columns they need (padded to a large shape)."""
    n, d = Xn.shape
    side = max(MIN_GATHER_SIDE, math.isqrt(SMALL_PRODUCT // d) + 1)
    if rule.same_sides:  # SYRK on one gathered set
        ids = np.union1d(rows, cols)
        A = Xn[_pad(ids, side, n)]
        return (A @ A.T)[np.searchsorted(ids, rows), np.searchsorted(ids, cols)]
    rid, cid = np.unique(rows), np.unique(cols)
    K = Xn[_pad(rid, side, n)] @ Xn[_pad(cid, side, n)].T
    return K[np.searchsorted(rid, rows), np.searchsorted(cid, cols)]


def _pad(ids: np.ndarray, side: int, n: int) -> np.ndarray:
    """`ids` (sorted, unique) first, then filler rows up to `side` entries (repeats are harmless)."""
    if len(ids) >= side:
        return ids
    filler = np.arange(side - len(ids)) % n
    return np.concatenate([ids, filler])
