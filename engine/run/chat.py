"""The one reader of chat-shaped records: OpenAI messages (`role` / `content`, content parts included) and
ShareGPT conversations (`from` / `value`), as OpenAI-style turns. Every command that reads conversations
reads them here, so a file means the same to `generate`, `tag` and `diversity`.

    turns = chat_turns(record, "conversations")   # [{"role": "user", "content": "..."}, ...]
    as_format({"instruction": ..., "input": ..., "output": ...}, "sharegpt")   # a row as trainers read it
"""

from __future__ import annotations

from typing import Any

from engine.run.io import Record

CHAT_FIELDS = ("messages", "conversations")
"""Where a record keeps its turns: OpenAI's name first, then ShareGPT's."""
SHAREGPT_ROLES = {"human": "user", "gpt": "assistant"}
"""ShareGPT speaker -> OpenAI role; other speakers (system, tool, ...) keep their own name, lowercased."""


def chat_turns(record: Record, field: str) -> list[dict[str, str]]:
    """The turns of `record[field]` as `{"role", "content"}`; a malformed turn is a FILE:LINE error."""
    turns = record.require(field, list)
    out = []
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict):
            raise record.error(f"items must be objects; item {i} is {type(turn).__name__}", field)
        speaker = turn.get("from", turn.get("role"))
        text = turn.get("value", turn.get("content"))
        if not isinstance(speaker, str) or text is None:
            raise record.error(
                f"items must be `role`+`content` (OpenAI) or `from`+`value` (ShareGPT); item {i} has keys "
                f"{sorted(turn)}",
                field,
            )
        if isinstance(text, list):  # OpenAI content parts: the text parts, joined
            text = "\n".join(_part_text(p) for p in text if isinstance(p, dict) and p.get("type") == "text")
        if not isinstance(text, str):
            raise record.error(f"item {i} text must be a string, got {type(text).__name__}", field)
        role = speaker.lower()
        out.append({"role": SHAREGPT_ROLES.get(role, role), "content": text})
    return out


def alpaca_turn(record: Record) -> list[dict[str, str]]:
    """An Alpaca row's instruction (and input) as the one user turn `as_format` writes."""
    instruction = record.require("instruction", str)
    extra = record.data.get("input") or ""
    if not isinstance(extra, str):
        raise record.error(f"must be a string, got {type(extra).__name__}", "input")
    return [{"role": "user", "content": f"{instruction}\n\n{extra}" if extra else instruction}]


def user_turns(record: Record, field: str) -> list[str]:
    """The user's texts among the turns of `record[field]`, in order."""
    return [t["content"] for t in chat_turns(record, field) if t["role"] == "user"]


def chat_field(record: Record) -> str | None:
    """The field holding the record's turns, if it has one."""
    return next((f for f in CHAT_FIELDS if f in record.data), None)


FORMATS = ("alpaca", "openai", "sharegpt")
"""How a dataset row can be written: Alpaca's {instruction, input, output}, OpenAI messages, ShareGPT."""


def as_format(row: dict[str, str], fmt: str) -> dict[str, object]:
    """An `{instruction, input, output}` row in `fmt`: the user turn is the instruction, then a blank line
    and the input when there is one (Alpaca's own prompt order); the assistant turn is the output."""
    if fmt == "alpaca":
        return {"instruction": row["instruction"], "input": row["input"], "output": row["output"]}
    user = f"{row['instruction']}\n\n{row['input']}" if row["input"] else row["instruction"]
    if fmt == "openai":
        return {
            "messages": [{"role": "user", "content": user}, {"role": "assistant", "content": row["output"]}]
        }
    return {"conversations": [{"from": "human", "value": user}, {"from": "gpt", "value": row["output"]}]}


def convert(record: Record, fmt: str) -> dict[str, object]:
    """A dataset record (Alpaca row, OpenAI messages or ShareGPT conversations) in `fmt`. A conversation
    becomes Alpaca only when it is one user turn and one answer (Alpaca has no room for more)."""
    chat = chat_field(record)
    if chat is None:
        row = {"instruction": record.require("instruction", str), "input": record.data.get("input") or ""}
        return as_format({**row, "output": record.require("output", str)}, fmt)
    turns = chat_turns(record, chat)
    if fmt == "openai":
        return {"messages": turns}
    if fmt == "sharegpt":
        speakers = {v: k for k, v in SHAREGPT_ROLES.items()}
        return {
            "conversations": [
                {"from": speakers.get(t["role"], t["role"]), "value": t["content"]} for t in turns
            ]
        }
    spoken = [t for t in turns if t["role"] != "system"]
    if [t["role"] for t in spoken] != ["user", "assistant"]:
        raise record.error("only a one-question, one-answer conversation can be written as Alpaca", chat)
    return {"instruction": spoken[0]["content"], "input": "", "output": spoken[1]["content"]}


def _part_text(part: dict[str, Any]) -> str:
    text = part.get("text", "")
    return text if isinstance(text, str) else ""
