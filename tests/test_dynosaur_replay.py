"""DYNOSAUR replay selection: each strategy on hand-made geometry, task grouping, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from engine.errors import ConfigError, InputError
from generators.dynosaur.replay import (
    Task,
    data_diverse,
    instr_diverse,
    instr_similar,
    instr_support,
    max_similarity,
    random_pick,
    read_tasks,
    select,
)


def unit(*rows) -> np.ndarray:
    m = np.atleast_2d(np.asarray(rows, dtype=np.float32))
    return m / np.linalg.norm(m, axis=1, keepdims=True)


# Current stage points along x. Earlier tasks at known angles: cosines to x are 1, .7, 0, 0, -1.
CURRENT = unit([1, 0, 0])
PREVIOUS = unit([1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1], [-1, 0, 0])


def test_max_similarity_is_nearest_current_cosine():
    sims = max_similarity(PREVIOUS, unit([1, 0, 0], [0, 0, 1]))
    np.testing.assert_allclose(sims, [1, 0.7071, 0, 1, 0], atol=1e-4)


def test_instr_diverse_picks_least_similar_with_stable_ties():
    assert instr_diverse(PREVIOUS, CURRENT, 3) == [4, 2, 3]


def test_instr_similar_picks_most_similar():
    assert instr_similar(PREVIOUS, CURRENT, 2) == [0, 1]


def test_data_diverse_uses_the_data_vectors():
    assert data_diverse(PREVIOUS[::-1].copy(), CURRENT, 1) == [0]


def test_instr_support_picks_the_member_nearest_each_centre():
    # Two clusters: 4 points around x (the middle one [1, .05] is nearest their centre), 2 around y.
    prev = unit([1, 0.3, 0], [1, 0.05, 0], [1, -0.2, 0], [1, 0.1, 0], [0.1, 1, 0], [-0.1, 1, 0])
    picked = instr_support(prev, 2, seed=0)
    assert picked[0] == 1 and picked[1] in (4, 5)
    assert instr_support(prev, 2, seed=0) == picked
    assert sorted(instr_support(prev, 10)) == list(range(6))


def test_instr_support_with_duplicate_points_still_returns_k():
    prev = unit([1, 0], [1, 0], [1, 0], [0, 1])
    picked = instr_support(prev, 3)
    assert len(picked) == 3 == len(set(picked)) and 3 in picked


def test_random_is_seeded():
    assert random_pick(10, 4, seed=1) == random_pick(10, 4, seed=1)
    assert random_pick(10, 4, seed=1) != random_pick(10, 4, seed=2)
    assert len(set(random_pick(10, 4))) == 4


def fake_embed(texts):
    """Texts name their direction: 'x ...', 'y ...', 'z ...'."""
    axes = {"x": [1, 0, 0], "y": [0, 1, 0], "z": [0, 0, 1], "-x": [-1, 0, 0]}
    return unit(*[axes[t.split()[0]] for t in texts])


def test_select_dispatches_each_strategy_over_tasks():
    previous = [
        Task("a", "x first", ["z data"]),
        Task("b", "y second", ["x data"]),
        Task("c", "-x third", ["y data"]),
    ]
    current = [Task("d", "x now", ["x data now"])]
    assert select(previous, current, "instr-diverse", 1, embed=fake_embed) == [2]
    assert select(previous, current, "instr-similar", 1, embed=fake_embed) == [0]
    assert select(previous, current, "data-diverse", 2, embed=fake_embed) == [0, 2]
    assert len(select(previous, current, "instr-support", 2, embed=fake_embed)) == 2
    assert select(previous, [], "random", 5, seed=0) == random_pick(3, 3, 0)
    with pytest.raises(ConfigError, match="strategy"):
        select(previous, current, "newest", 1, embed=fake_embed)
    with pytest.raises(ConfigError, match="compares with the current stage"):
        select(previous, [], "instr-diverse", 1, embed=fake_embed)
    with pytest.raises(InputError, match="needs example data"):
        select([Task("a", "x")], current, "data-diverse", 1, embed=fake_embed)


def test_read_tasks_groups_instances_and_reads_task_files(tmp_path):
    instances = tmp_path / "instances.jsonl"
    rows = [
        {"instruction": "x Classify.", "input": f"i{n}", "output": "pos", "task_name": "s"} for n in range(7)
    ] + [{"instruction": "y Answer.", "input": "q", "output": "a", "task_name": "qa"}]
    instances.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tasks_file = tmp_path / "tasks.jsonl"
    tasks_file.write_text(
        json.dumps({"instruction": "z Write.", "task_name": "w", "examples": [{"input": "a", "output": "b"}]})
        + "\n"
    )
    tasks = read_tasks([instances, tasks_file])
    assert [(t.task_name, len(t.records), len(t.examples)) for t in tasks] == [
        ("s", 7, 5),
        ("qa", 1, 1),
        ("w", 1, 1),
    ]
    assert tasks[2].examples == ["a\nb"]


def test_cli_replay_with_the_packaged_embedder(tmp_path, run_cli):
    previous, current = tmp_path / "stage1.jsonl", tmp_path / "stage2.jsonl"
    previous.write_text(
        "".join(
            json.dumps({"instruction": text, "input": "i", "output": "o", "task_name": str(n)}) + "\n"
            for n, text in enumerate(
                [
                    "Classify the sentiment of the movie review.",
                    "Decide if the film review is positive.",
                    "Translate the sentence into French.",
                    "Write a haiku about the ocean.",
                ]
            )
        )
    )
    current.write_text(
        json.dumps(
            {
                "instruction": "Is this product review positive or negative?",
                "input": "i",
                "output": "o",
                "task_name": "new",
            }
        )
        + "\n"
    )
    out = tmp_path / "replay.jsonl"
    first = run_cli(
        [
            "replay",
            "--previous",
            str(previous),
            "--current",
            str(current),
            "-k",
            "2",
            "--strategy",
            "instr-diverse",
            "--output",
            str(out),
            "--cache-dir",
            str(tmp_path / "cache"),
        ]
    )
    assert first.code == 0 and first.last_line.startswith("picked 2 of 4")
    picked = [json.loads(line)["instruction"] for line in out.read_text().splitlines()]
    assert set(picked) == {"Translate the sentence into French.", "Write a haiku about the ocean."}
    manifest = json.loads(out.with_name("replay.jsonl.manifest.json").read_text())
    assert manifest["config"]["strategy"] == "instr-diverse" and len(manifest["counts"]["picked"]) == 2
    random_pick = [
        "replay",
        "--previous",
        str(previous),
        "-k",
        "2",
        "--strategy",
        "random",
        "--output",
        str(out),
    ]
    assert run_cli(random_pick).code == 0
