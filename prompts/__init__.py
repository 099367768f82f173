"""Prompt templates and in-context demos as data files, one folder per method.

Templates are Jinja files rendered with StrictUndefined: a variable the caller forgot is an error, not
an empty string silently sent to the model.

    template = load_template("self_instruct", "bootstrap.j2")
    text = template.render(instructions=[...], count=8)
    demos = load_data("self_instruct", "clf_demos.jsonl")
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

PROMPTS_DIR = Path(__file__).resolve().parent


def prompt_path(method: str, name: str) -> Path:
    path = PROMPTS_DIR / method / name
    if not path.is_file():
        raise FileNotFoundError(f"prompt file {method}/{name} not found in {PROMPTS_DIR}")
    return path


@functools.lru_cache(maxsize=None)
def load_template(method: str, name: str):
    """A compiled Jinja template from prompts/<method>/<name>."""
    import jinja2

    env = jinja2.Environment(
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    return env.from_string(prompt_path(method, name).read_text(encoding="utf-8"))


def load_data(method: str, name: str) -> Any:
    """A JSON document, or a list of objects for a .jsonl file, from prompts/<method>/<name>."""
    text = prompt_path(method, name).read_text(encoding="utf-8")
    if name.endswith(".jsonl"):
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    return json.loads(text)
