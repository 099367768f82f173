"""InsTag's dataset measures (Lu et al., ICLR 2024, §4.1) and the plots of `instructforge tag-report`.

diversity   number of unique tags the dataset covers
complexity  average number of tags per query
tag recall  share of a reference dataset's unique tags that another dataset also covers
            (recall of A's tags by B = |tags(A) ∩ tags(B)| / |tags(A)|)

summary = dataset_summary(load_tag_sets("runs/norm").tag_sets)
write_plots({"alpaca": sets_a, "dolly": sets_b}, "runs/report")
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tagger.normalize import tag_counts

TagSetList = Sequence[Sequence[str]]
TOP_TAGS = 30  # tags listed in the report and drawn in the bar chart


def unique_tags(tag_sets: TagSetList) -> set[str]:
    return {t for tags in tag_sets for t in tags}


def diversity(tag_sets: TagSetList) -> int:
    """Unique tags covered by the dataset (paper: diversity)."""
    return len(unique_tags(tag_sets))


def complexity(tag_sets: TagSetList) -> float:
    """Average distinct tags per query (paper: complexity); 0 for an empty dataset."""
    return sum(len(set(t)) for t in tag_sets) / len(tag_sets) if tag_sets else 0.0


def tag_recall(reference: TagSetList, candidate: TagSetList) -> float:
    """Share of `reference`'s unique tags that `candidate` covers (1.0 when the reference has none)."""
    ref = unique_tags(reference)
    return len(ref & unique_tags(candidate)) / len(ref) if ref else 1.0


def frequency_distribution(tag_sets: TagSetList, top: int = TOP_TAGS) -> dict[str, Any]:
    """How tag frequencies spread: the top tags, how many tags are rare, and count quantiles."""
    counts = tag_counts(tag_sets)
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    values = sorted(counts.values())

    def quantile(q: float) -> int:
        return values[min(len(values) - 1, int(q * len(values)))] if values else 0

    return {
        "top": [{"tag": t, "queries": c} for t, c in ordered[:top]],
        "tags_seen_once": sum(1 for v in values if v == 1),
        "tags_seen_at_least_20": sum(1 for v in values if v >= 20),
        "count_quantiles": {
            "p50": quantile(0.5),
            "p90": quantile(0.9),
            "p99": quantile(0.99),
            "max": values[-1] if values else 0,
        },
    }


def dataset_summary(tag_sets: TagSetList, failed: int = 0, top: int = TOP_TAGS) -> dict[str, Any]:
    return {
        "queries": len(tag_sets),
        "failed": failed,
        "queries_without_tags": sum(1 for t in tag_sets if not t),
        "diversity": diversity(tag_sets),
        "complexity": round(complexity(tag_sets), 4),
        "frequency": frequency_distribution(tag_sets, top),
    }


def report(
    datasets: Mapping[str, TagSetList], failed: Mapping[str, int] | None = None, top: int = TOP_TAGS
) -> dict[str, Any]:
    """Summary of every dataset plus the tag-recall matrix: recall[A][B] = recall of A's tags by B."""
    failed = failed or {}
    names = list(datasets)
    return {
        "datasets": {n: dataset_summary(datasets[n], failed.get(n, 0), top) for n in names},
        "union_diversity": len(set().union(*(unique_tags(s) for s in datasets.values()))),
        "tag_recall": {
            a: {b: round(tag_recall(datasets[a], datasets[b]), 4) for b in names if b != a} for a in names
        },
    }


def write_plots(
    datasets: Mapping[str, TagSetList], out: str | os.PathLike, top: int = TOP_TAGS
) -> list[Path]:
    """PNG plots: diversity x complexity scatter, top tags per dataset, rank-frequency curves."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "diversity_complexity.png", out / "tag_frequency.png"]

    fig, ax = plt.subplots(figsize=(7, 5))
    for name, sets in datasets.items():
        x, y = diversity(sets), complexity(sets)
        ax.scatter([x], [y], s=60)
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(6, 4), fontsize=9)
    ax.set(
        xlabel="diversity (unique tags)",
        ylabel="complexity (average tags per query)",
        title="Diversity and complexity (InsTag)",
    )
    ax.grid(alpha=0.3)
    ax.margins(0.15)
    fig.tight_layout()
    fig.savefig(paths[0], dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 5))
    for name, sets in datasets.items():
        counts = sorted(tag_counts(sets).values(), reverse=True)
        if counts:
            ax.plot(range(1, len(counts) + 1), counts, label=name)
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="tag rank",
        ylabel="queries with the tag",
        title="Tag frequency distribution",
    )
    ax.grid(alpha=0.3, which="both")
    if datasets:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(paths[1], dpi=120)
    plt.close(fig)

    for index, (name, sets) in enumerate(datasets.items()):
        ordered = sorted(tag_counts(sets).items(), key=lambda kv: (-kv[1], kv[0]))[:top]
        fig, ax = plt.subplots(figsize=(8, max(3.0, 0.28 * len(ordered) + 1.2)))
        ax.barh(
            [t if len(t) <= 40 else t[:39] + "…" for t, _ in ordered][::-1],
            [c for _, c in ordered][::-1],
            color="tab:blue",
        )
        ax.set(xlabel="queries with the tag", title=f"Top {len(ordered)} tags: {name}")
        ax.tick_params(axis="y", labelsize=8)
        fig.tight_layout()
        path = out / f"top_tags_{index:02d}_{_file_safe(name)}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        paths.append(path)
    return paths


def _file_safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:60] or "dataset"
