"""`instructforge tag-report`: InsTag diversity, complexity, tag recall and frequency plots (Lu et al. 2024,
§4.1).

Takes one or more tag files (raw from `tag` or normalized from `normalize`, or their run directories);
writes OUT/report.json and PNG plots: diversity x complexity across datasets, tag rank-frequency, and a
top-tags bar chart per dataset.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from instructforge.options import OutDirOpt

EXAMPLES = """\
Examples:

  instructforge tag-report --input runs/alpaca-norm --out runs/report

  instructforge tag-report --input alpaca=runs/alpaca-norm --input dolly=runs/dolly-norm --out runs/compare
"""


def dataset_labels(inputs: list[str]) -> list[tuple[str, Path]]:
    """(label, path) per input: `NAME=PATH`, else the file stem, or the folder for a run directory."""
    pairs = []
    for item in inputs:
        name, sep, rest = item.partition("=")
        if sep and name and "/" not in name:
            pairs.append((name, Path(rest)))
            continue
        path = Path(item)
        label = path.name if path.is_dir() else (path.parent.name if path.stem == "tags" else path.stem)
        pairs.append((label or path.stem, path))
    seen: dict[str, int] = {}
    labelled = []
    for label, path in pairs:
        seen[label] = seen.get(label, 0) + 1
        labelled.append((label if seen[label] == 1 else f"{label}#{seen[label]}", path))
    return labelled


def main(
    input: Annotated[
        list[str],
        typer.Option(
            "--input",
            "-i",
            help="Tag file or run directory; repeat for several datasets; NAME=PATH sets the label.",
        ),
    ],
    out: OutDirOpt,
    top: Annotated[int, typer.Option("--top", help="Tags listed and drawn per dataset.")] = 30,
) -> None:
    """Measure tagged datasets: diversity, complexity, tag recall, tag frequency; JSON + PNG plots."""
    from engine.run.directory import RunDir
    from tagger.metrics import report, write_plots
    from tagger.tagged import load_tag_sets

    datasets, failed = {}, {}
    for label, path in dataset_labels(input):
        tagged = load_tag_sets(path, keep_keys=False)
        datasets[label], failed[label] = tagged.tag_sets, tagged.failed
    summary = report(datasets, failed, top=top)
    run = RunDir(out)
    run.claim("tag-report", {})  # recomputed on every run: only another command's run is refused
    empty = [name for name, sets in datasets.items() if not any(sets)]
    for name in empty:  # nothing to draw: say so once, not with empty plots and a matplotlib warning
        typer.echo(
            f"note: {name} has no tags, so it is left out of the plots (a `normalize` run of a small corpus "
            "removes every tag at the paper's alpha = 20: rerun it with --min-share, e.g. 0.01)",
            err=True,
        )
    drawn = {name: sets for name, sets in datasets.items() if name not in empty}
    plots = write_plots(drawn, run.path, top=top) if drawn else []
    summary["plots"] = [p.name for p in plots]
    run.write_report(summary)
    run.write_manifest(
        command="tag-report",
        config={"inputs": input, "top": top},
        counts={
            n: {"diversity": d["diversity"], "complexity": d["complexity"]}
            for n, d in summary["datasets"].items()
        },
        outputs=[str(run / "report.json")] + [str(p) for p in plots],
    )
    parts = [
        f"{n}: {d['diversity']} tags, {d['complexity']:.2f} tags/query"
        for n, d in summary["datasets"].items()
    ]
    typer.echo(f"{'; '.join(parts)}; wrote {run / 'report.json'} and {len(plots)} plots")
