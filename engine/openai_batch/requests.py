"""OpenAI Batch input lines read as engine requests: `{custom_id, method, url, body}` (or `{custom_id, body}`
with the endpoint read from the body), for `/v1/chat/completions`, `/v1/completions` and `/v1/embeddings`.

A line that cannot be served becomes a `BatchError` (HTTP 400 and an OpenAI-style error body), never an
exception: the batch goes on.

    custom_id, body, item = read_line(text, line_number, seen_ids)   # item: BatchItem, or BatchError
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from engine.errors import ConfigError
from engine.structured import OutputSpec
from engine.types import Request, Sampling

CHAT, COMPLETIONS, EMBEDDINGS = "/v1/chat/completions", "/v1/completions", "/v1/embeddings"
ENDPOINTS = (CHAT, COMPLETIONS, EMBEDDINGS)

SAMPLING_PARAMS = {"temperature", "top_p", "n", "seed", "stop", "presence_penalty", "frequency_penalty"}
ACCEPTED = {
    CHAT: {"model", "messages", "response_format", "max_tokens", "max_completion_tokens"} | SAMPLING_PARAMS,
    COMPLETIONS: {"model", "prompt", "max_tokens"} | SAMPLING_PARAMS,
    EMBEDDINGS: {"model", "input", "encoding_format", "dimensions"},
}
IGNORED = {"user", "metadata", "store", "service_tier"}
"""Bookkeeping fields that change nothing in the answer."""
OFF_VALUES = (None, False, [], {})
"""An unsupported parameter set to one of these asks for nothing (e.g. `"stream": false`)."""
DEFAULT_MAX_TOKENS = {CHAT: 4096, COMPLETIONS: 16}
"""OpenAI's defaults: chat answers run to the context's end (the engine caps them at the room left);
completions stop at 16 tokens."""
ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


@dataclass
class BatchError:
    """A request answered with HTTP 400 and OpenAI's error body."""

    message: str
    param: str | None = None
    code: str | None = None
    type: str = "invalid_request_error"
    status_code: int = 400

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


@dataclass
class BatchItem:
    """One servable line: its endpoint, the model named, and the engine request or embedding inputs."""

    line: int
    custom_id: str
    endpoint: str
    body: dict[str, Any]
    model: str
    request: Request | None = None
    inputs: list[str] = field(default_factory=list)
    """Embeddings: the texts to embed, in order."""


def read_line(
    text: str, line: int, seen: set[str]
) -> tuple[str | None, dict[str, Any] | None, BatchItem | BatchError]:
    """(custom_id and body where readable, the item or the reason it cannot be served)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        return None, None, BatchError(f"line {line}: invalid JSON ({e.msg})", code="invalid_json")
    if not isinstance(data, dict):
        return None, None, BatchError(f"line {line}: expected a JSON object", code="invalid_request")
    custom_id, body = data.get("custom_id"), _object(data.get("body"))
    if not isinstance(custom_id, str) or not custom_id:
        return None, body, BatchError(f"line {line}: `custom_id` must be a non-empty string", "custom_id")
    if custom_id in seen:
        return (
            custom_id,
            body,
            BatchError(f"line {line}: duplicate custom_id {custom_id!r}", "custom_id", "duplicate_custom_id"),
        )
    seen.add(custom_id)
    if body is None:
        return custom_id, None, BatchError(f"line {line}: `body` must be an object", "body")
    if data.get("method", "POST") != "POST":
        return custom_id, body, BatchError(f"line {line}: `method` must be POST", "method")
    endpoint = data.get("url") or endpoint_of(body)
    if endpoint not in ENDPOINTS:
        return (
            custom_id,
            body,
            BatchError(
                f"line {line}: unsupported url {endpoint!r} (supported: {', '.join(ENDPOINTS)})", "url"
            ),
        )
    try:
        return custom_id, body, build_item(line, custom_id, endpoint, body)
    except ConfigError as e:  # a value out of range, or a schema no grammar can follow
        return (
            custom_id,
            body,
            BatchError(f"line {line}: {e}", getattr(e, "parameter", None), "invalid_value"),
        )
    except (TypeError, ValueError) as e:  # a number given as something else
        return custom_id, body, BatchError(f"line {line}: {e}", None, "invalid_value")


def _object(value: Any) -> dict[str, Any] | None:
    return value if isinstance(value, dict) else None


def endpoint_of(body: dict[str, Any]) -> str | None:
    """The endpoint a body's shape implies (a line without `url`)."""
    for key, endpoint in (("messages", CHAT), ("prompt", COMPLETIONS), ("input", EMBEDDINGS)):
        if key in body:
            return endpoint
    return None


def build_item(line: int, custom_id: str, endpoint: str, body: dict[str, Any]) -> BatchItem | BatchError:
    unsupported = sorted(
        k for k, v in body.items() if k not in ACCEPTED[endpoint] | IGNORED and v not in OFF_VALUES
    )
    if unsupported:
        return BatchError(
            f"line {line}: unsupported parameter {unsupported[0]!r} for {endpoint}",
            unsupported[0],
            "unsupported_parameter",
        )
    model = body.get("model")
    if not isinstance(model, str) or not model:
        return BatchError(f"line {line}: `model` must be a non-empty string", "model")
    item = BatchItem(line, custom_id, endpoint, body, model)
    if endpoint == EMBEDDINGS:
        inputs = body.get("input")
        inputs = [inputs] if isinstance(inputs, str) else inputs
        if not isinstance(inputs, list) or not inputs or not all(isinstance(t, str) and t for t in inputs):
            return BatchError(f"line {line}: `input` must be a non-empty string or list of them", "input")
        if body.get("encoding_format", "float") not in ("float", "base64"):
            return BatchError(f"line {line}: `encoding_format` must be float or base64", "encoding_format")
        item.inputs = inputs
        return item
    output_type = None
    if endpoint == CHAT:
        messages = chat_messages(body.get("messages"), line)
        if isinstance(messages, BatchError):
            return messages
        output_type = response_type(body.get("response_format"), line)
        if isinstance(output_type, BatchError):
            return output_type
        prompt = {"messages": messages}
    else:
        text = body.get("prompt")
        text = text[0] if isinstance(text, list) and len(text) == 1 else text
        if not isinstance(text, str) or not text:
            return BatchError(f"line {line}: `prompt` must be a non-empty string", "prompt")
        prompt = {"prompt": text}
    if output_type is not None:
        OutputSpec.of(output_type)  # an invalid schema is this line's error, not the batch's
    item.request = Request(**prompt, sampling=sampling_of(body, endpoint), output_type=output_type)
    return item


def chat_messages(messages: Any, line: int) -> list[dict[str, str]] | BatchError:
    if not isinstance(messages, list) or not messages:
        return BatchError(f"line {line}: `messages` must be a non-empty list", "messages")
    out = []
    for i, m in enumerate(messages):
        role = m.get("role") if isinstance(m, dict) else None
        content = m.get("content") if isinstance(m, dict) else None
        if isinstance(content, list):  # content parts: the text ones
            if not all(isinstance(p, dict) and p.get("type") == "text" for p in content):
                return BatchError(
                    f"line {line}: messages[{i}]: only text content parts are supported", "messages"
                )
            content = "".join(str(p.get("text", "")) for p in content)
        if role not in ROLES or not isinstance(content, str):
            return BatchError(
                f"line {line}: messages[{i}] must be {{role: {'|'.join(ROLES)}, content: string}}", "messages"
            )
        out.append({"role": ROLES[role], "content": content})
    return out


def response_type(response_format: Any, line: int) -> Any:
    """The output type of a `response_format` (None for plain text)."""
    if response_format in (None, {"type": "text"}):
        return None
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind == "json_object":
        return {"type": "object"}
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            return BatchError(
                f"line {line}: `response_format.json_schema.schema` must be an object", "response_format"
            )
        return schema  # strict or not, decoding follows the schema
    return BatchError(
        f"line {line}: `response_format.type` must be text, json_object or json_schema", "response_format"
    )


def sampling_of(body: dict[str, Any], endpoint: str) -> Sampling:
    """OpenAI's sampling parameters, with OpenAI's defaults (temperature 1)."""
    stop = body.get("stop")
    budget = body.get("max_completion_tokens", body.get("max_tokens"))
    return Sampling(
        temperature=float(body.get("temperature", 1.0)),
        top_p=float(body.get("top_p", 1.0)),
        max_tokens=budget if budget is not None else DEFAULT_MAX_TOKENS[endpoint],
        n=body.get("n", 1),
        seed=body.get("seed"),
        presence_penalty=float(body.get("presence_penalty", 0.0)),
        frequency_penalty=float(body.get("frequency_penalty", 0.0)),
        stop=(stop,) if isinstance(stop, str) else tuple(stop or ()),
    )
