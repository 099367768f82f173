"""Outlines' output types end to end on the real vLLM (tiny random-weight model): JSON schema, pydantic,
a regex DSL term, a choice and a Lark grammar. Every output that was not cut off satisfies its constraint,
checked by an independent reader (re, lark, jsonschema); a type the backend cannot express is refused
before the model starts."""

from __future__ import annotations

import enum
import json
import re
from typing import Literal

import jsonschema
import lark
import pytest
from outlines import types
from outlines.types import CFG, Choice, JsonSchema, Regex
from pydantic import BaseModel, ConfigDict, Field

from engine.cache import request_key
from engine.errors import ConfigError
from engine.structured import OutputSpec
from engine.types import Request, Sampling

ARITHMETIC = """
start: expr
expr: term (("+" | "-") term)*
term: factor (("*" | "/") factor)*
factor: NUMBER | "(" expr ")"
NUMBER: /[0-9]{1,3}/
"""


class Point(BaseModel):
    model_config = ConfigDict(extra="forbid")
    label: str = Field(min_length=1, max_length=12)
    x: int = Field(ge=-9, le=9)


POINT_SCHEMA = Point.model_json_schema()


class Mood(enum.Enum):
    HAPPY = "happy"
    SAD = "sad"


def requests_of(output_type, count: int = 16, max_tokens: int = 48) -> list[Request]:
    return [
        Request(
            messages=[{"role": "user", "content": f"Answer number {i}"}],
            sampling=Sampling(temperature=1.0, max_tokens=max_tokens, seed=i),
            output_type=output_type,
        )
        for i in range(count)
    ]


def satisfied(kind: str, text: str) -> bool:
    """The independent check of one output text."""
    if kind == "date":
        return re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])", text) is not None
    if kind == "choice":
        return text in ("red", "green", "blue")
    if kind == "grammar":
        try:
            lark.Lark(ARITHMETIC, start="start").parse(text)
        except lark.exceptions.LarkError:
            return False
        return True
    try:
        jsonschema.validate(json.loads(text), POINT_SCHEMA)
    except (json.JSONDecodeError, jsonschema.ValidationError):
        return False
    return True


KINDS = {
    "json-schema": JsonSchema(POINT_SCHEMA),
    "pydantic": Point,
    "date": types.date,
    "choice": Choice(["red", "green", "blue"]),
    "grammar": CFG(ARITHMETIC),
}


@pytest.mark.engine
@pytest.mark.parametrize("kind", list(KINDS))
def test_every_finished_output_satisfies_its_constraint(engine, kind):
    results = engine.run(requests_of(KINDS[kind]))
    finished = [r for r in results if r.completions[0].finish_reason != "length"]
    assert len(finished) >= len(results) // 2, [r.text for r in results]  # not a check of nothing
    for r in finished:
        assert satisfied(kind, r.text), r.text
        assert r.ok and r.failure is None
    for r in results:
        if r.ok:
            expected = r.parsed.model_dump() if kind == "pydantic" else r.parsed
            assert expected == (json.loads(r.text) if kind in ("pydantic", "json-schema") else r.text)


@pytest.mark.engine
def test_literal_and_enum_are_choices_and_parse_to_their_values(engine):
    moods = engine.run(requests_of(Mood, count=6, max_tokens=8))
    assert {r.text for r in moods} <= {"happy", "sad"}
    assert all(r.parsed is Mood(r.text) for r in moods)
    answers = engine.run(requests_of(Literal["yes", "no"], count=6, max_tokens=8))
    assert all(r.parsed == r.text and r.text in ("yes", "no") for r in answers)


@pytest.mark.parametrize(
    ("output_type", "message"),
    [
        (Regex(r"(a)\1"), "backreferences are not supported"),
        (Regex(r"(?=x)x"), "regex constraint"),
        (CFG("start: undefined_rule"), "grammar constraint"),
        (Choice(["a", "a"]), "distinct"),
        ({"type": "nonsense"}, "Invalid JSON schema"),
    ],
    ids=["backreference", "lookahead", "undefined-rule", "repeated-choice", "bad-schema"],
)
def test_a_constraint_the_backend_cannot_express_is_refused_before_the_model_starts(
    tiny_model, tmp_path, output_type, message
):
    from engine.engine import Engine

    engine = Engine(str(tiny_model), cache_dir=tmp_path, max_model_len=1024)
    with pytest.raises(ConfigError, match=re.escape(message)) as caught:
        engine.run(requests_of(output_type, count=1))
    assert "\n" not in str(caught.value)
    assert engine._backend is None  # nothing was started
    engine.close()


def test_the_cache_key_covers_the_constraint():
    def key(output_type) -> str:
        request = requests_of(output_type, count=1)[0]
        return request_key("model", request, OutputSpec.of(output_type))

    keys = {
        key(t)
        for t in [Regex("[0-9]+"), Regex("[0-9]*"), Choice(["a", "b"]), Choice(["b", "a"]), CFG(ARITHMETIC)]
    }
    assert len(keys) == 5
    # A JSON type keys by its schema alone, as before output kinds existed, so older cache entries hold.
    assert key(Point) == key(POINT_SCHEMA) == key(JsonSchema(POINT_SCHEMA))


def test_regex_dsl_terms_become_one_full_match_pattern():
    spec = OutputSpec.of(types.either("none", types.at_most(2, types.digit)))
    assert spec.constraint.kind == "regex"
    assert spec.parse("none", "stop") == ("none", None)
    assert spec.parse("42", "stop") == ("42", None)
    assert spec.parse("421", "stop") == (None, "invalid")
    assert spec.parse("4", "length") == ("4", None)
    assert OutputSpec.of(types.date).parse("2026-1", "length") == (None, "truncated")
