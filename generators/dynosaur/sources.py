"""DYNOSAUR's dataset sources (Yin et al., EMNLP 2023, §2.1): find the datasets under the user's paths and
read each one's metadata, offline. A dataset comes from a `save_to_disk` folder, a folder (or a single
file) of JSONL/CSV/parquet with an optional dataset card, or `load_dataset(name)` where the local HF cache
already holds it. Every dataset that cannot be used is a counted skip with its reason.

    collection = collect_metadata(["data/sentiment", "data/qa"])   # .datasets, .skipped
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import InputError
from engine.run.progress import progress
from generators.dynosaur.metadata import (
    DATA_SUFFIXES,
    EXCLUDED_LICENSES,
    ROWS_PER_SPLIT,
    Collection,
    DatasetMeta,
    Skip,
    build_meta,
    read_card,
)


@dataclass(frozen=True)
class Source:
    """Where one dataset comes from: a save_to_disk folder, a data folder, one data file, a hub id."""

    kind: str  # disk | folder | file | hub
    location: str
    name: str


def discover(paths: Iterable[str | Path]) -> list[Source]:
    """Expand the user's paths: a dataset folder, a data file, a hub id, or a folder of datasets."""
    sources: list[Source] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_file():
            if path.suffix.lower() not in DATA_SUFFIXES:
                raise InputError(f"not a data file (expected one of {', '.join(DATA_SUFFIXES)})", path=path)
            sources.append(Source("file", str(path.resolve()), path.stem))
        elif path.is_dir():
            found = _discover_dir(path.resolve(), depth=0)
            if not found:
                raise InputError(
                    "no dataset in this folder (expected a `save_to_disk` folder, data "
                    "files, or subfolders holding either)",
                    path=path,
                )
            sources += found
        elif re.fullmatch(r"[\w.-]+(/[\w.-]+)?", str(raw)) and not str(raw).startswith("."):
            sources.append(Source("hub", str(raw), str(raw)))
        else:
            raise InputError("no such folder or file", path=path)
    seen: dict[str, Source] = {}
    for s in sources:
        if s.name in seen and seen[s.name] != s:
            raise InputError(
                f"two datasets are both named `{s.name}` ({seen[s.name].location} and "
                f"{s.location}); rename one of them",
                path=s.location,
            )
        seen[s.name] = s
    return list(seen.values())


def _discover_dir(path: Path, depth: int) -> list[Source]:
    if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
        return [Source("disk", str(path), path.name)]
    if _has_data_files(path) or _has_data_files(path / "data"):
        return [Source("folder", str(path), path.name)]
    if depth >= 3:
        return []
    return [
        s
        for sub in sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
        for s in _discover_dir(sub, depth + 1)
    ]


def _has_data_files(path: Path) -> bool:
    return path.is_dir() and any(
        p.is_file() and p.suffix.lower() in DATA_SUFFIXES and not p.name.startswith(".")
        for p in path.iterdir()
    )


def collect_metadata(
    paths: Iterable[str | Path],
    *,
    excluded_licenses: Sequence[str] = EXCLUDED_LICENSES,
    rows_per_split: int = ROWS_PER_SPLIT,
) -> Collection:
    """Metadata of every dataset/config under `paths`, and every skip with its reason. Offline."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    collection = Collection()
    options = {"excluded_licenses": excluded_licenses, "rows_per_split": rows_per_split}
    for source in progress(discover(paths), desc="reading datasets", unit="dataset"):
        for item in _load_source(source, options):
            (collection.datasets if isinstance(item, DatasetMeta) else collection.skipped).append(item)
    return collection


def _load_source(source: Source, options: dict[str, Any]) -> list[DatasetMeta | Skip]:
    import datasets

    card_path = Path(source.location) / "README.md" if source.kind in ("disk", "folder") else None
    card = read_card(card_path) if card_path is not None and card_path.is_file() else {}
    try:
        if source.kind == "disk":
            data = datasets.load_from_disk(source.location)
            splits = (
                dict(data) if isinstance(data, datasets.DatasetDict) else {str(data.split or "train"): data}
            )
            return [_from_splits(source, None, splits, card, options)]
        if source.kind == "file":
            builder = DATA_SUFFIXES[Path(source.location).suffix.lower()]
            extra = {"delimiter": "\t"} if source.location.lower().endswith(".tsv") else {}
            data = datasets.load_dataset(
                builder, data_files={"train": source.location}, streaming=True, **extra
            )
            return [_from_splits(source, None, dict(data), card, options)]
        if source.kind == "folder":
            configs = datasets.get_dataset_config_names(source.location)
            return [
                _from_splits(
                    source,
                    config,
                    dict(datasets.load_dataset(source.location, config, streaming=True)),
                    card,
                    options,
                )
                for config in configs
            ]
    except (OSError, ValueError, TypeError, KeyError, datasets.exceptions.DatasetGenerationError) as e:
        return [Skip(source.name, source.location, "unreadable", _one_line(e))]
    return _load_hub(source, options)


def _load_hub(source: Source, options: dict[str, Any]) -> list[DatasetMeta | Skip]:
    """`load_dataset(name)` offline: only what the local HF cache already holds."""
    import datasets

    try:
        configs = datasets.get_dataset_config_names(source.location)
    except Exception as e:  # noqa: BLE001 - hub/cache lookups raise many types offline
        return [
            Skip(
                source.name,
                source.location,
                "unavailable_offline",
                f"neither a local path nor in the local HF cache ({_one_line(e)})",
            )
        ]
    card: dict[str, Any] = {}
    try:
        from huggingface_hub import hf_hub_download

        card = read_card(
            Path(hf_hub_download(source.location, "README.md", repo_type="dataset", local_files_only=True))
        )
    except Exception:  # noqa: BLE001 - no cached card: metadata from DatasetInfo only
        pass
    found: list[DatasetMeta | Skip] = []
    for config in configs:
        try:
            data = datasets.load_dataset(source.location, config)
        except Exception as e:  # noqa: BLE001
            found.append(
                Skip(_config_name(source.name, config), source.location, "unavailable_offline", _one_line(e))
            )
            continue
        found.append(_from_splits(source, config, dict(data), card, options))
    return found


def _from_splits(
    source: Source, config: str | None, splits: dict[str, Any], card: dict[str, Any], options: dict[str, Any]
) -> DatasetMeta | Skip:
    first = next(iter(splits.values()), None)
    info = getattr(first, "info", None)
    return build_meta(
        name=_config_name(source.name, config),
        source=source.location,
        config=config,
        splits=splits,
        features=getattr(first, "features", None),
        card=card,
        info_description=getattr(info, "description", "") or "",
        info_license=getattr(info, "license", "") or "",
        **options,
    )


def _config_name(name: str, config: str | None) -> str:
    return name if config in (None, "default") else f"{name}/{config}"


def _one_line(error: BaseException) -> str:
    return " ".join(f"{type(error).__name__}: {error}".split())[:300]
