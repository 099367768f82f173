"""The dataset card: README.md in the Hugging Face format, so that `datasets.load_dataset(RUN_DIR)` loads
the run's main output as `train` and the hub shows how the data was made; and the run's configuration as
YAML beside it. Nothing is uploaded: publishing stays the user's step.

    text = card_text(manifest, publication, summary, data_path="data.jsonl")
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.run.publish.rows import RowsSummary
from engine.run.publish.spec import Publication, size_category

CARD_MARKER = "instructforge"
"""A card instructforge wrote carries this hub tag; any other README.md is the user's and is kept."""
EXPORT_FORMATS = ("openai", "sharegpt")
"""Chat exports a run may write beside its data (`data.<format>.jsonl`), each a config of the card."""
ENGINE_FIGURES = (
    ("requests", "requests"),
    ("cache hits", "cache_hits"),
    ("model calls", "model_calls"),
    ("prompt tokens", "prompt_tokens"),
    ("output tokens", "output_tokens"),
    ("tok/s", "tokens_per_second"),
    ("invalid", "invalid"),
    ("truncated", "truncated"),
    ("too long", "too_long"),
    ("retried", "retried"),
)


def dump_yaml(value: Any) -> str:
    import yaml

    return yaml.safe_dump(value, sort_keys=False, allow_unicode=True, width=100)


def find_seed(config: Any) -> Any:
    """The first `seed` in the configuration, breadth-first (the method's, before the engine's)."""
    level = [config]
    while level:
        for item in level:
            if isinstance(item, dict) and isinstance(item.get("seed"), int):
                return item["seed"]
        level = [v for item in level if isinstance(item, dict) for v in item.values()]
        level += [v for item in level if isinstance(item, list) for v in item]
    return None


def exports_of(folder: Path, data_path: str) -> dict[str, str]:
    """format -> the export of the data beside it (`data.openai.jsonl`), for those the run wrote."""
    stem = Path(data_path).stem
    return {
        fmt: f"{stem}.{fmt}.jsonl" for fmt in EXPORT_FORMATS if (folder / f"{stem}.{fmt}.jsonl").is_file()
    }


def front_matter(publication: Publication, rows: int, data_path: str, exports: dict[str, str]) -> dict:
    configs = [{"config_name": "default", "data_files": [{"split": "train", "path": data_path}]}]
    configs += [
        {"config_name": fmt, "data_files": [{"split": "train", "path": path}]}
        for fmt, path in exports.items()
    ]
    info = [
        {"config_name": c["config_name"], "splits": [{"name": "train", "num_examples": rows}]}
        for c in configs
    ]
    return {
        "pretty_name": publication.title,
        "language": publication.language,
        "task_categories": publication.task_categories,
        "size_categories": [size_category(rows)],
        "tags": publication.hub_tags,
        "configs": configs,
        "dataset_info": info if len(info) > 1 else info[0],
    }


def cell(value: Any) -> str:
    """A value as one markdown table cell."""
    if value is None or isinstance(value, bool):
        text = {None: "", True: "true", False: "false"}[value]
    else:
        text = value if isinstance(value, str) else f"{value:,}" if isinstance(value, int) else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def counts_table(publication: Publication) -> str:
    """One line per stage and reason: what came in, what that reason removed, what the stage kept."""
    rows = []
    for stage in publication.funnel:
        reasons = sorted(stage.dropped.items(), key=lambda kv: (-kv[1], kv[0])) or [("-", 0)]
        for reason, count in reasons:
            rows.append([stage.name, stage.unit, stage.candidates, reason, count, stage.kept])
    return table(["stage", "unit", "in", "reason", "dropped", "kept"], rows)


def engine_section(manifest: dict[str, Any]) -> str:
    stats = manifest.get("engine_stats")
    settings = (manifest.get("config") or {}).get("engine")
    if stats is None:
        return "No model was used: this command computes its output from its input.\n"
    parts = []
    if isinstance(settings, dict):
        parts.append(table(["setting", "value"], [[k, "" if v is None else v] for k, v in settings.items()]))
    figures = [[label, stats.get(key, 0)] for label, key in ENGINE_FIGURES]
    occupancy = stats.get("occupancy") or {}
    if occupancy.get("engine_steps"):
        figures.append(["occupancy %", occupancy.get("occupancy_pct")])
        figures.append(["engine steps", occupancy.get("engine_steps")])
    parts.append(table(["figure", "value"], figures))
    return "\n\n".join(parts) + "\n"


def card_text(
    manifest: dict[str, Any],
    publication: Publication,
    summary: RowsSummary,
    *,
    data_path: str,
    exports: dict[str, str],
    notes: list[str],
    page: str,
) -> str:
    """README.md: YAML front matter, then how the data was made."""
    versions = manifest.get("versions") or {}
    model = manifest.get("model")
    config = manifest.get("config") or {}
    seed = find_seed(config)
    lines = [
        "---",
        dump_yaml(front_matter(publication, summary.rows, data_path, exports)).rstrip(),
        "---",
        "",
    ]
    lines += [f"# {publication.title}", "", publication.summary, ""]
    lines += [
        f"Made by `instructforge {manifest.get('command', '')}` (instructforge "
        f"{versions.get('instructforge', '?')}), finished {manifest.get('finished_at', '?')}. "
        f"`{data_path}` holds {summary.rows:,} rows. Nothing has been uploaded: publishing is your step "
        "(e.g. `huggingface-cli upload --repo-type dataset NAME .` in this folder).",
        "",
    ]
    for note in notes:
        lines += [f"> **Note:** {note}", ""]
    lines += ["## Method", ""]
    if publication.paper is not None:
        lines += [f"{publication.title}: {publication.paper.citation} <{publication.paper.url}>", ""]
    else:
        lines += [f"{publication.title}.", ""]
    lines += ["## Model", ""]
    if model:
        identity = model.get("identity", "")
        weights = identity.split("@", 1)[1].split("|", 1)[0] if "@" in identity else ""
        lines += [
            table(
                ["", ""],
                [
                    ["name", model.get("name", "")],
                    ["path", model.get("path", "")],
                    ["weights fingerprint (xxh128)", weights],
                    ["identity (request-cache key)", identity],
                ],
            ),
            "",
        ]
    else:
        lines += ["No model was used.", ""]
    lines += [
        "## Configuration",
        "",
        f"Seed: `{seed}`. The full configuration, also in the YAML file beside this card:",
        "",
        "```yaml",
        dump_yaml({"command": manifest.get("command"), "config": config}).rstrip(),
        "```",
        "",
    ]
    lines += ["## Engine", "", engine_section(manifest)]
    lines += [
        "## Counts",
        "",
        f"Each stage's input, what each filter removed (by reason) and what it kept, "
        f"as `report.json` counts them. Rows in the result: {publication.rows:,}.",
        "",
    ]
    lines += [counts_table(publication) if publication.funnel else "No filter stages.", ""]
    if publication.figures_of_run:
        lines += [
            "## Figures of the run",
            "",
            table(["figure", "value"], [[k, v] for k, v in publication.figures_of_run.items()]),
            "",
        ]
    lines += [
        "## Package versions",
        "",
        table(["package", "version"], [[k, v] for k, v in versions.items()]),
        "",
    ]
    lines += ["## Files", ""]
    lines += [f"- `{name}`" for name in manifest.get("outputs") or [data_path]]
    lines += [f"- `{page}`: the run in plots (funnel, lengths, figures, sample rows); opens offline", ""]
    lines += [
        "## Loading",
        "",
        "```python",
        "from datasets import load_dataset",
        "",
        'train = load_dataset("path/to/this/folder")["train"]' + f"  # {data_path}",
        "```",
        "",
    ]
    return "\n".join(lines)
