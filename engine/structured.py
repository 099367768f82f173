"""Output types as configuration: one converter from a Python type (or a JSON schema) to the JSON schema
that constrains decoding, and one parser from generated text back to a validated object.

    spec = OutputSpec.of(list[Task])      # pydantic models, dataclasses, TypedDict, Literal, Enum, ...
    spec.schema                           # the JSON schema handed to the grammar backend
    obj, failure = spec.parse(text, finish_reason)

Pydantic's `TypeAdapter` is the single converter (as outlines' `python_types_to_terms` does for
structured types); a plain dict is taken as a JSON schema and validated with `jsonschema`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from engine.errors import ConfigError
from engine.types import Failure


@dataclass(frozen=True)
class OutputSpec:
    """A compiled output type: its JSON schema and how to validate text against it."""

    schema: dict[str, Any]
    adapter: Any = None
    """A pydantic TypeAdapter when the type came from Python; None for a raw JSON schema."""

    @classmethod
    def of(cls, output_type: Any) -> OutputSpec:
        if isinstance(output_type, OutputSpec):
            return output_type
        if isinstance(output_type, dict):
            _check_schema(output_type)
            return cls(schema=output_type)
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
        return cls(schema=schema, adapter=adapter)

    @property
    def canonical(self) -> str:
        """The schema as canonical JSON (sorted keys): what the cache key hashes."""
        return json.dumps(self.schema, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    def parse(self, text: str, finish_reason: str) -> tuple[Any, Failure | None]:
        """Return (object, None) for conforming text, else (None, 'truncated' | 'invalid')."""
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


def _check_schema(schema: dict[str, Any]) -> None:
    import jsonschema

    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as e:
        raise ConfigError(f"Invalid JSON schema: {e.message}", parameter="output_type", value=schema) from e


def to_jsonable(value: Any) -> Any:
    """A parsed object as plain JSON data (pydantic models and dataclasses included)."""
    from pydantic import TypeAdapter

    return TypeAdapter(type(value)).dump_python(value, mode="json") if value is not None else None
