"""SELF-INSTRUCT: seed loading, filters, ROUGE rule, 6+2 sampling, instance rules, resume; then the real
engine."""

from __future__ import annotations

import itertools
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from engine.errors import ConfigError, InputError
from engine.rouge.filter import rouge_l
from engine.run.directory import RunDir
from engine.run.seeds import derive_seed
from engine.run.steps import open_run
from engine.types import Request
from generators.self_instruct.bootstrap import Growth
from generators.self_instruct.filters import InstructionFilters, RougeStep, clean_instruction
from generators.self_instruct.instances import filter_instances
from generators.self_instruct.pipeline import SelfInstructConfig, run_self_instruct
from generators.self_instruct.seed_tasks import load_seed_tasks
from generators.self_instruct.tasks import Bootstrap, bootstrap
from tests.fakes import ScriptedEngine
from tests.tiny_runs import SHORT_SEEDS, cached_requests, self_instruct_args

WORDS = [
    f"{a}{b}"
    for a in ("alpha", "bravo", "delta", "echo", "golf", "hotel", "india", "kilo", "lima", "mike")
    for b in ("red", "blue", "green", "gold", "grey", "pink", "teal", "navy", "rose", "sand")
]


def machine_instruction(rng: random.Random) -> str:
    """A distinct instruction (random word choice: pairwise ROUGE-L far below 0.7), marked as machine-made."""
    return "Machine task: explain " + " ".join(rng.sample(WORDS, 8)) + "."


def shown_instructions(request) -> list[str]:
    return re.findall(r"^- (.*)$", request.messages[0]["content"], flags=re.MULTILINE)


def pipeline_engine(per_response: int = 3) -> ScriptedEngine:
    """Answers every step of the pipeline deterministically (step 2 alternates yes / no in request order)."""
    classified = Counter()

    def respond(request):
        kind = request.format_version
        if kind.startswith("self_instruct.bootstrap"):
            rng = random.Random(request.sampling.seed)
            return {"instructions": [machine_instruction(rng) for _ in range(per_response)]}
        task = request.messages[0]["content"].rsplit("Task: ", 1)[1]
        if kind.startswith("self_instruct.classify"):
            classified["n"] += 1
            return ("no", "yes")[classified["n"] % 2]  # the choice's raw word
        if kind.startswith("self_instruct.instances_classification"):
            return {
                "class_labels": ["A", "B"],
                "instances": [
                    {"label": "A", "input": f"{task[:20]} one"},
                    {"label": "B", "input": f"{task[:20]} two"},
                ],
            }
        return {
            "instances": [{"input": "", "output": f"Answer to {task[:30]}"}, {"input": "x", "output": "x"}]
        }  # the second one: input == output

    return ScriptedEngine(respond)


# ----------------------------------------------------------------------------------- seed tasks


def test_upstream_seed_file_loads_unchanged(shared_data):
    tasks = load_seed_tasks(shared_data / "self_instruct_seed_tasks.jsonl")
    assert len(tasks) == 175 and sum(t.is_classification for t in tasks) == 26
    assert tasks[0].id == "seed_task_0" and tasks[0].name == "breakfast_suggestion"
    assert all(len(t.instances) == 1 for t in tasks)


def test_our_default_seed_tasks_are_diverse_and_pass_our_own_filters():
    tasks = load_seed_tasks()
    assert 35 <= len(tasks) <= 50 and 8 <= sum(t.is_classification for t in tasks) <= 15
    assert all(len(t.instances) == 1 and t.instances[0].output for t in tasks)
    items = [{"instruction": t.instruction} for t in tasks]
    assert len(InstructionFilters.alpaca().apply(items)) == len(tasks)  # the longer blacklist too
    drops = Counter()
    RougeStep([]).check(items, drops)
    assert drops == Counter()  # no two seeds are near-duplicates


def test_simple_jsonl_and_csv_seed_files(tmp_path):
    jsonl = tmp_path / "seeds.jsonl"
    jsonl.write_text(
        '{"instruction": "Name three rivers in Africa."}\n'
        '{"instruction": "Is the sentence sarcastic?", "input": "Great, rain again.", '
        '"output": "Yes", "is_classification": "yes"}\n'
    )
    first, second = load_seed_tasks(jsonl)
    assert first.instances == () and not first.is_classification and first.id == "seed_task_0"
    assert second.is_classification and second.instances[0].output == "Yes"
    csv = tmp_path / "seeds.csv"
    csv.write_text(
        "instruction,input,output,is_classification\nSort the words.,b a,a b,false\n"
        "Is it spam?,Win money,Spam,true\n"
    )
    tasks = load_seed_tasks(csv)
    assert [t.is_classification for t in tasks] == [False, True] and tasks[0].instances[0].input == "b a"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"input": "x"}', r"seeds.jsonl:2: field `instruction`: missing"),
        ('{"instruction": "  "}', r"seeds.jsonl:2: field `instruction`: must not be empty"),
        (
            '{"instruction": "Do it now.", "is_classification": "maybe"}',
            r":2: field `is_classification`: must be true",
        ),
        ('{"instruction": "Do it now.", "instances": {"input": ""}}', r":2: field `instances`: must be list"),
        (
            '{"instruction": "Do it now.", "instances": [{"input": ""}]}',
            r":2: field `instances\[0\]`: `output` must",
        ),
        ("not json", r"seeds.jsonl:2: invalid JSON"),
    ],
)
def test_bad_seed_lines_are_one_line_errors(tmp_path, line, message):
    path = tmp_path / "seeds.jsonl"
    path.write_text('{"instruction": "Name three rivers."}\n' + line + "\n")
    with pytest.raises(InputError, match=message):
        load_seed_tasks(path)


def test_empty_seed_file_and_classification_only_without_labels(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(InputError, match="no seed tasks"):
        load_seed_tasks(empty)
    plain = tmp_path / "plain.jsonl"
    plain.write_text('{"instruction": "Name three rivers."}\n')
    config = SelfInstructConfig(num_instructions=2, classification_only=True)
    with pytest.raises(InputError, match="--classification-only needs seed tasks marked"):
        run_self_instruct(pipeline_engine(), config, load_seed_tasks(plain), RunDir(tmp_path / "run"))


# -------------------------------------------------------------------------------------- filters


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("  \n ", "empty"),
        ("Write a poem", "too_short"),
        ("Explain " + "very " * 150 + "slowly.", "too_long"),
        ("Describe the image below in detail.", "blacklist"),
        ("Describe the IMAGES below in detail.", "blacklist"),
        ("Plot the numbers on a chart.", "blacklist"),
        ("Tell me how to go to the station.", "blacklist"),
        ("Write a program that sorts a list.", "write_a_program"),
        ('"Quote" this sentence for me.', "punctuation"),
        ("Écris une phrase en français.", "non_ascii"),
        ("Summarize the mapping between the tables.", None),  # "mapping" is not the word "map"
        ("Name a drawback of remote work.", None),  # nor "drawback" the word "draw"
        ("Write a poem about programs and files", "blacklist"),
        ("Write a poem about programs and their authors.", None),
        ("Compose some music for a birthday.", None),  # only Alpaca's list has "music"
    ],
)
def test_each_filter_step_with_one_example(text, reason):
    assert InstructionFilters.self_instruct().reason(clean_instruction(text)) == reason


def test_alpaca_blacklist_and_configurable_steps():
    assert InstructionFilters.alpaca().reason("Compose some music for a birthday.") == "blacklist"
    assert InstructionFilters.alpaca().reason("Sketch a flowchart of the process.") == "blacklist"
    assert InstructionFilters(min_words=2).reason("Write poem") is None
    assert InstructionFilters(max_words=5).reason("Explain the rules of chess to me") == "too_long"
    assert InstructionFilters(disabled=frozenset({"blacklist"})).reason("Describe the image below.") is None
    with pytest.raises(ConfigError, match=r"`min_words` must be in \[1, max_words=3\], got 4"):
        InstructionFilters(min_words=4, max_words=3)
    with pytest.raises(ConfigError, match="`disabled` must name steps"):
        InstructionFilters(disabled=frozenset({"rouge"}))


def test_apply_counts_reasons_and_keeps_case():
    drops = Counter()
    kept = InstructionFilters().apply(
        [
            {"instruction": "Explain  HTML to\n an iOS developer."},
            {"instruction": "Draw a cat."},
            {"instruction": ""},
        ],
        drops,
    )
    assert kept == [{"instruction": "Explain HTML to an iOS developer."}]  # no .capitalize()
    assert drops == Counter({"too_short": 1, "empty": 1})
    assert clean_instruction("8. 2) Rewrite the text in plain words.") == "Rewrite the text in plain words."
    assert clean_instruction("3 ways to relax, 2.5 hours each.") == "3 ways to relax, 2.5 hours each."


# ------------------------------------------------------------------------------------ ROUGE-L


def test_rouge_rule_is_strictly_greater_than_threshold_and_greedy_within_a_batch():
    seed = "one two three four five six seven eight nine ten"
    at_threshold = "one two three four five six seven xa xb xc"
    above = "one two three four five six seven eight xb xc"
    assert rouge_l(seed, at_threshold) == 0.7 and rouge_l(seed, above) > 0.7
    drops = Counter()
    step = RougeStep([seed])
    kept = step.check(
        [
            {"instruction": t}
            for t in (
                above,
                at_threshold,
                "Give three tips for staying healthy.",
                "Give three tips for staying healthy today.",
                "Translate the sentence into French.",
            )
        ],
        drops,
    )
    assert [k["instruction"] for k in kept] == [
        at_threshold,
        "Give three tips for staying healthy.",
        "Translate the sentence into French.",
    ]
    assert drops == Counter({"rouge": 2})  # `above` by the seed; the 4th by the 3rd, accepted a moment before
    first, second, third = kept
    assert first["most_similar_instructions"] == {seed: 0.7} and first["avg_similarity_score"] == 0.7
    scores = list(third["most_similar_instructions"].values())  # all 3 pool entries, best first
    assert len(scores) == 3 and scores == sorted(scores, reverse=True)
    assert set(third["most_similar_instructions"]) == {
        seed,
        at_threshold,
        "Give three tips for staying healthy.",
    }


# ---------------------------------------------------------------------------------- bootstrap


def test_prompts_show_8_seeds_then_6_seeds_plus_2_machine_shuffled():
    seeds = load_seed_tasks()
    llm = pipeline_engine(per_response=3)
    grown = bootstrap(llm, SelfInstructConfig(num_instructions=20, batch_size=2), seeds)
    assert len(grown.accepted) == 20 and grown.rounds >= 4
    seed_texts = {s.instruction for s in seeds}
    accepted_before, positions = [], Counter()
    for round_, batch in enumerate(llm.batches):
        for request in batch:
            shown = shown_instructions(request)
            machine = [i for i, text in enumerate(shown) if text.startswith("Machine task")]
            assert len(shown) == 8 and len(machine) == (0 if round_ == 0 else 2)
            assert all(text in seed_texts for i, text in enumerate(shown) if i not in machine)
            assert all(shown[i] in accepted_before for i in machine)
            positions.update(machine)
            s = request.sampling
            assert (s.temperature, s.top_p, s.presence_penalty, s.max_tokens) == (0.7, 0.5, 2.0, 1024)
        accepted_before = [a["instruction"] for a in grown.accepted if a["round"] <= round_]
    assert len(positions) > 2  # shuffled: machine ones are not always in the same slots
    seeds_used = [r.sampling.seed for r in llm.requests]
    assert len(set(seeds_used)) == len(seeds_used)


def test_bootstrap_is_deterministic_per_seed_and_stops_at_n():
    seeds = load_seed_tasks()
    config = SelfInstructConfig(num_instructions=7, batch_size=2, seed=3)
    a, b = pipeline_engine(per_response=4), pipeline_engine(per_response=4)
    grown_a, grown_b = bootstrap(a, config, seeds), bootstrap(b, config, seeds)
    assert grown_a.accepted == grown_b.accepted and a.requests == b.requests
    assert len(grown_a.accepted) == 7 and grown_a.drops["over_target"] == 1  # 8 kept in round 0, 7 taken
    other = pipeline_engine(per_response=4)
    bootstrap(other, SelfInstructConfig(num_instructions=7, batch_size=2, seed=4), seeds)
    assert [shown_instructions(r) for r in other.requests] != [shown_instructions(r) for r in a.requests]


def test_failed_responses_are_discarded_and_a_stalled_loop_stops():
    class TruncatingEngine(ScriptedEngine):
        def run(self, requests):
            results = super().run(requests)
            for result in results[::2]:  # every other response was cut by max_tokens
                result.completions[0].failure, result.completions[0].parsed = "truncated", None
            return results

    llm = TruncatingEngine(lambda r: {"instructions": ["Explain how tides work in detail."] * 2})
    grown = bootstrap(
        llm, SelfInstructConfig(num_instructions=5, batch_size=4, max_stalled_rounds=2), load_seed_tasks()
    )
    assert [a["instruction"] for a in grown.accepted] == ["Explain how tides work in detail."]
    assert grown.stalled and grown.rounds == 3 and grown.response_failures == Counter({"truncated": 6})
    assert grown.drops["rouge"] == 2 * 6 - 1


def test_classification_only_samples_classification_seeds_and_skips_step_2(tmp_path):
    seeds = load_seed_tasks()
    llm = pipeline_engine()
    config = SelfInstructConfig(num_instructions=4, batch_size=2, classification_only=True)
    result = run_self_instruct(llm, config, seeds, RunDir(tmp_path))
    clf = {s.instruction for s in seeds if s.is_classification}
    bootstrap_requests = [r for r in llm.requests if r.format_version.startswith("self_instruct.bootstrap")]
    first = bootstrap_requests[0]
    assert set(shown_instructions(first)) <= clf and "classification task" in first.messages[0]["content"]
    assert not any(r.format_version.startswith("self_instruct.classify") for r in llm.requests)
    assert result.report["classification"] == {"yes": 4, "no": 0, "share": 1.0, "failed": 0}
    assert all(
        json.loads(line)["is_classification"] == "yes"
        for line in (tmp_path / "is_clf_or_not.jsonl").read_text().splitlines()
    )


# ---------------------------------------------------------------------------------- instances


def test_instance_requests_are_output_first_for_classification_and_greedy(tmp_path):
    llm = pipeline_engine()
    run_self_instruct(
        llm, SelfInstructConfig(num_instructions=4, batch_size=2), load_seed_tasks(), RunDir(tmp_path)
    )
    clf = [r for r in llm.requests if r.format_version.startswith("self_instruct.instances_classification")]
    gen = [r for r in llm.requests if r.format_version.startswith("self_instruct.instances_generation")]
    assert clf and gen
    clf_schema, gen_schema = clf[0].output_type.model_json_schema(), gen[0].output_type.model_json_schema()
    assert list(clf_schema["properties"]) == ["class_labels", "instances"]
    assert list(clf_schema["$defs"]["LabeledInput"]["properties"]) == ["label", "input"]
    assert list(gen_schema["$defs"]["InputOutput"]["properties"]) == ["input", "output"]
    assert gen_schema["properties"]["instances"]["maxItems"] == 5
    for request in clf + gen:
        s = request.sampling
        assert (s.temperature, s.presence_penalty) == (0.0, 1.5)
    identify = [r for r in llm.requests if r.format_version.startswith("self_instruct.classify")]
    assert identify[0].output_type.__args__ == ("yes", "no") and identify[0].sampling.temperature == 0.0
    assert "a fixed list: yes\n" in identify[0].messages[0]["content"]  # our few-shot demos


@pytest.mark.parametrize(
    ("instances", "kept", "reasons"),
    [
        ([{"input": "x", "output": ""}], [], {"empty_output": 1}),
        ([{"input": " same ", "output": "same"}], [], {"input_equals_output": 1}),
        (
            [{"input": "Question:", "output": "a"}, {"input": "q", "output": "The answer is:"}],
            [],
            {"ends_with_colon": 2},
        ),
        ([{"input": "q", "output": "a" * 9, "cut_off": True}], [], {"cut_off": 1}),
        (
            [{"input": "hit the sack", "output": "To go to bed."}, {"input": "17", "output": "Odd"}],
            [],
            {"copied_demo": 2},
        ),
        (
            [
                {"input": "2+2", "output": "4"},
                {"input": "2+2", "output": "5"},
                {"input": "3", "output": "three"},
            ],
            [],
            {"conflicting_outputs": 3},
        ),
        (
            [{"input": "", "output": "a"}, {"input": "", "output": "b"}],
            [{"input": "", "output": "a"}, {"input": "", "output": "b"}],
            {},
        ),  # empty inputs may differ
        (
            [{"input": "q", "output": "a"}, {"input": "q ", "output": "a"}],
            [{"input": "q", "output": "a"}],
            {"duplicate": 1},
        ),
    ],
)
def test_each_instance_rule(instances, kept, reasons):
    drops = Counter()
    assert filter_instances(instances, random.Random(0), 5, drops) == kept
    assert +drops == Counter(reasons)


def test_at_most_5_instances_by_a_seeded_sample_in_order():
    instances = [{"input": str(i), "output": f"out {i}"} for i in range(8)]
    drops = Counter()
    first = filter_instances(instances, random.Random(1), 5, drops)
    assert first == filter_instances(instances, random.Random(1), 5, Counter())
    assert len(first) == 5 and first == sorted(first, key=lambda i: int(i["input"]))
    assert drops == Counter({"over_max_instances": 3})
    assert filter_instances(
        [{"input": "q", "output": "a", "cut_off": True}], random.Random(0), 5, Counter(), drop_cut_off=False
    ) == [{"input": "q", "output": "a"}]


# ------------------------------------------------------------------------- run directory, resume


def test_pipeline_writes_upstream_files_and_a_rerun_makes_no_requests(tmp_path):
    config = SelfInstructConfig(num_instructions=6, batch_size=2)
    run = open_run(tmp_path / "run", "self-instruct", {"generator": config.to_config()})
    result = run_self_instruct(pipeline_engine(), config, load_seed_tasks(), run)
    names = [
        "machine_generated_instructions.jsonl",
        "is_clf_or_not.jsonl",
        "machine_generated_instances.jsonl",
        "data.jsonl",
        "report.json",
    ]
    files = {name: (tmp_path / "run" / name).read_bytes() for name in names}
    instructions = [json.loads(line) for line in files["machine_generated_instructions.jsonl"].splitlines()]
    assert len(instructions) == 6
    assert all(
        set(i) >= {"instruction", "most_similar_instructions", "avg_similarity_score"} for i in instructions
    )
    rows = [json.loads(line) for line in files["data.jsonl"].splitlines()]
    assert rows == result.rows and all(list(r) == ["instruction", "input", "output"] for r in rows)
    import datasets

    loaded = datasets.load_dataset("json", data_files=str(tmp_path / "run" / "data.jsonl"), split="train")
    assert loaded.column_names == ["instruction", "input", "output"] and loaded.to_list() == rows
    report = result.report
    assert {k: v for k, v in report["instances"].items() if k.startswith("dropped_")} == {
        "dropped_input_equals_output": report["classification"]["no"]
    }
    assert report["classification"]["failed"] == 0 and report["classification"]["yes"] >= 1
    assert report["instances"]["per_task"] == {
        "1": report["classification"]["no"],
        "2": report["classification"]["yes"],
    }
    assert sum(report["rouge_to_seed_histogram"].values()) == 6
    assert len(rows) == 2 * report["classification"]["yes"] + report["classification"]["no"]

    again = pipeline_engine()
    run_self_instruct(
        again,
        config,
        load_seed_tasks(),
        open_run(tmp_path / "run", "self-instruct", {"generator": config.to_config()}),
    )
    assert again.batches == []
    assert {name: (tmp_path / "run" / name).read_bytes() for name in names} == files

    fresh = RunDir(tmp_path / "fresh")  # same seed, new directory: the same bytes
    run_self_instruct(pipeline_engine(), config, load_seed_tasks(), fresh)
    assert {name: (tmp_path / "fresh" / name).read_bytes() for name in names} == files

    (tmp_path / "fresh" / ".done" / "instances").unlink()  # as if killed while saving steps 1-3
    resumed = pipeline_engine()
    run_self_instruct(resumed, config, load_seed_tasks(), fresh)
    assert resumed.batches  # steps 1-3 are redone together (a real engine answers them from its cache)
    assert {name: (tmp_path / "fresh" / name).read_bytes() for name in names} == files

    with pytest.raises(ConfigError, match=r"holds a run with other settings \(generator\)"):
        open_run(
            tmp_path / "run",
            "self-instruct",
            {"generator": SelfInstructConfig(num_instructions=7).to_config()},
        )


def lossy_instances_engine() -> ScriptedEngine:
    """Like pipeline_engine, but two in three generation tasks get only instances the rules drop."""
    base = pipeline_engine()

    def respond(request):
        if request.format_version.startswith("self_instruct.instances_generation"):
            task = request.messages[0]["content"].rsplit("Task: ", 1)[1]
            if random.Random(task).random() < 2 / 3:
                return {"instances": [{"input": "x", "output": "x"}]}
        return base.respond(request)

    return ScriptedEngine(respond)


def test_top_ups_grow_the_pool_until_n_tasks_keep_an_instance(tmp_path):
    config = SelfInstructConfig(num_instructions=10, batch_size=2)
    result = run_self_instruct(lossy_instances_engine(), config, load_seed_tasks(), RunDir(tmp_path / "a"))
    report = result.report
    assert report["tasks_with_instances"] >= 10 and report["instructions"] > 10
    assert len({row["instruction"] for row in result.rows}) == report["tasks_with_instances"]
    top_ups = report["bootstrap"]["top_ups"]
    assert top_ups and top_ups[0]["pool"] == 10 and top_ups[0]["tasks_with_instances"] < 10
    assert all(later["pool"] > earlier["pool"] for earlier, later in zip(top_ups, top_ups[1:]))
    assert (
        report["instances"]["tasks"]
        == report["instructions"]
        == report["classification"]["yes"] + report["classification"]["no"]
    )
    lines = (tmp_path / "a" / "machine_generated_instructions.jsonl").read_text().splitlines()
    assert len({json.loads(line)["instruction"] for line in lines}) == len(lines) == report["instructions"]

    again = lossy_instances_engine()  # each new instruction is classified and instantiated once
    run_self_instruct(again, config, load_seed_tasks(), RunDir(tmp_path / "b"))
    asked = Counter(
        r.messages[0]["content"]
        for r in again.requests
        if not r.format_version.startswith("self_instruct.bootstrap")
    )
    assert set(asked.values()) == {1}
    assert (tmp_path / "b" / "data.jsonl").read_bytes() == (tmp_path / "a" / "data.jsonl").read_bytes()

    capped = run_self_instruct(
        lossy_instances_engine(),
        SelfInstructConfig(num_instructions=10, batch_size=2, max_top_ups=0),
        load_seed_tasks(),
        RunDir(tmp_path / "c"),
    ).report
    assert capped["instructions"] == 10 and capped["tasks_with_instances"] < 10
    assert capped["bootstrap"]["top_ups"] == []


def test_steps_1_to_3_run_as_one_flow_by_stage_in_deterministic_and_overlapping_in_throughput(tmp_path):
    config = SelfInstructConfig(num_instructions=10, batch_size=2)

    def steps(engine: ScriptedEngine) -> list[set[str]]:  # the method steps each engine batch held
        return [
            {r.format_version.split("@")[0].split(".")[1].split("_")[0] for r in b} for b in engine.batches
        ]

    staged = lossy_instances_engine()
    run_self_instruct(staged, config, load_seed_tasks(), RunDir(tmp_path / "a"))
    order = [step for (step,) in steps(staged)]  # one step per batch, in the paper's order per growth
    growths = [k for k, (step, _) in enumerate(itertools.groupby(order)) if step == "bootstrap"]
    assert [step for step, _ in itertools.groupby(order)] == ["bootstrap", "classify", "instances"] * len(
        growths
    )

    flowing = lossy_instances_engine()
    flowing.schedule = "throughput"
    report = run_self_instruct(flowing, config, load_seed_tasks(), RunDir(tmp_path / "b")).report
    # A round's accepted instructions go on to steps 2-3 while the next rounds run, in the same batches.
    assert any(
        {"bootstrap", "classify"} <= held or {"bootstrap", "instances"} <= held for held in steps(flowing)
    )
    assert report["tasks_with_instances"] >= 10
    # Throughput decides a top-up once half the rows are in, while the rest are still being generated.
    assert any(t.get("pending") for t in report["bootstrap"]["top_ups"])
    asked = Counter(
        r.messages[0]["content"]
        for r in flowing.requests
        if not r.format_version.startswith("self_instruct.bootstrap")
    )
    assert set(asked.values()) == {1} and len(asked) == 2 * report["instructions"]
    files = [
        tmp_path / "b" / name for name in ("machine_generated_instructions.jsonl", "is_clf_or_not.jsonl")
    ]
    in_order = [[json.loads(line)["instruction"] for line in f.read_text().splitlines()] for f in files]
    tasks = (tmp_path / "b" / "machine_generated_instances.jsonl").read_text().splitlines()
    assert (
        in_order[0] == in_order[1] == [json.loads(line)["instruction"] for line in tasks]
    )  # acceptance order


def test_in_throughput_a_top_up_reads_on_in_the_round_whose_surplus_answers_are_made_already(tmp_path):
    def run(schedule: str, directory: str) -> tuple[dict, ScriptedEngine]:
        engine = lossy_instances_engine()
        engine.schedule, engine.capacity = schedule, 30  # auto rounds: 30 prompts, ~3 new each
        config = SelfInstructConfig(num_instructions=10)
        result = run_self_instruct(engine, config, load_seed_tasks(), RunDir(tmp_path / directory))
        return result.report, engine

    staged, _ = run("deterministic", "a")  # answers past the target are dropped; a top-up is a new round
    assert staged["bootstrap"]["rounds"] > 1
    assert staged["bootstrap"]["prompts"] == 16 * staged["bootstrap"]["rounds"]
    assert not any(t.get("read_on") for t in staged["bootstrap"]["top_ups"])

    report, engine = run("throughput", "b")
    grown = report["bootstrap"]
    assert grown["rounds"] == 1 and grown["prompts"] == 30  # the first round's surplus sufficed
    assert grown["top_ups"] and all(t["read_on"] for t in grown["top_ups"])
    first = grown["top_ups"][0]  # decided once half the target had rows
    assert 2 * first["pool"] >= 10 and first["pool"] + first["pending"] >= 10
    assert report["instructions"] == grown["top_ups"][-1]["grow_to"] > 10
    assert report["tasks_with_instances"] >= 10
    assert grown["candidates"] == grown["accepted"] + sum(
        n for k, n in grown.items() if k.startswith("dropped_")
    )  # what was held and never needed is counted over the target once the pool is final
    bootstrap_prompts = [r for r in engine.requests if r.format_version.startswith("self_instruct.bootstrap")]
    assert len(bootstrap_prompts) == 30
    # Read on in request order, the larger pool is what reading the round whole towards it accepts.
    whole = lossy_instances_engine()
    whole.schedule, whole.capacity = "throughput", 30
    growth = Bootstrap(whole, SelfInstructConfig(num_instructions=10), load_seed_tasks()).growth
    jobs = growth.start(report["instructions"])
    answers = whole.run([job.request for job in jobs])
    for job, answer in zip(jobs, answers):
        growth.read(job, answer)
    lines = (tmp_path / "b" / "machine_generated_instructions.jsonl").read_text().splitlines()
    assert [json.loads(line)["instruction"] for line in lines] == [
        a["instruction"] for a in growth.grown.accepted
    ]


def test_the_spare_of_a_round_s_last_answer_is_read_on_or_counted_over_the_target(tmp_path):
    engine = pipeline_engine()
    engine.schedule, engine.capacity = "throughput", 2  # rounds of 2 prompts, 3 new instructions each
    growth = Bootstrap(engine, SelfInstructConfig(num_instructions=4), load_seed_tasks()).growth
    growth.hold = True
    jobs = growth.start(4)  # the round's last answer crosses the target and holds 2 candidates
    for job, answer in zip(jobs, engine.run([j.request for j in jobs])):
        growth.read(job, answer)
    assert len(growth.grown.accepted) == 4 and len(growth.spare) == 2 and not growth.running
    new, next_round = growth.raise_to(5)
    assert len(new) == 1 and next_round == []  # the spare fills it, no new round
    growth.release()
    grown = growth.grown.stats()
    assert grown["dropped_over_target"] == 1 and grown["rounds"] == 1 and grown["prompts"] == 2

    engine = pipeline_engine()
    engine.schedule, engine.capacity = "throughput", 2
    config = SelfInstructConfig(num_instructions=10)
    grown = run_self_instruct(engine, config, load_seed_tasks(), RunDir(tmp_path / "run")).report["bootstrap"]
    assert grown["candidates"] == grown["accepted"] + sum(
        n for k, n in grown.items() if k.startswith("dropped_")
    )


def test_a_timed_throughput_run_begins_steps_2_3_while_a_round_stalls_and_tops_up_once_it_is_read(
    tmp_path, monkeypatch
):
    config = SelfInstructConfig(num_instructions=10)
    straggler = derive_seed(config.seed, "bootstrap-sampling", 0, 2)  # the round's third prompt

    def steps(request) -> int:  # engine steps each answer takes
        if request.format_version.startswith("self_instruct.bootstrap"):
            return 100 if request.sampling.seed == straggler else 10
        return 1 if request.format_version.startswith("self_instruct.classify") else 3

    def run(directory: str) -> tuple[dict, list[Request]]:
        respond = lossy_instances_engine().respond
        engine = ScriptedEngine(respond, schedule="throughput", capacity=30, steps=steps)
        report = run_self_instruct(engine, config, load_seed_tasks(), RunDir(tmp_path / directory)).report
        return report, engine.requests

    report, answered = run("run")
    straggler_at = next(k for k, r in enumerate(answered) if r.sampling.seed == straggler)
    before = {r.messages[0]["content"] for r in answered[:straggler_at]}
    lines = (tmp_path / "run" / "machine_generated_instructions.jsonl").read_text().splitlines()
    later = [json.loads(line)["instruction"] for line in lines if json.loads(line)["request_idx"] > 2]
    # Prompts 0-1 are read at step 10; the answers after prompt 2 wait for it, and steps 2-3 of what they
    # will probably add run meanwhile: instances of instructions that prompt 2's reading later accepted.
    assert later and any(f"Task: {text}" in content for text in later for content in before)
    assert 0 < report["bootstrap"]["guesses"]["accepted"] <= report["bootstrap"]["guesses"]["begun"]
    # The first top-up is decided once half the target has rows, before prompt 2 is read (the pool had
    # not reached its target), on the rows of prompts 0-1's instructions.
    grown = report["bootstrap"]
    first = grown["top_ups"][0]
    assert 2 * first["pool"] >= 10 and first["pool"] + first.get("pending", 0) < 10 and first["read_on"]
    assert grown["rounds"] == 1 and report["tasks_with_instances"] >= 10
    # Guesses take no decision on the answers read: without them the round is read in the same order, so
    # here the instructions are the same list up to the pool size the top-ups reached (that size follows
    # when rows arrive; in general an earlier or later top-up can also change which prompts still run).
    monkeypatch.setattr(Growth, "foresee", lambda self, job: [])
    run("blind")

    def instructions(directory: str) -> list[str]:
        return (tmp_path / directory / "machine_generated_instructions.jsonl").read_text().splitlines()

    common = min(len(instructions("blind")), len(instructions("run")))
    assert common >= 10 and instructions("blind")[:common] == instructions("run")[:common]


def test_a_round_is_read_in_request_order_whatever_order_its_answers_finish_in():
    config = SelfInstructConfig(num_instructions=20, batch_size=8, seed=3)
    seeds = load_seed_tasks()
    engine = pipeline_engine()

    def grown_by(order) -> list[str]:
        growth = Bootstrap(engine, config, seeds).growth
        jobs = growth.start(config.num_instructions)
        answers = engine.run([job.request for job in jobs])
        accepted = []
        for k in order(range(len(jobs))):
            accepted += growth.read(jobs[k], answers[k])[0]
        assert accepted == growth.grown.accepted and not growth.running
        return [a["instruction"] for a in accepted]

    in_order = grown_by(list)
    assert len(in_order) == 20  # 8 answers x 3 new: the target is reached inside the round
    assert grown_by(lambda r: list(reversed(r))) == in_order
    assert grown_by(lambda r: sorted(r, key=lambda k: (k % 3, -k))) == in_order


def test_config_validation_names_the_field():
    with pytest.raises(ConfigError, match=r"`num_instructions` must be an int >= 1, got 0"):
        SelfInstructConfig(num_instructions=0)
    with pytest.raises(
        ConfigError, match=r"`num_machine_instructions` must be in \[0, num_prompt_instructions=8\]"
    ):
        SelfInstructConfig(num_instructions=1, num_machine_instructions=9)
    with pytest.raises(ConfigError, match=r"`max_top_ups` must be an int >= 0, got -1"):
        SelfInstructConfig(num_instructions=1, max_top_ups=-1)


# ------------------------------------------------------------------------------- real engine


def short_seed_file(path: Path) -> Path:
    """Short seeds keep prompts inside the tiny test model's 1024-token context."""
    path.write_text(
        "".join(
            json.dumps({"instruction": text, "is_classification": "?" in text}) + "\n" for text in SHORT_SEEDS
        )
    )
    return path


@pytest.mark.engine
def test_cli_end_to_end_on_the_real_engine_writes_schema_valid_files(cli_engine, tmp_path, capsys):
    import datasets

    from instructforge.cli import main

    out = tmp_path / "run"
    args = self_instruct_args(out, short_seed_file(tmp_path / "seeds.jsonl"))
    main(args)
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    assert re.match(r"\d+ instructions \(\d+% classification\), \d+ with instances, \d+ rows in ", summary)
    report = json.loads((out / "report.json").read_text())
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["command"] == "self-instruct" and manifest["engine_stats"]["model_calls"] >= 4
    assert manifest["counts"]["instructions"] == report["instructions"] >= 1
    for line in (out / "machine_generated_instructions.jsonl").read_text().splitlines():
        row = json.loads(line)
        assert isinstance(row["instruction"], str) and isinstance(row["avg_similarity_score"], float)
        assert all(isinstance(v, float) for v in row["most_similar_instructions"].values())
    clf = [
        json.loads(line)["is_classification"]
        for line in (out / "is_clf_or_not.jsonl").read_text().splitlines()
    ]
    assert len(clf) == report["instructions"] and set(clf) <= {"yes", "no"}
    for line in (out / "machine_generated_instances.jsonl").read_text().splitlines():
        task = json.loads(line)
        assert task["failure"] in (None, "truncated", "invalid", "too_long")
        assert all(
            isinstance(i["input"], str) and isinstance(i["output"], str) for i in task["raw_instances"]
        )
    rows = [json.loads(line) for line in (out / "data.jsonl").read_text().splitlines()]
    assert all(
        list(r) == ["instruction", "input", "output"] and all(isinstance(v, str) for v in r.values())
        for r in rows
    )
    assert rows  # these settings keep rows even from the random model (the golden run records them)
    loaded = datasets.load_dataset("json", data_files=str(out / "data.jsonl"), split="train")
    assert loaded.num_rows == len(rows)
    data = (out / "data.jsonl").read_bytes()

    main(args)  # rerun: every step is done, the model is never asked
    assert cli_engine[-1].stats.model_calls == 0 and (out / "data.jsonl").read_bytes() == data


@pytest.mark.engine
def test_kill_9_then_rerun_gives_byte_identical_output_and_a_full_rerun_makes_no_model_calls(
    tiny_model, tmp_path
):
    seeds = short_seed_file(tmp_path / "seeds.jsonl")
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "INSTRUCTFORGE_NO_PROGRESS": "1",
        "PYTHONPATH": str(Path.cwd()),
    }

    def command(out: Path, cache: Path) -> list[str]:
        return [
            sys.executable,
            "-m",
            "instructforge",
            *self_instruct_args(
                out,
                seeds,
                "--model",
                str(tiny_model),
                "--cache-dir",
                str(cache),
                "--max-model-len",
                "2048",
                n=12,
            ),
        ]

    def finish(cmd: list[str]) -> str:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout.strip().splitlines()[-1]

    finish(command(tmp_path / "whole", tmp_path / "cache-whole"))

    killed_cache = tmp_path / "cache-killed"
    victim = subprocess.Popen(
        command(tmp_path / "killed", killed_cache),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and victim.poll() is None:
        if cached_requests(killed_cache) >= 5:  # round 0 and part of round 1 are in the cache
            break
        time.sleep(0.2)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    assert not (tmp_path / "killed" / "data.jsonl").exists(), "the run finished before the kill"

    finish(command(tmp_path / "killed", killed_cache))
    for name in (
        "machine_generated_instructions.jsonl",
        "is_clf_or_not.jsonl",
        "machine_generated_instances.jsonl",
        "data.jsonl",
        "report.json",
    ):
        assert (tmp_path / "killed" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name
    for step in (
        "instances",
        "classify",
        "bootstrap",
    ):  # rerun a full run with every step redone from the cache
        (tmp_path / "killed" / ".done" / step).unlink()
    assert " 0 model calls" in finish(command(tmp_path / "killed", killed_cache))
    assert (tmp_path / "killed" / "data.jsonl").read_bytes() == (
        tmp_path / "whole" / "data.jsonl"
    ).read_bytes()


def test_auto_rounds_fill_the_engine_in_throughput_bounded_by_the_acceptance_rate_seen():
    seeds = load_seed_tasks()
    config = SelfInstructConfig(num_instructions=80, seed=1)

    def two_new_one_repeat(request):  # ROUGE-L drops the repeated one after its first time
        rng = random.Random(request.sampling.seed)
        return {
            "instructions": [
                machine_instruction(rng),
                machine_instruction(rng),
                "Write a haiku about the sea",
            ]
        }

    fixed = ScriptedEngine(two_new_one_repeat)
    filling = ScriptedEngine(two_new_one_repeat, schedule="throughput", capacity=30)
    assert len(bootstrap(fixed, config, seeds).accepted) == 80
    assert {len(b) for b in fixed.batches} == {16}  # the deterministic schedule keeps today's rounds
    grown = bootstrap(filling, config, seeds)
    sizes = [len(b) for b in filling.batches]
    first = sum(1 for a in grown.accepted if a["round"] == 0)  # round 0 reached no surplus over the target
    assert sizes[0] == 30 and 40 < first < 80  # no acceptance rate seen yet: fill the engine
    # then twice what the rate seen says the target still needs, at least the fixed round, at most the slots
    assert len(sizes) == 2 and sizes[1] == min(30, max(16, -(-2 * (80 - first) * 30 // first))) < 30
    assert len(grown.accepted) == 80
    # A top-up counts the first round's surplus over its target in the rate (it passed every filter).
    topped = ScriptedEngine(two_new_one_repeat, schedule="throughput", capacity=60)
    pool = Bootstrap(topped, SelfInstructConfig(num_instructions=50, seed=1), seeds)
    surplus = pool.grow(50).drops["over_target"]
    pool.grow(90)
    assert surplus > 40 and [len(b) for b in topped.batches] == [
        60,
        max(16, -(-2 * 40 * 60 // (50 + surplus))),
    ]
    explicit = ScriptedEngine(two_new_one_repeat, schedule="throughput", capacity=100)
    bootstrap(explicit, SelfInstructConfig(num_instructions=20, batch_size=5, seed=1), seeds)
    assert {len(b) for b in explicit.batches} == {5}  # --batch-size wins over auto
