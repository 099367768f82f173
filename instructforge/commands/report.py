"""`instructforge report`: a run's report page again (RUN_DIR/report.html), or several runs side by side
in one page. One self-contained HTML file: plots inline, no script, nothing fetched; it opens offline.

A run is a run directory (self-instruct, alpaca, dynosaur, explore, tag, normalize) or the output file of
`generate` / `select` (its OUTPUT.manifest.json says how it was made).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

EXAMPLES = """\
Examples:

  instructforge report runs/si-50

  instructforge report runs/si-50 runs/alpaca-100 runs/explore -o compare.html

  instructforge report out.jsonl
"""


def manifest_of(run: Path) -> Path:
    """The manifest of a run directory or of an output file, or a one-line error naming what is missing."""
    from engine.errors import InputError
    from engine.run.directory import sidecar

    if not run.exists():
        raise InputError("no such run directory or output file", path=run)
    manifest = run / "manifest.json" if run.is_dir() else sidecar(run)
    if run.is_file() and run.name.endswith("manifest.json"):
        manifest = run
    if not manifest.is_file():
        raise InputError(
            f"no {manifest.name} here: not an instructforge run, or its run has not finished (rerun it)",
            path=run,
        )
    return manifest


def main(
    runs: Annotated[
        list[Path],
        typer.Argument(help="Run directories (or generate/select output files); several go side by side."),
    ],
    output: Annotated[
        Optional[Path],
        typer.Option(
            "--output",
            "-o",
            help="The page to write (default: the run's report.html; for several runs ./report.html).",
        ),
    ] = None,
) -> None:
    """Write the report page of one run, or of several runs side by side (self-contained HTML)."""
    import json

    from engine.errors import InputError
    from engine.run.io import check_outputs
    from engine.run.publish import manifest_owner, places, run_view, write_page
    from instructforge.publishing import describe

    views, targets = [], []
    for run in runs:
        manifest_path = manifest_of(run)
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise InputError(f"not a readable manifest ({e})", path=manifest_path) from e
        target = manifest_owner(manifest_path)
        publication = describe(str(manifest.get("command")), target)
        views.append(run_view(target, manifest, publication))
        targets.append(target)
    if output is None:
        output = (
            places(targets[0], views[0].publication.data).page if len(views) == 1 else Path("report.html")
        )
    check_outputs([output])
    write_page(output, views)
    for view in views:
        for note in view.notes:
            typer.echo(f"note: {view.label}: {note}", err=True)
    rows = ", ".join(f"{view.label} ({view.publication.rows:,} rows)" for view in views)
    typer.echo(f"wrote {output}: {rows}")
