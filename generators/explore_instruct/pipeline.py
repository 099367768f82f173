"""The EXPLORE-INSTRUCT pipeline (Wan et al., EMNLP 2023, §2) as resumable steps in a run directory.

Steps, each writing its outputs and then its completion marker: `extend-0` … `extend-{K-1}` (one
tree level each), `prune`, `enrich`, `sample`. Every step saves the tree it produced under
`trees/<step>/` (upstream layout) and its counters under `stats/<step>.json`, so a rerun loads the
last finished step and goes on; unfinished requests replay from the request cache. Pruning runs
before enrichment so no model time goes to tasks that sampling skips.

    report = run_explore(llm, load_tree("demo_domain"), RunDir("out"), ExploreConfig(max_depth=2))
"""

from __future__ import annotations

import functools
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


def _tree_step(
    run: RunDir,
    name: str,
    tree: DomainTree,
    grow: Callable[[DomainTree], Any],
    message: str,
    log: Callable[[str], None],
) -> DomainTree:
    """A step that grows the tree in place: the tree it left if it finished, else grown, then saved (the
    tree, then the step's counters)."""

    def compute() -> tuple[DomainTree, Any]:
        log(f"{name}: {message}")
        counters = grow(tree)
        return tree, counters.to_dict() if hasattr(counters, "to_dict") else counters

    def save(grown: tuple[DomainTree, Any]) -> None:
        save_tree(grown[0], run / "trees" / name)
        _stats(run, name, grown[1])

    return run.step(name, compute, save, lambda: (load_tree(run / "trees" / name), None))[0]


def run_explore(
    engine: Runner,
    tree: DomainTree,
    run: RunDir,
    cfg: ExploreConfig,
    log: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Run (or resume) every step on `tree` (the input, left unchanged on disk); return the report."""
    input_sizes = tree.sizes()
    for depth in range(cfg.max_depth):  # steps 1-2: lookahead + backtracking, one level at a time
        grow = functools.partial(extend_level, engine, depth=depth, cfg=cfg)
        message = f"lookahead + backtracking on {len(tree.at_depth(depth))} nodes at depth {depth}"
        tree = _tree_step(run, f"extend-{depth}", tree, grow, message, log)

    run.step(  # step 3: prune near-duplicate task names
        "prune",
        lambda: prune(tree, cfg.name_threshold),
        lambda pruned: write_json(run / PRUNED_FILE, pruned),
        lambda: None,
    )
    pruned = json.loads((run / PRUNED_FILE).read_text(encoding="utf-8"))
    pruned_names = {p["task_name"] for p in pruned}

    enrich_kept = functools.partial(enrich, engine, cfg=cfg, skip=frozenset(pruned_names))
    tree = _tree_step(run, "enrich", tree, enrich_kept, f"{len(tree) - len(pruned_names)} tasks", log)

    def save_sample(sampled: tuple[list[dict[str, Any]], dict[str, int]]) -> None:
        rows, per_node = sampled
        write_jsonl(run / DATASET_FILE, rows)
        save_tree(tree, run / "tree")
        _stats(run, "sample", {"rows": len(rows), "per_node": per_node})

    run.step("sample", lambda: sample(tree, pruned_names, cfg), save_sample, lambda: None)  # step 4

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
