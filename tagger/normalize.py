"""InsTag tag normalization, the four steps of Lu et al., ICLR 2024, §3.2, in the paper's order.

Each step is a function `step(tag_sets, <its parameter>) -> mapping` from the current tag names to new
names (None = dropped); `normalize` composes them into the final raw -> normalized mapping and reports
the counts after every step (the paper's: >12K raw -> 8,541 -> 7,157 -> 6,587 tags, 1,772 rules).

1. frequency_filter        drop tags on fewer than α = 20 queries (or a share of the queries)
2. rule_aggregation        lowercase, special characters -> spaces, Porter stemming; the most frequent
                           original spelling names the merged tag
3. semantic_aggregation    embed tags, exact DBSCAN on cosine distance (paper: "minimum semantic
                           similarity 0.05", read as eps = 0.05 cosine distance, i.e. similarity >= 0.95
                           — a similarity of 0.05 would merge nearly everything); the most frequent
                           member names the cluster
4. association_aggregation FP-Growth (mlxtend, sparse query x tag matrix), min support 40 queries,
                           confidence 99%; tags linked by rules holding BOTH ways (A->B and B->A at
                           >= 99%) label the same queries and are merged, named by the most frequent.
                           A one-way rule (A->B only) says A implies B, not that they are one tag, so it
                           merges nothing: folding A into B would erase A's specificity, and folding B
                           into A would erase B's queries without A.

Ties between names always go to the lexicographically smallest, so results do not depend on row order.

    result = normalize(load_tag_sets("runs/tags").tag_sets, NormalizeConfig(min_count=20))
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.clustering.dbscan import INSTAG_EPS, INSTAG_MIN_SAMPLES
from engine.errors import ConfigError

Mapping = dict[str, "str | None"]

ALPHA = 20  # paper §3.2: tags seen fewer than α = 20 times are dropped
MIN_SUPPORT = 40  # paper §3.2: FP-Growth minimum support of 40 queries
MIN_CONFIDENCE = 0.99  # paper §3.2: association rules with confidence 99%
_SPECIAL = re.compile(r"[\W_]+")  # anything not a letter or digit (any script) becomes a space


def tag_counts(tag_sets: Sequence[Sequence[str]]) -> Counter[str]:
    """Queries per tag (a tag counts once per query)."""
    counts: Counter[str] = Counter()
    for tags in tag_sets:
        counts.update(set(tags))
    return counts


def apply_mapping(tag_sets: Sequence[Sequence[str]], mapping: Mapping) -> list[list[str]]:
    """Rename every tag (dropping those mapped to None); each query keeps distinct tags, sorted."""
    return [sorted({m for t in tags if (m := mapping.get(t, t)) is not None}) for tags in tag_sets]


def most_frequent(names: Sequence[str], counts: Counter[str]) -> str:
    """The name with the highest count; ties to the lexicographically smallest (order-independent)."""
    return min(names, key=lambda n: (-counts[n], n))


def frequency_filter(
    tag_sets: Sequence[Sequence[str]], min_count: int | None = ALPHA, min_share: float | None = None
) -> Mapping:
    """Step 1: keep tags seen on at least `min_count` queries, or on `min_share` of them when given
    (the relative form, for corpora far smaller than InsTag's 306K queries)."""
    threshold = frequency_threshold(len(tag_sets), min_count, min_share)
    return {t: (t if c >= threshold else None) for t, c in tag_counts(tag_sets).items()}


def frequency_threshold(n_queries: int, min_count: int | None, min_share: float | None) -> int:
    if (min_count is None) == (min_share is None):
        raise ConfigError(
            "Give exactly one of `min_count` and `min_share`; "
            f"got min_count={min_count!r}, min_share={min_share!r}.",
            parameter="min_count",
            value=(min_count, min_share),
        )
    if min_share is not None:
        if not 0.0 <= min_share <= 1.0:
            raise ConfigError(
                f"`min_share` must be in [0, 1], got {min_share!r}.", parameter="min_share", value=min_share
            )
        return max(1, math.ceil(min_share * n_queries))
    if not isinstance(min_count, int) or min_count < 1:
        raise ConfigError(
            f"`min_count` must be an int >= 1, got {min_count!r}.", parameter="min_count", value=min_count
        )
    return min_count


_STEMS: dict[str, str] = {}


def rule_key(tag: str) -> str:
    """Step 2's canonical form: lowercase, special characters -> spaces, each word Porter-stemmed."""
    from nltk.stem import PorterStemmer

    stemmer = _STEMS.get("")  # one stemmer, built lazily (nltk import is slow)
    if stemmer is None:
        stemmer = _STEMS[""] = PorterStemmer()  # type: ignore[assignment]
    words = []
    for word in _SPECIAL.sub(" ", tag.lower()).split():
        if word not in _STEMS:
            _STEMS[word] = stemmer.stem(word)  # type: ignore[attr-defined]
        words.append(_STEMS[word])
    return " ".join(words)


def rule_aggregation(tag_sets: Sequence[Sequence[str]], key: Callable[[str], str] = rule_key) -> Mapping:
    """Step 2: tags with the same `key` merge, named by their most frequent original spelling.

    A tag whose key is empty (only special characters) is dropped.
    """
    counts = tag_counts(tag_sets)
    groups: dict[str, list[str]] = {}
    for tag in counts:
        groups.setdefault(key(tag), []).append(tag)
    mapping: Mapping = {}
    for canonical, members in groups.items():
        name = most_frequent(members, counts) if canonical else None
        mapping.update((m, name) for m in members)
    return mapping


def semantic_aggregation(
    tag_sets: Sequence[Sequence[str]],
    eps: float = INSTAG_EPS,
    min_samples: int = INSTAG_MIN_SAMPLES,
    *,
    embedder: Any = None,
    show_progress: bool = True,
) -> Mapping:
    """Step 3: DBSCAN (cosine distance <= eps) over tag embeddings; each cluster -> its most frequent tag.

    `embedder` has `.embed(texts) -> (n, d) array` (default: engine.embeddings.Embedder, all-MiniLM-L6-v2
    standing in for the paper's PhraseBERT).
    """
    from engine.clustering.dbscan import cluster_texts

    counts = tag_counts(tag_sets)
    if not counts:
        return {}
    # Most frequent first, then by name: cluster_texts breaks count ties by first seen.
    names = sorted(counts, key=lambda n: (-counts[n], n))
    clusters = cluster_texts(
        names,
        eps=eps,
        min_samples=min_samples,
        counts=[counts[n] for n in names],
        embedder=embedder,
        show_progress=show_progress,
    )
    return {n: clusters.representative[n] for n in names}


@dataclass
class AssociationResult:
    mapping: Mapping
    rules: int
    """Association rules found with confidence >= the threshold (every antecedent/consequent size)."""
    mutual_pairs: int
    """Tag pairs whose rules hold both ways: the ones merged."""
    frequent_itemsets: int


def association_aggregation(
    tag_sets: Sequence[Sequence[str]],
    min_support: int = MIN_SUPPORT,
    min_confidence: float = MIN_CONFIDENCE,
    max_len: int | None = None,
) -> AssociationResult:
    """Step 4: FP-Growth on the sparse query x tag matrix, then merge tags whose rules hold both ways.

    `min_support` is a count of queries (paper: 40), turned into mlxtend's fraction of all queries;
    `max_len` caps itemset size (None = all sizes, as the paper; 2 finds the same merges: only pair rules
    merge tags).
    """
    if not isinstance(min_support, int) or min_support < 1:
        raise ConfigError(
            f"`min_support` must be an int >= 1, got {min_support!r}.",
            parameter="min_support",
            value=min_support,
        )
    if not 0.0 < min_confidence <= 1.0:
        raise ConfigError(
            f"`min_confidence` must be in (0, 1], got {min_confidence!r}.",
            parameter="min_confidence",
            value=min_confidence,
        )
    counts = tag_counts(tag_sets)
    rules = frequent_rules(tag_sets, min_support, min_confidence, max_len)
    if rules is None:
        return AssociationResult({t: t for t in counts}, 0, 0, 0)
    table, n_itemsets = rules
    single = table[(table["antecedents"].map(len) == 1) & (table["consequents"].map(len) == 1)]
    directed = {(next(iter(a)), next(iter(c))) for a, c in zip(single["antecedents"], single["consequents"])}
    mutual = sorted((a, b) for a, b in directed if a < b and (b, a) in directed)
    parent = {t: t for t in counts}  # union-find over the mutual pairs

    def root(t: str) -> str:
        while parent[t] != t:
            parent[t] = parent[parent[t]]
            t = parent[t]
        return t

    for a, b in mutual:
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    groups: dict[str, list[str]] = {}
    for t in counts:
        groups.setdefault(root(t), []).append(t)
    mapping = {m: most_frequent(members, counts) for members in groups.values() for m in members}
    return AssociationResult(mapping, len(table), len(mutual), n_itemsets)


def query_tag_matrix(tag_sets: Sequence[Sequence[str]]) -> tuple[Any, list[str]]:
    """The sparse boolean query x tag matrix (CSR) and its column names (sorted)."""
    import numpy as np
    import scipy.sparse as sp

    names = sorted({t for tags in tag_sets for t in tags})
    column = {t: j for j, t in enumerate(names)}
    indptr = np.zeros(len(tag_sets) + 1, dtype=np.int64)
    np.cumsum([len(set(tags)) for tags in tag_sets], out=indptr[1:])
    indices = np.fromiter(
        (column[t] for tags in tag_sets for t in sorted(set(tags))), dtype=np.int32, count=int(indptr[-1])
    )
    data = np.ones(len(indices), dtype=bool)
    return sp.csr_matrix((data, indices, indptr), shape=(len(tag_sets), len(names))), names


def frequent_rules(
    tag_sets: Sequence[Sequence[str]], min_support: int, min_confidence: float, max_len: int | None = None
):
    """(mlxtend association rules with confidence >= min_confidence, frequent itemset count), or None
    when no itemset of two or more tags reaches `min_support` queries."""
    import numpy as np
    import pandas as pd
    from mlxtend.frequent_patterns import association_rules, fpgrowth

    matrix, names = query_tag_matrix(tag_sets)
    n = matrix.shape[0]
    # Only tags on >= min_support queries can be in a frequent itemset. Dropping the others first is exact
    # and matters for memory: mlxtend 0.24 densifies the matrix once (`df.values` in setup_fptree), so
    # peak memory is queries x kept tags bytes (306K x 6.4K = 2 GB at InsTag scale).
    keep = np.flatnonzero(np.bincount(matrix.indices, minlength=len(names)) >= min_support)
    if n == 0 or len(keep) < 2:
        return None
    frame = pd.DataFrame.sparse.from_spmatrix(matrix[:, keep], columns=[names[j] for j in keep])
    # Support is a fraction in mlxtend; half a query below the count keeps ">= min_support queries"
    # exact under floating point.
    itemsets = fpgrowth(frame, min_support=(min_support - 0.5) / n, use_colnames=True, max_len=max_len)
    if not len(itemsets) or itemsets["itemsets"].map(len).max() < 2:
        return None
    table = association_rules(
        itemsets,
        num_itemsets=n,
        metric="confidence",
        min_threshold=min_confidence,
        return_metrics=["support", "confidence"],
    )
    return table, len(itemsets)


@dataclass(frozen=True)
class NormalizeConfig:
    """Parameters of the four steps (defaults: the paper's, §3.2). A step is skipped when disabled."""

    min_count: int | None = ALPHA
    """Step 1: α, the fewest queries a tag must be on (None when `min_share` is used)."""
    min_share: float | None = None
    """Step 1, relative form: the smallest share of queries a tag must be on."""
    stem: bool = True
    """Step 2 on/off."""
    eps: float | None = INSTAG_EPS
    """Step 3: DBSCAN radius in cosine distance; None skips semantic aggregation."""
    min_samples: int = INSTAG_MIN_SAMPLES
    """Step 3: DBSCAN min_samples (the paper gives none; 2 = any two close tags form a cluster)."""
    min_support: int | None = MIN_SUPPORT
    """Step 4: FP-Growth minimum support in queries; None skips association aggregation."""
    min_confidence: float = MIN_CONFIDENCE
    """Step 4: association-rule confidence threshold."""
    max_len: int | None = None
    """Step 4: largest itemset FP-Growth mines (None = all)."""


@dataclass
class NormalizeResult:
    mapping: Mapping
    """Every raw tag -> its normalized tag, or None when it was filtered out."""
    tag_sets: list[list[str]]
    """The normalized tags of every query, in input order."""
    steps: list[dict[str, Any]] = field(default_factory=list)
    """Counts after each step: distinct tags, tag occurrences, queries left with tags, extras."""


def step_counts(name: str, tag_sets: Sequence[Sequence[str]], **extra: Any) -> dict[str, Any]:
    return {
        "step": name,
        "tags": len(tag_counts(tag_sets)),
        "occurrences": sum(len(t) for t in tag_sets),
        "queries_with_tags": sum(1 for t in tag_sets if t),
        **extra,
    }


def normalize(
    tag_sets: Sequence[Sequence[str]],
    config: NormalizeConfig = NormalizeConfig(),
    *,
    embedder: Any = None,
    show_progress: bool = True,
    log: Callable[[dict[str, Any]], None] | None = None,
) -> NormalizeResult:
    """Run the enabled steps in the paper's order; `log` receives each step's counts as it finishes."""
    current = [list(dict.fromkeys(t)) for t in tag_sets]
    mapping: Mapping = {t: t for tags in current for t in tags}
    steps: list[dict[str, Any]] = []

    def record(name: str, step_mapping: Mapping, **extra: Any) -> None:
        nonlocal current
        for raw, now in mapping.items():
            if now is not None:
                mapping[raw] = step_mapping.get(now, now)
        current = apply_mapping(current, step_mapping)
        steps.append(step_counts(name, current, **extra))
        if log is not None:
            log(steps[-1])

    steps.append(step_counts("raw", current))
    if log is not None:
        log(steps[-1])
    threshold = frequency_threshold(len(current), config.min_count, config.min_share)
    record("frequency_filter", frequency_filter(current, threshold), min_count=threshold)
    if config.stem:
        record("rule_aggregation", rule_aggregation(current))
    if config.eps is not None:
        record(
            "semantic_aggregation",
            semantic_aggregation(
                current, config.eps, config.min_samples, embedder=embedder, show_progress=show_progress
            ),
            eps=config.eps,
            min_samples=config.min_samples,
        )
    if config.min_support is not None:
        assoc = association_aggregation(current, config.min_support, config.min_confidence, config.max_len)
        record(
            "association_aggregation",
            assoc.mapping,
            min_support=config.min_support,
            min_confidence=config.min_confidence,
            rules=assoc.rules,
            mutual_pairs=assoc.mutual_pairs,
            frequent_itemsets=assoc.frequent_itemsets,
        )
    return NormalizeResult(mapping=mapping, tag_sets=current, steps=steps)
