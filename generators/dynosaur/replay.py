"""DYNOSAUR replay selection for continual learning (Yin et al., EMNLP 2023, §4).

When training on a new stage of tasks, replay k tasks of earlier stages, chosen by:
  instr-diverse  earlier tasks whose instructions are least similar to the current stage (the lowest
                 max-cosine to any current instruction; the paper's best strategy),
  instr-similar  the most similar ones (highest max-cosine),
  instr-support  the most representative of the earlier stage: the member nearest to each centre of a
                 seeded k-means over the earlier instructions,
  data-diverse   as instr-diverse, on embeddings of each task's example data instead,
  random         a seeded sample.
The paper released no code for this; each strategy is a small function over embedding matrices
(rows L2-normalized), so it can be tested on hand-made vectors.

    picked = select(tasks_prev, tasks_now, "instr-diverse", k=50, embedder=Embedder())
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import ConfigError, InputError

STRATEGIES = ("instr-diverse", "instr-similar", "instr-support", "data-diverse", "random")
DATA_EXAMPLES = 5  # example instances per task whose embeddings are averaged for data-diverse


# ---------------------------------------------------------------------------------- strategies


def max_similarity(previous: np.ndarray, current: np.ndarray) -> np.ndarray:
    """(n_prev,) highest cosine of each earlier row to any current row (rows unit-norm)."""
    if len(current) == 0:
        raise ConfigError(
            "this strategy compares with the current stage, which has no tasks.", parameter="current", value=0
        )
    return (previous @ current.T).max(axis=1)


def _ranked(scores: np.ndarray, k: int, descending: bool) -> list[int]:
    """Indices of the k best scores; ties go to the earlier index (stable)."""
    order = np.argsort(-scores if descending else scores, kind="stable")
    return [int(i) for i in order[:k]]


def instr_diverse(previous: np.ndarray, current: np.ndarray, k: int) -> list[int]:
    return _ranked(max_similarity(previous, current), k, descending=False)


def instr_similar(previous: np.ndarray, current: np.ndarray, k: int) -> list[int]:
    return _ranked(max_similarity(previous, current), k, descending=True)


def data_diverse(previous_data: np.ndarray, current_data: np.ndarray, k: int) -> list[int]:
    return instr_diverse(previous_data, current_data, k)


def instr_support(previous: np.ndarray, k: int, seed: int = 0) -> list[int]:
    """The member nearest to each k-means centre (sklearn KMeans, seeded), larger clusters first;
    with fewer distinct points than k, the rest follow by distance to their own centre."""
    from sklearn.cluster import KMeans

    n = len(previous)
    if k >= n:
        return list(range(n))
    distinct = len(np.unique(previous, axis=0))
    model = KMeans(n_clusters=min(k, distinct), n_init=10, random_state=seed).fit(previous)
    distance = np.linalg.norm(previous - model.cluster_centers_[model.labels_], axis=1)
    sizes = np.bincount(model.labels_, minlength=model.n_clusters)
    picked: list[int] = []
    for c in sorted(range(model.n_clusters), key=lambda c: (-sizes[c], c)):
        members = np.flatnonzero(model.labels_ == c)
        picked.append(int(members[np.argmin(distance[members])]))  # argmin: first on ties
    chosen = set(picked)
    rest = [i for i in np.argsort(distance, kind="stable") if int(i) not in chosen]
    return picked + [int(i) for i in rest[: k - len(picked)]]


def random_pick(n: int, k: int, seed: int = 0) -> list[int]:
    return random.Random(seed).sample(range(n), min(k, n))


# ---------------------------------------------------------------------------------- tasks


@dataclass
class Task:
    """One task of a stage: its instruction, example data and the input records that belong to it."""

    task_name: str
    instruction: str
    examples: list[str] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)


def read_tasks(paths: Iterable[str | Path]) -> list[Task]:
    """Tasks from tasks.jsonl (rows with `examples`) or instances files (rows grouped by
    task_name + instruction), in first-seen order. Any format engine.run.io reads."""
    from engine.run.io import read_records

    tasks: dict[tuple[str, str], Task] = {}
    for path in paths:
        for record in read_records(path):
            instruction = record.require("instruction", str)
            name = record.data.get("task_name", "")
            task = tasks.setdefault((str(name), instruction), Task(str(name), instruction))
            task.records.append(record.data)
            pairs = record.data.get("examples") or ([record.data] if "output" in record.data else [])
            for pair in pairs:
                if isinstance(pair, dict) and len(task.examples) < DATA_EXAMPLES:
                    task.examples.append(f"{pair.get('input', '')}\n{pair.get('output', '')}".strip())
    return list(tasks.values())


def data_vectors(tasks: Sequence[Task], embed) -> np.ndarray:
    """Per task: the normalized mean embedding of its example texts."""
    missing = [t.instruction for t in tasks if not t.examples]
    if missing:
        raise InputError(
            f"data-diverse needs example data, but {len(missing)} task(s) have none "
            f"(e.g. {missing[0][:60]!r}); pass instances files or tasks.jsonl with "
            "`examples`"
        )
    flat = [e for t in tasks for e in t.examples]
    vectors = embed(flat)
    out, start = [], 0
    for t in tasks:
        mean = vectors[start : start + len(t.examples)].mean(axis=0)
        start += len(t.examples)
        out.append(mean / (np.linalg.norm(mean) or 1.0))
    return np.asarray(out, dtype=np.float32)


def select(
    previous: Sequence[Task], current: Sequence[Task], strategy: str, k: int, *, embed=None, seed: int = 0
) -> list[int]:
    """Indices into `previous` of the k tasks to replay. `embed(texts) -> unit-norm rows`."""
    if strategy not in STRATEGIES:
        raise ConfigError(
            f"`strategy` must be one of {', '.join(STRATEGIES)}, got {strategy!r}.",
            parameter="strategy",
            value=strategy,
        )
    if k < 1:
        raise ConfigError(f"`k` must be >= 1, got {k}.", parameter="k", value=k)
    k = min(k, len(previous))
    if strategy == "random" or k == 0:
        return random_pick(len(previous), k, seed)
    if strategy != "instr-support" and not current:
        raise ConfigError(
            f"{strategy} compares with the current stage, which has no tasks; pass "
            "--current, or use instr-support or random.",
            parameter="current",
            value=0,
        )
    if strategy == "data-diverse":
        return data_diverse(data_vectors(previous, embed), data_vectors(current, embed), k)
    prev = embed([t.instruction for t in previous])
    if strategy == "instr-support":
        return instr_support(prev, k, seed)
    cur = embed([t.instruction for t in current])
    return (instr_diverse if strategy == "instr-diverse" else instr_similar)(prev, cur, k)
