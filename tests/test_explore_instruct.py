"""EXPLORE-INSTRUCT: tree files, extend (caps, attempts, backtracking context), enrich (targets,
filters, dedup), prune and sampling, resume; one end-to-end run of the CLI on the real engine."""

from __future__ import annotations

import json
import shutil
from collections import Counter

import pytest

from engine.errors import ConfigError, InputError
from engine.run.directory import RunDir
from generators.explore_instruct.filters import ExampleFilter, NodeDeduper, is_placeholder
from generators.explore_instruct.grow import ExploreConfig, enrich, extend_level
from generators.explore_instruct.pipeline import run_explore
from generators.explore_instruct.sample import prune, quotas, sample
from generators.explore_instruct.tree import (
    DomainTree,
    TaskNode,
    load_tree,
    new_tree,
    save_tree,
    task_name_of,
)
from tests.fakes import ScriptedEngine
from tests.tiny_runs import explore_args

DEMO = "explore_instruct_demo_domain"
WORDS = (
    "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa "
    "quebec romeo sierra tango uniform victor whiskey xray yankee zulu"
).split()


def example(instruction: str, input: str = "", output: str = "done") -> dict[str, str]:
    return {"instruction": instruction, "input": input, "output": output}


def distinct(k: int, prefix: str = "Explain") -> str:
    """Instructions that share only their first word (ROUGE-L 0.2 between any two)."""
    return f"{prefix} item{k} about{k} topic{k} now{k}"


def asked(request, key: str) -> int:
    """How many subtasks / examples the request's schema asks for."""
    return request.output_type.model_json_schema()["properties"][key]["minItems"]


def small_tree() -> DomainTree:
    tree = new_tree("Text editing", [example(distinct(i, "Edit")) for i in range(4)])
    for name in ("Paraphrase", "Fix grammar"):
        tree.add_child(tree.root, name, f"{name} is common.", [example(distinct(10 + len(tree), "Fix"))])
    return tree


def prompt(request) -> str:
    return request.messages[0]["content"]


class Proposals:
    """A scripted extend answer: fresh, mutually distinct subtask names per call."""

    def __init__(self, names=None):
        self.calls = 0
        self.names = names

    def __call__(self, request):
        self.calls += 1
        count = asked(request, "subtasks")
        names = self.names or [f"Skill{self.calls}x{i} area{self.calls}x{i}" for i in range(count)]
        return {
            "subtasks": [
                {
                    "raw_task_name": name,
                    "reason": "Needed.",
                    "examples": [example(distinct(100 * self.calls + 10 * i + j)) for j in range(2)],
                }
                for i, name in enumerate(names[:count])
            ]
        }


# ------------------------------------------------------------------------------------ tree files


def test_demo_tree_loads_and_round_trips(shared_data, tmp_path):
    tree = load_tree(shared_data / DEMO)
    assert tree.root.raw_task_name == "Assistance for text editting" and len(tree.root.children) == 8
    assert tree.sizes()["nodes_per_depth"] == {"0": 1, "1": 8}
    assert all(
        512 <= len(c.examples) <= 634 and c.depth == 1 and c.parent is tree.root for c in tree.root.children
    )
    save_tree(tree, tmp_path / "copy")
    for path in sorted((shared_data / DEMO).glob("*.json")):
        assert json.loads((tmp_path / "copy" / path.name).read_text()) == json.loads(path.read_text()), (
            path.name
        )
    assert sorted(p.name for p in (tmp_path / "copy").iterdir()) == sorted(
        p.name for p in (shared_data / DEMO).iterdir()
    )


def test_demo_tree_is_extendable(shared_data, tmp_path):
    tree = load_tree(shared_data / DEMO)
    paraphrase = tree["paraphrase"]
    child = tree.add_child(
        paraphrase, "Paraphrase idioms", "Idioms are hard.", [example("Reword this idiom plainly.")]
    )
    again = tree.add_child(paraphrase, "Paraphrase: idioms!", "Twice.", [])
    assert (child.task_name, again.task_name) == ("paraphrase_idioms", "paraphrase_idioms_2")
    assert child.depth == 2 and child.peers == [again] and child.config_filename == "paraphrase_idioms.json"
    save_tree(tree, tmp_path / "grown")
    reloaded = load_tree(tmp_path / "grown")
    assert [n.task_name for n in reloaded["paraphrase"].children] == [
        "paraphrase_idioms",
        "paraphrase_idioms_2",
    ]
    assert reloaded["paraphrase_idioms"].examples == child.examples and reloaded.max_depth == 2


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (
            lambda meta, node: meta.pop("raw_task_name"),
            r"tree_meta_info.json: field `raw_task_name`: missing",
        ),
        (
            lambda meta, node: meta["children"][0].update(task_name=3),
            r"field `task_name`: must be str, got int",
        ),
        (
            lambda meta, node: node["examples"][1].pop("output"),
            r"paraphrase.json: field `output`: missing in examples\[1\]",
        ),
        (lambda meta, node: node.update(examples="none"), r"paraphrase.json: field `examples`: must be list"),
        (
            lambda meta, node: meta["children"][1].update(config_filename="paraphrase.json"),
            r"used by two nodes",
        ),
    ],
)
def test_bad_tree_files_fail_with_one_line_naming_file_and_field(shared_data, tmp_path, corrupt, message):
    folder = tmp_path / "tree"
    shutil.copytree(shared_data / DEMO, folder)
    for path in folder.iterdir():
        path.chmod(0o644)
    meta = json.loads((folder / "tree_meta_info.json").read_text())
    node = json.loads((folder / "paraphrase.json").read_text())
    corrupt(meta, node)
    (folder / "tree_meta_info.json").write_text(json.dumps(meta))
    (folder / "paraphrase.json").write_text(json.dumps(node))
    with pytest.raises(InputError, match=message) as err:
        load_tree(folder)
    assert "\n" not in str(err.value)


def test_missing_node_file_and_bad_json_are_named(tmp_path):
    save_tree(small_tree(), tmp_path / "t")
    (tmp_path / "t" / "paraphrase.json").unlink()
    with pytest.raises(InputError, match=r"paraphrase.json: no such file"):
        load_tree(tmp_path / "t")
    (tmp_path / "t" / "tree_meta_info.json").write_text("{oops")
    with pytest.raises(InputError, match=r"tree_meta_info.json:1: invalid JSON"):
        load_tree(tmp_path / "t")


def test_task_names_are_file_safe():
    assert task_name_of("Fix spelling & grammar!") == "fix_spelling_grammar"
    assert task_name_of("???") == "task"


# ----------------------------------------------------------------------------------------- extend


def test_extend_batches_a_level_per_round_and_caps_children():
    tree = small_tree()
    for i in range(10):  # "Paraphrase" has 10 of its M=12 children: room for 2 only
        tree.add_child(
            tree["paraphrase"], f"{WORDS[i]} {WORDS[25 - i]} existing", "", [example(distinct(200 + i))]
        )
    llm = ScriptedEngine(Proposals())
    cfg = ExploreConfig(new_subtasks=(4,), subtasks_per_request=3, max_children=12)
    stats = extend_level(llm, tree, 1, cfg)
    assert [len(b) for b in llm.batches] == [2, 1]  # round 2: only "Fix grammar" still wants one
    assert len(tree["paraphrase"].children) == 12 and len(tree["fix_grammar"].children) == 4
    assert stats["counts"]["added"] == 6 and stats["counts"]["rejected_node_full"] == 3
    assert stats["counts"]["nodes_short"] == 0
    seeds = [r.sampling.seed for r in llm.requests]
    assert len(set(seeds)) == 3 and all(r.sampling.temperature > 0 for r in llm.requests)


def test_extend_gives_up_after_max_attempts_and_rejects_duplicate_names():
    tree = small_tree()
    llm = ScriptedEngine(Proposals(names=["Paraphrasing", "Fix the grammar", "Paraphrase"]))
    stats = extend_level(
        llm, tree, 0, ExploreConfig(new_subtasks=(3,), subtasks_per_request=3, max_attempts=2)
    )
    assert len(llm.batches) == 2 and [c.raw_task_name for c in tree.root.children] == [
        "Paraphrase",
        "Fix grammar",
        "Paraphrasing",
    ]
    assert stats["counts"]["rejected_duplicate_name"] == 5 and stats["counts"]["nodes_short"] == 1
    assert {r["raw_task_name"] for r in stats["rejected"]} == {
        "Fix the grammar",
        "Paraphrase",
        "Paraphrasing",
    }


def test_extend_prompt_shows_target_examples_existing_subtasks_and_peers():
    tree = small_tree()
    tree.add_child(tree["paraphrase"], "Sentence paraphrase", "", [example(distinct(300))])
    llm = ScriptedEngine(Proposals())
    extend_level(llm, tree, 1, ExploreConfig(new_subtasks=(4,), subtasks_per_request=3, max_attempts=2))
    first, second = llm.batches[0][0], llm.batches[1][0]  # "Paraphrase", rounds 1 and 2
    text = prompt(first)
    assert "Target task: Paraphrase" in text and "Paraphrase is common." in text
    assert "subtask of: Text editing" in text and text.count("Instruction: ") == 1  # it has 1 example
    existing = text.split("Existing subtasks")[1].split("Peer tasks")[0]
    peers = text.split("Peer tasks")[1].split("Rules:")[0]
    assert "- Sentence paraphrase" in existing and "- Fix grammar" in peers and "Paraphrase\n" not in peers
    # backtracking: round 2 lists what round 1 added as existing subtasks
    added = [c.raw_task_name for c in tree["paraphrase"].children[1:4]]
    assert all(f"- {name}" in prompt(second).split("Peer tasks")[0] for name in added)
    assert first.sampling.seed != second.sampling.seed


def test_extend_rejects_subtasks_without_a_valid_example_and_counts_failures():
    tree = small_tree()
    answers = iter(
        [
            {
                "subtasks": [
                    {
                        "raw_task_name": "Image captions",
                        "reason": "r",
                        "examples": [example("Draw a picture of a cat."), example("Hi")],
                    }
                ]
            },
            "not json",
        ]
    )
    llm = ScriptedEngine(lambda r: next(answers))
    stats = extend_level(
        llm, tree, 0, ExploreConfig(new_subtasks=(1,), subtasks_per_request=1, max_attempts=2)
    )
    assert stats["counts"]["rejected_no_valid_example"] == 1 and stats["counts"]["failed_invalid"] == 1
    assert stats["counts"]["dropped_blacklist"] == 1 and stats["counts"]["dropped_too_short"] == 1
    assert len(tree.root.children) == 2


# ----------------------------------------------------------------------------------------- enrich


def test_filters_drop_with_reasons():
    quality = ExampleFilter()
    assert quality.drop_reason(example("Rewrite this short text.")) is None
    assert quality.drop_reason(example("Too short")) == "too_short"  # 3-150 words (METHODS.md)
    assert quality.drop_reason(example("Shorten this text")) is None
    assert quality.drop_reason(example(" ".join(["word"] * 151))) == "too_long"
    assert quality.drop_reason(example("Describe the attached image briefly.")) == "blacklist"
    assert quality.drop_reason(example("Write a program that sorts numbers.")) == "write_a_program"
    assert quality.drop_reason(example('"Quoted" start of instruction here')) == "punctuation"
    assert quality.drop_reason(example("Ünicode first letter here")) == "non_ascii"
    assert (
        quality.drop_reason(example("Summarize the paragraph below.", "<paragraph>")) == "placeholder_input"
    )
    assert is_placeholder(" (insert text here) ") and not is_placeholder("(a) first, (b) second")
    assert quality.drop_reason(example("Summarize the paragraph below.", "", " ")) == "empty_output"


def test_dedup_within_and_across_nodes():
    same = "Rewrite the following sentence so it is shorter."
    cross = NodeDeduper(0.7, cross_node=True)
    assert cross.admit("a", [same, same + " Thanks."]) == [None, "rouge_same_node"]
    assert cross.admit("b", [same, "Count the vowels of this word."]) == ["rouge_other_node", None]
    per_node = NodeDeduper(0.7, cross_node=False)
    assert per_node.admit("a", [same]) == [None] and per_node.admit("b", [same]) == [None]


def test_enrich_reaches_depth_targets_with_filters_and_dedup():
    tree = small_tree()
    tree.root.examples.append(example(tree.root.examples[0]["instruction"]))  # an existing duplicate
    calls = Counter()

    def respond(request):
        calls["n"] += 1
        k = calls["n"]
        return {
            "examples": [
                example(distinct(1000 + 10 * k + 0)),
                example("Bad"),
                example("Summarize the text below now.", "<text>"),
                example(tree.root.examples[0]["instruction"]),  # repeats the root's
                example(distinct(1000 + 10 * k + 4)),
            ]
        }

    llm = ScriptedEngine(respond)
    stats = enrich(llm, tree, ExploreConfig(examples_per_node=(4, 5), examples_per_request=5))
    assert stats.existing["dropped_rouge_same_node"] == 1
    assert [len(n.examples) for n in tree.nodes()] == [4, 5, 5]
    assert len(llm.batches[0]) == 2 and asked(llm.batches[0][0], "examples") == 5
    counts = stats.counts
    assert counts["dropped_too_short"] == counts["dropped_placeholder_input"] == counts["requests"]
    assert counts["dropped_rouge_other_node"] >= 2 and counts["added"] == 8 and stats.short == {}
    text = prompt(llm.batches[0][0])
    assert (
        "Task: Paraphrase" in text and "Paraphrase is common." in text and "subtask of: Text editing" in text
    )
    assert text.count("Instruction: Edit") == 3  # three of the parent's (root's) examples


def test_enrich_without_cross_node_dedup_keeps_cross_node_repeats_and_stops_after_attempts():
    tree = small_tree()
    repeat = tree.root.examples[0]["instruction"]
    llm = ScriptedEngine(lambda r: {"examples": [example(repeat)]})
    stats = enrich(
        llm,
        tree,
        ExploreConfig(
            examples_per_node=(0, 3), examples_per_request=1, max_attempts=2, cross_node_dedup=False
        ),
    )
    assert [len(n.examples) for n in tree.nodes()] == [4, 2, 2]  # one repeat each, then same-node dups
    assert stats.counts["dropped_rouge_same_node"] == 4 and len(llm.batches) == 2
    assert stats.short == {"paraphrase": 1, "fix_grammar": 1}


# --------------------------------------------------------------------------------- prune, sample


def test_prune_keeps_first_of_near_duplicate_names():
    tree = small_tree()
    tree.add_child(tree["paraphrase"], "Fix grammar errors", "", [])
    tree.add_child(tree["fix_grammar"], "Spelling", "", [])
    pruned = prune(tree, 0.7)
    assert [(p["task_name"], p["duplicate_of"]) for p in pruned] == [("fix_grammar_errors", "fix_grammar")]


def test_quotas_are_proportional_to_capped_sizes():
    assert quotas({"a": 1000, "b": 500, "c": 100, "d": 0}, 110) == {"a": 50, "b": 50, "c": 10, "d": 0}
    assert quotas({"a": 3, "b": 1000}, 1000) == {"a": 3, "b": 994}  # min(1000, 500): weights 3 and 500


def test_sample_skips_pruned_and_deep_nodes_tops_up_from_root_and_is_seeded():
    tree = new_tree("Domain", [example(f"root {i}") for i in range(50)])
    a = tree.add_child(tree.root, "A", "", [example(f"a {i}") for i in range(600)])
    b = tree.add_child(tree.root, "B", "", [example(f"b {i}") for i in range(100)])
    deep = tree.add_child(
        tree.add_child(tree.add_child(b, "C", "", []), "D", "", []), "E", "", [example("e")]
    )
    assert deep.depth == 4
    cfg = ExploreConfig(sample_size=70, seed=3)
    rows, per_node = sample(tree, {"a"}, cfg)
    assert len(rows) == 70 and per_node == {"domain": 23 + 1, "b": 46, "c": 0, "d": 0}  # + 1: top-up
    assert (
        rows == sample(tree, {"a"}, cfg)[0] and rows != sample(tree, {"a"}, ExploreConfig(sample_size=70))[0]
    )
    assert not any(r["instruction"].startswith(("a ", "e")) for r in rows)
    rows, per_node = sample(tree, set(), ExploreConfig(sample_size=10_000))  # more than there is: all of it
    assert len(rows) == 750 and per_node["a"] == 600 and a.examples[0] in rows


# --------------------------------------------------------------------------------------- pipeline


def scripted_pipeline_engine():
    proposals = Proposals()
    counter = Counter()

    def respond(request):
        if request.format_version.startswith("explore_instruct.extend"):
            return proposals(request)
        counter["n"] += 1
        return {"examples": [example(distinct(5000 + 10 * counter["n"] + j)) for j in range(2)]}

    return ScriptedEngine(respond)


def test_pipeline_runs_resumes_and_refuses_other_settings(tmp_path):
    cfg = ExploreConfig(
        max_depth=2,
        new_subtasks=(1, 2),
        subtasks_per_request=2,
        examples_per_node=(4, 3),
        examples_per_request=2,
        sample_size=20,
    )
    llm = scripted_pipeline_engine()
    report = run_explore(llm, small_tree(), RunDir(tmp_path / "run"), cfg)
    assert report["input_tree"]["nodes_per_depth"] == {"0": 1, "1": 2}
    assert report["output_tree"]["nodes_per_depth"] == {"0": 1, "1": 3, "2": 6}
    assert report["sample"]["rows"] == 20 and report["nodes"]["paraphrase"]["examples"] == 3
    rows = (tmp_path / "run" / "explore_instruct.jsonl").read_text().splitlines()
    assert len(rows) == 20 and set(json.loads(rows[0])) == {"instruction", "input", "output"}
    assert (
        load_tree(tmp_path / "run" / "tree").sizes()
        == load_tree(tmp_path / "run" / "trees" / "enrich").sizes()
    )
    again = scripted_pipeline_engine()
    assert run_explore(again, small_tree(), RunDir(tmp_path / "run"), cfg) == report and again.batches == []

    run = RunDir(tmp_path / "run")  # steps finished: other settings or another command would mix
    run.claim("explore", {"config": cfg.to_dict()})
    with pytest.raises(ConfigError, match="other settings"):
        run.claim("explore", {"config": ExploreConfig().to_dict()})
    with pytest.raises(ConfigError, match="holds a `explore` run, not a `tag` one"):
        run.claim("tag", {"config": cfg.to_dict()})
    fresh = RunDir(tmp_path / "run2")  # nothing finished yet: corrected settings replace the first ones
    fresh.claim("explore", {"config": cfg.to_dict()})
    fresh.claim("explore", {"config": ExploreConfig().to_dict()})


def test_pipeline_killed_mid_enrich_resumes_to_identical_outputs(tmp_path):
    cfg = ExploreConfig(
        max_depth=1,
        new_subtasks=(2,),
        subtasks_per_request=2,
        examples_per_node=(3,),
        examples_per_request=1,
        sample_size=10,
    )

    def deterministic(request):  # depends on the request only, as a cached engine does
        seed = request.sampling.seed
        if request.format_version.startswith("explore_instruct.extend"):
            return {
                "subtasks": [
                    {
                        "raw_task_name": f"{WORDS[(seed + i) % 26]} {WORDS[(seed // 7 + i) % 26]} {seed}",
                        "reason": "r",
                        "examples": [example(distinct(seed % 9973 + j)) for j in range(2)],
                    }
                    for i in range(2)
                ]
            }
        return {"examples": [example(distinct(seed % 99991 + 20000))]}

    run_explore(ScriptedEngine(deterministic), small_tree(), RunDir(tmp_path / "whole"), cfg)

    class Killed(Exception):
        pass

    calls = Counter()

    def dies(request):
        calls["n"] += 1
        if request.format_version.startswith("explore_instruct.enrich") and calls["n"] > 4:
            raise Killed
        return deterministic(request)

    with pytest.raises(Killed):
        run_explore(ScriptedEngine(dies), small_tree(), RunDir(tmp_path / "resumed"), cfg)
    assert RunDir(tmp_path / "resumed").is_done("extend-0") and not RunDir(tmp_path / "resumed").is_done(
        "enrich"
    )
    resumed = ScriptedEngine(deterministic)
    run_explore(resumed, small_tree(), RunDir(tmp_path / "resumed"), cfg)
    assert not any(r.format_version.startswith("explore_instruct.extend") for r in resumed.requests)
    for name in ("explore_instruct.jsonl", "report.json", "tree/tree_meta_info.json"):
        assert (tmp_path / "whole" / name).read_bytes() == (tmp_path / "resumed" / name).read_bytes()


def test_config_validation_names_the_field():
    with pytest.raises(ConfigError, match=r"`max_children` must be >= 1, got 0"):
        ExploreConfig(max_children=0)
    with pytest.raises(ConfigError, match=r"`examples_per_node` must be a list of ints >= 0"):
        ExploreConfig(examples_per_node=(5, -1))
    assert ExploreConfig(examples_per_node=(9, 5)).per_depth((9, 5), 7) == 5
    assert isinstance(TaskNode("x", "X").examples, list)


# ------------------------------------------------------------------------------------------- e2e


@pytest.mark.engine
def test_cli_explore_end_to_end_on_the_real_engine(cli_engine, tmp_path, capsys):
    from instructforge.cli import main

    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text(
        "".join(json.dumps(example(distinct(i, "Draft"), "", "Dear team, thanks.")) + "\n" for i in range(3))
    )
    args = explore_args(tmp_path / "run", seeds)
    main(args)
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    assert summary.startswith("tree 1 -> ") and "wrote" in summary
    run = tmp_path / "run"
    report = json.loads((run / "report.json").read_text())
    manifest = json.loads((run / "manifest.json").read_text())
    assert report["extend"][0]["counts"]["requests"] == 1 and report["enrich"]["counts"]["requests"] >= 1
    assert manifest["command"] == "explore" and manifest["engine_stats"]["model_calls"] >= 2
    assert load_tree(run / "tree").root.raw_task_name == "Email writing"
    import datasets

    data = datasets.load_dataset("json", data_files=str(run / "explore_instruct.jsonl"), split="train")
    assert len(data) == report["sample"]["rows"] >= 3
    main(args)  # rerun: every step is done, nothing reaches the model
    assert cli_engine[-1].stats.model_calls == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == summary.replace(
        summary.split("; ")[-1], cli_engine[-1].stats.summary()
    )
