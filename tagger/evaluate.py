"""Tagger evaluation as InsTag reports it (Lu et al., ICLR 2024, §3.3): exact-match and fuzzy tag F1.

Micro-averaged over all queries. Exact match compares tags after lowercasing and collapsing whitespace.
Fuzzy match (paper): a predicted tag is correct when its embedding has cosine > 0.8 with some gold tag of
the same query; symmetrically a gold tag is recalled when some predicted tag is that close. Published
for InsTagger: exact F1 31.8%, fuzzy F1 73.4% (with PhraseBERT; the default embedder here is
all-MiniLM-L6-v2, so fuzzy figures are comparable in kind, not to the decimal).

    scores = tag_f1(predicted_sets, gold_sets, embedder=Embedder())   # scores["exact"]["f1"], ["fuzzy"]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from engine.errors import ConfigError

FUZZY_THRESHOLD = 0.8  # paper §3.3: embedding cosine > 0.8 counts as a match


def canonical(tag: str) -> str:
    return " ".join(tag.lower().split())


def prf(matched_pred: int, n_pred: int, matched_gold: int, n_gold: int) -> dict[str, float]:
    """Micro precision, recall and F1 from match counts (0 where undefined)."""
    p = matched_pred / n_pred if n_pred else 0.0
    r = matched_gold / n_gold if n_gold else 0.0
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": round(p, 4), "recall": round(r, 4), "f1": round(f1, 4)}


def exact_counts(
    predicted: Sequence[Sequence[str]], gold: Sequence[Sequence[str]]
) -> tuple[int, int, int, int]:
    tp = n_pred = n_gold = 0
    for p, g in zip(predicted, gold):
        ps, gs = {canonical(t) for t in p}, {canonical(t) for t in g}
        tp += len(ps & gs)
        n_pred, n_gold = n_pred + len(ps), n_gold + len(gs)
    return tp, n_pred, tp, n_gold


def fuzzy_counts(
    predicted: Sequence[Sequence[str]],
    gold: Sequence[Sequence[str]],
    embedder: Any,
    threshold: float = FUZZY_THRESHOLD,
) -> tuple[int, int, int, int]:
    """Predicted tags with a gold tag of cosine > threshold, and gold tags with such a predicted tag."""
    import numpy as np

    pred_sets = [sorted({canonical(t) for t in p}) for p in predicted]
    gold_sets = [sorted({canonical(t) for t in g}) for g in gold]
    vocabulary = sorted({t for s in pred_sets + gold_sets for t in s})
    index = {t: i for i, t in enumerate(vocabulary)}
    matched_pred = matched_gold = n_pred = n_gold = 0
    if not vocabulary:
        return 0, 0, 0, 0
    vectors = np.asarray(embedder.embed(vocabulary), dtype=np.float32).reshape(len(vocabulary), -1)
    vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    for p, g in zip(pred_sets, gold_sets):
        n_pred, n_gold = n_pred + len(p), n_gold + len(g)
        if not p or not g:
            continue
        sims = vectors[[index[t] for t in p]] @ vectors[[index[t] for t in g]].T  # (|p|, |g|)
        matched_pred += int((sims.max(axis=1) > threshold).sum())
        matched_gold += int((sims.max(axis=0) > threshold).sum())
    return matched_pred, n_pred, matched_gold, n_gold


def tag_f1(
    predicted: Sequence[Sequence[str]],
    gold: Sequence[Sequence[str]],
    *,
    embedder: Any = None,
    threshold: float = FUZZY_THRESHOLD,
) -> dict[str, Any]:
    """Exact and (with an embedder) fuzzy micro P/R/F1 of predicted tag lists against gold, pairwise."""
    if len(predicted) != len(gold):
        raise ConfigError(
            f"predicted and gold must have one tag list per query; got {len(predicted)} and {len(gold)}.",
            parameter="predicted",
            value=len(predicted),
        )
    if not 0.0 <= threshold <= 1.0:
        raise ConfigError(
            f"`threshold` must be in [0, 1], got {threshold!r}.", parameter="threshold", value=threshold
        )
    scores: dict[str, Any] = {"queries": len(gold), "exact": prf(*exact_counts(predicted, gold))}
    if embedder is not None:
        scores["fuzzy"] = {**prf(*fuzzy_counts(predicted, gold, embedder, threshold)), "threshold": threshold}
    return scores


def align(
    predicted: dict[Any, list[str]], gold: dict[Any, list[str]]
) -> tuple[list[list[str]], list[list[str]], int]:
    """Pair predictions with gold by key (e.g. (id, turn)); gold keys without a prediction count as an
    empty prediction. Returns (predicted lists, gold lists, gold keys missing a prediction)."""
    keys = list(gold)
    missing = sum(1 for k in keys if k not in predicted)
    return [predicted.get(k, []) for k in keys], [gold[k] for k in keys], missing
