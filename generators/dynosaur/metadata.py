"""DYNOSAUR metadata (Yin et al., EMNLP 2023, §2.1): what the model sees of each dataset.

Per dataset (and config): name, card summary, license, task categories, the usable fields with their
kinds (ClassLabel ids turned into label names) and sample rows (the first <= 100 rows of each
train/validation split, as upstream's `download_data.get_samples`), built from what
generators/dynosaur/sources.py reads.

    meta = build_meta(name=..., source=..., config=None, splits={"train": rows}, features=..., card=...)
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import InputError

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
