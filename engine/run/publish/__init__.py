"""Every run is a dataset to look at and to publish: a Hugging Face dataset card (README.md, with the run
configuration as YAML beside it) and a self-contained report page (report.html), written at the end of
each run by `write_manifest` from the Publication the method describes, and again by `instructforge
report`.

A run directory gets README.md, run_config.yaml and report.html. A command that writes one output file
(`generate`, `select`) gets OUTPUT.config.yaml and OUTPUT.report.html beside it, and README.md in its
folder unless that folder's README.md is not a card of this output (then OUTPUT.README.md).

    notes = publish(Path("runs/si-50"), manifest, publication)
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.run.io import atomic_writer
from engine.run.publish.card import CARD_MARKER, card_text, dump_yaml, exports_of
from engine.run.publish.page import RunView, render
from engine.run.publish.rows import RowsSummary, summarize
from engine.run.publish.spec import Figure, Histogram, Paper, Publication, Stage, TreeNode

__all__ = [
    "Figure",
    "Histogram",
    "Paper",
    "Publication",
    "Stage",
    "TreeNode",
    "Places",
    "manifest_owner",
    "places",
    "publish",
    "publish_manifest",
    "run_view",
    "write_page",
]


@dataclass(frozen=True)
class Places:
    """Where one run's published files go."""

    folder: Path
    card: Path
    config: Path
    page: Path


def _card_of(path: Path) -> dict[str, Any] | None:
    """The front matter of an instructforge card at `path`, or None (no file, or someone else's)."""
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
        _, head, _ = text.split("---\n", 2) if text.startswith("---\n") else ("", "", "")
        meta = yaml.safe_load(head) if head else None
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError):
        return None
    return meta if isinstance(meta, dict) and CARD_MARKER in (meta.get("tags") or []) else None


def places(target: Path, data: str) -> Places:
    """A run directory's own names; beside an output file, names that cannot overwrite anyone's."""
    if target.is_dir():
        return Places(target, target / "README.md", target / "run_config.yaml", target / "report.html")
    folder = target.parent
    card = folder / "README.md"
    if card.exists():
        meta = _card_of(card)
        configs = (meta or {}).get("configs") or [{}]
        owned = [f.get("path") for f in configs[0].get("data_files") or [] if isinstance(f, dict)]
        if owned != [data]:
            card = target.with_name(target.name + ".README.md")
    return Places(
        folder,
        card,
        target.with_name(target.name + ".config.yaml"),
        target.with_name(target.name + ".report.html"),
    )


def run_view(target: Path, manifest: dict[str, Any], publication: Publication) -> RunView:
    """The run as the page shows it (reads its main data once)."""
    folder = target if target.is_dir() else target.parent
    summary = summarize(folder / publication.data, publication.text_fields)
    notes = publication.degenerate_notes()
    if summary.rows != publication.rows and not summary.unreadable:
        notes.append(
            f"{publication.data} has {summary.rows:,} rows; the run's report counts {publication.rows:,}"
        )
    label = f"{target.parent.name}/{target.name}" if target.parent.name else target.name
    return RunView(label, str(target), manifest, publication, summary, notes)


def _write(path: Path, text: str) -> None:
    with atomic_writer(path) as f:
        f.write(text.encode("utf-8", "replace").decode("utf-8"))


def write_page(path: Path, views: list[RunView]) -> Path:
    _write(path, render(views))
    return path


def manifest_owner(manifest: Path) -> Path:
    """The run a manifest describes: its run directory, or OUTPUT for OUTPUT.manifest.json."""
    if manifest.name == "manifest.json":
        return manifest.parent
    return manifest.with_name(manifest.name.removesuffix(".manifest.json"))


def publish_manifest(manifest: Path, publication: Publication) -> list[str]:
    """Publish the run whose manifest (as written) is at `manifest`; see `publish`."""
    return publish(manifest_owner(manifest), json.loads(manifest.read_text(encoding="utf-8")), publication)


def publish(target: Path, manifest: dict[str, Any], publication: Publication) -> list[str]:
    """Write the card, the configuration YAML and the page for the run at `target` (a run directory or an
    output file); print each degenerate note as one line on stderr and return them."""
    where = places(target, publication.data)
    view = run_view(target, manifest, publication)
    summary: RowsSummary = view.summary
    _write(
        where.card,
        card_text(
            manifest,
            publication,
            summary,
            data_path=publication.data,
            exports=exports_of(where.folder, publication.data),
            notes=view.notes,
            page=where.page.name,
        ),
    )
    _write(where.config, dump_yaml({"command": manifest.get("command"), "config": manifest.get("config")}))
    write_page(where.page, [view])
    for note in view.notes:
        print(f"note: {note}", file=sys.stderr)
    return view.notes
