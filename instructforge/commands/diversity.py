"""`instructforge diversity`: verb–noun diversity of an instruction file (SELF-INSTRUCT §3.2,
EXPLORE-INSTRUCT §4): unique (root verb, direct-object noun) pairs, their counts, mean and std of
occurrences, and the top-20-verbs x top-4-nouns sunburst plot.

Reads any generator's output (JSONL/JSON/CSV/parquet/datasets folder with an `instruction`-like field
or chat `messages`) or an Explore-Instruct tree folder. Writes `verb_noun_pairs.jsonl`,
`verb_noun.png`, `report.json` and `manifest.json` into --out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

EXAMPLES = """\
Examples:

  instructforge diversity runs/demo/explore_instruct.jsonl

  instructforge diversity ../shared/data/explore_instruct_demo_domain --out runs/vn-demo-tree

  instructforge diversity data.parquet --field prompt --top-verbs 30 --top-nouns 5 --out runs/vn
"""


def main(
    file: Annotated[Path, typer.Argument(help="Instruction file, or an Explore-Instruct tree folder.")],
    out: Annotated[
        Optional[Path],
        typer.Option(
            "--out", help="Folder for the pairs, plot and report (default: ./diversity-<file name>)."
        ),
    ] = None,
    field: Annotated[
        Optional[str],
        typer.Option(
            "--field",
            help="Field holding the instruction (default: the first of instruction, prompt, "
            "query, question, text; or the first user turn of `messages`).",
        ),
    ] = None,
    top_verbs: Annotated[
        int, typer.Option("--top-verbs", min=1, help="Verbs in the plot's inner ring.")
    ] = 20,
    top_nouns: Annotated[
        int, typer.Option("--top-nouns", min=1, help="Nouns per verb in the outer ring.")
    ] = 4,
) -> None:
    """Count unique verb-noun pairs in instructions and plot the most frequent ones."""
    from engine.errors import InputError
    from engine.run.directory import RunDir
    from engine.run.io import write_jsonl
    from generators.verb_noun import load_parser, plot_verb_noun, read_instructions, verb_noun_stats

    instructions = read_instructions(file, field)
    if not instructions:
        raise InputError("no instructions", path=file)
    nlp = load_parser()
    stats = verb_noun_stats(instructions, nlp)
    run = RunDir(out or Path(f"diversity-{file.resolve().stem}"))
    run.claim("diversity", {})  # recomputed on every run: only another command's run is refused
    pairs = sorted(stats.pairs.items(), key=lambda kv: (-kv[1], kv[0]))
    write_jsonl(run / "verb_noun_pairs.jsonl", ({"verb": v, "noun": n, "count": c} for (v, n), c in pairs))
    plot = None
    if stats.pairs:
        plot = plot_verb_noun(stats, run / "verb_noun.png", top_verbs, top_nouns)
    report = {"input": str(file), **stats.to_dict(top_verbs, top_nouns)}
    run.write_report(report)
    run.write_manifest(
        command="diversity",
        config={
            "input": str(file),
            "field": field,
            "top_verbs": top_verbs,
            "top_nouns": top_nouns,
            "parser": f"spaCy {nlp.meta['lang']}_{nlp.meta['name']} {nlp.meta['version']}",
        },
        counts={k: report[k] for k in ("instructions", "with_pair", "unique_pairs")},
        outputs=["verb_noun_pairs.jsonl", "report.json"] + (["verb_noun.png"] if plot else []),
    )
    typer.echo(
        f"{stats.instructions} instructions, {report['with_pair']} with a verb-noun pair, "
        f"{stats.unique_pairs} unique pairs (mean {stats.mean:.2f}, std {stats.std:.2f} occurrences "
        f"per pair); wrote {run.path}" + (f" (plot {plot})" if plot else "")
    )
