"""The EXPLORE-INSTRUCT pipeline (Wan et al., EMNLP 2023, §2) as resumable steps in a run directory.

Steps, each writing its outputs and then its completion marker: `extend-0` … `extend-{K-1}` (one
tree level each), `prune`, `enrich`, `sample`. Every step saves the tree it produced under
`trees/<step>/` (upstream layout) and its counters under `stats/<step>.json`, so a rerun loads the
last finished step and goes on; unfinished requests replay from the request cache. Pruning runs
before enrichment so no model time goes to tasks that sampling skips.

    report = run_explore(llm, load_tree("demo_domain"), RunDir("out"), ExploreConfig(max_depth=2))
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from engine.run.directory import RunDir
from engine.run.io import write_json, write_jsonl
from engine.types import Runner
from generators.explore_instruct.grow import ExploreConfig, enrich, extend_level
from generators.explore_instruct.sample import prune, sample
from generators.explore_instruct.tree import DomainTree, load_tree, save_tree

DATASET_FILE = "explore_instruct.jsonl"
PRUNED_FILE = "pruned_tasks.json"


def _stats(run: RunDir, step: str, value: Any = None) -> Any:
    path = run / "stats" / f"{step}.json"
    if value is None:
        return json.loads(path.read_text(encoding="utf-8"))
    write_json(path, value)
    return value


def run_explore(
    engine: Runner,
    tree: DomainTree,
    run: RunDir,
    cfg: ExploreConfig,
    log: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Run (or resume) every step on `tree` (the input, left unchanged on disk); return the report."""
    input_sizes = tree.sizes()
    for depth in range(cfg.max_depth):
        step = f"extend-{depth}"
        if run.is_done(step):
            tree = load_tree(run / "trees" / step)
            continue
        log(f"{step}: lookahead + backtracking on {len(tree.at_depth(depth))} nodes at depth {depth}")
        stats = extend_level(engine, tree, depth, cfg)
        save_tree(tree, run / "trees" / step)
        _stats(run, step, stats)
        run.mark_done(step)

    if not run.is_done("prune"):
        pruned = prune(tree, cfg.name_threshold)
        write_json(run / PRUNED_FILE, pruned)
        run.mark_done("prune")
    pruned = json.loads((run / PRUNED_FILE).read_text(encoding="utf-8"))
    pruned_names = {p["task_name"] for p in pruned}

    if run.is_done("enrich"):
        tree = load_tree(run / "trees" / "enrich")
    else:
        log(f"enrich: {len(tree) - len(pruned_names)} tasks")
        stats = enrich(engine, tree, cfg, skip=frozenset(pruned_names))
        save_tree(tree, run / "trees" / "enrich")
        _stats(run, "enrich", stats.to_dict())
        run.mark_done("enrich")

    if not run.is_done("sample"):
        rows, per_node = sample(tree, pruned_names, cfg)
        write_jsonl(run / DATASET_FILE, rows)
        save_tree(tree, run / "tree")
        _stats(run, "sample", {"rows": len(rows), "per_node": per_node})
        run.mark_done("sample")

    report = build_report(run, cfg, input_sizes, tree, pruned)
    run.write_report(report)
    return report


def build_report(
    run: RunDir,
    cfg: ExploreConfig,
    input_sizes: dict[str, Any],
    tree: DomainTree,
    pruned: list[dict[str, Any]],
) -> dict[str, Any]:
    """Tree sizes before and after, per-step counters, and per node: depth, examples, sampled."""
    sampled = _stats(run, "sample")
    pruned_names = {p["task_name"] for p in pruned}
    output_sizes = tree.sizes()
    return {
        "input_tree": {k: v for k, v in input_sizes.items() if k != "examples_per_node"},
        "output_tree": {k: v for k, v in output_sizes.items() if k != "examples_per_node"},
        "extend": [_stats(run, f"extend-{d}") for d in range(cfg.max_depth)],
        "pruned": pruned,
        "enrich": _stats(run, "enrich"),
        "sample": {
            "rows": sampled["rows"],
            "requested": cfg.sample_size,
            "nodes_sampled": sum(1 for v in sampled["per_node"].values() if v),
        },
        "nodes": {
            n.task_name: {
                "raw_task_name": n.raw_task_name,
                "depth": n.depth,
                "examples_before": input_sizes["examples_per_node"].get(n.task_name, 0),
                "examples": len(n.examples),
                "sampled": sampled["per_node"].get(n.task_name, 0),
                "pruned": n.task_name in pruned_names,
            }
            for n in tree.nodes()
        },
    }
