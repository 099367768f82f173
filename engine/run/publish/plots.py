"""The report page's plots, drawn with matplotlib (Agg: no display) into PNG bytes that the page embeds.

png = funnel_png(publication.funnel); png = lengths_png({"instruction": [5, 7, 9]})
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Iterator, Sequence

from engine.run.publish.spec import Histogram, Stage

KEPT, DROPPED, CANDIDATES = "#2e7d32", "#c62828", "#78909c"


@contextlib.contextmanager
def missing_glyphs_quiet() -> Iterator[None]:
    """Model text in any script is drawn as well as the font can: a missing glyph is a box, not a warning
    on the command's output."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .*missing from font", category=UserWarning)
        yield


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def _integers():
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(integer=True)


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    with missing_glyphs_quiet():
        fig.savefig(buffer, format="png", dpi=96, bbox_inches="tight")
    _pyplot().close(fig)
    return buffer.getvalue()


def _short(text: str, width: int = 34) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def funnel_png(stages: Sequence[Stage]) -> bytes | None:
    """One panel per stage: what came in, each reason's drops, what was kept (each on its own scale)."""
    if not stages:
        return None
    plt = _pyplot()
    heights = [len(s.dropped) + 2 for s in stages]
    fig, axes = plt.subplots(
        len(stages),
        1,
        figsize=(7.5, 0.32 * sum(heights) + 0.55 * len(stages)),
        gridspec_kw={"height_ratios": heights},
        squeeze=False,
    )
    for ax, stage in zip(axes[:, 0], stages):
        reasons = sorted(stage.dropped.items(), key=lambda kv: (-kv[1], kv[0]))
        labels = [f"{stage.unit} in"] + [f"{stage.verb}: {_short(r)}" for r, _ in reasons] + ["kept"]
        values = [stage.candidates] + [n for _, n in reasons] + [stage.kept]
        colors = [CANDIDATES] + [DROPPED] * len(reasons) + [KEPT]
        ax.barh(range(len(values)), values, color=colors)
        ax.set_yticks(range(len(values)), labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_title(stage.name, fontsize=9, loc="left")
        top = max(values) or 1
        ax.set_xlim(0, top * 1.18)
        for y, value in enumerate(values):
            ax.text(value + top * 0.01, y, str(value), va="center", fontsize=8)
        ax.tick_params(axis="x", labelsize=7)
        ax.xaxis.set_major_locator(_integers())
        ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return _png(fig)


def lengths_png(lengths: dict[str, list[int]]) -> bytes | None:
    """A histogram of words per row for each text field that has values."""
    fields = {name: values for name, values in lengths.items() if values}
    if not fields:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(fields), figsize=(3.3 * len(fields), 2.6), squeeze=False)
    for ax, (name, values) in zip(axes[0], fields.items()):
        ax.hist(values, bins=min(30, max(1, len(set(values)))), color="#1565c0")
        ax.set_title(f"{name} ({len(values)} rows)", fontsize=9)
        ax.set_xlabel("words", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.xaxis.set_major_locator(_integers())
        ax.yaxis.set_major_locator(_integers())
        ax.spines[["top", "right"]].set_visible(False)
    axes[0][0].set_ylabel("rows", fontsize=8)
    fig.tight_layout()
    return _png(fig)


def histogram_png(histogram: Histogram) -> bytes | None:
    """Bars of counts the method binned itself."""
    if not histogram.bins or not any(histogram.bins.values()):
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 2.8))
    labels, counts = list(histogram.bins), list(histogram.bins.values())
    ax.bar(range(len(counts)), counts, color="#6a1b9a")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=7)
    ax.set_xlabel(histogram.xlabel, fontsize=8)
    ax.set_ylabel("count", fontsize=8)
    ax.set_title(histogram.title, fontsize=9)
    ax.tick_params(axis="y", labelsize=7)
    ax.yaxis.set_major_locator(_integers())
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return _png(fig)
