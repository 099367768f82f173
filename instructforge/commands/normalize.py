"""`instructforge normalize`: InsTag's four-step tag normalization (Lu et al., ICLR 2024, §3.2).

Reads the tags of `instructforge tag` (a tags.jsonl or its run directory) and writes OUT/tags.jsonl
(normalized tags per query), OUT/mapping.jsonl (raw tag -> normalized, null when filtered out), and
report.json with the counts after each step.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from instructforge.options import CacheDirOpt, EmbeddingModelOpt, InputOpt, OutDirOpt

EXAMPLES = """\
Examples:

  instructforge normalize --input runs/alpaca-tags --out runs/alpaca-norm

  instructforge normalize --input runs/small/tags.jsonl --out runs/small-norm --min-share 0.01 --min-support 5

  instructforge normalize --input tags.jsonl --out norm --no-semantic --no-association
"""


def main(
    input: InputOpt,
    out: OutDirOpt,
    min_frequency: Annotated[
        Optional[int],
        typer.Option(
            "--min-frequency", help="Frequency filter α: drop tags on fewer queries (paper: 20; the default)."
        ),
    ] = None,
    min_share: Annotated[
        Optional[float],
        typer.Option(
            "--min-share",
            help="Relative frequency filter instead of α: drop tags on less than this share "
            "of the queries (for small corpora; the paper's α as a share: 20/306,044 = 6.5e-5).",
        ),
    ] = None,
    eps: Annotated[
        float,
        typer.Option("--eps", help="Semantic aggregation: DBSCAN radius in cosine distance (paper 0.05)."),
    ] = 0.05,
    semantic: Annotated[
        bool, typer.Option("--semantic/--no-semantic", help="Run semantic aggregation.")
    ] = True,
    min_support: Annotated[
        int,
        typer.Option(
            "--min-support", help="Association aggregation: FP-Growth minimum support in queries (paper 40)."
        ),
    ] = 40,
    min_confidence: Annotated[
        float, typer.Option("--min-confidence", help="Association-rule confidence threshold (paper 0.99).")
    ] = 0.99,
    association: Annotated[
        bool, typer.Option("--association/--no-association", help="Run association aggregation.")
    ] = True,
    max_len: Annotated[
        Optional[int],
        typer.Option(
            "--max-len",
            help="Largest itemset FP-Growth mines (default: all; 2 gives the same merges, fewer rules).",
        ),
    ] = None,
    embedding_model: EmbeddingModelOpt = "default",
    cache_dir: CacheDirOpt = None,
) -> None:
    """Normalize raw InsTag tags: frequency filter, rule, semantic and association aggregation."""
    from collections import Counter

    from engine.errors import ConfigError, InputError
    from engine.run.directory import RunDir
    from engine.run.io import atomic_writer, to_json_line, write_jsonl
    from instructforge.publishing import describe
    from tagger.normalize import ALPHA, NormalizeConfig, normalize, tag_counts
    from tagger.tagged import iter_tagged, load_tag_sets

    if min_frequency is not None and min_share is not None:
        raise ConfigError("Use `--min-frequency` or `--min-share`, not both.", parameter="min_share")
    config = NormalizeConfig(
        min_count=None if min_share is not None else (min_frequency or ALPHA),
        min_share=min_share,
        eps=eps if semantic else None,
        min_support=min_support if association else None,
        min_confidence=min_confidence,
        max_len=max_len,
    )
    run = RunDir(out)
    run.claim("normalize", {})  # recomputed on every run: only another command's run is refused
    tagged = load_tag_sets(input, keep_keys=False)
    if not tagged.tag_sets:
        raise InputError(f"no tagged queries ({tagged.failed} failed rows)", path=input)
    embedder = None
    if config.eps is not None:
        from engine.embeddings import Embedder

        embedder = Embedder(embedding_model, cache_dir=cache_dir)

    def log(step: dict) -> None:
        typer.echo(
            f"{step['step']}: {step['tags']} tags, {step['occurrences']} occurrences, "
            f"{step['queries_with_tags']} queries with tags",
            err=True,
        )

    result = normalize(tagged.tag_sets, config, embedder=embedder, log=log)
    raw_counts = tag_counts(tagged.tag_sets)
    write_jsonl(
        run / "mapping.jsonl",
        (
            {"raw": raw, "queries": c, "normalized": result.mapping[raw]}
            for raw, c in sorted(raw_counts.items(), key=lambda kv: (-kv[1], kv[0]))
        ),
    )
    with atomic_writer(run / "tags.jsonl") as f:
        position = 0
        for record, tags in iter_tagged(input):
            if tags is None:
                continue
            row = {k: record.data[k] for k in ("id", "turn", "query") if k in record.data}
            f.write(to_json_line({**row, "tags": result.tag_sets[position]}))
            position += 1
    final = Counter(t for tags in result.tag_sets for t in tags)
    report = {
        "rows": position,
        "steps": result.steps,
        "failed_rows_skipped": tagged.failed,
        "top_tags": [{"tag": t, "queries": c} for t, c in final.most_common(20)],
    }
    run.write_report(report)
    run.write_manifest(
        command="normalize",
        config={"input": str(input), **vars(config), "embedding_model": embedding_model},
        counts={s["step"]: s["tags"] for s in result.steps},
        outputs=[str(run / "tags.jsonl"), str(run / "mapping.jsonl")],
        publication=describe("normalize", run.path),
    )
    chain = " -> ".join(str(s["tags"]) for s in result.steps)
    rules = next((s["rules"] for s in result.steps if "rules" in s), None)
    typer.echo(
        f"normalized {len(result.tag_sets)} queries: tags {chain}"
        + (f", {rules} association rules" if rules is not None else "")
        + f"; wrote {run / 'tags.jsonl'}"
    )
