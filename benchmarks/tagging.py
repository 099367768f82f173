"""Benchmark: InsTag tagging throughput (Lu et al., ICLR 2024, §3.1) — samples/s and output tok/s.

Tags the first N real instructions of ../shared/data (Self-Instruct seeds, then user-oriented ones; query
= instruction + "\\n" + first instance input, as InsTagger users build it) with `tag_shard` on the engine,
request cache off, and reports schema-valid share, samples/s and tok/s. Default: SmolLM2-135M-Instruct on
this machine, chat prompt format.

    .venv/bin/python benchmarks/tagging.py --n 200
    .venv/bin/python benchmarks/tagging.py --n 2000 --model ~/models/InsTagger --compiled   # on a GPU

A 7B tagger (InsTagger = LLaMA-2-7B) on a GPU, by arithmetic rather than measurement (no GPU was lent to
the session that wrote this): fp16 weights take 13.5 GB; the KV cache costs 2 x 32 layers x 4096 x 2 bytes
= 512 KiB per token, so one full 2,048-token context is 1 GiB. A 24 GB card keeps ~8 GB of KV cache
(~15 full contexts, ~50 typical 600-token tagging requests at once); an 80 GB card ~55 GB (~100+ at once).
Run with `--compiled` (CUDA graphs) and large shards (`--shard-size 5000+`) so vLLM's scheduler stays full.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
DATA = REPO.parent / "shared" / "data"


def real_queries(n: int, data: Path = DATA):
    from tagger.queries import Query

    out = []
    for name in ("self_instruct_seed_tasks.jsonl", "user_oriented_instructions.jsonl"):
        with open(data / name, encoding="utf-8") as f:
            for line in f:
                task = json.loads(line)
                extra = (task["instances"] or [{}])[0].get("input", "")
                text = f"{task['instruction']}\n{extra}" if extra.strip() else task["instruction"]
                out.append(Query(task["id"], 0, text))
    return out[:n]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--model", default="default")
    parser.add_argument("--prompt-format", default="auto")
    parser.add_argument(
        "--compiled", action="store_true", help="vLLM compiled mode (slower start, faster run)"
    )
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from engine.engine import Engine
    from tagger.tagging import TagConfig, resolve_prompt_format, tag_shard

    queries = real_queries(args.n)
    engine = Engine(args.model, use_cache=False, enforce_eager=not args.compiled, progress_desc="tagging")
    config = TagConfig(prompt_format=resolve_prompt_format(args.prompt_format, engine.model.name))
    engine.backend  # start the model before the clock  # noqa: B018
    start = time.perf_counter()
    rows = tag_shard(engine, queries, config)
    seconds = time.perf_counter() - start
    stats = engine.stats
    ok = sum(1 for r in rows if r["failure"] is None)
    tags = sum(len(r["tags"]) for r in rows)
    print(
        f"model {engine.model.name}, prompt format {config.prompt_format}, {len(rows)} real queries, "
        f"{'compiled' if args.compiled else 'eager'}"
    )
    print(
        f"{'queries':>8} {'seconds':>8} {'samples/s':>10} {'out tok/s':>10} {'prompt tok':>11} "
        f"{'out tok':>8} {'valid':>7} {'tags/q':>7}"
    )
    print(
        f"{len(rows):>8} {seconds:>8.1f} {len(rows) / seconds:>10.2f} {stats.tokens_per_second:>10.0f} "
        f"{stats.prompt_tokens:>11} {stats.output_tokens:>8} {100 * ok / len(rows):>6.1f}% "
        f"{tags / max(ok, 1):>7.2f}"
    )
    print(f"engine: {stats.summary()}")
    engine.close()


if __name__ == "__main__":
    main()
