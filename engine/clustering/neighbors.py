"""Exact ε-neighbour graph on cosine distance: blocked products with a rigorous bound, checked exactly.

Row i of the result is what `NearestNeighbors(radius=eps, metric="cosine").radius_neighbors(X)[i]`
returns inside `sklearn.cluster.DBSCAN` — same pairs, boundary included (see engine.clustering.boundary
for how sklearn's own floats are reproduced). It never builds an n x n matrix; memory is O(n·d + edges).

1. Bound. The normalized rows are split by an orthonormal basis W of the top-k directions of a sample
   (uncentered PCA): x·y = Px·Py + Rx·Ry <= Px·Py + |Rx||Ry|. Appending |Rx| as one more coordinate
   turns the bound into a (k+1)-wide matrix product. Phrase embeddings concentrate in few directions,
   so k = 32 already rules out all but ~1e-5 of the pairs at eps = 0.05; when the spectrum is flat the
   planner picks the plain full-width product instead. Either way the pass runs in float32 with a
   margin covering every rounding (inputs, any summation order), so the candidate set is a superset.
2. Blocked pass over the upper triangle (j >= i) in tiles, on both cores (one BLAS thread per worker),
   or on a CUDA device through torch (float32, TF32 off). The device only proposes candidates.
3. Check. Each candidate's similarity is recomputed in float64 on the CPU; pairs within sklearn's
   rounding window of the threshold get sklearn's own float. Every decision is made by this CPU code,
   so CPU and CUDA runs cannot differ.

    graph = cosine_radius_graph(X, eps=0.05)   # scipy CSR (n, n) bool, self-loops included
"""

from __future__ import annotations

import math
import os
import re
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from engine.clustering.boundary import SklearnRule, prepare, sklearn_similarities
from engine.errors import ConfigError
from engine.run.progress import progress

PLAN_SAMPLE = 1024  # rows used to fit the projection and estimate how many pairs each k lets through
PLAN_MIN_ROWS = 4096  # below this the full product is cheap enough
PROJECTION_DIMS = (16, 24, 32, 48, 64, 96, 128, 192, 256)
# Rough cost per pair in ns on a 2-core AVX-512 box: writing + thresholding one output, one
# multiply-add of the product, and one exact float64 check of a candidate. Only steers speed.
COST_OUTPUT, COST_MADD, COST_CHECK = 1.0, 0.02, 150.0


def cosine_radius_graph(
    X: Any,
    eps: float,
    *,
    device: str | None = None,
    threads: int | None = None,
    show_progress: bool = True,
    stats: dict | None = None,
):
    """sklearn's ε-neighbourhoods for cosine distance as a CSR matrix (n, n) of bools, row = query.

    Args:
        X: (n, d) array; float32 stays float32 (as in sklearn), anything else becomes float64.
        eps: neighbourhood radius on cosine distance (1 - cosine similarity), `<= eps` counts.
        device: None picks CUDA when present, `cpu`, or `cuda[:k]`; results are identical on all.
        threads: CPU workers (default: the cores this process may use).
        stats: if given, filled with counts (candidates, edges, ambiguous pairs) and stage timings.
    """
    from threadpoolctl import threadpool_limits

    # One BLAS thread per call: the pass runs its own workers, and OpenBLAS threads that spin on a busy
    # machine make small LAPACK/BLAS calls (the 384x384 eigh) up to 100x slower.
    with threadpool_limits(1, user_api="blas"):
        return _graph(X, eps, device, threads, show_progress, stats)


def _graph(
    X: Any, eps: float, device: str | None, threads: int | None, show_progress: bool, stats: dict | None
):
    import scipy.sparse as sp

    t_start = time.perf_counter()
    Xn, rule = prepare(X, eps)
    n = Xn.shape[0]
    info: dict[str, Any] = {
        "n": n,
        "dim": Xn.shape[1],
        "dtype": str(rule.dtype),
        "threshold": rule.threshold,
        "window": rule.window,
        "sklearn_single_chunk": rule.single_chunk,
        "sklearn_same_sides": rule.same_sides,
    }
    if n == 0:
        graph = sp.csr_array((0, 0), dtype=bool)
        info.update(edges=0, device="cpu", projection_dims=None)
    elif rule.threshold == -math.inf:  # eps >= 2: every pair is a neighbour
        graph = sp.csr_array(np.ones((n, n), dtype=bool))
        info.update(edges=n * n, device="cpu", projection_dims=None)
    else:
        F, margin, k = _stage_one_rows(Xn, rule)
        lo = np.float32(np.nextafter(np.float32(rule.threshold - rule.window - margin), np.float32(-2)))
        tiles = _Tiles.make(F, device, threads)
        info.update(
            device=tiles.name,
            projection_dims=k,
            stage_one_margin=margin,
            t_prepare=time.perf_counter() - t_start,
        )
        src, dst, counts = _pass(Xn, rule, tiles, lo, show_progress)
        info.update(counts, t_pass=time.perf_counter() - t_start - info["t_prepare"])
        graph = sp.csr_array((np.ones(len(src), dtype=bool), (src, dst)), shape=(n, n))
        info["edges"] = int(graph.nnz)
    info["t_total"] = time.perf_counter() - t_start
    if stats is not None:
        stats.update(info)
    return graph


# --- stage 1: the rows the blocked product runs on -------------------------------------------------


def _stage_one_rows(Xn: np.ndarray, rule: SklearnRule) -> tuple[np.ndarray, float, int | None]:
    """float32 rows F with F_i·F_j >= x_i·x_j - margin for every pair; k = projection width or None."""
    n, d = Xn.shape
    W = _plan_projection(Xn, rule.threshold - rule.window)
    width = d if W is None else W.shape[0] + 1
    F = np.empty((n, width), dtype=np.float32)
    err = 0.0
    for start in range(0, n, 2048):  # float64 work in slices: memory stays O(n·d) in float32
        X64 = Xn[start : start + 2048].astype(np.float64)
        P = X64 if W is None else X64 @ W.T
        F[start : start + len(X64), : P.shape[1]] = P
        if len(P):
            err = max(err, float(np.linalg.norm(P - F[start : start + len(X64), : P.shape[1]], axis=1).max()))
        if W is not None:  # |R| = |x - W^T W x|, rounded up: the bound needs an upper value
            resid = np.linalg.norm(X64 - P @ W, axis=1) * (1 + 1e-12) + 1e-15
            F[start : start + len(X64), -1] = np.nextafter(resid.astype(np.float32), np.float32(np.inf))
    width = F.shape[1]
    norm = float(np.sqrt(np.einsum("ij,ij->i", F, F, dtype=np.float64).max())) if n else 1.0
    u32 = 2.0**-24
    margin = (2 * err * norm + width * u32 / (1 - width * u32) * norm * norm) * 1.01 + 1e-9
    return F, margin, None if W is None else W.shape[0]


def _plan_projection(Xn: np.ndarray, lo: float) -> np.ndarray | None:
    """Top-k basis (k, d) that minimizes the modelled cost of pass + checks, or None for full width."""
    n, d = Xn.shape
    if n < PLAN_MIN_ROWS or d < 2 * PROJECTION_DIMS[0]:
        return None
    rng = np.random.default_rng(0)  # fixed: the plan (and so the timing) is reproducible
    picked = rng.choice(n, min(n, 2 * PLAN_SAMPLE), replace=False)
    half = len(picked) // 2
    fit = Xn[np.sort(picked[:half])].astype(np.float32)
    S = Xn[np.sort(picked[half:])].astype(np.float32)  # held out: an in-sample PCA flatters itself
    _, vecs = np.linalg.eigh((fit.T @ fit).astype(np.float64))
    basis = np.ascontiguousarray(vecs[:, ::-1].T)  # (d, d), strongest direction first
    dims = [k for k in PROJECTION_DIMS if k < d * 3 // 4]
    P = S @ basis[: dims[-1]].T.astype(np.float32)
    sq = np.einsum("ij,ij->i", S, S)
    G = np.zeros((len(S), len(S)), dtype=np.float32)
    pairs = len(S) * (len(S) - 1)
    best_cost, best_k, done = COST_OUTPUT + COST_MADD * d, None, 0
    for k in dims:  # estimates only (float32 is plenty): the bound itself is made rigorous later
        G += P[:, done:k] @ P[:, done:k].T
        done = k
        r = np.sqrt(np.maximum(sq - np.einsum("ij,ij->i", P[:, :k], P[:, :k]), 0))
        hits = np.count_nonzero(G + np.outer(r, r) >= lo) - np.count_nonzero(np.diag(G) + r * r >= lo)
        cost = COST_OUTPUT + COST_MADD * (k + 1) + COST_CHECK * hits / pairs
        if cost < best_cost:
            best_cost, best_k = cost, k
    return None if best_k is None else basis[:best_k]


# --- stage 2: the blocked pass, on the CPU or a CUDA device ----------------------------------------


def check_device(device: str | None) -> None:
    """ConfigError unless `device` is None (CUDA when present), "cpu", "cuda" or "cuda:N"."""
    if device is not None and not re.fullmatch(r"cpu|cuda(:\d+)?", device):
        raise ConfigError(
            f"unknown device {device!r}; expected cpu, cuda or cuda:N", parameter="device", value=device
        )


class _Tiles:
    """Proposes candidate pairs of one tile: (i, j) with F_i·F_j >= lo, in global indices."""

    name = "cpu"
    tile = (512, 2048)  # a 512 x 2048 float32 tile is 4 MiB: product and threshold stay near cache

    def __init__(self, F: np.ndarray, threads: int):
        self.F, self.threads = F, threads

    @staticmethod
    def make(F: np.ndarray, device: str | None, threads: int | None) -> _Tiles:
        check_device(device)
        threads = threads or _usable_cores()
        if device is None:
            device = "cuda" if _cuda_present(cheap=True) else "cpu"
        if device.startswith("cuda"):
            if _cuda_present():
                return _TorchTiles(F, device, threads)
            warnings.warn(
                f"device={device!r} requested but no CUDA device is available; "
                "using the CPU (results are identical)",
                RuntimeWarning,
                stacklevel=3,
            )
        return _Tiles(F, threads)

    def candidates(self, i0: int, i1: int, j0: int, j1: int, lo: np.float32):
        S = self.F[i0:i1] @ self.F[j0:j1].T
        flat = np.flatnonzero(S >= lo)
        return flat // (j1 - j0) + i0, flat % (j1 - j0) + j0


class _TorchTiles(_Tiles):
    tile = (8192, 65536)  # up to 2 GiB of float32 per tile: few launches (narrowed to free memory)

    def __init__(self, F: np.ndarray, device: str, threads: int):
        import torch

        super().__init__(F, threads)
        self.name = str(torch.device(device))
        self.dev = torch.from_numpy(F).to(device)
        if self.dev.is_cuda:  # each worker holds one float32 product and its mask: keep both well in memory
            free, _ = torch.cuda.mem_get_info(self.dev.device)
            rows = self.tile[0]
            self.tile = (rows, int(min(self.tile[1], max(2048, free // (4 * rows * 5 * threads)))))

    def candidates(self, i0: int, i1: int, j0: int, j1: int, lo: np.float32):
        import torch

        # Plain IEEE float32 (no TF32): the stage-one margin assumes float32 rounding.
        with _no_tf32(torch):
            S = self.dev[i0:i1] @ self.dev[j0:j1].T
            idx = torch.nonzero(S >= float(lo)).cpu().numpy()
        return idx[:, 0] + i0, idx[:, 1] + j0


class _no_tf32:
    def __init__(self, torch: Any):
        self.m = torch.backends.cuda.matmul

    def __enter__(self):
        self.saved = self.m.allow_tf32
        self.m.allow_tf32 = False

    def __exit__(self, *exc):
        self.m.allow_tf32 = self.saved


def _usable_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _cuda_present(cheap: bool = False) -> bool:
    """Whether torch sees a CUDA device; `cheap` skips `import torch` where no NVIDIA device node exists."""
    if cheap and "torch" not in sys.modules and not os.path.exists("/dev/nvidia0"):
        return False
    import torch

    return bool(torch.cuda.is_available())


def _pass(Xn: np.ndarray, rule: SklearnRule, tiles: _Tiles, lo: np.float32, show_progress: bool):
    """Directed edges (src, dst) of sklearn's neighbourhoods, plus counters."""
    n = Xn.shape[0]
    rows, cols = tiles.tile
    units = [
        (i0, min(i0 + rows, n), j0, min(j0 + cols, n))
        for i0 in range(0, n, rows)
        for j0 in range(i0, n, cols)
    ]
    t = rule.threshold

    def run(unit: tuple[int, int, int, int]):
        i, j = tiles.candidates(*unit, lo)
        keep = j >= i  # upper triangle incl. the diagonal; the rest comes from symmetry
        i, j = i[keep], j[keep]
        s = np.einsum("ij,ij->i", Xn[i], Xn[j], dtype=np.float64)  # exact enough: error << window
        sure = s - rule.window >= t
        maybe = ~sure & (s + rule.window >= t)
        return len(i), i[sure], j[sure], i[maybe], j[maybe]

    sure_i, sure_j, amb_i, amb_j = [], [], [], []
    n_candidates = 0
    bar = progress(total=len(units), desc="ε-graph", unit="tile") if show_progress else None
    with ThreadPoolExecutor(tiles.threads) as pool:
        for c, si, sj, ai, aj in pool.map(run, units):
            n_candidates += c
            sure_i.append(si), sure_j.append(sj), amb_i.append(ai), amb_j.append(aj)
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    si, sj = np.concatenate(sure_i), np.concatenate(sure_j)
    ai, aj = np.concatenate(amb_i), np.concatenate(amb_j)
    # Inside the window: sklearn's own float, once from each side (each row is its own query).
    fwd = sklearn_similarities(Xn, rule, ai, aj) >= t
    bwd = sklearn_similarities(Xn, rule, aj, ai) >= t
    off = si != sj
    src = np.concatenate([si, sj[off], ai[fwd], aj[bwd & (ai != aj)]])
    dst = np.concatenate([sj, si[off], aj[fwd], ai[bwd & (ai != aj)]])
    if rule.same_sides:  # sklearn forces the self-distance to 0: every point is its own neighbour
        have = np.zeros(n, dtype=bool)
        have[src[src == dst]] = True
        missing = np.flatnonzero(~have)
        src, dst = np.concatenate([src, missing]), np.concatenate([dst, missing])
    counts = {"candidates": n_candidates, "ambiguous": int(len(ai)), "asymmetric": int((fwd != bwd).sum())}
    return src.astype(np.int64), dst.astype(np.int64), counts
