"""Which describer publishes each command's run (engine/run/publish): the commands hand the Publication
to their manifest at the end of a run, and `instructforge report` finds it again from a manifest's
command. `generate` is described here: its rows are the engine's own raw batch.

    publication = describe("tag", Path("runs/alpaca-tags"))
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any, Callable

from engine.errors import InputError
from engine.run.directory import sidecar
from engine.run.publish import Publication, Stage

PUBLISHED = ("self-instruct", "alpaca", "dynosaur", "explore", "tag", "normalize", "select", "generate")
"""The commands whose runs get a dataset card and a report page."""


def raw_batch(output: Path) -> Publication:
    """A `generate` output: each request's answer, those that failed, and the lines skipped."""
    manifest = json.loads(sidecar(output).read_text(encoding="utf-8"))
    counts = manifest.get("counts", {})
    rows, failures, finish = 0, Counter(), Counter()
    dropped: list[dict[str, Any]] = []
    with output.open(encoding="utf-8") as lines:
        for line in lines:
            if not line.strip():
                continue
            row = json.loads(line)
            rows += 1
            finish[str(row.get("finish_reason"))] += 1
            if row.get("failure"):
                failures[row["failure"]] += 1
                if len(dropped) < 8:
                    dropped.append(
                        {"reason": row["failure"], "row": {"id": row.get("id"), "text": row.get("text")}}
                    )
    skipped = counts.get("skipped_lines", 0)
    funnel = [
        Stage(
            "input lines",
            "lines",
            rows + skipped,
            {"malformed": skipped} if skipped else {},
            rows,
            {"*": "fix the lines named on stderr"},
        ),
        Stage(
            "answers",
            "answers",
            rows,
            dict(failures),
            rows - sum(failures.values()),
            {"truncated": "--max-tokens gives answers more room", "*": "a stronger --model"},
            "failed",
        ),
    ]
    constraint = next(
        (k for k in ("schema", "regex", "choice", "grammar") if manifest["config"].get(k)), None
    )
    return Publication(
        method="generate",
        title="Raw batch",
        summary="A batch of prompts answered by the local model through instructforge's engine"
        + (f", every answer constrained by a {constraint}" if constraint else "")
        + "; one row per prompt, in input order, failures kept and marked.",
        data=output.name,
        rows=counts.get("rows", rows),
        text_fields=["text"],
        funnel=funnel,
        figures_of_run={**{f"finish: {k}": v for k, v in sorted(finish.items())}, "skipped lines": skipped},
        dropped_samples=dropped,
        empty_hint="every input line was skipped",
    )


def _describers() -> dict[str, Callable[[Path], Publication]]:
    from generators import publish as generators
    from tagger import publish as tagger

    return {
        "self-instruct": generators.self_instruct,
        "alpaca": generators.alpaca,
        "dynosaur": generators.dynosaur,
        "explore": generators.explore,
        "tag": tagger.tag,
        "normalize": tagger.normalize,
        "select": tagger.select,
        "generate": raw_batch,
    }


def describe(command: str, target: Path) -> Publication:
    """The Publication of a `command` run at `target` (its run directory, or its output file)."""
    describers = _describers()
    if command not in describers:
        raise InputError(
            f"a `{command}` run has no dataset card or report page "
            f"(these commands' runs have them: {', '.join(PUBLISHED)})",
            path=target,
        )
    try:
        return describers[command](Path(target))
    except (OSError, UnicodeDecodeError, ValueError, KeyError) as e:  # a run's files edited or removed
        if isinstance(e, InputError):
            raise
        raise InputError(
            f"cannot read this `{command}` run's files ({type(e).__name__}: {e})", path=target
        ) from e
