"""What a method says about its run so that it can be published: the Publication a method's describer
builds from what the run wrote (report.json, its data and trees), in the engine's own vocabulary (a
funnel of stages, binned histograms, figures, a tree, sample rows). The engine renders it as a dataset
card and a report page and knows nothing of the method beyond it.

    Publication(method="alpaca", title="Alpaca", paper=Paper(...), data="data.jsonl", rows=2,
                funnel=[Stage("instructions", "candidates", 23, {"rouge": 5}, 18)])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Paper:
    """The publication a method re-creates."""

    citation: str
    """Authors, venue and title, e.g. "Wang et al., ACL 2023: Self-Instruct: ..."."""
    url: str


@dataclass(frozen=True)
class Stage:
    """One step of the funnel: what came in, what each filter removed (with its reason), what was kept."""

    name: str
    unit: str
    """What is counted, e.g. "instructions", "responses", "tags"."""
    candidates: int
    dropped: dict[str, int]
    """Reason -> how many that reason removed, as the run's report names it."""
    kept: int
    flags: dict[str, str] = field(default_factory=dict)
    """Reason -> the flag (or change) that would let more through, "*" for any other reason; named when
    a stage keeps nothing."""
    verb: str = "removed"
    """What happened to what the stage dropped: "removed", "failed" (the model's answers), "merged"."""


@dataclass(frozen=True)
class Histogram:
    """Counts already binned by the method (e.g. ROUGE-L to the nearest seed)."""

    title: str
    xlabel: str
    bins: dict[str, int]
    """Bin label -> count, in display order."""


@dataclass(frozen=True)
class Figure:
    """A PNG the method drew (e.g. its verb-noun sunburst), embedded in the page as data."""

    title: str
    png: bytes
    caption: str = ""


@dataclass
class TreeNode:
    """A node of a tree the run grew (Explore-Instruct's domain tree)."""

    name: str
    detail: str = ""
    children: list[TreeNode] = field(default_factory=list)

    def size(self) -> int:
        return 1 + sum(child.size() for child in self.children)


@dataclass
class Publication:
    """Everything the card and the page say about one run beyond its manifest."""

    method: str
    """The method's tag on the hub, e.g. "self-instruct"."""
    title: str
    summary: str
    """How the data was made, in a sentence or three."""
    data: str
    """The main output, relative to the run directory (or the output file itself)."""
    rows: int
    """Rows of `data`, as the run's report counts them."""
    paper: Paper | None = None
    task_categories: list[str] = field(default_factory=lambda: ["text-generation"])
    language: list[str] = field(default_factory=lambda: ["en"])
    tags: list[str] = field(default_factory=list)
    text_fields: list[str] = field(default_factory=lambda: ["instruction", "input", "output"])
    """Fields of `data` whose lengths (in words) are drawn; a list of strings counts as their sum."""
    funnel: list[Stage] = field(default_factory=list)
    figures_of_run: dict[str, Any] = field(default_factory=dict)
    """The method's own figures (numbers), label -> value."""
    histograms: list[Histogram] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    tree: TreeNode | None = None
    dropped_samples: list[dict[str, Any]] = field(default_factory=list)
    """A few dropped rows: {"reason": ..., "row": {...}}."""
    empty_hint: str = ""
    """What would give rows when the result is empty and no stage alone explains it."""

    @property
    def hub_tags(self) -> list[str]:
        return list(dict.fromkeys(["synthetic", self.method, "instructforge", *self.tags]))

    def degenerate_notes(self) -> list[str]:
        """One line per degenerate fact: each stage that removed everything it got, and an empty result;
        each names what would change it (the stage's flags, or `empty_hint`)."""
        lines = []
        for stage in self.funnel:
            if stage.candidates > 0 and stage.kept == 0 and stage.dropped:
                ranked = sorted(stage.dropped.items(), key=lambda kv: (-kv[1], kv[0]))
                hint = stage.flags.get(ranked[0][0]) or stage.flags.get("*", "")
                causes = ", ".join(f"{reason} {count}" for reason, count in ranked)
                n = stage.candidates
                line = f"{stage.name}: {n} of {n} {stage.unit} {stage.verb} ({causes})"
                lines.append(line + (f"; {hint}" if hint else ""))
        if self.rows == 0:
            head = f"empty result ({self.data} has no rows)"
            if lines:
                lines[0] = f"{head}: {lines[0]}"
            else:
                lines = [head + (f"; {self.empty_hint}" if self.empty_hint else "")]
        return lines


def size_category(rows: int) -> str:
    """The hub's `size_categories` label for a row count."""
    bounds = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")]
    bounds += [(10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B")]
    return next((label for bound, label in bounds if rows < bound), "n>1B")
