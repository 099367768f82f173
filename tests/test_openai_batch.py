"""`instructforge batch` on the tiny model, read back with the `openai` package's own types as the client:
success bodies, error lines, the batch object, byte-identical cached reruns and a kill -9 resume."""

from __future__ import annotations

import base64
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from openai.types import Batch, Completion, CreateEmbeddingResponse
from openai.types.chat import ChatCompletion

from tests.tiny_runs import cached_requests, kill_once_cached

# The example lines of OpenAI's Batch guide, unchanged.
OPENAI_EXAMPLE = [
    {
        "custom_id": "request-1",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {
            "model": "gpt-3.5-turbo-0125",
            "messages": [
                {"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": "Hello world!"},
            ],
            "max_tokens": 1000,
        },
    },
    {
        "custom_id": "request-2",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {
            "model": "gpt-3.5-turbo-0125",
            "messages": [
                {"role": "system", "content": "You are an unhelpful assistant."},
                {"role": "user", "content": "Hello world!"},
            ],
            "max_tokens": 1000,
        },
    },
]
PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 12}, "age": {"type": "integer"}},
    "required": ["name", "age"],
    "additionalProperties": False,
}


def chat(custom_id: str, text: str, **body) -> dict:
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}], **body},
    }


GOOD = [
    chat("plain", "Say hi.", max_tokens=12, temperature=0.7, seed=3),
    chat("n2", "Two words.", max_completion_tokens=8, n=2, stop=["\n"], presence_penalty=0.5),
    chat(
        "strict",
        "A person as JSON.",
        max_tokens=64,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "person", "schema": PERSON, "strict": True},
        },
    ),
    chat("object", "Any JSON object.", max_tokens=48, response_format={"type": "json_object"}),
    {
        "custom_id": "no-url",
        "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 6},
    },
    {
        "custom_id": "completion",
        "method": "POST",
        "url": "/v1/completions",
        "body": {"model": "davinci-002", "prompt": "Once upon a time"},
    },
    {
        "custom_id": "embed",
        "method": "POST",
        "url": "/v1/embeddings",
        "body": {"model": "text-embedding-3-small", "input": ["grammar", "spelling check"]},
    },
    {
        "custom_id": "embed64",
        "url": "/v1/embeddings",
        "body": {"model": "text-embedding-3-small", "input": "one", "encoding_format": "base64"},
    },
]
BAD = [
    ("{not json", None, "invalid_json"),
    (json.dumps(chat("plain", "A second line with the same id.")), "plain", "duplicate_custom_id"),
    (json.dumps(chat("logprobs", "x", logprobs=True)), "logprobs", "unsupported_parameter"),
    (
        json.dumps(
            chat(
                "schema",
                "x",
                response_format={
                    "type": "json_schema",
                    "json_schema": {"name": "s", "schema": {"type": "nonsense"}},
                },
            )
        ),
        "schema",
        "invalid_value",
    ),
    (json.dumps(chat("too-long", "word " * 1500, max_tokens=4)), "too-long", "context_length_exceeded"),
    (
        json.dumps(
            {"custom_id": "audio", "url": "/v1/audio/speech", "body": {"model": "tts-1", "input": "x"}}
        ),
        "audio",
        None,
    ),
    (json.dumps(chat("temperature", "x", temperature="hot")), "temperature", "invalid_value"),
]


def write_batch(path: Path) -> Path:
    lines = [json.dumps(line) for line in OPENAI_EXAMPLE + GOOD] + [text for text, _, _ in BAD]
    path.write_text("\n".join(lines) + "\n")
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.engine
def test_batch_answers_openai_exact_and_reruns_byte_identical(cli_engine, tmp_path, run_cli):
    source = write_batch(tmp_path / "requests.jsonl")
    out, errors = tmp_path / "results.jsonl", tmp_path / "errors.jsonl"
    args = ["batch", "-i", str(source), "-o", str(out), "--errors", str(errors)]
    done = run_cli(args)
    assert done.code == 0, done.err

    answered = read_jsonl(out)
    assert [r["custom_id"] for r in answered] == [
        x["custom_id"] for x in OPENAI_EXAMPLE + GOOD
    ]  # input order
    kinds = {
        "chat.completion": ChatCompletion,
        "text_completion": Completion,
        "list": CreateEmbeddingResponse,
    }
    for line in answered:
        assert line["error"] is None and line["response"]["status_code"] == 200
        assert line["id"].startswith("batch_req_") and line["response"]["request_id"].startswith("req_")
        body = line["response"]["body"]
        if line["custom_id"] == "embed64":  # the client decodes base64 before its type sees the vector
            vector = base64.b64decode(body["data"][0]["embedding"])
            body = {**body, "data": [{**body["data"][0], "embedding": list(struct.unpack("<384f", vector))}]}
        kinds[body["object"]].model_validate(body, strict=True)
    by_id = {line["custom_id"]: line["response"]["body"] for line in answered}
    assert len(by_id["n2"]["choices"]) == 2 and by_id["n2"]["model"] == "gpt-4o-mini"
    strict = by_id["strict"]["choices"][0]
    if strict["finish_reason"] == "stop":  # truncations aside, the content follows the schema
        jsonschema.validate(json.loads(strict["message"]["content"]), PERSON)
    obj = by_id["object"]["choices"][0]
    assert obj["finish_reason"] == "length" or isinstance(json.loads(obj["message"]["content"]), dict)
    assert len(by_id["embed"]["data"]) == 2 and len(by_id["embed"]["data"][0]["embedding"]) == 384
    assert by_id["completion"]["usage"]["completion_tokens"] <= 16  # OpenAI's completions default

    failed = read_jsonl(errors)
    assert [(e["custom_id"], e["response"]["body"]["error"]["code"]) for e in failed] == [
        (custom_id, code) for _, custom_id, code in BAD
    ]
    for line in failed:
        error = line["response"]["body"]["error"]
        assert line["response"]["status_code"] == 400 and line["error"] is None
        assert set(error) == {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"
        assert error["message"].startswith("line ")

    summary = json.loads((tmp_path / "results.jsonl.batch.json").read_text())
    batch = Batch.model_validate(summary)
    assert batch.status == "completed" and batch.request_counts.total == len(OPENAI_EXAMPLE + GOOD) + len(BAD)
    assert batch.request_counts.completed == len(answered) and batch.request_counts.failed == len(BAD)
    assert batch.usage.input_tokens > 0 and batch.usage.input_tokens_details.cached_tokens == 0

    first = out.read_bytes(), errors.read_bytes()
    again = run_cli(args)
    assert again.code == 0 and (out.read_bytes(), errors.read_bytes()) == first
    assert cli_engine[-1].stats.model_calls == 0 and cli_engine[-1].stats.requests > 0
    rerun = Batch.model_validate_json((tmp_path / "results.jsonl.batch.json").read_text())
    assert rerun.usage.input_tokens_details.cached_tokens > 0 and rerun.created_at == batch.created_at


@pytest.mark.engine
def test_an_unmapped_model_is_an_error_line_not_a_crash(cli_engine, tmp_path, run_cli):
    source = tmp_path / "requests.jsonl"
    source.write_text(
        json.dumps(chat("mapped", "Hi", max_tokens=4))
        + "\n"
        + json.dumps(
            {
                **chat("other", "Hi"),
                "body": {"model": "gpt-5", "messages": [{"role": "user", "content": "Hi"}]},
            }
        )
        + "\n"
    )
    out = tmp_path / "out.jsonl"
    done = run_cli(["batch", "-i", str(source), "-o", str(out), "--model-map", "gpt-4o-mini=default"])
    assert done.code == 0, done.err
    assert [r["custom_id"] for r in read_jsonl(out)] == ["mapped"]
    (error,) = read_jsonl(tmp_path / "out.errors.jsonl")
    assert error["response"]["status_code"] == 404
    assert error["response"]["body"]["error"]["code"] == "model_not_found"


def test_a_file_without_requests_is_one_line(tmp_path, run_cli):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    code, _, err = run_cli(["batch", "-i", str(empty), "-o", str(tmp_path / "o.jsonl")])
    assert code == 2 and err.strip() == f"error: {empty}: no requests in this file"


def test_kill_9_then_rerun_loses_and_doubles_nothing(tiny_model, tmp_path):
    source = tmp_path / "requests.jsonl"
    lines = [
        chat(f"r{i}", f"Describe object number {i}.", max_tokens=24 + 4 * (i % 10), seed=i)
        for i in range(120)
    ]
    source.write_text("".join(json.dumps(x) + "\n" for x in lines))
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "INSTRUCTFORGE_NO_PROGRESS": "1",
        "PYTHONPATH": str(Path.cwd()),
    }

    def command(out: Path, cache: Path) -> list[str]:
        return [sys.executable, "-m", "instructforge", "batch", "-i", str(source), "-o", str(out),
                "--model", str(tiny_model), "--cache-dir", str(cache), "--max-model-len", "1024",
                "--piece-size", "16"]  # fmt: skip

    whole = subprocess.run(command(tmp_path / "whole.jsonl", tmp_path / "c1"), env=env, capture_output=True,
                           text=True, timeout=600)  # fmt: skip
    assert whole.returncode == 0, whole.stderr[-2000:]
    killed_out, cache = tmp_path / "killed.jsonl", tmp_path / "c2"
    before = kill_once_cached(command(killed_out, cache), env, cache)
    assert 0 < before < 120 and not killed_out.exists(), (
        "the kill came before the first or after the last answer"
    )
    done = subprocess.run(command(killed_out, cache), env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    bodies = [(r["custom_id"], r["response"]["body"]["choices"]) for r in read_jsonl(killed_out)]
    assert bodies == [
        (r["custom_id"], r["response"]["body"]["choices"]) for r in read_jsonl(tmp_path / "whole.jsonl")
    ]
    assert cached_requests(cache) == 120  # each request once
