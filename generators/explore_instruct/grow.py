"""EXPLORE-INSTRUCT (Wan et al., EMNLP 2023, §2.2–2.3): grow a domain's task tree with lookahead and
backtracking, then enrich every task with examples.

Extend (lookahead + backtracking): each node above depth K asks the model for new subtasks, showing
the node, two of its examples, its existing subtasks and its peer tasks, so every request adds branches
beside the ones already there. Enrich: every node gets examples until its depth's target is reached,
10 per request, prompted with its parent's examples and its own reason. Both steps batch every node
of a round into one `engine.run`, bound their attempts per node (upstream retries forever) and derive
each request's seed from the run seed, the node and the attempt.

    cfg = ExploreConfig(max_depth=2); counts = extend_level(llm, tree, 0, cfg); enrich(llm, tree, cfg)
"""

from __future__ import annotations

import functools
import math
import random
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model

from engine.errors import require
from engine.run.seeds import derive_seed
from engine.types import Request, Runner, Sampling
from generators.explore_instruct.filters import ExampleFilter, NodeDeduper
from generators.explore_instruct.tree import DomainTree, TaskNode

EXTEND_FORMAT = "explore_instruct.extend@1"
ENRICH_FORMAT = "explore_instruct.enrich@1"


@dataclass(frozen=True)
class ExploreConfig:
    """Every setting of an Explore-Instruct run (defaults cite their source)."""

    max_depth: int = 2
    """K: nodes at depth < K get new subtasks (upstream `--max_depth`)."""
    new_subtasks: tuple[int, ...] = (4,)
    """New subtasks to add per node, by depth of the node; the last value repeats (upstream
    `--extend_nums`, one value per depth)."""
    subtasks_per_request: int = 4
    """Subtasks asked for in one extend request (METHODS.md: 3–5)."""
    max_children: int = 12
    """M: most children a node may have (METHODS.md: 12)."""
    max_attempts: int = 3
    """Rounds of requests per node and step; upstream has no bound and can loop forever (ours)."""
    examples_per_request: int = 10
    """Examples asked for in one enrich request (METHODS.md: 10)."""
    examples_per_node: tuple[int, ...] = (100,)
    """Target examples per node, by depth; the last value repeats (upstream `--enrich_nums`)."""
    name_threshold: float = 0.7
    """A task name with ROUGE-L above this against a kept name is a duplicate (upstream prune: 0.7)."""
    rouge_threshold: float = 0.7
    """An instruction with ROUGE-L above this against a kept one is dropped (upstream filter: 0.7)."""
    cross_node_dedup: bool = True
    """Deduplicate instructions across nodes too (upstream: within each node only)."""
    min_words: int = 3
    """Fewest words per instruction (METHODS.md: 3–150)."""
    max_words: int = 150
    """Most words per instruction (METHODS.md: 3–150)."""
    sample_size: int = 10_000
    """Examples in the sampled dataset (upstream's base release: 10k per domain)."""
    sample_max_depth: int = 3
    """Deepest nodes sampled from (METHODS.md: depth <= 3)."""
    quota_cap: int = 500
    """A node's sampling weight is min(its examples, quota_cap) (METHODS.md: 500)."""
    temperature: float = 0.7
    """Sampling temperature of both steps (Self-Instruct's 0.7; each request carries its own seed)."""
    extend_max_tokens: int = 1536
    """Token budget of one extend answer (4 subtasks x 2 examples fit)."""
    enrich_max_tokens: int = 2048
    """Token budget of one enrich answer (10 examples fit)."""
    seed: int = 0
    """Run seed: every request seed and random choice derives from it."""

    def __post_init__(self) -> None:
        require(self, "max_depth", self.max_depth >= 0, ">= 0")
        require(
            self,
            "new_subtasks",
            bool(self.new_subtasks) and min(self.new_subtasks) >= 0,
            "a list of ints >= 0",
        )
        require(self, "subtasks_per_request", 1 <= self.subtasks_per_request <= 10, "in [1, 10]")
        require(self, "max_children", self.max_children >= 1, ">= 1")
        require(self, "max_attempts", self.max_attempts >= 1, ">= 1")
        require(self, "examples_per_request", 1 <= self.examples_per_request <= 20, "in [1, 20]")
        nodes = self.examples_per_node
        require(self, "examples_per_node", bool(nodes) and min(nodes) >= 0, "a list of ints >= 0")
        for name in ("name_threshold", "rouge_threshold"):
            require(self, name, 0.0 <= getattr(self, name) <= 1.0, "in [0, 1]")
        require(self, "sample_size", self.sample_size >= 0, ">= 0")
        require(self, "sample_max_depth", self.sample_max_depth >= 0, ">= 0")
        require(self, "quota_cap", self.quota_cap >= 1, ">= 1")
        require(self, "temperature", self.temperature >= 0, ">= 0")
        require(self, "extend_max_tokens", self.extend_max_tokens >= 64, ">= 64")
        require(self, "enrich_max_tokens", self.enrich_max_tokens >= 64, ">= 64")
        ExampleFilter(self.min_words, self.max_words)  # validates the word bounds

    def per_depth(self, values: tuple[int, ...], depth: int) -> int:
        return values[min(depth, len(values) - 1)]

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


# ------------------------------------------------------------------------------- output types


class Example(BaseModel):
    model_config = ConfigDict(extra="forbid")
    instruction: str = Field(min_length=1, max_length=400)
    input: str = Field(max_length=1200)
    output: str = Field(min_length=1, max_length=1200)


class NewSubtask(BaseModel):
    model_config = ConfigDict(extra="forbid")
    raw_task_name: str = Field(min_length=1, max_length=80)
    reason: str = Field(min_length=1, max_length=500)
    examples: list[Example] = Field(min_length=2, max_length=2)  # METHODS.md: 2 examples each


@functools.lru_cache(maxsize=None)
def subtasks_type(count: int) -> type[BaseModel]:
    """{"subtasks": [exactly `count` NewSubtask]}."""
    return create_model(
        f"NewSubtasks{count}",
        __config__=ConfigDict(extra="forbid"),
        subtasks=(list[NewSubtask], Field(min_length=count, max_length=count)),
    )


@functools.lru_cache(maxsize=None)
def examples_type(count: int) -> type[BaseModel]:
    """{"examples": [exactly `count` Example]}."""
    return create_model(
        f"NewExamples{count}",
        __config__=ConfigDict(extra="forbid"),
        examples=(list[Example], Field(min_length=count, max_length=count)),
    )


def _messages(template: str, **variables: Any) -> list[dict[str, str]]:
    from prompts import load_template

    return [{"role": "user", "content": load_template("explore_instruct", template).render(**variables)}]


def _pick(examples: list[dict[str, str]], count: int, rng: random.Random) -> list[dict[str, str]]:
    return examples if len(examples) <= count else rng.sample(examples, count)


# ------------------------------------------------------------------------------------- extend


def extend_request(tree: DomainTree, node: TaskNode, attempt: int, cfg: ExploreConfig) -> Request:
    """One lookahead + backtracking request: target, 2 of its examples, existing subtasks, peers."""
    seed = derive_seed(cfg.seed, "extend", node.task_name, attempt)
    messages = _messages(
        "extend.j2",
        domain=tree.root.raw_task_name,
        target=node,
        parent_name=node.parent.raw_task_name if node.parent else None,
        examples=_pick(node.examples, 2, random.Random(seed)),  # METHODS.md: 2 examples
        existing=[c.raw_task_name for c in node.children],
        peers=[p.raw_task_name for p in node.peers],
        count=cfg.subtasks_per_request,
    )
    return Request(
        messages=messages,
        output_type=subtasks_type(cfg.subtasks_per_request),
        format_version=EXTEND_FORMAT,
        sampling=Sampling(temperature=cfg.temperature, max_tokens=cfg.extend_max_tokens, seed=seed),
    )


def extend_level(engine: Runner, tree: DomainTree, depth: int, cfg: ExploreConfig) -> dict[str, Any]:
    """Add subtasks to every node at `depth`, one batched request per pending node per round.

    A node wants min(new_subtasks[depth], max_children - its children) more; it stops after
    `max_attempts` rounds even if short. New names that are ROUGE-L near-duplicates of any name in the
    tree (or of one accepted earlier in this step) are rejected. Returns counters and rejections.
    """
    from engine.rouge.filter import RougeFilter

    quality = ExampleFilter(cfg.min_words, cfg.max_words)
    names = RougeFilter(cfg.name_threshold, details=False, workers=1)
    names.add(n.raw_task_name for n in tree.nodes())
    nodes = tree.at_depth(depth)
    wanted = cfg.per_depth(cfg.new_subtasks, depth)
    want = {n.task_name: max(0, min(wanted, cfg.max_children - len(n.children))) for n in nodes}
    counts: Counter = Counter()
    rejected: list[dict[str, str]] = []
    for attempt in range(cfg.max_attempts):
        pending = [n for n in nodes if want[n.task_name] > 0]
        if not pending:
            break
        results = engine.run([extend_request(tree, n, attempt, cfg) for n in pending])
        counts["requests"] += len(pending)
        for node, result in zip(pending, results):
            if not result.ok:
                counts[f"failed_{result.failure}"] += 1
                continue
            for subtask in result.parsed.subtasks:
                counts["proposed"] += 1
                reason = _admit_subtask(tree, node, subtask, want, names, quality, counts)
                if reason:
                    counts[f"rejected_{reason}"] += 1
                    rejected.append(
                        {"parent": node.task_name, "raw_task_name": subtask.raw_task_name, "reason": reason}
                    )
    counts["nodes_short"] = sum(1 for n in nodes if want[n.task_name] > 0)
    return {"depth": depth, "nodes": len(nodes), "counts": dict(sorted(counts.items())), "rejected": rejected}


def _admit_subtask(
    tree: DomainTree,
    node: TaskNode,
    subtask: NewSubtask,
    want: dict[str, int],
    names: Any,
    quality: ExampleFilter,
    counts: Counter,
) -> str | None:
    """Add one proposed subtask under `node`, or return why not (checks in this order: node already
    full, no example passes the filters, near-duplicate name; a name joins the pool only if added)."""
    if want[node.task_name] <= 0:
        return "node_full"
    examples = quality.apply([e.model_dump() for e in subtask.examples], counts)
    if not examples:
        return "no_valid_example"
    if not names.check([subtask.raw_task_name.strip()])[0].keep:
        return "duplicate_name"
    tree.add_child(node, subtask.raw_task_name, subtask.reason, examples)
    want[node.task_name] -= 1
    counts["added"] += 1
    return None


# ------------------------------------------------------------------------------------- enrich


def enrich_request(tree: DomainTree, node: TaskNode, attempt: int, index: int, cfg: ExploreConfig) -> Request:
    """One request for `examples_per_request` new examples of `node`, shown its parent's examples."""
    seed = derive_seed(cfg.seed, "enrich", node.task_name, attempt, index)
    source = node.parent or node  # the root has no parent: show its own examples
    messages = _messages(
        "enrich.j2",
        domain=tree.root.raw_task_name,
        task=node,
        parent=node.parent,
        parent_examples=_pick(source.examples, 3, random.Random(seed)),
        count=cfg.examples_per_request,
    )
    return Request(
        messages=messages,
        output_type=examples_type(cfg.examples_per_request),
        format_version=ENRICH_FORMAT,
        sampling=Sampling(temperature=cfg.temperature, max_tokens=cfg.enrich_max_tokens, seed=seed),
    )


@dataclass
class EnrichStats:
    counts: Counter = field(default_factory=Counter)
    """Requests, failures, candidates and drops by reason (generated examples)."""
    existing: Counter = field(default_factory=Counter)
    """Drops among the examples the nodes already had (deduplication only)."""
    short: dict[str, int] = field(default_factory=dict)
    """Nodes that ended below their target -> how many examples they lack."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "counts": dict(sorted(self.counts.items())),
            "existing": dict(sorted(self.existing.items())),
            "short_nodes": self.short,
        }


def enrich(
    engine: Runner, tree: DomainTree, cfg: ExploreConfig, skip: frozenset[str] = frozenset()
) -> EnrichStats:
    """Deduplicate every node's examples, then generate examples until each depth's target is met.

    Nodes in `skip` (pruned ones) are neither deduplicated nor enriched. Each round sends
    ceil(missing / examples_per_request) requests per short node, all nodes in one batch.
    """
    stats = EnrichStats()
    quality = ExampleFilter(cfg.min_words, cfg.max_words)
    dedup = NodeDeduper(cfg.rouge_threshold, cross_node=cfg.cross_node_dedup)
    nodes = [n for n in tree.nodes() if n.task_name not in skip]
    for node in nodes:  # the pool starts with what the tree has, deduplicated in tree order
        node.examples = _dedup(dedup, node, node.examples, stats.existing)
    target = {n.task_name: cfg.per_depth(cfg.examples_per_node, n.depth) for n in nodes}
    for attempt in range(cfg.max_attempts):
        missing = {n.task_name: max(0, target[n.task_name] - len(n.examples)) for n in nodes}
        jobs = [
            (n, i) for n in nodes for i in range(math.ceil(missing[n.task_name] / cfg.examples_per_request))
        ]
        if not jobs:
            break
        results = engine.run([enrich_request(tree, n, attempt, i, cfg) for n, i in jobs])
        stats.counts["requests"] += len(jobs)
        for (node, _), result in zip(jobs, results):
            if not result.ok:
                stats.counts[f"failed_{result.failure}"] += 1
                continue
            candidates = [e.model_dump() for e in result.parsed.examples]
            stats.counts["candidates"] += len(candidates)
            for example in quality.apply(candidates, stats.counts):
                if len(node.examples) >= target[node.task_name]:
                    stats.counts["dropped_over_target"] += 1
                elif _dedup(dedup, node, [example], stats.counts):
                    node.examples.append(example)
                    stats.counts["added"] += 1
    stats.short = {
        n.task_name: target[n.task_name] - len(n.examples)
        for n in nodes
        if len(n.examples) < target[n.task_name]
    }
    return stats


def _dedup(
    dedup: NodeDeduper, node: TaskNode, examples: list[dict[str, str]], counts: Counter
) -> list[dict[str, str]]:
    reasons = dedup.admit(node.task_name, [e["instruction"] for e in examples]) if examples else []
    for reason in filter(None, reasons):
        counts[f"dropped_{reason}"] += 1
    return [e for e, reason in zip(examples, reasons) if reason is None]
