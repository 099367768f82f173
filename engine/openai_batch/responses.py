"""What OpenAI's API returns, built from engine results: `chat.completion`, `text_completion` and the
embeddings `list` bodies, the per-line wrapper of the batch output and error files, and the batch object.

Every id derives from the request (custom_id and body), and `created` from the batch's first run, so a
rerun writes byte-identical files; cache flags stay out of the bodies for the same reason (the batch
object counts cached tokens instead).
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import xxhash

from engine.cache import canonical_json
from engine.openai_batch.requests import BatchError, BatchItem
from engine.types import Result


def request_id(custom_id: str, body: dict[str, Any] | None) -> str:
    """A stable id for one line: 24 hex digits of xxh128 over its custom_id and canonical body."""
    return xxhash.xxh128_hexdigest(canonical_json([custom_id, body]))[:24]


def output_line(
    custom_id: str | None, body: dict[str, Any] | None, answer: dict[str, Any] | BatchError
) -> dict:
    """One line of the output file (status 200) or the error file (the error's status)."""
    rid = request_id(custom_id or "", body)
    status, payload = (answer.status_code, answer.body()) if isinstance(answer, BatchError) else (200, answer)
    return {
        "id": f"batch_req_{rid}",
        "custom_id": custom_id,
        "response": {"status_code": status, "request_id": f"req_{rid}", "body": payload},
        "error": None,
    }


def system_fingerprint(model_identity: str) -> str:
    return "fp_" + xxhash.xxh64_hexdigest(model_identity)[:10]


def usage(result: Result) -> dict[str, Any]:
    completion = sum(c.output_tokens for c in result.completions)
    return {
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": result.prompt_tokens + completion,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


def finish_reason(reason: str) -> str:
    return "length" if reason == "length" else "stop"


def chat_completion(item: BatchItem, result: Result, created: int, identity: str) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{request_id(item.custom_id, item.body)}",
        "object": "chat.completion",
        "created": created,
        "model": item.model,
        "choices": [
            {
                "index": i,
                "message": {"role": "assistant", "content": c.text, "refusal": None},
                "logprobs": None,
                "finish_reason": finish_reason(c.finish_reason),
            }
            for i, c in enumerate(result.completions)
        ],
        "usage": usage(result),
        "system_fingerprint": system_fingerprint(identity),
    }


def text_completion(item: BatchItem, result: Result, created: int, identity: str) -> dict[str, Any]:
    return {
        "id": f"cmpl-{request_id(item.custom_id, item.body)}",
        "object": "text_completion",
        "created": created,
        "model": item.model,
        "choices": [
            {"index": i, "text": c.text, "logprobs": None, "finish_reason": finish_reason(c.finish_reason)}
            for i, c in enumerate(result.completions)
        ],
        "usage": {k: v for k, v in usage(result).items() if not k.endswith("_details")},
        "system_fingerprint": system_fingerprint(identity),
    }


def embeddings(item: BatchItem, vectors: np.ndarray, tokens: int) -> dict[str, Any]:
    as_base64 = item.body.get("encoding_format") == "base64"
    return {
        "object": "list",
        "data": [
            {
                "object": "embedding",
                "index": i,
                "embedding": base64.b64encode(v.astype("<f4").tobytes()).decode()
                if as_base64
                else v.tolist(),
            }
            for i, v in enumerate(vectors)
        ],
        "model": item.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def batch_object(
    *,
    batch_id: str,
    endpoint: str,
    input_file: str,
    output_file: str,
    error_file: str,
    created: int,
    completed: int,
    counts: dict[str, int],
    tokens: dict[str, int],
) -> dict[str, Any]:
    """The batch object OpenAI reports for a finished batch (`Batch` in the openai package)."""
    return {
        "id": batch_id,
        "object": "batch",
        "endpoint": endpoint,
        "errors": None,
        "input_file_id": input_file,
        "completion_window": "24h",
        "status": "completed",
        "output_file_id": output_file,
        "error_file_id": error_file,
        "created_at": created,
        "in_progress_at": created,
        "finalizing_at": completed,
        "completed_at": completed,
        "request_counts": counts,
        "usage": {
            "input_tokens": tokens["input"],
            "input_tokens_details": {"cached_tokens": tokens["cached"]},
            "output_tokens": tokens["output"],
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": tokens["input"] + tokens["output"],
        },
        "metadata": None,
    }
