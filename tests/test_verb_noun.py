"""Verb–noun diversity: extraction on known sentences, statistics, input formats, the CLI and its plot."""

from __future__ import annotations

import json

import pytest

from engine.errors import InputError
from generators.verb_noun import VerbNounStats, read_instructions, verb_noun, verb_noun_stats


@pytest.fixture(scope="module")
def nlp():
    from engine.errors import ModelError
    from generators.verb_noun import load_parser

    try:
        return load_parser()
    except ModelError as e:  # capability skip: the parser model package is not installed
        pytest.skip(str(e))


@pytest.mark.parametrize(
    "text, pair",
    [
        ("Rewrite the following sentence in a way that is easier to understand.", ("rewrite", "sentence")),
        ("Give me a list of five fruits.", ("give", "list")),
        ("Can you paraphrase the paragraph below?", ("paraphrase", "paragraph")),
        ("Please summarize this article for me.", ("summarize", "article")),
        ("Write a poem about cats. Then explain its meter.", ("write", "poem")),
        ("Correct the grammatical errors in this text.", ("correct", "error")),
        ("Translate it into French.", ("translate", None)),
        ("What is the capital of France?", None),
    ],
)
def test_root_verb_and_first_direct_object_noun(nlp, text, pair):
    assert verb_noun(nlp(text)) == pair


def test_stats_count_pairs_with_mean_and_std(nlp):
    texts = [
        "Rewrite this sentence.",
        "Rewrite the sentence below.",
        "Rewrite the text.",
        "Summarize the article.",
        "Translate it.",
        "What is love?",
    ]
    stats = verb_noun_stats(texts, nlp)
    assert stats.instructions == 6 and stats.with_verb == 5
    assert stats.pairs == {("rewrite", "sentence"): 2, ("rewrite", "text"): 1, ("summarize", "article"): 1}
    assert stats.unique_pairs == 3 and stats.mean == pytest.approx(4 / 3)
    assert stats.std == pytest.approx(((2 - 4 / 3) ** 2 + 2 * (1 - 4 / 3) ** 2) ** 0.5 / 3**0.5)
    assert stats.top(1, 1) == [("rewrite", [("sentence", 2)])]
    assert stats.to_dict()["with_pair"] == 4 and VerbNounStats().mean == VerbNounStats().std == 0.0


def test_reads_jsonl_messages_and_tree_folders(tmp_path, shared_data):
    rows = tmp_path / "rows.jsonl"
    rows.write_text(
        json.dumps({"instruction": "Rewrite this."})
        + "\n"
        + json.dumps(
            {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "Summarize it."}]}
        )
        + "\n"
    )
    assert read_instructions(rows) == ["Rewrite this.", "Summarize it."]
    with pytest.raises(InputError, match=r"rows.jsonl:2: field `instruction`: missing"):
        read_instructions(rows, "instruction")  # an explicit --field must be in every row
    tree = read_instructions(shared_data / "explore_instruct_demo_domain")
    assert len(tree) == 4433 and tree[0] == "Rewrite this text in another way"
    seeds = read_instructions(shared_data / "self_instruct_seed_tasks.jsonl")
    assert len(seeds) == 175
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"body": "x"}) + "\n")
    with pytest.raises(InputError, match=r"bad.jsonl:1: no instruction field"):
        read_instructions(bad)


def test_cli_diversity_writes_pairs_report_and_plot(nlp, tmp_path, capsys, shared_data):
    from instructforge.cli import main

    main(["diversity", str(shared_data / "self_instruct_seed_tasks.jsonl"), "--out", str(tmp_path / "vn")])
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    report = json.loads((tmp_path / "vn" / "report.json").read_text())
    assert summary.startswith(f"175 instructions, {report['with_pair']} with a verb-noun pair")
    assert report["unique_pairs"] > 50 and len(report["top"]) == 20
    assert all(len(t["nouns"]) <= 4 for t in report["top"])
    pairs = [
        json.loads(line) for line in (tmp_path / "vn" / "verb_noun_pairs.jsonl").read_text().splitlines()
    ]
    assert len(pairs) == report["unique_pairs"] and sum(p["count"] for p in pairs) == report["with_pair"]
    assert (tmp_path / "vn" / "verb_noun.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
