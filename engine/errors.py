"""The project's exception types: every message names what was wrong, where, and the value it got."""

from __future__ import annotations


class InstructforgeError(Exception):
    """Base of every error instructforge raises on purpose (the CLI prints these as one line)."""


class ConfigError(InstructforgeError, ValueError):
    """A parameter is out of range or two parameters conflict.

    Carries the parameter name and the value it got, like vLLM's validation errors.
    """

    def __init__(self, message: str, *, parameter: str | None = None, value: object = None):
        super().__init__(message)
        self.parameter = parameter
        self.value = value


class InputError(InstructforgeError, ValueError):
    """A user-supplied file is unreadable or a record in it is malformed.

    `str(err)` is one line: ``FILE:LINE: field `name`: what is wrong``.
    """

    def __init__(
        self, message: str, *, path: object = None, line: int | None = None, field: str | None = None
    ):
        self.path, self.line, self.field, self.reason = path, line, field, message
        where = str(path) if path is not None else "<input>"
        if line is not None:
            where += f":{line}"
        what = f"field `{field}`: {message}" if field else message
        super().__init__(f"{where}: {what}")


class ModelError(InstructforgeError, RuntimeError):
    """A model could not be found, provisioned or started."""


def require(owner: object, name: str, ok: bool, rule: str) -> None:
    """THE validation helper: unless `ok`, ConfigError "`name` must be RULE, got VALUE." (VALUE read from
    `owner`, a config object)."""
    if not ok:
        value = getattr(owner, name)
        raise ConfigError(f"`{name}` must be {rule}, got {value!r}.", parameter=name, value=value)


def require_positive(owner: object, *names: str) -> None:
    """`require` each named field of `owner` to be an int >= 1 (not a bool)."""
    for name in names:
        value = getattr(owner, name)
        require(
            owner, name, isinstance(value, int) and not isinstance(value, bool) and value >= 1, "an int >= 1"
        )
