"""How InsTag runs are published (engine/run/publish): `tag`, `normalize` and `select` runs with their
funnels read from the run's report, and the tag frequency and diversity-by-complexity plots that
`tag-report` draws (tagger/metrics.py), for the run's own tags.

    publication = tag(Path("runs/alpaca-tags"))
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from engine.run.publish import Figure, Paper, Publication, Stage
from engine.run.publish.plots import missing_glyphs_quiet

PAPER = Paper(
    "Lu et al., ICLR 2024: #InsTag: Instruction Tagging for Analyzing Supervised Fine-tuning of Large "
    "Language Models",
    "https://arxiv.org/abs/2308.07074",
)
DROPPED_SHOWN = 8
STEP_REASONS = {"frequency_filter": ("below_min_frequency", "removed")}
"""A normalization step's drop reason and verb (the aggregation steps merge a tag into another one)."""
MIN_SHARE_HINT = (
    "on a small corpus pass --min-share (e.g. --min-share 0.01: tags on at least 1% of the queries) or a "
    "smaller --min-frequency"
)


def tag_figures(tag_sets: list[list[str]], label: str, figures: dict[str, Any]) -> list[Figure]:
    """tag-report's plots for one dataset (top tags, rank-frequency, diversity x complexity); none, and
    the figures say so, when no query has a tag."""
    from tagger.metrics import complexity, diversity, write_plots

    figures["diversity (unique tags)"] = diversity(tag_sets)
    figures["complexity (tags per query)"] = round(complexity(tag_sets), 4)
    if not any(tag_sets):
        return []
    with tempfile.TemporaryDirectory() as folder, missing_glyphs_quiet():
        paths = write_plots({label: tag_sets}, folder, top=20)
        drawn = {p.name: p.read_bytes() for p in paths}
    titles = {
        "diversity_complexity.png": (
            "Diversity by complexity",
            "InsTag §4.1: unique tags against tags per query.",
        ),
        "tag_frequency.png": ("Tag frequency (rank-frequency)", "Queries per tag, by rank, log-log."),
    }
    shown = [Figure(titles[name][0], png, titles[name][1]) for name, png in drawn.items() if name in titles]
    shown += [Figure("Top tags", png) for name, png in drawn.items() if name.startswith("top_tags_")]
    return shown


def _tag_sets(path: Path) -> list[list[str]]:
    from tagger.tagged import load_tag_sets

    return load_tag_sets(path, keep_keys=False).tag_sets if path.is_file() else []


def _rows(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    with path.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def tag(run: Path) -> Publication:
    report = json.loads((run / "report.json").read_text(encoding="utf-8"))
    plan, outputs = report.get("plan", {}), report.get("outputs", {})
    source = plan.get("input", {})
    failed = {k.removeprefix("failed_"): v for k, v in outputs.items() if k.startswith("failed_") and v}
    records, without = source.get("records", 0), source.get("records_without_user_turn", 0)
    funnel = [
        Stage(
            "input records",
            "records",
            records,
            {"no_user_turn": without} if without else {},
            records - without,
        ),
        Stage(
            "tagging",
            "queries",
            plan.get("queries", 0),
            failed,
            outputs.get("tagged", 0),
            {
                "truncated": "--max-tokens / --last-try-max-tokens give answers more room",
                "*": "a tagger model (--model ~/models/InsTagger) answers in the expected shape",
            },
            "failed",
        ),
    ]
    figures: dict[str, Any] = {"queries": plan.get("queries", 0), "tagged": outputs.get("tagged", 0)}
    figures["tag occurrences"] = outputs.get("tags", 0)
    rows = _rows(run / "tags.jsonl")
    dropped = [
        {"reason": r["failure"], "row": {"id": r.get("id"), "turn": r.get("turn"), "query": r.get("query")}}
        for r in rows
        if r.get("failure")
    ][:DROPPED_SHOWN]
    return Publication(
        method="instag",
        title="InsTag tags",
        summary="Open-set, fine-grained intention tags for every user query, each with a short explanation, "
        "written by the model as JSON under a grammar constraint (InsTag's tagging step, §3.1).",
        data="tags.jsonl",
        rows=outputs.get("rows", 0),
        paper=PAPER,
        task_categories=["text-classification"],
        tags=["tagging"],
        text_fields=["query"],
        funnel=funnel,
        figures_of_run=figures,
        figures=tag_figures(_tag_sets(run / "tags.jsonl"), run.name, figures),
        dropped_samples=dropped,
        empty_hint="the input has no user queries",
    )


def normalize(run: Path) -> Publication:
    report = json.loads((run / "report.json").read_text(encoding="utf-8"))
    steps = report.get("steps", [])
    funnel = []
    for before, step in zip(steps, steps[1:]):
        reason, verb = STEP_REASONS.get(step["step"], ("into_another_tag", "merged"))
        gone = before["tags"] - step["tags"]
        flags = {"*": MIN_SHARE_HINT} if step["step"] == "frequency_filter" else {}
        funnel.append(
            Stage(
                step["step"],
                "tags",
                before["tags"],
                {reason: gone} if gone else {},
                step["tags"],
                flags,
                verb,
            )
        )
    final = steps[-1] if steps else {}
    figures: dict[str, Any] = {
        "queries with raw tags": steps[0].get("queries_with_tags", 0) if steps else 0,
        "queries left with tags": final.get("queries_with_tags", 0),
        "raw tags": steps[0]["tags"] if steps else 0,
        "normalized tags": final.get("tags", 0),
        "failed rows skipped": report.get("failed_rows_skipped", 0),
    }
    threshold = next((s.get("min_count") for s in steps if s["step"] == "frequency_filter"), None)
    if threshold is not None:
        figures["frequency threshold (queries)"] = threshold
    dropped = [
        {"reason": "filtered out", "row": {"raw": m.get("raw"), "queries": m.get("queries")}}
        for m in _rows(run / "mapping.jsonl")
        if m.get("normalized") is None
    ][:DROPPED_SHOWN]
    return Publication(
        method="instag",
        title="InsTag normalized tags",
        summary="Raw InsTag tags normalized in the paper's four steps (§3.2): a frequency filter, rule "
        "aggregation (case, punctuation, stemming), semantic aggregation (DBSCAN on embeddings) and "
        "association aggregation (FP-Growth rules that hold both ways).",
        data="tags.jsonl",
        rows=report.get("rows", sum(1 for _ in _rows(run / "tags.jsonl"))),
        paper=PAPER,
        task_categories=["text-classification"],
        tags=["tagging", "normalized"],
        text_fields=["query"],
        funnel=funnel,
        figures_of_run=figures,
        figures=tag_figures(_tag_sets(run / "tags.jsonl"), run.name, figures),
        dropped_samples=dropped,
    )


def select(output: Path) -> Publication:
    """A `select` output: the selection (OUTPUT) and, with --data, the selected samples (its main data)."""
    report = json.loads(output.with_name(output.name + ".report.json").read_text(encoding="utf-8"))
    data = output.with_name(report["samples_file"]) if report.get("samples_file") else output
    pool, selected = report.get("pool", 0), report.get("selected", 0)
    funnel = [
        Stage(
            "complexity-first diverse sampling",
            f"{report.get('unit', 'sample')}s",
            pool,
            {"not_selected": pool - selected} if pool - selected else {},
            selected,
            {"*": "the input has no tagged rows"},
        ),
    ]
    figures = {
        k: report.get(k)
        for k in (
            "requested",
            "selected",
            "passes",
            "coverage",
            "pool_tags",
            "covered_tags",
            "avg_tags_selected",
            "avg_tags_pool",
            "exhausted",
        )
    }
    figures["failed rows skipped"] = report.get("failed_rows_skipped", 0)
    chosen = [row.get("tags", []) for row in _rows(output)]
    return Publication(
        method="instag",
        title="InsTag Cf-D selection",
        summary="Samples selected by InsTag's complexity-first diverse sampling (§4.2): most tags first, "
        "each pass adding only samples that bring a tag not yet covered, until N are chosen.",
        data=data.name,
        rows=selected,
        paper=PAPER,
        task_categories=["text-generation"],
        tags=["data-selection"],
        text_fields=["queries", "messages", "conversations", "instruction", "output"],
        funnel=funnel,
        figures_of_run=figures,
        figures=tag_figures(chosen, output.stem, {}),
        empty_hint="the input has no tagged rows, or --n is 0",
    )
