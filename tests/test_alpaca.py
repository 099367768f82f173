"""Alpaca: seeds-only prompts, the no-input marker, one instance per instruction, files; then the real
engine."""

from __future__ import annotations

import json
import random
import re

import pytest

from engine.errors import InputError
from engine.run.directory import RunDir
from engine.run.steps import open_run
from generators.alpaca import NO_INPUT, AlpacaConfig, run_alpaca
from generators.self_instruct.seed_tasks import load_seed_tasks
from tests.fakes import ScriptedEngine
from tests.test_self_instruct import WORDS
from tests.tiny_runs import ALPACA_SEEDS, alpaca_config


def task(rng: random.Random, **fields) -> dict:
    return {
        "instruction": "Explain " + " ".join(rng.sample(WORDS, 8)) + ".",
        "input": NO_INPUT,
        "output": "An answer.",
        **fields,
    }


def alpaca_engine(extra=()) -> ScriptedEngine:
    """Three distinct tasks per response (plus `extra` tasks), chosen by the request's seed."""

    def respond(request):
        rng = random.Random(request.sampling.seed)
        return {"tasks": [task(rng), task(rng, input="  12, 7, 3 "), task(rng, input="<noinput>"), *extra]}

    return ScriptedEngine(respond)


def shown_instructions(request) -> list[str]:
    return re.findall(r"^\d+\. Instruction: (.*)$", request.messages[0]["content"], flags=re.MULTILINE)


def test_prompts_show_three_seed_tasks_only_and_sample_at_temperature_1(tmp_path):
    seeds = load_seed_tasks()
    llm = alpaca_engine()
    run_alpaca(llm, AlpacaConfig(num_instructions=12, batch_size=2), seeds, RunDir(tmp_path))
    assert len(llm.batches) >= 2
    seed_texts = {s.instruction for s in seeds}
    for request in llm.requests:
        shown = shown_instructions(request)
        assert len(shown) == 3 and set(shown) <= seed_texts  # machine tasks never go back into context
        s = request.sampling
        assert (s.temperature, s.top_p, s.max_tokens) == (1.0, 1.0, 3072)
        assert request.output_type.model_json_schema()["properties"]["tasks"]["maxItems"] == 20
        assert "up to 20 new tasks" in request.messages[0]["content"]
    # Every seed without an input that a prompt showed is shown with the no-input marker (and some were).
    no_input = {s.instruction for s in seeds if not s.instances[0].input}
    shown_without_input = [(r, t) for r in llm.requests for t in shown_instructions(r) if t in no_input]
    assert shown_without_input
    for request, text in shown_without_input:
        content = request.messages[0]["content"]
        shown_as = rf"Instruction: {re.escape(text)}\n\d+\. Input: {re.escape(NO_INPUT)}\n"
        assert re.search(shown_as, content), text
    seeds_used = [r.sampling.seed for r in llm.requests]
    assert len(set(seeds_used)) == len(seeds_used)


def test_rows_map_the_no_input_marker_and_drop_bad_tasks(tmp_path):
    rng = random.Random(99)
    extra = [
        task(rng, output="  "),
        {**task(rng), "instruction": "Describe this video clip for me."},
        {**task(rng), "instruction": "Write a program to add numbers together."},
    ]
    result = run_alpaca(
        alpaca_engine(extra),
        AlpacaConfig(num_instructions=6, batch_size=2),
        load_seed_tasks(),
        RunDir(tmp_path),
    )
    assert len(result.rows) == 6 and [r["input"] for r in result.rows[:3]] == ["", "12, 7, 3", ""]
    stats = result.report["generate"]
    # the extras repeat in every response: the first copies are filtered, the later ones too (or by ROUGE)
    assert stats["dropped_empty_output"] == 2 and stats["dropped_blacklist"] == 2
    assert stats["dropped_write_a_program"] == 2
    assert result.report["instances_per_task"] == 1 and result.report["with_input_share"] == 0.3333
    lines = [json.loads(line) for line in (tmp_path / "data.jsonl").read_text().splitlines()]
    assert lines == result.rows and all(list(r) == ["instruction", "input", "output"] for r in lines)
    machine = [
        json.loads(line)
        for line in (tmp_path / "machine_generated_instructions.jsonl").read_text().splitlines()
    ]
    assert all("most_similar_instructions" in m and "avg_similarity_score" in m for m in machine)
    assert sum(result.report["rouge_to_seed_histogram"].values()) == 6


def test_resume_is_deterministic_and_a_rerun_makes_no_requests(tmp_path):
    config = AlpacaConfig(num_instructions=5, batch_size=2, seed=5)
    first = run_alpaca(
        alpaca_engine(), config, load_seed_tasks(), open_run(tmp_path / "a", "alpaca", {"c": 1})
    )
    data = (tmp_path / "a" / "data.jsonl").read_bytes()
    again = alpaca_engine()
    assert (
        run_alpaca(again, config, load_seed_tasks(), open_run(tmp_path / "a", "alpaca", {"c": 1})).rows
        == first.rows
    )
    assert again.batches == [] and (tmp_path / "a" / "data.jsonl").read_bytes() == data
    run_alpaca(alpaca_engine(), config, load_seed_tasks(), RunDir(tmp_path / "b"))
    assert (tmp_path / "b" / "data.jsonl").read_bytes() == data


def test_seed_tasks_without_an_example_are_refused(tmp_path):
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text('{"instruction": "Name three rivers in Africa."}\n')
    with pytest.raises(InputError, match=r"seeds.jsonl:1: Alpaca shows an input/output example"):
        run_alpaca(
            alpaca_engine(), AlpacaConfig(num_instructions=1), load_seed_tasks(seeds), RunDir(tmp_path / "r")
        )


@pytest.mark.engine
def test_alpaca_end_to_end_on_the_real_engine(engine, tmp_path):
    """The tiny model writes gibberish; small bounds keep its JSON inside the 1024-token test context."""
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text(
        "".join(json.dumps({"instruction": t, "input": "", "output": "ok"}) + "\n" for t in ALPACA_SEEDS)
    )
    result = run_alpaca(engine, alpaca_config(), load_seed_tasks(seeds), RunDir(tmp_path / "run"))
    stats = result.report["generate"]
    assert engine.stats.model_calls >= 3 and stats["prompts"] == 3 * stats["rounds"]
    drops = sum(n for k, n in stats.items() if k.startswith("dropped_"))
    assert stats["candidates"] == len(result.rows) + drops  # each one accounted for
    for row in (json.loads(line) for line in (tmp_path / "run" / "data.jsonl").read_text().splitlines()):
        assert list(row) == ["instruction", "input", "output"] and all(
            isinstance(v, str) for v in row.values()
        )
        assert len(row["instruction"]) <= 60 and re.match(r"[A-Za-z0-9]", row["instruction"])
    assert json.loads((tmp_path / "run" / "report.json").read_text()) == result.report
