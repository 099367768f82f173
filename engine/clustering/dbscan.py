"""Exact DBSCAN on cosine distance, and InsTag's semantic aggregation of tags.

InsTag (Lu et al., ICLR 2024, §3.2) normalizes open tags by embedding them, clustering with DBSCAN
(minimum semantic similarity 0.05 in the paper, i.e. eps = 0.05 on cosine distance) and replacing
each cluster by its most frequent tag. `dbscan` gives labels identical to
`sklearn.cluster.DBSCAN(eps, min_samples, metric="cosine").fit(X).labels_`: core points, border
assignment and noise, with sklearn's order-dependent border rule (clusters grow in index order from
their lowest core point; a border point joins the first cluster that reaches it). The ε-graph comes
from engine.clustering.neighbors (blocked, exact, O(n + edges) memory); labels come from connected components.

    result = dbscan(vectors, eps=0.05, min_samples=2)      # result.labels: -1 = noise
    clusters = cluster_texts(tags, eps=0.05, counts=freqs)  # clusters.representative["tag"] -> "tag"
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engine.clustering.neighbors import cosine_radius_graph
from engine.errors import ConfigError

INSTAG_EPS = 0.05  # paper §3.2: "minimum semantic similarity 0.05" on PhraseBERT embeddings
INSTAG_MIN_SAMPLES = 2  # a cluster needs at least two tags; the paper does not give a value


@dataclass(frozen=True)
class DBSCANResult:
    """Labels per input row (-1 = noise), the core rows, and how the run went."""

    labels: np.ndarray
    core_sample_indices: np.ndarray
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def n_clusters(self) -> int:
        return int(self.labels.max() + 1) if len(self.labels) else 0

    @property
    def n_noise(self) -> int:
        return int((self.labels == -1).sum())


def dbscan(
    X: Any,
    eps: float = INSTAG_EPS,
    min_samples: int = INSTAG_MIN_SAMPLES,
    *,
    device: str | None = None,
    threads: int | None = None,
    show_progress: bool = True,
) -> DBSCANResult:
    """DBSCAN on cosine distance with sklearn's exact labels.

    Args:
        X: (n, d) vectors (need not be normalized; float32 is kept, as sklearn does).
        eps: cosine-distance radius; a pair is a neighbour when `1 - cos <= eps` as sklearn rounds it.
        min_samples: neighbours (the point itself included) that make a core point.
        device: None picks CUDA when present; `cpu`; `cuda[:k]`. Labels are the same on every device.
        threads: CPU workers for the blocked pass (default: all usable cores).
    """
    check_params(eps, min_samples)
    stats: dict[str, Any] = {}
    graph = cosine_radius_graph(
        X, eps, device=device, threads=threads, show_progress=show_progress, stats=stats
    )
    labels, core = labels_from_graph(graph, int(min_samples))
    stats.update(
        eps=float(eps),
        min_samples=int(min_samples),
        n_clusters=int(labels.max(initial=-1) + 1),
        n_noise=int((labels == -1).sum()),
        n_core=int(core.sum()),
    )
    return DBSCANResult(labels=labels, core_sample_indices=np.flatnonzero(core), stats=stats)


def check_params(eps: float, min_samples: int) -> None:
    """sklearn's parameter rules (eps > 0, min_samples an int >= 1), as one ConfigError each."""
    if isinstance(eps, bool) or not isinstance(eps, (int, float, np.integer, np.floating)) or not eps > 0:
        raise ConfigError(f"eps must be a number > 0, got {eps!r}.", parameter="eps", value=eps)
    if isinstance(min_samples, bool) or not isinstance(min_samples, (int, np.integer)) or min_samples < 1:
        raise ConfigError(
            f"min_samples must be an integer >= 1, got {min_samples!r}.",
            parameter="min_samples",
            value=min_samples,
        )


def labels_from_graph(graph: Any, min_samples: int) -> tuple[np.ndarray, np.ndarray]:
    """sklearn's DBSCAN labels from its neighbourhood graph (CSR, row i = neighbours of i, self incl.)."""
    from scipy.sparse.csgraph import connected_components

    n = graph.shape[0]
    indptr, indices = graph.indptr, graph.indices
    core = np.diff(indptr) >= min_samples
    if (graph != graph.T).nnz:  # sklearn's floats made a pair one-sided: replay its search exactly
        return _labels_by_search(indptr, indices, core), core
    labels = np.full(n, -1, dtype=np.intp)
    core_idx = np.flatnonzero(core)
    if not len(core_idx):
        return labels, core
    _, comp = connected_components(graph[core_idx][:, core_idx], directed=False)
    # Number clusters by their lowest core index: sklearn starts a cluster at each unlabeled core point
    # in index order.
    _, first = np.unique(comp, return_index=True)
    rank = np.empty(len(first), dtype=np.intp)
    rank[np.argsort(first)] = np.arange(len(first))
    labels[core_idx] = rank[comp]
    # A border point keeps the first cluster to reach it: the lowest label among its core neighbours.
    rows = np.repeat(np.arange(n), np.diff(indptr))
    reach = core[rows] & ~core[indices]
    best = np.full(n, np.iinfo(np.intp).max, dtype=np.intp)
    np.minimum.at(best, indices[reach], labels[rows[reach]])
    border = ~core & (best != np.iinfo(np.intp).max)
    labels[border] = best[border]
    return labels, core


def _labels_by_search(indptr: np.ndarray, indices: np.ndarray, core: np.ndarray) -> np.ndarray:
    """sklearn's depth-first expansion, step for step (used only for one-sided neighbourhoods)."""
    n = len(core)
    labels = np.full(n, -1, dtype=np.intp)
    label = 0
    for seed in range(n):
        if labels[seed] != -1 or not core[seed]:
            continue
        stack, i = [], seed
        while True:
            if labels[i] == -1:
                labels[i] = label
                if core[i]:
                    stack.extend(int(v) for v in indices[indptr[i] : indptr[i + 1]] if labels[v] == -1)
            if not stack:
                break
            i = stack.pop()
        label += 1
    return labels


def representatives(
    texts: Sequence[str], labels: Sequence[int], counts: Sequence[float] | None = None
) -> dict[str, str]:
    """Map each text to its cluster's most frequent text (InsTag); noise maps to itself.

    Frequency is the sum of `counts` (default 1 per row) over rows with that text; ties go to the text
    seen first.
    """
    if len(texts) != len(labels) or (counts is not None and len(counts) != len(texts)):
        raise ConfigError(
            f"texts, labels and counts must have one entry per row; got {len(texts)}, "
            f"{len(labels)}, {len(counts) if counts is not None else '-'}.",
            parameter="labels",
            value=len(labels),
        )
    weight: dict[int, dict[str, float]] = {}
    for row, (text, label) in enumerate(zip(texts, labels)):
        if label >= 0:  # dicts keep first-seen order, which breaks ties below
            bucket = weight.setdefault(int(label), {})
            bucket[text] = bucket.get(text, 0.0) + (1.0 if counts is None else float(counts[row]))
    best = {
        label: max(bucket.items(), key=lambda kv: kv[1])[0]  # max keeps the first of equals
        for label, bucket in weight.items()
    }
    return {text: best[int(label)] if label >= 0 else text for text, label in zip(texts, labels)}


@dataclass(frozen=True)
class TextClusters:
    """Distinct texts (first-seen order), their labels, frequencies and representatives."""

    texts: list[str]
    labels: np.ndarray
    counts: np.ndarray
    representative: dict[str, str]
    stats: dict[str, Any]

    def label_of(self) -> dict[str, int]:
        return {t: int(label) for t, label in zip(self.texts, self.labels)}

    def largest(self, top: int = 10) -> list[dict[str, Any]]:
        """The `top` clusters by total frequency: label, distinct texts, frequency, representative."""
        order = np.argsort(self.labels, kind="stable")  # members of each label together, in text order
        bounds = np.searchsorted(self.labels[order], np.arange(int(self.labels.max(initial=-1)) + 2))
        rows = []
        for label in range(len(bounds) - 1):
            members = order[bounds[label] : bounds[label + 1]]
            rows.append(
                {
                    "cluster": label,
                    "texts": len(members),
                    "count": float(self.counts[members].sum()),
                    "representative": self.representative[self.texts[members[0]]],
                    "examples": [self.texts[i] for i in members[:5]],
                }
            )
        rows.sort(key=lambda r: (-r["count"], r["cluster"]))
        return rows[:top]


def cluster_texts(
    texts: Sequence[str],
    *,
    eps: float = INSTAG_EPS,
    min_samples: int = INSTAG_MIN_SAMPLES,
    counts: Sequence[float] | None = None,
    embedder: Any = None,
    device: str | None = None,
    show_progress: bool = True,
) -> TextClusters:
    """InsTag's semantic aggregation: one point per distinct text, frequency = summed counts.

    `embedder` is an engine.embeddings.Embedder (default: the packaged all-MiniLM-L6-v2 with the cache).
    """
    check_params(eps, min_samples)
    freq: dict[str, float] = {}
    for row, text in enumerate(texts):
        freq[text] = freq.get(text, 0.0) + (1.0 if counts is None else float(counts[row]))
    unique = list(freq)
    if not unique:
        return TextClusters(
            texts=[],
            labels=np.zeros(0, dtype=np.intp),
            counts=np.zeros(0),
            representative={},
            stats={"rows": 0, "distinct_texts": 0},
        )
    if embedder is None:
        from engine.embeddings import Embedder

        embedder = Embedder(device=device, show_progress=show_progress)
    vectors = embedder.embed(unique)
    result = dbscan(vectors, eps, min_samples, device=device, show_progress=show_progress)
    weights = np.array([freq[t] for t in unique], dtype=np.float64)
    reps = representatives(unique, result.labels, weights)
    stats = {
        **result.stats,
        "rows": len(texts),
        "distinct_texts": len(unique),
        "embedding": dict(getattr(embedder, "stats", {})),
    }
    return TextClusters(texts=unique, labels=result.labels, counts=weights, representative=reps, stats=stats)
