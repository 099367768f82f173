"""report.html: one self-contained page per run, or several runs side by side. Images are base64 data,
styles are inline, there is no script, and a Content-Security-Policy forbids fetching anything, so the
page reads the same offline and makes no request.

    html = render([RunView("si-50", "runs/si-50", manifest, publication, summary, notes)])
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass
from typing import Any

from engine.run.publish import plots
from engine.run.publish.card import ENGINE_FIGURES, dump_yaml, find_seed
from engine.run.publish.rows import RowsSummary
from engine.run.publish.spec import Publication, TreeNode

CELL_CHARS = 280
TREE_NODES = 400
"""Most tree nodes listed (a larger tree says how many are left out)."""
POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2329;
background:#f4f6f8}
header.page{padding:14px 22px;background:#263238;color:#eceff1}
header.page h1{margin:0;font-size:19px}
.runs{display:grid;gap:16px;padding:16px;grid-template-columns:repeat(var(--runs),minmax(400px,1fr));overflow-x:auto}
.run{background:#fff;border:1px solid #d5dbe0;border-radius:6px;padding:6px 18px 18px;min-width:0}
h2{font-size:17px;margin:12px 0 4px}
h3{font-size:14px;margin:18px 0 6px;border-bottom:1px solid #e3e7ea;padding-bottom:3px}
.meta{color:#4a5660;font-size:13px;overflow-wrap:anywhere}
.note{background:#fff4e5;border-left:5px solid #ef6c00;padding:8px 12px;margin:10px 0;font-weight:600}
table{border-collapse:collapse;font-size:12.5px;margin:4px 0;max-width:100%}
th,td{border:1px solid #dfe3e6;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#eef1f3}
td.num{text-align:right;font-variant-numeric:tabular-nums}
td.text{max-width:340px;overflow-wrap:anywhere;white-space:pre-wrap}
img{max-width:min(100%,760px);height:auto;display:block;margin:6px 0}
.muted{color:#6b7782;font-style:italic}
ul.tree{margin:2px 0 2px 4px;padding-left:16px;font-size:13px}
ul.tree li{margin:1px 0}
pre{background:#f6f8fa;border:1px solid #e3e7ea;padding:8px;font-size:12px;overflow-x:auto;max-height:420px}
"""


@dataclass
class RunView:
    """One run as the page shows it."""

    label: str
    location: str
    manifest: dict[str, Any]
    publication: Publication
    summary: RowsSummary
    notes: list[str]


def esc(value: Any) -> str:
    """Text for HTML, whatever the model wrote (lone surrogates become U+FFFD)."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return html.escape(text.encode("utf-8", "replace").decode("utf-8"))


def image(png: bytes | None, alt: str) -> str:
    if png is None:
        return ""
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


def number(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else esc(value)


def kv_table(pairs: list[tuple[str, Any]]) -> str:
    rows = "".join(f'<tr><th>{esc(k)}</th><td class="num">{number(v)}</td></tr>' for k, v in pairs)
    return f"<table>{rows}</table>"


def funnel_section(publication: Publication) -> str:
    if not publication.funnel:
        return '<p class="muted">No filter stages in this run.</p>'
    rows = []
    for stage in publication.funnel:
        reasons = sorted(stage.dropped.items(), key=lambda kv: (-kv[1], kv[0]))
        dropped = "<br>".join(f"{esc(r)}: {number(n)}" for r, n in reasons) or "none"
        rows.append(
            f"<tr><td>{esc(stage.name)}</td><td>{esc(stage.unit)}</td>"
            f"<td class='num'>{number(stage.candidates)}</td><td>{esc(stage.verb)}: {dropped}</td>"
            f"<td class='num'>{number(stage.kept)}</td></tr>"
        )
    head = "<tr><th>stage</th><th>unit</th><th>in</th><th>dropped, by reason</th><th>kept</th></tr>"
    return f"<table>{head}{''.join(rows)}</table>" + image(plots.funnel_png(publication.funnel), "funnel")


def cell_text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= CELL_CHARS else text[: CELL_CHARS - 1] + "…"


def rows_table(rows: list[dict[str, Any]], columns: list[str], reason: bool = False) -> str:
    if not rows:
        return '<p class="muted">None.</p>'
    shown = columns[:6]
    head = ("<th>reason</th>" if reason else "") + "".join(f"<th>{esc(c)}</th>" for c in shown)
    body = []
    for item in rows:
        row = item["row"] if reason else item
        cells = "".join(f'<td class="text">{esc(cell_text(row.get(c, "")))}</td>' for c in shown)
        body.append("<tr>" + (f"<td>{esc(item['reason'])}</td>" if reason else "") + cells + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def tree_list(root: TreeNode) -> str:
    budget = [TREE_NODES]

    def item(node: TreeNode) -> str:
        budget[0] -= 1
        detail = f' <span class="meta">{esc(node.detail)}</span>' if node.detail else ""
        children = [item(child) for child in node.children if budget[0] > 0]
        hidden = len(node.children) - len(children)
        more = f'<li class="muted">{hidden} more</li>' if hidden else ""
        inner = f'<ul class="tree">{"".join(children)}{more}</ul>' if node.children else ""
        return f"<li><b>{esc(node.name)}</b>{detail}{inner}</li>"

    return f'<ul class="tree">{item(root)}</ul><p class="meta">{root.size()} tasks in the tree.</p>'


def engine_table(manifest: dict[str, Any]) -> str:
    stats = manifest.get("engine_stats")
    if stats is None:
        return '<p class="muted">No model was used: this command computes its output from its input.</p>'
    pairs = [(label, stats.get(key, 0)) for label, key in ENGINE_FIGURES]
    occupancy = stats.get("occupancy") or {}
    if occupancy.get("engine_steps"):
        pairs += [
            ("occupancy %", occupancy.get("occupancy_pct")),
            ("mean running requests", occupancy.get("mean_running")),
            ("slots", occupancy.get("slots")),
            ("engine steps", occupancy.get("engine_steps")),
            ("tokens per step", occupancy.get("tokens_per_step")),
        ]
    else:
        pairs.append(("occupancy", "no engine step this run (every answer came from the cache)"))
    return kv_table(pairs)


def run_column(view: RunView) -> str:
    publication, manifest, summary = view.publication, view.manifest, view.summary
    model = manifest.get("model") or {}
    paper = publication.paper
    parts = [f"<h2>{esc(publication.title)}: {esc(view.label)}</h2>"]
    meta = [f"<code>{esc(view.location)}</code>", f"finished {esc(manifest.get('finished_at', '?'))}"]
    seed = find_seed(manifest.get("config") or {})
    if seed is not None:
        meta.append(f"seed {esc(seed)}")
    if model:
        meta.append(f"model {esc(model.get('name', ''))} (<code>{esc(model.get('identity', ''))}</code>)")
    parts.append(f'<p class="meta">{" · ".join(meta)}</p><p>{esc(publication.summary)}</p>')
    if paper is not None:
        parts.append(
            f'<p class="meta">Paper: {esc(paper.citation)} '
            f'<a href="{esc(paper.url)}">{esc(paper.url)}</a></p>'
        )
    parts += [f'<div class="note">Note: {esc(note)}</div>' for note in view.notes]
    parts.append(
        f"<h3>Funnel</h3><p class='meta'>{number(publication.rows)} rows kept in "
        f"<code>{esc(publication.data)}</code>.</p>" + funnel_section(publication)
    )
    lengths = plots.lengths_png(summary.lengths)
    parts.append(
        "<h3>Lengths</h3>" + (image(lengths, "lengths") or '<p class="muted">No text to measure.</p>')
    )
    for histogram in publication.histograms:
        png = plots.histogram_png(histogram)
        parts.append(
            f"<h3>{esc(histogram.title)}</h3>"
            + (image(png, histogram.title) or '<p class="muted">No values.</p>')
        )
    for figure in publication.figures:
        caption = f'<p class="meta">{esc(figure.caption)}</p>' if figure.caption else ""
        parts.append(f"<h3>{esc(figure.title)}</h3>{image(figure.png, figure.title)}{caption}")
    if publication.figures_of_run:
        parts.append("<h3>Figures of the run</h3>" + kv_table(list(publication.figures_of_run.items())))
    if publication.tree is not None:
        parts.append("<h3>Tree</h3>" + tree_list(publication.tree))
    if summary.unreadable:
        parts.append(f'<div class="note">Note: {esc(summary.unreadable)}</div>')
    parts.append(
        f"<h3>Sample of kept rows</h3><p class='meta'>{len(summary.sample)} of {number(summary.rows)}, "
        "a seeded sample.</p>" + rows_table(summary.sample, summary.columns)
    )
    dropped_columns = list(dict.fromkeys(k for d in publication.dropped_samples for k in d["row"]))
    parts.append(
        "<h3>Sample of dropped rows</h3>" + rows_table(publication.dropped_samples, dropped_columns, True)
    )
    parts.append("<h3>Engine</h3>" + engine_table(manifest))
    config = dump_yaml({"command": manifest.get("command"), "config": manifest.get("config")})
    versions = manifest.get("versions") or {}
    parts.append(f"<h3>Configuration</h3><pre>{esc(config)}</pre>")
    parts.append("<h3>Versions</h3>" + kv_table(list(versions.items())))
    return f'<section class="run">{"".join(parts)}</section>'


def render(views: list[RunView]) -> str:
    """The page for one run, or several side by side (one column each)."""
    title = views[0].label if len(views) == 1 else f"{len(views)} runs side by side"
    columns = "".join(run_column(view) for view in views)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{POLICY}">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>instructforge report: {esc(title)}</title><style>{STYLE}</style></head><body>"
        f'<header class="page"><h1>instructforge report: {esc(title)}</h1></header>'
        f'<main class="runs" style="--runs:{len(views)}">{columns}</main></body></html>\n'
    )
