"""`instructforge dedup`: SELF-INSTRUCT's ROUGE-L near-duplicate filter (Wang et al. 2023, §2.2) on any file.

Rows are decided in file order: a row is dropped iff its ROUGE-L F1 against a `--pool` entry or an earlier
kept row is above `--threshold`; kept rows join the pool at once (upstream's greedy rule, exact scores).

    instructforge dedup --input machine_instructions.jsonl --pool seed_tasks.jsonl --output kept.jsonl
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from instructforge.options import InputOpt, OutputOpt

EXAMPLES = """Examples:

    instructforge dedup --input machine_instructions.jsonl --output kept.jsonl

    instructforge dedup -i new_tasks.jsonl --pool seed_tasks.jsonl --threshold 0.7 -o kept.jsonl

    instructforge dedup -i zh_tasks.json --field prompt --unicode -o kept.jsonl

    instructforge dedup -i million.parquet --no-similar -o kept.jsonl
"""


def main(
    input_file: InputOpt,
    output_file: OutputOpt,
    field: Annotated[
        str, typer.Option("--field", help="The field holding the instruction text.")
    ] = "instruction",
    pool_file: Annotated[
        Optional[Path],
        typer.Option(
            "--pool",
            help="Instructions already in the pool (e.g. seed tasks, same --field): rows are checked "
            "against them; they are not written.",
        ),
    ] = None,
    threshold: Annotated[
        float,
        typer.Option(
            "--threshold",
            help="Drop a row whose ROUGE-L F1 against the pool is above this "
            "(SELF-INSTRUCT and Alpaca: 0.7).",
        ),
    ] = 0.7,
    unicode: Annotated[
        bool,
        typer.Option(
            "--unicode",
            help="Tokenize every script (Chinese, Japanese, Korean and Thai per character). "
            "Upstream scores non-Latin text 0 and never drops it.",
        ),
    ] = False,
    stem: Annotated[
        bool,
        typer.Option(
            "--stem", help="Porter-stem words longer than 3 letters, as rouge_score's use_stemmer=True."
        ),
    ] = False,
    top_k: Annotated[
        int,
        typer.Option(
            "--top-k", help="How many most similar pool entries a kept row records in `most_similar`."
        ),
    ] = 10,
    no_similar: Annotated[
        bool,
        typer.Option(
            "--no-similar",
            help="Write decisions only, without `most_similar` / `avg_similarity` (those need a "
            "full pool scan per kept row: use this for million-row files).",
        ),
    ] = False,
    dropped_file: Annotated[
        Optional[Path],
        typer.Option(
            "--dropped",
            help="Where dropped rows go, with the pool entry they matched and its score "
            "(default: <output stem>.dropped.jsonl).",
        ),
    ] = None,
) -> None:
    """Drop near-duplicate instructions (ROUGE-L F1 above a threshold), keeping the first of each group.

    Kept rows are written unchanged plus `most_similar` (pool text -> F1, top 10) and `avg_similarity`
    (mean F1 over the pool), as SELF-INSTRUCT records them.
    """
    from engine.errors import ConfigError
    from engine.rouge.filter import RougeFilter
    from engine.run.io import check_outputs, published_together, read_records, write_jsonl
    from engine.run.progress import progress

    if unicode and stem:
        raise ConfigError(
            "Cannot use both `--unicode` and `--stem`: the Porter stemmer is English-only. "
            "Use `--stem` for rouge_score's use_stemmer=True, or `--unicode` for non-Latin "
            "scripts.",
            parameter="mode",
        )
    start = time.perf_counter()
    mode = "unicode" if unicode else "stem" if stem else "default"
    flt = RougeFilter(threshold, mode=mode, top_k=top_k, details=not no_similar)
    if dropped_file is None:
        dropped_file = output_file.with_name(f"{output_file.stem}.dropped.jsonl")
    check_outputs([output_file, dropped_file], [input_file, *([pool_file] if pool_file else [])])
    records = list(read_records(input_file))
    texts = [record.require(field, str) for record in records]
    origins: list[str] = []  # where each pool entry came from, for the dropped rows' reason
    if pool_file is not None:
        pool_records = list(read_records(pool_file))
        flt.add([record.require(field, str) for record in pool_records])
        origins += [f"{pool_file}:{record.line}" for record in pool_records]
    pool_size = len(flt)
    with progress(total=len(texts), desc="dedup", unit="row") as bar:
        decisions = flt.check(texts, on_progress=bar.update)

    kept, dropped = [], []
    for record, decision in zip(records, decisions):
        if decision.keep:
            origins.append(f"{input_file}:{record.line}")
            row = dict(record.data)
            if not no_similar:
                row["most_similar"] = decision.most_similar
                row["avg_similarity"] = decision.avg_similarity
            kept.append(row)
        else:
            dropped.append(
                {
                    **record.data,
                    "dropped_reason": f"rouge_l > {threshold}",
                    "rouge_l_match": decision.match,
                    "rouge_l_score": decision.score,
                    "rouge_l_match_from": origins[decision.match_index],
                }
            )
    with published_together():  # never a kept file beside the dropped file of another run
        write_jsonl(output_file, kept)
        write_jsonl(dropped_file, dropped)
    s = flt.stats
    print(
        f"dedup: {len(texts):,} rows -> {len(kept):,} kept, {len(dropped):,} dropped "
        f"(ROUGE-L F1 > {threshold} vs {pool_size:,} pool + earlier kept rows, mode {mode}); "
        f"{s.pruned / max(s.pairs, 1):.1%} of {s.pairs:,} pairs pruned; "
        f"{time.perf_counter() - start:.1f} s; wrote {output_file} and {dropped_file}"
    )
