"""InsTag normalization (§3.2) step by step against hand-computed expectations, FP-Growth against mlxtend's
dense path, and the normalize -> tag-report -> select -> tag-eval commands on a small tagged file."""

from __future__ import annotations

import json
import random

import pytest

from engine.errors import ConfigError
from engine.run.io import write_jsonl
from tagger.normalize import (
    NormalizeConfig,
    association_aggregation,
    frequency_filter,
    frequent_rules,
    normalize,
    rule_aggregation,
    rule_key,
    semantic_aggregation,
)
from tests.test_tagger import TableEmbedder


def test_frequency_filter_absolute_and_relative():
    sets = [["a", "b"], ["a"], ["a", "c"], ["b"]]  # a: 3 queries, b: 2, c: 1
    assert frequency_filter(sets, 2) == {"a": "a", "b": "b", "c": None}
    assert frequency_filter(sets, None, min_share=0.5) == {"a": "a", "b": "b", "c": None}  # ceil(0.5*4) = 2
    assert frequency_filter(sets, None, min_share=0.75) == {"a": "a", "b": None, "c": None}  # 3
    assert frequency_filter([["a", "a"]], 2) == {"a": None}  # a tag counts once per query
    with pytest.raises(ConfigError, match="exactly one of `min_count` and `min_share`"):
        frequency_filter(sets, 2, min_share=0.1)
    with pytest.raises(ConfigError, match="`min_share` must be in"):
        frequency_filter(sets, None, min_share=1.5)


def test_rule_aggregation_lowercase_special_characters_stemming():
    assert rule_key("Creative_Writing!") == "creativ write" == rule_key("creative  writing")
    assert rule_key("Grammar Checks") == rule_key("grammar-check") == "grammar check"
    sets = [
        ["creative-writing", "Grammar Checks"],
        ["Creative Writing", "grammar check"],
        ["creative-writing"],
        ["Creative Writing", "!!!"],
        ["creative_writing!"],
        ["grammar check"],
    ]
    # creative-writing 2, Creative Writing 2 (tie -> lexicographically smallest), creative_writing! 1;
    # grammar check 2 beats Grammar Checks 1; "!!!" has an empty key and is dropped.
    assert rule_aggregation(sets) == {
        "creative-writing": "Creative Writing",
        "Creative Writing": "Creative Writing",
        "creative_writing!": "Creative Writing",
        "Grammar Checks": "grammar check",
        "grammar check": "grammar check",
        "!!!": None,
    }


def test_semantic_aggregation_most_frequent_member_names_cluster():
    sets = [["math"], ["mathematics"], ["mathematics"], ["cooking"], ["maths", "cooking"]]
    embedder = TableEmbedder([["math", "mathematics", "maths"]])
    mapping = semantic_aggregation(sets, eps=0.05, min_samples=2, embedder=embedder, show_progress=False)
    assert mapping == {
        "mathematics": "mathematics",
        "math": "mathematics",
        "maths": "mathematics",
        "cooking": "cooking",
    }
    assert embedder.calls == [["cooking", "mathematics", "math", "maths"]]  # by count, then name


ASSOC_SETS = [["x", "y"], ["x", "y"], ["x", "y", "z"], ["z", "v"], ["z", "v"], ["z"], ["w"]]


def test_association_aggregation_merges_only_rules_that_hold_both_ways():
    # min support 2: x 3, y 3, z 4, v 2, {x,y} 3, {z,v} 2 ({x,z}, {y,z}, w below it).
    # Rules at confidence >= 0.99: x->y (3/3), y->x (3/3), v->z (2/2); z->v is 2/4.
    result = association_aggregation(ASSOC_SETS, min_support=2, min_confidence=0.99)
    assert result.rules == 3 and result.mutual_pairs == 1 and result.frequent_itemsets == 6
    assert result.mapping == {"x": "x", "y": "x", "z": "z", "v": "v", "w": "w"}  # x/y tie -> "x"
    nothing = association_aggregation(ASSOC_SETS, min_support=5)
    assert nothing.rules == 0 and nothing.mapping == {t: t for t in "xyzvw"}
    with pytest.raises(ConfigError, match="`min_support` must be an int >= 1"):
        association_aggregation(ASSOC_SETS, min_support=0.01)


def test_fpgrowth_on_sparse_matrix_matches_mlxtend_dense():
    import pandas as pd
    from mlxtend.frequent_patterns import apriori, association_rules

    rng = random.Random(7)
    names = [f"t{i}" for i in range(30)]
    weights = [1 / (i + 1) for i in range(30)]  # Zipf-like tag frequencies
    sets = [sorted(set(rng.choices(names, weights, k=rng.randint(1, 5)))) for _ in range(400)]
    for s in sets[:60]:  # a pair that always co-occurs
        s += ["pair a", "pair b"]
    table, n_itemsets = frequent_rules(sets, min_support=8, min_confidence=0.6)
    dense = pd.DataFrame(
        [[t in s for t in sorted(set(names) | {"pair a", "pair b"})] for s in sets],
        columns=sorted(set(names) | {"pair a", "pair b"}),
    )
    itemsets = apriori(dense, min_support=8 / len(sets), use_colnames=True)
    expected = association_rules(itemsets, num_itemsets=len(sets), metric="confidence", min_threshold=0.6)

    def rules(frame):
        return sorted(
            (tuple(sorted(a)), tuple(sorted(c)), round(conf, 9))
            for a, c, conf in zip(frame["antecedents"], frame["consequents"], frame["confidence"])
        )

    assert n_itemsets == len(itemsets) and len(table) > 10
    assert rules(table) == rules(expected)
    merged = association_aggregation(sets, min_support=8)
    assert merged.mapping["pair b"] == merged.mapping["pair a"] == "pair a"


def test_normalize_pipeline_hand_example():
    sets = [
        ["Creative Writing", "Poetry"],
        ["creative-writing", "poetry"],
        ["Creative Writing", "poem"],
        ["Math", "Arithmetic"],
        ["math", "arithmetic"],
        ["Math", "Arithmetic", "rare tag"],
        ["Poetry", "creative writing"],
        ["poetry"],
        ["poetry"],
    ]
    embedder = TableEmbedder([["Creative Writing", "poetry"]])
    config = NormalizeConfig(min_count=2, min_support=2)
    result = normalize(sets, config, embedder=embedder, show_progress=False)
    # raw 11 -> frequency (>= 2 queries: Creative Writing 2, Poetry 2, poetry 3, Math 2, Arithmetic 2) 5
    # -> rule (Poetry joins poetry, the more frequent spelling) 4
    # -> semantic (Creative Writing 2 joins poetry 5) 3
    # -> association (Math, Arithmetic always together; tie -> "Arithmetic") 2
    assert [(s["step"], s["tags"]) for s in result.steps] == [
        ("raw", 11),
        ("frequency_filter", 5),
        ("rule_aggregation", 4),
        ("semantic_aggregation", 3),
        ("association_aggregation", 2),
    ]
    assert result.steps[1]["occurrences"] == 11 and result.steps[1]["queries_with_tags"] == 8
    assert result.steps[-1]["rules"] == 2 and result.steps[-1]["mutual_pairs"] == 1
    assert result.mapping == {
        "Creative Writing": "poetry",
        "Poetry": "poetry",
        "poetry": "poetry",
        "Math": "Arithmetic",
        "Arithmetic": "Arithmetic",
        "creative-writing": None,
        "poem": None,
        "math": None,
        "arithmetic": None,
        "rare tag": None,
        "creative writing": None,
    }
    assert result.tag_sets == [
        ["poetry"],
        ["poetry"],
        ["poetry"],
        ["Arithmetic"],
        [],
        ["Arithmetic"],
        ["poetry"],
        ["poetry"],
        ["poetry"],
    ]


def test_normalize_report_select_eval_commands(tmp_path, run_cli):
    rng = random.Random(3)
    vocab = [
        "Grammar Correction",
        "grammar correction",
        "Poem Writing",
        "poem writing!",
        "Python Coding",
        "python code",
        "Data Analysis",
        "Humor",
        "Recipe",
    ]
    rows = [
        {
            "id": i // 2,
            "turn": i % 2,
            "query": f"query {i}",
            "failure": None,
            "tags": [{"tag": t, "explanation": "e"} for t in rng.sample(vocab, rng.randint(1, 4))],
        }
        for i in range(60)
    ]
    rows[5] = {**rows[5], "tags": [], "failure": "invalid"}
    write_jsonl(tmp_path / "tags.jsonl", rows)
    line = run_cli(
        [
            "normalize",
            "--input",
            str(tmp_path),
            "--out",
            str(tmp_path / "norm"),
            "--min-share",
            "0.05",
            "--min-support",
            "3",
            "--cache-dir",
            str(tmp_path / "cache"),
        ]
    ).last_line
    assert line.startswith("normalized 59 queries: tags 9 -> 9 -> 6 ->")
    normalized = [json.loads(x) for x in (tmp_path / "norm" / "tags.jsonl").read_text().splitlines()]
    assert len(normalized) == 59 and set(normalized[0]) == {"id", "turn", "query", "tags"}
    mapping = {
        r["raw"]: r["normalized"] for r in map(json.loads, (tmp_path / "norm" / "mapping.jsonl").open())
    }
    assert mapping["grammar correction"] == mapping["Grammar Correction"]

    line = run_cli(
        [
            "tag-report",
            "--input",
            f"raw={tmp_path / 'tags.jsonl'}",
            "--input",
            str(tmp_path / "norm"),
            "--out",
            str(tmp_path / "report"),
        ]
    ).last_line
    assert line.startswith("raw: 9 tags") and "norm: " in line
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["datasets"]["raw"]["failed"] == 1 and report["tag_recall"]["norm"]["raw"] <= 1
    assert (tmp_path / "report" / "diversity_complexity.png").is_file()

    out = tmp_path / "picked.jsonl"
    line = run_cli(["select", "--input", str(tmp_path / "norm"), "--n", "5", "--output", str(out)]).last_line
    assert line.startswith("selected 5/5 samples") and "coverage 100.0%" in line
    picked = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(picked) == 5 and all(len(p["queries"]) in (1, 2) for p in picked)
    assert json.loads(out.with_name("picked.jsonl.report.json").read_text())["coverage"] == 1.0

    line = run_cli(
        [
            "tag-eval",
            "--predicted",
            str(tmp_path / "tags.jsonl"),
            "--gold",
            str(tmp_path / "tags.jsonl"),
            "--output",
            str(tmp_path / "eval.json"),
            "--cache-dir",
            str(tmp_path / "cache"),
        ]
    ).last_line
    assert line == "59 queries (0 without prediction): exact F1 1.000, fuzzy F1 1.000"


def test_commands_fail_in_one_line(tmp_path, run_cli):
    write_jsonl(tmp_path / "bad.jsonl", [{"id": 1, "tags": "not a list"}])
    code, _, err = run_cli(
        ["normalize", "--input", str(tmp_path / "bad.jsonl"), "--out", str(tmp_path / "o")]
    )
    assert code == 2
    assert err.strip() == f"error: {tmp_path / 'bad.jsonl'}:1: field `tags`: must be list, got str"
