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
