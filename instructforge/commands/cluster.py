"""`instructforge cluster`: InsTag's semantic aggregation on a file — embed, exact DBSCAN, representatives.

Each distinct text of `--field` is one point (InsTag clusters the tag vocabulary, Lu et al. 2024, §3.2),
embedded with all-MiniLM-L6-v2 (packaged, offline, cached) and clustered by DBSCAN on cosine distance
with labels identical to scikit-learn's. Every row is written back with `cluster` (-1 = noise) and
`representative`: its cluster's most frequent text (rows, or the sum of `--count-field`), noise -> itself.

    instructforge cluster --input tags.jsonl --field tag --output clustered.jsonl
"""

from __future__ import annotations

import time
from typing import Annotated, Optional

import typer

from instructforge.options import CacheDirOpt, InputOpt, OutputOpt

EXAMPLES = """Examples:

    instructforge cluster --input tags.jsonl --field tag --output clustered.jsonl

    instructforge cluster -i tag_counts.csv --field tag --count-field count --eps 0.1 -o clustered.jsonl

    instructforge cluster -i phrases.parquet --min-samples 3 --model ~/models/all-mpnet-base-v2 -o out.jsonl

    instructforge cluster -i tags.jsonl --field tag --device cuda -o clustered.jsonl
"""


def main(
    input_file: InputOpt,
    output_file: OutputOpt,
    field: Annotated[str, typer.Option("--field", help="The field holding the text to cluster.")] = "text",
    count_field: Annotated[
        Optional[str],
        typer.Option(
            "--count-field",
            help="A numeric field giving each row's frequency (e.g. a tag-count table); "
            "default: every row counts 1.",
        ),
    ] = None,
    eps: Annotated[
        float, typer.Option("--eps", help="DBSCAN radius on cosine distance (1 - cosine); InsTag: 0.05.")
    ] = 0.05,
    min_samples: Annotated[
        int, typer.Option("--min-samples", help="Neighbours (itself included) that make a core point.")
    ] = 2,
    model: Annotated[
        str,
        typer.Option(
            "--model",
            "--embedding-model",
            help="sentence-transformers folder or cached hub id; `default` = packaged all-MiniLM-L6-v2.",
        ),
    ] = "default",
    cache_dir: CacheDirOpt = None,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Neither read nor write the embedding cache.")
    ] = False,
    device: Annotated[
        Optional[str],
        typer.Option(
            "--device", help="cpu, cuda or cuda:N (default: CUDA when present). Labels are identical."
        ),
    ] = None,
    top: Annotated[int, typer.Option("--top", help="Largest clusters listed in the summary.")] = 10,
) -> None:
    """Cluster texts by meaning (exact DBSCAN on embeddings) and map each to its cluster's most frequent text.

    Writes every input row plus `cluster` and `representative`, and OUTPUT's stem + `.summary.json`
    (clusters, noise, largest clusters, timings).
    """
    from engine.clustering.dbscan import check_params, cluster_texts
    from engine.clustering.neighbors import check_device
    from engine.embeddings import Embedder
    from engine.errors import InputError
    from engine.run.io import check_outputs, published_together, read_records, write_json, write_jsonl

    start = time.perf_counter()
    check_params(eps, min_samples)
    summary_file = output_file.with_name(f"{output_file.stem}.summary.json")
    check_outputs([output_file, summary_file], [input_file])
    records = list(read_records(input_file))
    if not records:
        raise InputError("no rows to cluster", path=input_file)
    texts = [record.require(field, str) for record in records]
    counts = [_count(record, count_field) for record in records] if count_field else None
    check_device(device)  # before the embedding model loads on it
    embedder = Embedder(model, cache_dir=cache_dir, use_cache=not no_cache, device=device)
    clusters = cluster_texts(
        texts, eps=eps, min_samples=min_samples, counts=counts, embedder=embedder, device=device
    )
    label = clusters.label_of()
    s = clusters.stats
    n_clusters = int(clusters.labels.max(initial=-1)) + 1
    noise = int((clusters.labels == -1).sum())
    largest = clusters.largest(top)
    summary = {
        "input": str(input_file),
        "output": str(output_file),
        "field": field,
        "count_field": count_field,
        "eps": eps,
        "min_samples": min_samples,
        "model": model,
        "model_fingerprint": embedder.fingerprint,
        "rows": len(records),
        "distinct_texts": len(clusters.texts),
        "clusters": n_clusters,
        "clustered_texts": len(clusters.texts) - noise,
        "noise": noise,
        "largest_clusters": largest,
        "embedding": s.get("embedding", {}),
        "graph": {
            k: s[k]
            for k in ("edges", "candidates", "ambiguous", "projection_dims", "device", "t_total")
            if k in s
        },
        "seconds": round(time.perf_counter() - start, 3),
    }
    with published_together():  # the rows and their summary
        write_jsonl(
            output_file,
            (
                {**record.data, "cluster": label[text], "representative": clusters.representative[text]}
                for record, text in zip(records, texts)
            ),
        )
        write_json(summary_file, summary)
    biggest = ", ".join(f"{c['representative']!r} ({c['texts']})" for c in largest[:3]) or "none"
    typer.echo(
        f"cluster: {len(records):,} rows, {len(clusters.texts):,} distinct texts -> {n_clusters:,} "
        f"clusters ({len(clusters.texts) - noise:,} texts), {noise:,} noise (eps {eps}, min_samples "
        f"{min_samples}); largest: {biggest}; {summary['seconds']:.1f} s; wrote {output_file} and "
        f"{summary_file}"
    )


def _count(record, field: str) -> float:
    """A row's frequency: a number, or a numeric string (CSV), never negative."""
    value = record.require(field, (int, float, str))
    try:
        number = float(value)
    except ValueError:
        raise record.error(f"must be a number, got {value!r}", field) from None
    if not number >= 0:
        raise record.error(f"must be >= 0, got {value!r}", field)
    return number
