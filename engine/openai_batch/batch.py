"""An OpenAI Batch file run on local models: the output file, the error file and the batch object, in one
call. Chat and completion requests go through the Engine (request cache, schedules, Ray), one `run` per
model; embedding requests through the Embedder (its vector cache). Lines come out in input order.

    summary = run_batch(Path("requests.jsonl"), Path("results.jsonl"), Path("errors.jsonl"),
                        engine_for=..., embedder_for=...)
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import InputError
from engine.openai_batch import responses
from engine.openai_batch.requests import CHAT, EMBEDDINGS, BatchError, BatchItem, read_line
from engine.run.fingerprints import fingerprint
from engine.run.io import published_together, write_json, write_jsonl


@dataclass
class Line:
    """One input line and, once answered, its response body or error."""

    number: int
    custom_id: str | None
    body: dict[str, Any] | None
    answer: dict[str, Any] | BatchError | None = None


@dataclass
class Tally:
    tokens: Counter = field(default_factory=Counter)
    engines: list[Any] = field(default_factory=list)


def read_lines(path: Path) -> tuple[list[Line], list[BatchItem]]:
    """Every non-blank line, with the items that can be served (the others carry their error already)."""
    try:
        raw = path.read_bytes().splitlines()
    except OSError as e:
        raise InputError(f"cannot read ({e.strerror})", path=path) from e
    lines, items, seen = [], [], set()
    for number, data in enumerate(raw, 1):
        if not data.strip():
            continue
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            lines.append(Line(number, None, None, BatchError(f"line {number}: not UTF-8 ({e.reason})")))
            continue
        custom_id, body, item = read_line(text, number, seen)
        lines.append(Line(number, custom_id, body, item if isinstance(item, BatchError) else None))
        if isinstance(item, BatchItem):
            items.append(item)
    if not lines:
        raise InputError("no requests in this file", path=path)
    return lines, items


def run_batch(
    input_path: Path,
    output_path: Path,
    error_path: Path,
    *,
    engine_for: Callable[[str], Any],
    embedder_for: Callable[[str], Any],
) -> dict[str, Any]:
    """Answer every line; write the output, error and batch-object files; return the batch object.

    `engine_for(model)` / `embedder_for(model)` give the Engine or Embedder serving a body's `model`, or a
    BatchError for a model that cannot be served (that request's error line)."""
    lines, items = read_lines(input_path)
    summary_path = output_path.with_name(output_path.name + ".batch.json")
    input_fp = fingerprint([input_path])
    created = _first_created(summary_path, input_fp)
    answers: dict[int, dict[str, Any] | BatchError] = {}
    tally = Tally()
    for (endpoint, model), group in _groups(items).items():
        if endpoint == EMBEDDINGS:
            _embed(group, embedder_for(model), answers, tally)
        else:
            _generate(group, engine_for(model), created, answers, tally)
    for line in lines:
        line.answer = line.answer or answers[line.number]
    ok = [ln for ln in lines if not isinstance(ln.answer, BatchError)]
    failed = [ln for ln in lines if isinstance(ln.answer, BatchError)]
    endpoints = Counter(item.endpoint for item in items)
    summary = responses.batch_object(
        batch_id=f"batch_{input_fp[:24]}",
        endpoint=endpoints.most_common(1)[0][0] if endpoints else CHAT,
        input_file=str(input_path),
        output_file=str(output_path),
        error_file=str(error_path),
        created=created,
        completed=int(time.time()),
        counts={"total": len(lines), "completed": len(ok), "failed": len(failed)},
        tokens={k: tally.tokens[k] for k in ("input", "output", "cached")},
    )
    summary["metadata"] = {"input_xxh128": input_fp}
    with published_together():  # results, errors and the batch object
        write_jsonl(output_path, (responses.output_line(ln.custom_id, ln.body, ln.answer) for ln in ok))
        write_jsonl(error_path, (responses.output_line(ln.custom_id, ln.body, ln.answer) for ln in failed))
        write_json(summary_path, summary)
    summary["engines"] = tally.engines
    return summary


def _groups(items: list[BatchItem]) -> dict[tuple[str, str], list[BatchItem]]:
    groups: dict[tuple[str, str], list[BatchItem]] = {}
    for item in items:
        groups.setdefault((item.endpoint, item.model), []).append(item)
    return groups


def _generate(group: list[BatchItem], engine: Any, created: int, answers: dict, tally: Tally) -> None:
    if isinstance(engine, BatchError):
        answers.update((item.line, engine) for item in group)
        return
    build = responses.chat_completion if group[0].endpoint == CHAT else responses.text_completion
    for item, result in zip(group, engine.run([item.request for item in group])):
        if result.completions[0].failure == "too_long":
            param = "messages" if item.endpoint == CHAT else "prompt"
            answers[item.line] = BatchError(
                f"line {item.line}: the prompt is longer than the model's context ({result.prompt_tokens} "
                "tokens)",
                param,
                "context_length_exceeded",
            )
            continue
        answers[item.line] = build(item, result, created, engine.model_identity)
        output = sum(c.output_tokens for c in result.completions)
        tally.tokens.update(input=result.prompt_tokens, output=output)
        tally.tokens["cached"] += result.prompt_tokens if result.cached else 0
    tally.engines.append(engine.stats)


def _embed(group: list[BatchItem], embedder: Any, answers: dict, tally: Tally) -> None:
    if isinstance(embedder, BatchError):
        answers.update((item.line, embedder) for item in group)
        return
    texts = [t for item in group for t in item.inputs]
    vectors, counts = embedder.embed(texts), embedder.count_tokens(texts)
    start = 0
    for item in group:
        end = start + len(item.inputs)
        if item.body.get("dimensions") not in (None, vectors.shape[1]):
            answers[item.line] = BatchError(
                f"line {item.line}: this model gives {vectors.shape[1]} dimensions", "dimensions"
            )
        else:
            tokens = sum(counts[start:end])
            answers[item.line] = responses.embeddings(item, vectors[start:end], tokens)
            tally.tokens["input"] += tokens
        start = end


def _first_created(summary_path: Path, input_fp: str) -> int:
    """The batch's `created` time: its first run's, when the batch object of a run of the same input is
    there (so a rerun's bodies are byte-identical), else now."""
    try:
        previous = json.loads(summary_path.read_text(encoding="utf-8"))
        if previous["metadata"]["input_xxh128"] == input_fp:
            return int(previous["created_at"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return int(time.time())
