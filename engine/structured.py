"""Output types as configuration: one converter from an output type to the constraint that steers decoding,
and one parser from generated text back to the type's value. Outlines' type language is the vocabulary:

    OutputSpec.of(list[Task])                  # Python types pydantic describes: a JSON value of that shape
    OutputSpec.of({"type": "object", ...})     # a JSON schema dict (or outlines' JsonSchema)
    OutputSpec.of(Regex(r"[0-9]{4}-[0-9]{2}"))  # a regex, or any term of outlines' regex DSL (types.date)
    OutputSpec.of(Choice(["yes", "no"]))       # one of the items as raw text; so is a Literal or an Enum
    OutputSpec.of(CFG(lark_grammar))           # a Lark context-free grammar
    obj, failure = spec.parse(text, finish_reason)

Each becomes one of vLLM's structured-output kinds (json, regex, choice, grammar) for the guidance backend.
Regex DSL terms go through outlines' own term layer (`to_regex`); a constraint the backend cannot compile is
a ConfigError here, before any model starts. Structured Python types take pydantic's JSON schema, which is
what outlines' `python_types_to_terms` does for them too.
"""

from __future__ import annotations

import enum
import functools
import json
import re
import typing
from dataclasses import dataclass
from typing import Any, Literal

from engine.errors import ConfigError
from engine.types import Failure

Kind = Literal["json", "regex", "choice", "grammar"]
"""vLLM's structured-output kinds, by the names of `StructuredOutputsParams`' fields."""


@dataclass(frozen=True)
class Constraint:
    """What the grammar backend is handed: a kind and its value (a JSON schema dict, a regex pattern, a
    tuple of choice strings, or a Lark grammar's text)."""

    kind: Kind
    value: Any

    def fields(self) -> dict[str, Any]:
        """As keyword arguments of vLLM's `StructuredOutputsParams` (its choice is a list)."""
        return {self.kind: list(self.value) if self.kind == "choice" else self.value}


@dataclass(frozen=True)
class OutputSpec:
    """A compiled output type: its constraint, and how to read text back into the type's value."""

    constraint: Constraint
    adapter: Any = None
    """A pydantic TypeAdapter when a JSON type came from Python; None for a raw JSON schema."""
    values: tuple[Any, ...] = ()
    """For a choice: the value each choice string stands for (a Literal's arg, an Enum member)."""

    @classmethod
    def of(cls, output_type: Any) -> OutputSpec:
        if isinstance(output_type, OutputSpec):
            return output_type
        if isinstance(output_type, dict):
            return cls._json_schema(output_type)
        from outlines.types.dsl import CFG, Choice, JsonSchema, Term, python_types_to_terms, to_regex

        if isinstance(output_type, JsonSchema):
            return cls._json_schema(json.loads(output_type.schema))
        if isinstance(output_type, CFG):
            return cls._checked(cls(Constraint("grammar", output_type.definition)))
        choices = _choices(output_type)
        if choices is not None and all(isinstance(v, (str, int, float, bool, enum.Enum)) for v in choices):
            texts = tuple(_choice_text(v) for v in choices)
            if len(set(texts)) != len(texts) or not all(texts):
                raise ConfigError(
                    f"Choices must be distinct and non-empty, got {list(texts)!r}.",
                    parameter="output_type",
                    value=output_type,
                )
            return cls._checked(cls(Constraint("choice", texts), values=tuple(choices)))
        if isinstance(output_type, (Term, Choice)):
            try:
                pattern = to_regex(python_types_to_terms(output_type))
            except (TypeError, ValueError) as e:
                raise ConfigError(
                    f"Cannot build a regex from output type {output_type!r}: {e}",
                    parameter="output_type",
                    value=output_type,
                ) from e
            return cls._checked(cls(Constraint("regex", ascii_digits(pattern))))
        return cls._python_type(output_type)

    @classmethod
    def _json_schema(cls, schema: dict[str, Any]) -> OutputSpec:
        import jsonschema

        try:
            jsonschema.validators.validator_for(schema).check_schema(schema)
        except jsonschema.SchemaError as e:
            raise ConfigError(
                f"Invalid JSON schema: {e.message}", parameter="output_type", value=schema
            ) from e
        return cls(Constraint("json", schema))

    @classmethod
    def _python_type(cls, output_type: Any) -> OutputSpec:
        from pydantic import TypeAdapter

        try:
            adapter = TypeAdapter(output_type)
            schema = adapter.json_schema()
        except Exception as e:  # pydantic raises several error types for unsupported types
            raise ConfigError(
                f"Cannot build a JSON schema from output type {output_type!r}: {e}",
                parameter="output_type",
                value=output_type,
            ) from e
        return cls(Constraint("json", schema), adapter=adapter)

    @classmethod
    def _checked(cls, spec: OutputSpec) -> OutputSpec:
        """The spec, once the guidance backend compiled its constraint (and lark its grammar)."""
        import llguidance

        kind, value = spec.constraint.kind, spec.constraint.value
        try:
            grammar = llguidance.grammar_from(kind, spec.constraint.fields()[kind])
            error = llguidance.LLMatcher.validate_grammar(grammar, None)
            if not error and kind == "grammar":
                _lark(value)
        except Exception as e:  # llguidance and lark raise their own error types
            error = str(e)
        if error:  # llguidance points at the spot over several lines; keep what says why
            lines = [line.strip() for line in error.strip().splitlines() if line.strip()]
            why = " ".join([lines[0], *(line for line in lines[1:] if line.startswith("error:"))])
            raise ConfigError(
                f"The grammar backend cannot express this {kind} constraint: {why}",
                parameter="output_type",
                value=value,
            )
        return spec

    @property
    def schema(self) -> dict[str, Any] | None:
        """The JSON schema, for a JSON type; None for the other kinds."""
        return self.constraint.value if self.constraint.kind == "json" else None

    def parse(self, text: str, finish_reason: str) -> tuple[Any, Failure | None]:
        """Return (value, None) for conforming text, else (None, 'truncated' | 'invalid'): text that
        does not conform is truncated when the token limit cut it, else invalid."""
        kind, value = self.constraint.kind, self.constraint.value
        if kind == "json":
            return self._parse_json(text, finish_reason)
        if kind == "choice":
            parsed = self.values[value.index(text)] if text in value else None
            ok = parsed is not None
        elif kind == "regex":
            ok, parsed = re.fullmatch(value, text) is not None, text
        else:
            ok, parsed = _parses(value, text), text
        if ok:
            return parsed, None
        return None, "truncated" if finish_reason == "length" else "invalid"

    def _parse_json(self, text: str, finish_reason: str) -> tuple[Any, Failure | None]:
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            # An unclosed object at the token limit is truncated, not wrong.
            return None, "truncated" if finish_reason == "length" else "invalid"
        if self.adapter is not None:
            from pydantic import ValidationError

            try:
                return self.adapter.validate_python(value), None
            except ValidationError:
                return None, "invalid"
        import jsonschema

        try:
            jsonschema.validate(value, self.schema)
        except jsonschema.ValidationError:
            return None, "invalid"
        return value, None


def ascii_digits(pattern: str) -> str:
    """`pattern` with `\\d` as `[0-9]` (and `\\D` outside a class as `[^0-9]`). The guidance backend reads
    `\\d` as any Unicode digit: asked for `types.date`, the tiny test model wrote "꘥3٧𞓹-06-11", which no
    user of a date type means, and which Python's older Unicode tables then read differently."""
    out, i, in_class = [], 0, False
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            pair = pattern[i : i + 2]
            if pair == "\\d":
                pair = "0-9" if in_class else "[0-9]"
            elif pair == "\\D" and not in_class:
                pair = "[^0-9]"
            out.append(pair)
            i += 2
            continue
        if c == "[" and not in_class:
            in_class = True
            start = i + 2 if pattern[i + 1 : i + 2] == "^" else i + 1
            if pattern[start : start + 1] == "]":  # a leading "]" is a literal member
                out.append(pattern[i : start + 1])
                i = start + 1
                continue
        elif c == "]" and in_class:
            in_class = False
        out.append(c)
        i += 1
    return "".join(out)


def _choices(output_type: Any) -> list[Any] | None:
    """The values of a Choice, a Literal or an Enum (outlines reads each as one of its values, raw)."""
    from outlines.types.dsl import Choice

    if isinstance(output_type, Choice):
        return list(output_type.items)
    if typing.get_origin(output_type) is Literal:
        return list(typing.get_args(output_type))
    if isinstance(output_type, type) and issubclass(output_type, enum.Enum):
        return list(output_type)
    return None


def _choice_text(value: Any) -> str:
    if isinstance(value, enum.Enum):
        value = value.value
    return value if isinstance(value, str) else json.dumps(value)


@functools.lru_cache(maxsize=None)
def _lark(grammar: str) -> Any:
    """A lark parser of `grammar` (Earley: any context-free grammar), built once per grammar."""
    import lark

    return lark.Lark(grammar, start="start", parser="earley")


def _parses(grammar: str, text: str) -> bool:
    import lark

    try:
        _lark(grammar).parse(text)
    except lark.exceptions.LarkError:
        return False
    return True


def to_jsonable(value: Any) -> Any:
    """A parsed value as plain JSON data (pydantic models, dataclasses and Enum members included)."""
    from pydantic import TypeAdapter

    return TypeAdapter(type(value)).dump_python(value, mode="json") if value is not None else None
