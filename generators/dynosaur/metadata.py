"""DYNOSAUR metadata collection (Yin et al., EMNLP 2023, §2.1): what the model sees of each dataset.

Per dataset (and config): name, card summary, license, task categories, the usable fields with their
kinds (ClassLabel ids turned into label names) and sample rows (the first <= 100 rows of each
train/validation split, as upstream's `download_data.get_samples`). Read offline with HF `datasets`
from folders saved by `save_to_disk`, from folders (or single files) of JSONL/CSV/parquet with an
optional dataset card, or from `load_dataset(name)` where the local HF cache already holds it.

    collection = collect_metadata(["data/sentiment", "data/qa"])   # .datasets, .skipped
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import InputError
from engine.run.progress import progress

# Upstream `license_info.py`: datasets under these licenses are not used. Case-insensitive; a dataset
# with several licenses is excluded when any one of them is listed.
EXCLUDED_LICENSES = ("other", "unknown", "cc-by-nc-nd-4.0", "cc-by-nd-4.0", "cc-by-nc-nd-3.0", "ofl")
NO_LICENSE = "unspecified"  # a card without a license tag; add it to the excluded list to drop those
ROWS_PER_SPLIT = 100  # upstream get_samples: first 100 rows of each train/validation split
PROMPT_ROWS = 2  # upstream truncate_metadata: 2 rows shown in the prompt
PROMPT_VALUE_CHARS = 1000  # upstream truncate: each value cut to 1000 chars in the prompt

DATA_SUFFIXES = {
    ".jsonl": "json",
    ".json": "json",
    ".ndjson": "json",
    ".csv": "csv",
    ".tsv": "csv",
    ".parquet": "parquet",
}
MEDIA_FEATURES = {"Image", "Audio", "Video", "Pdf", "Nifti"}
MEDIA_NAME_TOKENS = {"image", "images", "img", "audio", "video", "videos"}
# Exactly id-like names only (upstream dropped every key CONTAINING "id": "valid", "hidden", "side"
# went too): `id`, `idx`, `guid`, `uuid`, `index`, or a name ending in `_id` / `_idx` / `Id`.
ID_LIKE = re.compile(r"^(id|idx|guid|uuid|index)$|[_\-.](id|idx|guid|uuid)$", re.IGNORECASE)
_ID_CAMEL = re.compile(r"[a-z]Id$")


@dataclass
class DatasetMeta:
    """One dataset (or config) as the task designer sees it."""

    name: str
    """`folder` for local data, `owner/name` for the hub, `/config` appended for non-default configs."""
    source: str
    config: str | None
    summary: str
    license: str
    task_categories: list[str]
    fields: dict[str, str]
    """Usable field -> kind: text, number, bool, label (a ClassLabel), list."""
    label_names: dict[str, list[str]]
    """ClassLabel fields (also lists of ClassLabel) -> label names in id order."""
    rows: list[dict[str, Any]]
    """Usable fields only, ClassLabel ids already turned into names, dicts flattened to `a.b`."""
    dropped_fields: dict[str, str] = field(default_factory=dict)
    """Field -> why it is not offered to the model: id_like, nested, empty."""

    def prompt_view(self, with_summary: bool) -> dict[str, Any]:
        """The dict rendered into the prompt: name, [description], fields, 2 rows cut to 1000 chars."""
        fields = {
            name: (
                f"label: {' | '.join(self.label_names[name])}"
                if kind == "label" and name in self.label_names
                else kind
            )
            for name, kind in self.fields.items()
        }
        view: dict[str, Any] = {"name": self.name}
        if with_summary:
            view["description"] = self.summary[:PROMPT_VALUE_CHARS]
        view["fields"] = fields
        view["examples"] = [
            {k: cut_value(row.get(k)) for k in self.fields} for row in self.rows[:PROMPT_ROWS]
        ]
        return view

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Skip:
    """A dataset (or config) that yields no tasks, and why."""

    name: str
    source: str
    reason: str
    """media_field, too_few_fields, excluded_license, no_rows, unreadable, unavailable_offline."""
    detail: str = ""


@dataclass
class Collection:
    datasets: list[DatasetMeta] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)

    def skip_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for s in self.skipped:
            counts[s.reason] = counts.get(s.reason, 0) + 1
        return dict(sorted(counts.items()))


def cut_value(value: Any, limit: int = PROMPT_VALUE_CHARS) -> Any:
    """A value as shown in the prompt: strings cut to `limit`, lists keep the items that fit."""
    if isinstance(value, str):
        return value.strip()[:limit]
    if isinstance(value, list):
        kept: list[Any] = []
        for item in value:
            if len(json.dumps(kept + [item], ensure_ascii=False)) > limit:
                break
            kept.append(item)
        return kept
    return value


def is_id_like(name: str) -> bool:
    return bool(ID_LIKE.search(name) or _ID_CAMEL.search(name))


# ---------------------------------------------------------------------------------- dataset cards


def read_card(path: Path) -> dict[str, Any]:
    """license, task_categories and the "Dataset Summary" section of a README.md dataset card."""
    import yaml

    text = path.read_text(encoding="utf-8")
    header: dict[str, Any] = {}
    match = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", text, re.DOTALL)
    if match:
        try:
            header = yaml.safe_load(match.group(1)) or {}
        except yaml.YAMLError as e:
            raise InputError(
                f"dataset card YAML header is not valid YAML ({e.__class__.__name__})", path=path
            ) from e
        text = text[match.end() :]
    licenses = header.get("license") or []
    licenses = [licenses] if isinstance(licenses, str) else list(licenses)
    categories = header.get("task_categories") or []
    categories = [categories] if isinstance(categories, str) else [str(c) for c in categories]
    return {
        "license": ", ".join(str(x) for x in licenses),
        "task_categories": categories,
        "summary": card_summary(text),
    }


def card_summary(body: str) -> str:
    """The text under a "Dataset Summary" heading; else the card's first plain paragraph."""
    body = re.sub(r"<!--.*?-->", "", body, flags=re.DOTALL)
    lines = body.splitlines()
    heading = re.compile(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$")
    start = next(
        (
            i + 1
            for i, line in enumerate(lines)
            if (m := heading.match(line)) and m.group(1).strip().lower() == "dataset summary"
        ),
        None,
    )
    if start is not None:
        section = []
        for line in lines[start:]:
            if heading.match(line):
                break
            section.append(line)
        text = " ".join(" ".join(section).split())
    else:  # user cards without the HF template: the first paragraph that is not a heading
        paragraphs = re.split(r"\n\s*\n", "\n".join(line for line in lines if not heading.match(line)))
        text = next((" ".join(p.split()) for p in paragraphs if p.strip()), "")
    return "" if text.strip() in ("", "[More Information Needed]") else text


# ---------------------------------------------------------------------------------- field handling


def media_fields(features: Any, prefix: str = "") -> list[str]:
    """Names of Image/Audio/Video/... features, at any depth."""
    if features is None:
        return []
    found = []
    for name, feat in features.items():
        inner = getattr(feat, "feature", feat)  # List(Image()) counts too
        if type(feat).__name__ in MEDIA_FEATURES or type(inner).__name__ in MEDIA_FEATURES:
            found.append(prefix + name)
        elif isinstance(inner, dict):
            found += media_fields(inner, f"{prefix}{name}.")
    return found


def media_named(name: str) -> bool:
    """Untyped data (JSONL/CSV): a field named like `image`, `image_path`, `audio_file`."""
    tokens = re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()
    return bool(MEDIA_NAME_TOKENS & set(re.split(r"[^a-z]+", tokens)))


def class_labels(features: Any, prefix: str = "") -> dict[str, Any]:
    """Flattened field name -> ClassLabel feature (directly or as the item type of a list)."""
    if features is None:
        return {}
    found = {}
    for name, feat in features.items():
        inner = getattr(feat, "feature", None)
        if type(feat).__name__ == "ClassLabel":
            found[prefix + name] = feat
        elif inner is not None and type(inner).__name__ == "ClassLabel":
            found[prefix + name] = inner
        elif isinstance(feat, dict):
            found.update(class_labels(feat, f"{prefix}{name}."))
    return found


def flatten(row: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts become dotted fields (`answers.text`), as `datasets.Dataset.flatten` names them."""
    flat: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[prefix + str(key)] = value
    return flat


def decode_labels(row: dict[str, Any], labels: dict[str, Any]) -> dict[str, Any]:
    """ClassLabel ids -> names (-1, "no label", -> None) on a flattened row."""

    def name(feat: Any, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            return feat.int2str(value) if 0 <= value < feat.num_classes else None
        return value

    out = dict(row)
    for key, feat in labels.items():
        value = out.get(key)
        out[key] = [name(feat, v) for v in value] if isinstance(value, list) else name(feat, value)
    return out


def value_kind(values: Sequence[Any]) -> str | None:
    """text / number / bool / list (of scalars) for a field's non-None values; None = not usable."""
    present = [v for v in values if v is not None and v != [] and v != ""]
    if not present:
        return None
    if all(isinstance(v, str) for v in present):
        return "text"
    if all(isinstance(v, bool) for v in present):
        return "bool"
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        return "number"
    if all(isinstance(v, list) and all(isinstance(x, (str, int, float, bool)) for x in v) for v in present):
        return "list"
    return "nested"


def build_meta(
    *,
    name: str,
    source: str,
    config: str | None,
    splits: dict[str, Iterable[dict]],
    features: Any,
    card: dict[str, Any],
    info_description: str = "",
    info_license: str = "",
    excluded_licenses: Sequence[str] = EXCLUDED_LICENSES,
    rows_per_split: int = ROWS_PER_SPLIT,
) -> DatasetMeta | Skip:
    """Turn one loaded dataset (split name -> row iterable) into its metadata, or the reason to skip it."""
    license_text = card.get("license") or info_license or NO_LICENSE
    excluded = {x.strip().lower() for x in excluded_licenses}
    hit = [x for x in (p.strip().lower() for p in license_text.split(",")) if x in excluded]
    if hit:
        return Skip(name, source, "excluded_license", license_text)
    media = media_fields(features)
    if media:
        return Skip(name, source, "media_field", ", ".join(media))
    labels = class_labels(features)
    rows: list[dict[str, Any]] = []
    for split in pick_splits(list(splits)):
        for i, row in enumerate(splits[split]):
            if i >= rows_per_split:
                break
            rows.append(decode_labels(flatten(dict(row)), labels))
    if not rows:
        return Skip(name, source, "no_rows", f"splits: {', '.join(splits) or 'none'}")
    names = list(dict.fromkeys(k for row in rows for k in row))
    media = [n for n in names if media_named(n)]
    if media:
        return Skip(name, source, "media_field", ", ".join(media))
    fields: dict[str, str] = {}
    dropped: dict[str, str] = {}
    for field_name in names:
        kind = value_kind([row.get(field_name) for row in rows])
        if is_id_like(field_name):
            dropped[field_name] = "id_like"
        elif kind is None:
            dropped[field_name] = "empty"
        elif kind == "nested":
            dropped[field_name] = "nested"
        else:
            fields[field_name] = "label" if field_name in labels and kind == "text" else kind
    if len(fields) <= 1:  # upstream: a dataset with <= 1 field cannot have an input and an output
        return Skip(
            name,
            source,
            "too_few_fields",
            f"usable: {', '.join(fields) or 'none'}; dropped: {', '.join(dropped) or 'none'}",
        )
    return DatasetMeta(
        name=name,
        source=source,
        config=config,
        summary=card.get("summary") or " ".join(info_description.split()),
        license=license_text,
        task_categories=list(card.get("task_categories") or []),
        fields=fields,
        label_names={k: list(v.names) for k, v in labels.items() if k in fields},
        rows=[{k: row.get(k) for k in fields} for row in rows],
        dropped_fields=dropped,
    )


def pick_splits(splits: list[str]) -> list[str]:
    """Train-like splits, then validation-like ones (upstream); else the first split there is."""
    train = [s for s in splits if "train" in s.lower()]
    valid = [
        s for s in splits if s not in train and any(t in s.lower() for t in ("validation", "valid", "dev"))
    ]
    return train + valid or splits[:1]


# ---------------------------------------------------------------------------------- sources


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
