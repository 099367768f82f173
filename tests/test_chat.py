"""The one chat-shape reader: OpenAI messages and ShareGPT conversations mean the same to every command."""

from __future__ import annotations

import json

import pytest

from engine.errors import InputError
from engine.run.chat import chat_turns, user_turns
from engine.run.io import read_records


def records(tmp_path, *rows):
    path = tmp_path / "chats.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return list(read_records(path))


def test_sharegpt_and_openai_turns_read_alike(tmp_path):
    sharegpt, openai = records(
        tmp_path,
        {
            "conversations": [
                {"from": "system", "value": "Be brief."},
                {"from": "human", "value": "Hi"},
                {"from": "gpt", "value": "Hello"},
            ]
        },
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hi"},
                {
                    "role": "assistant",
                    "content": [{"type": "text", "text": "Hel"}, {"type": "text", "text": "lo"}],
                },
            ]
        },
    )
    assert chat_turns(sharegpt, "conversations") == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
    ]
    assert chat_turns(openai, "messages")[2] == {"role": "assistant", "content": "Hel\nlo"}
    assert user_turns(sharegpt, "conversations") == user_turns(openai, "messages") == ["Hi"]


@pytest.mark.parametrize(
    ("turns", "message"),
    [
        (["hi"], "field `messages`: items must be objects; item 0 is str"),
        ([{"role": "user"}], "field `messages`: items must be `role`+`content` (OpenAI) or `from`+`value`"),
        ([{"role": "user", "content": 3}], "field `messages`: item 0 text must be a string, got int"),
        ("hi", "field `messages`: must be list, got str"),
    ],
)
def test_a_malformed_turn_names_the_file_line_and_field(tmp_path, turns, message):
    (record,) = records(tmp_path, {"messages": turns})
    with pytest.raises(InputError) as caught:
        chat_turns(record, "messages")
    assert str(caught.value).endswith(f"chats.jsonl:1: {message}") or (
        "chats.jsonl:1: " in str(caught.value) and message in str(caught.value)
    )


@pytest.mark.engine
def test_generate_reads_sharegpt_conversations(cli_engine, tmp_path, run_cli):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        json.dumps({"id": "s", "conversations": [{"from": "human", "value": "word 1"}]})
        + "\n"
        + json.dumps({"id": "o", "messages": [{"role": "user", "content": "word 1"}]})
        + "\n"
    )
    out = tmp_path / "out.jsonl"
    assert run_cli(["generate", "-i", str(prompts), "-o", str(out), "--max-tokens", "8"]).code == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["s", "o"] and rows[0]["text"] == rows[1]["text"]  # the same request
    assert cli_engine[-1].stats.model_calls == 1  # identical requests are generated once


@pytest.mark.engine
def test_each_format_round_trips_through_datasets_and_generate(cli_engine, tmp_path, run_cli):
    """Alpaca rows exported as OpenAI messages and ShareGPT read back by `datasets`, then each file run
    through `generate`: all three ask the model the same thing (the last two runs are all cache hits)."""
    import datasets

    from engine.run.steps import export

    rows = [
        {"instruction": "Name a colour.", "input": "", "output": "Blue."},
        {"instruction": "Add the numbers.", "input": "2 and 3", "output": "5"},
    ]
    alpaca = tmp_path / "data.jsonl"
    alpaca.write_text("".join(json.dumps(r) + "\n" for r in rows))
    files = {"alpaca": alpaca, "openai": export(alpaca, "openai"), "sharegpt": export(alpaca, "sharegpt")}
    assert files["openai"].name == "data.openai.jsonl" and export(alpaca, "alpaca") is None
    loaded = {f: datasets.load_dataset("json", data_files=str(p), split="train") for f, p in files.items()}
    assert loaded["openai"][1]["messages"] == [
        {"role": "user", "content": "Add the numbers.\n\n2 and 3"},
        {"role": "assistant", "content": "5"},
    ]
    assert loaded["sharegpt"][0]["conversations"][1] == {"from": "gpt", "value": "Blue."}
    texts = {}
    for fmt in files:
        prompts = tmp_path / f"prompts-{fmt}.jsonl"  # the user turns only: what a generator would ask
        if fmt == "alpaca":
            lines = [{"instruction": r["instruction"], "input": r["input"]} for r in loaded[fmt]]
        else:
            key = "messages" if fmt == "openai" else "conversations"
            lines = [{key: r[key][:1]} for r in loaded[fmt]]
        prompts.write_text("".join(json.dumps(x) + "\n" for x in lines))
        out = tmp_path / f"out-{fmt}.jsonl"
        assert run_cli(["generate", "-i", str(prompts), "-o", str(out), "--max-tokens", "6"]).code == 0
        texts[fmt] = [json.loads(line)["text"] for line in out.read_text().splitlines()]
    assert texts["alpaca"] == texts["openai"] == texts["sharegpt"]
    assert [engine.stats.model_calls for engine in cli_engine] == [2, 0, 0]


def test_select_writes_the_selected_samples_in_a_training_format(tmp_path, run_cli):
    def sharegpt(sample_id: str, *texts: str) -> dict:
        speakers = ["human", "gpt"] * len(texts)
        return {"id": sample_id, "conversations": [{"from": f, "value": v} for f, v in zip(speakers, texts)]}

    conversations = [
        sharegpt("a", "Fix my grammar.", "Sure."),
        sharegpt("b", "Hi", "Hello", "Joke?", "No."),
        sharegpt("c", "Sum 2 and 3.", "5"),
    ]
    data, tags = tmp_path / "data.jsonl", tmp_path / "tags.jsonl"
    data.write_text("".join(json.dumps(c) + "\n" for c in conversations))
    tagged = [("a", 0, ["grammar"]), ("b", 0, ["greeting"]), ("b", 1, ["humor", "joke"]), ("c", 0, ["math"])]
    tags.write_text(
        "".join(json.dumps({"id": i, "turn": t, "query": "q", "tags": g}) + "\n" for i, t, g in tagged)
    )
    out = tmp_path / "picked.jsonl"
    args = ["select", "--input", str(tags), "--n", "2", "--output", str(out), "--data", str(data)]
    assert run_cli(args).code == 0
    picked = [json.loads(line)["id"] for line in out.read_text().splitlines()]
    assert picked[0] == "b"  # the most tags first (complexity-first)
    written = [json.loads(line) for line in (tmp_path / "picked.data.jsonl").read_text().splitlines()]
    by_first = {w["messages"][0]["content"]: w for w in written}
    assert len(written) == 2 and by_first["Hi"]["messages"][3] == {"role": "assistant", "content": "No."}
    assert run_cli([*args, "--format", "sharegpt"]).code == 0
    assert "conversations" in json.loads((tmp_path / "picked.data.jsonl").read_text().splitlines()[0])
    code, _, err = run_cli([*args, "--format", "alpaca"])  # b has two questions: no Alpaca row for it
    assert code == 2 and "only a one-question, one-answer conversation can be written as Alpaca" in err
