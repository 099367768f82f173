"""Benchmark: InsTag association aggregation (Lu et al., ICLR 2024, §3.2) at the paper's scale.

FP-Growth (mlxtend, sparse query x tag DataFrame) with min support 40 queries and confidence 0.99 on a
synthetic corpus shaped like InsTag's pool: 306,044 queries over ~6.4K normalized tags, 3-5 tags per
query drawn from a Zipf(1) tag distribution, plus a few hundred tag pairs that always co-occur (so
there are rules to find). Each variant runs in a fresh process so its peak memory is its own.

    .venv/bin/python benchmarks/fpgrowth.py          # paper scale, all itemset sizes and max_len=2
    .venv/bin/python benchmarks/fpgrowth.py --queries 30000 --tags 2000
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import random
import resource
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

PAPER_QUERIES = 306_044  # InsTag's data pool
PAPER_TAGS = 6_400  # tags left after normalization (the paper reports ~6.4K-6.6K)


def synthetic_tag_sets(queries: int, tags: int, pairs: int, seed: int = 0) -> list[list[str]]:
    """`tags` tags in all: Zipf(1) frequencies, 3-5 draws per query, and `pairs` partner tags that always
    appear with one mid-frequency tag (and never without it)."""
    rng = random.Random(seed)
    names = [f"tag {i:05d}" for i in range(tags - pairs)]
    cumulative, total = [], 0.0
    for rank in range(1, len(names) + 1):
        total += 1.0 / rank
        cumulative.append(total)
    # Mid-frequency tags get a partner tag that appears with them and never alone (a synonym pair).
    partner = {names[50 + k]: f"partner {k:05d}" for k in range(pairs)}
    out = []
    for _ in range(queries):
        chosen = set(rng.choices(names, cum_weights=cumulative, k=rng.randint(3, 5)))
        chosen |= {partner[t] for t in chosen if t in partner}
        out.append(sorted(chosen))
    return out


def run_variant(queries: int, tags: int, pairs: int, max_len: int | None, queue) -> None:
    from tagger.normalize import association_aggregation

    tag_sets = synthetic_tag_sets(queries, tags, pairs)
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    result = association_aggregation(tag_sets, min_support=40, min_confidence=0.99, max_len=max_len)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    queue.put(
        {
            "max_len": max_len,
            "seconds": round(seconds, 1),
            "peak_rss_mib": round(peak / 1024),
            "rss_before_mib": round(base_rss / 1024),
            "frequent_itemsets": result.frequent_itemsets,
            "rules": result.rules,
            "mutual_pairs": result.mutual_pairs,
            "tags_after": len(set(result.mapping.values())),
            "occurrences": sum(len(t) for t in tag_sets),
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--queries", type=int, default=PAPER_QUERIES)
    parser.add_argument("--tags", type=int, default=PAPER_TAGS)
    parser.add_argument("--pairs", type=int, default=200)
    parser.add_argument("--max-len", type=int, nargs="*", default=[0, 2], help="0 = all itemset sizes")
    args = parser.parse_args()
    ctx = mp.get_context("spawn")
    rows = []
    for max_len in args.max_len:
        queue = ctx.Queue()
        proc = ctx.Process(
            target=run_variant, args=(args.queries, args.tags, args.pairs, max_len or None, queue)
        )
        proc.start()
        rows.append(queue.get())
        proc.join()
    print(
        f"FP-Growth association aggregation: {args.queries} queries x {args.tags} tags, min support 40, "
        f"confidence 0.99, {rows[0]['occurrences']} tag occurrences"
    )
    print(
        f"{'max_len':>8} {'seconds':>8} {'peak MiB':>9} {'itemsets':>9} {'rules':>7} {'merged':>7} "
        f"{'tags after':>10}"
    )
    for r in rows:
        print(
            f"{str(r['max_len'] or 'all'):>8} {r['seconds']:>8} {r['peak_rss_mib']:>9} "
            f"{r['frequent_itemsets']:>9} "
            f"{r['rules']:>7} {r['mutual_pairs']:>7} {r['tags_after']:>10}"
        )
    if len(rows) > 1 and rows[-1]["seconds"]:
        print(f"ratio all/max_len=2: {rows[0]['seconds'] / rows[-1]['seconds']:.2f}x time")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
