"""`instructforge tag-eval`: exact-match and fuzzy tag F1 of a tagger against gold tags (InsTag §3.3).

Both files hold tagged rows (`id`, `turn`, `tags`), matched by (id, turn). Fuzzy: a tag matches when its
embedding cosine with a tag on the other side is > 0.8 (paper). Writes the scores as JSON with --output.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from instructforge.options import CacheDirOpt, EmbeddingModelOpt

EXAMPLES = """\
Examples:

  instructforge tag-eval --predicted runs/smol-tags --gold runs/gold-tags

  instructforge tag-eval --predicted pred.jsonl --gold gold.jsonl --no-fuzzy --output scores.json
"""


def main(
    predicted: Annotated[Path, typer.Option("--predicted", help="Tags from the tagger under test.")],
    gold: Annotated[Path, typer.Option("--gold", help="Reference tags (e.g. from a stronger tagger).")],
    output: Annotated[
        Optional[Path], typer.Option("--output", "-o", help="Write the scores here (JSON).")
    ] = None,
    fuzzy: Annotated[
        bool, typer.Option("--fuzzy/--no-fuzzy", help="Also compute embedding-based F1.")
    ] = True,
    threshold: Annotated[
        float, typer.Option("--threshold", help="Fuzzy cosine threshold (paper 0.8).")
    ] = 0.8,
    embedding_model: EmbeddingModelOpt = "default",
    cache_dir: CacheDirOpt = None,
) -> None:
    """Score predicted tags against gold tags: exact and fuzzy micro F1."""
    from engine.errors import InputError
    from engine.run.io import write_json
    from tagger.evaluate import align, tag_f1
    from tagger.tagged import load_tag_sets

    def by_key(path: Path) -> dict:
        tagged = load_tag_sets(path)
        return dict(zip(tagged.keys, tagged.tag_sets))

    pred, ref = by_key(predicted), by_key(gold)
    if not ref:
        raise InputError("no tagged rows in the gold file", path=gold)
    pred_lists, gold_lists, missing = align(pred, ref)
    embedder = None
    if fuzzy:
        from engine.embeddings import Embedder

        embedder = Embedder(embedding_model, cache_dir=cache_dir)
    scores = {
        **tag_f1(pred_lists, gold_lists, embedder=embedder, threshold=threshold),
        "gold_without_prediction": missing,
    }
    if output is not None:
        write_json(output, scores)
    fuzzy_part = f", fuzzy F1 {scores['fuzzy']['f1']:.3f}" if "fuzzy" in scores else ""
    typer.echo(
        f"{scores['queries']} queries ({missing} without prediction): exact F1 "
        f"{scores['exact']['f1']:.3f}{fuzzy_part}"
    )
