"""An OpenAI Batch file of strict `json_schema` chat requests on a real model: how many answers validate
against their schema, and what the batch layer costs against the same requests sent to the Engine, in one
run (both without the request cache).

    python benchmarks/openai_batch.py                  # default model, 64 lines
    python benchmarks/openai_batch.py --model /path/to/hf-folder --lines 256

Requests: one per SELF-INSTRUCT seed task (../shared/data), asking for the task's metadata as JSON under a
strict schema (a label enum, bounded integers, a bounded string). Every `finish_reason: "stop"` answer's
content is checked with `jsonschema`; answers cut at `max_tokens` are counted apart (`length`).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from common import seed_instructions

SCHEMA = {
    "type": "object",
    "properties": {
        "category": {"type": "string", "enum": ["writing", "math", "coding", "classification", "other"]},
        "difficulty": {"type": "integer", "minimum": 1, "maximum": 5},
        "summary": {"type": "string", "maxLength": 80},
    },
    "required": ["category", "difficulty", "summary"],
    "additionalProperties": False,
}


def batch_lines(count: int, max_tokens: int) -> list[dict]:
    seeds = seed_instructions()
    return [
        {
            "custom_id": f"task-{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {
                "model": "gpt-4o-mini",
                "messages": [
                    {"role": "system", "content": "You describe tasks as JSON."},
                    {"role": "user", "content": f"Task: {seeds[i % len(seeds)]}\nDescribe it."},
                ],
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "task_info", "schema": SCHEMA, "strict": True},
                },
                "temperature": 0,
                "max_tokens": max_tokens,
            },
        }
        for i in range(count)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="default")
    parser.add_argument("--lines", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=96)
    args = parser.parse_args()

    import jsonschema

    from engine import Engine
    from engine.openai_batch.batch import run_batch
    from engine.openai_batch.requests import read_line

    lines = batch_lines(args.lines, args.max_tokens)
    with tempfile.TemporaryDirectory() as tmp, Engine(args.model, use_cache=False) as engine:
        source = Path(tmp) / "requests.jsonl"
        source.write_text("".join(json.dumps(x) + "\n" for x in lines))
        requests = [read_line(json.dumps(x), n, set())[2].request for n, x in enumerate(lines, 1)]
        engine.run(requests[:4])  # warm-up: both timings below start from a running model
        start = time.perf_counter()
        engine.run(requests)
        direct = time.perf_counter() - start
        start = time.perf_counter()
        run_batch(
            source, Path(tmp) / "out.jsonl", Path(tmp) / "errors.jsonl", engine_for=lambda _: engine,
            embedder_for=lambda _: None,
        )  # fmt: skip
        batched = time.perf_counter() - start
        answers = [json.loads(x) for x in (Path(tmp) / "out.jsonl").read_text().splitlines()]
        failed = len((Path(tmp) / "errors.jsonl").read_text().splitlines())
    choices = [a["response"]["body"]["choices"][0] for a in answers]
    stopped = [c for c in choices if c["finish_reason"] == "stop"]
    valid = 0
    for c in stopped:
        try:
            jsonschema.validate(json.loads(c["message"]["content"]), SCHEMA)
            valid += 1
        except (json.JSONDecodeError, jsonschema.ValidationError):
            pass
    print(
        f"\nmodel: {args.model}; {args.lines} strict json_schema lines, greedy, <= {args.max_tokens} tokens\n"
    )
    print("| lines | answered | errors | finish_reason stop | valid of stop | length (truncated) |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    share = f"{valid}/{len(stopped)} ({100 * valid / len(stopped):.0f} %)" if stopped else "0/0"
    truncated = len(choices) - len(stopped)
    print(f"| {args.lines} | {len(answers)} | {failed} | {len(stopped)} | {share} | {truncated} |")
    print(f"\nwall time: Engine.run {direct:.1f} s, batch file {batched:.1f} s (x{batched / direct:.2f})")


if __name__ == "__main__":
    main()
