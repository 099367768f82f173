"""Task pruning and data sampling of EXPLORE-INSTRUCT (Wan et al., EMNLP 2023, §2.3).

Prune: walking the tree breadth-first, a node whose name has ROUGE-L > 0.7 against an already kept
node's name is pruned. Sample: nodes at depth <= 3 that were not pruned (upstream's "use pruned"
switch never skipped them; here they are skipped) get quotas proportional to min(examples, 500); what
the rounding leaves is topped up from the root, then from every node's leftovers, all seeded.

    pruned = prune(tree, 0.7); rows, per_node = sample(tree, pruned, cfg)
"""

from __future__ import annotations

import random
from typing import Any

from engine.run.seeds import derive_seed
from generators.explore_instruct.grow import ExploreConfig
from generators.explore_instruct.tree import DomainTree, TaskNode


def prune(tree: DomainTree, threshold: float = 0.7) -> list[dict[str, Any]]:
    """Near-duplicate nodes, breadth-first (the root comes first, so it is always kept):
    [{task_name, raw_task_name, duplicate_of, score}]. Their subtrees stay: only the named node is
    pruned (as upstream)."""
    from engine.rouge.filter import RougeFilter

    names = RougeFilter(threshold, details=False, workers=1)
    kept: list[TaskNode] = []
    pruned = []
    for node in tree.nodes():
        decision = names.check([node.raw_task_name])[0]
        if decision.keep:
            kept.append(node)
            continue
        pruned.append(
            {
                "task_name": node.task_name,
                "raw_task_name": node.raw_task_name,
                "duplicate_of": kept[decision.match_index].task_name,
                "score": round(decision.score, 4),
            }
        )
    return pruned


def quotas(sizes: dict[str, int], total: int, cap: int = 500) -> dict[str, int]:
    """floor(total * min(size, cap) / sum of weights) per node, never more than the node has."""
    weights = {name: min(size, cap) for name, size in sizes.items()}
    weight_sum = sum(weights.values())
    if not weight_sum:
        return {name: 0 for name in sizes}
    return {name: min(sizes[name], total * w // weight_sum) for name, w in weights.items()}


def sample(
    tree: DomainTree, pruned: set[str], cfg: ExploreConfig
) -> tuple[list[dict[str, str]], dict[str, int]]:
    """(rows, sampled count per node): at most `sample_size` examples, in tree order."""
    eligible = [n for n in tree.nodes() if n.depth <= cfg.sample_max_depth and n.task_name not in pruned]
    quota = quotas({n.task_name: len(n.examples) for n in eligible}, cfg.sample_size, cfg.quota_cap)
    chosen: dict[str, list[int]] = {}
    leftovers: dict[str, list[int]] = {}
    for node in eligible:
        order = list(range(len(node.examples)))
        random.Random(derive_seed(cfg.seed, "sample", node.task_name)).shuffle(order)
        chosen[node.task_name] = order[: quota[node.task_name]]
        leftovers[node.task_name] = order[quota[node.task_name] :]
    missing = cfg.sample_size - sum(map(len, chosen.values()))
    # top-up: the root first (upstream), then every node's leftovers in one seeded shuffle
    root = tree.root.task_name
    extra = leftovers.pop(root, [])[:missing]
    chosen.setdefault(root, []).extend(extra)
    missing -= len(extra)
    if missing > 0:
        pool = [(name, i) for name, rest in leftovers.items() for i in rest]
        random.Random(derive_seed(cfg.seed, "sample", "top-up")).shuffle(pool)
        for name, i in pool[:missing]:
            chosen[name].append(i)
    rows, per_node = [], {}
    for node in eligible:
        picks = sorted(chosen.get(node.task_name, []))
        per_node[node.task_name] = len(picks)
        rows += [{k: node.examples[i][k] for k in ("instruction", "input", "output")} for i in picks]
    return rows, per_node
