"""`instructforge select`: complexity-first diverse sampling, InsTag's Cf-D (Lu et al., ICLR 2024, §4.2).

Input: tagged queries (normalized tags recommended). By default a sample's tags are the union of its
turns' tags and whole samples are selected (`--unit query` selects single queries). Writes OUTPUT (the
selection, in pick order) and OUTPUT.report.json (coverage, average tags, passes).
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from instructforge.options import DataFormat, FormatOpt, InputOpt, OutputOpt

EXAMPLES = """\
Examples:

  instructforge select --input runs/alpaca-norm --n 6000 --output selected.jsonl

  instructforge select --input runs/sg-norm/tags.jsonl --n 1000 --unit query --output picked.jsonl
"""


class Unit(str, Enum):
    sample = "sample"
    query = "query"


def group_rows(rows: list[dict], unit: str) -> list[dict]:
    """One item per sample (tags = union over its turns, queries in turn order) or per query."""
    if unit == "query":
        return rows
    samples: dict = {}
    for row in rows:
        key = (type(row["id"]).__name__, row["id"])  # 1 and "1" are different samples
        item = samples.setdefault(key, {"id": row["id"], "tags": [], "queries": []})
        item["tags"] = list(dict.fromkeys(item["tags"] + row["tags"]))
        if "query" in row:
            item["queries"].append(row["query"])
    return list(samples.values())


def _key(sample_id) -> tuple[str, object]:
    return type(sample_id).__name__, sample_id  # 1 and "1" are different samples


def selected_samples(data: Path, picked: set, fmt: str):
    """The records of `data` whose id (field `id`, else the 0-based record index) was picked, in `fmt`."""
    from engine.run.chat import convert
    from engine.run.io import UniqueIds, read_records

    ids = UniqueIds()  # a picked id must name one sample
    for index, record in enumerate(read_records(data)):
        ids.check(record, record.data.get("id", index))
        if _key(record.data.get("id", index)) in picked:
            yield convert(record, fmt)


def main(
    input: InputOpt,
    output: OutputOpt,
    n: Annotated[int, typer.Option("--n", help="How many items to select (paper: 6,000).")],
    unit: Annotated[
        Unit, typer.Option("--unit", help="sample (tags of all turns of a sample together) or query.")
    ] = Unit.sample,
    data: Annotated[
        Optional[Path],
        typer.Option(
            "--data",
            help="The tagged dataset itself (ids as in the tag run): also write the selected samples, in "
            "--format, to OUTPUT's name + .data.jsonl.",
        ),
    ] = None,
    data_format: FormatOpt = DataFormat.openai,
) -> None:
    """Select N samples by complexity-first diverse sampling (Cf-D)."""
    from engine.run.directory import sidecar, write_manifest
    from engine.run.io import check_outputs, published_together, write_json, write_jsonl
    from engine.run.publish import places, publish_manifest
    from instructforge.publishing import describe
    from tagger.sampling import complexity_first_diverse, selection_report
    from tagger.tagged import iter_tagged

    unit = unit.value
    target = output.with_name(output.name.removesuffix(".jsonl") + ".data.jsonl")
    report_path = output.with_name(output.name + ".report.json")
    published = places(output, (target if data else output).name)  # its card, config and page
    check_outputs(
        [output, report_path, sidecar(output), *([target] if data else []), published.config, published.page],
        [input, *([data] if data else [])],
    )
    rows, failed = [], 0
    for record, tags in iter_tagged(input):
        if tags is None:
            failed += 1
            continue
        row = {k: record.data[k] for k in ("id", "turn", "query") if k in record.data}
        rows.append({**row, "id": record.data.get("id", record.line), "tags": tags})
    items = group_rows(rows, unit)
    tag_sets = [item["tags"] for item in items]
    selection = complexity_first_diverse(tag_sets, n)
    with published_together():  # the selection, its report and its samples
        write_jsonl(output, (items[i] for i in selection.indices))
        report = {**selection_report(tag_sets, selection, n), "unit": unit, "failed_rows_skipped": failed}
        report["samples_file"] = target.name if data is not None else None
        write_json(report_path, report)
        if data is not None:
            picked = {_key(items[i]["id"]) for i in selection.indices}
            write_jsonl(target, selected_samples(data, picked, data_format.value))
        write_manifest(
            sidecar(output),
            command="select",
            config={
                "input": str(input),
                "n": n,
                "unit": unit,
                "data": str(data) if data else None,
                "format": data_format.value,
            },
            counts={k: report[k] for k in ("pool", "selected", "passes", "covered_tags")},
            outputs=[str(output), str(report_path), *([str(target)] if data is not None else [])],
        )
    publish_manifest(sidecar(output), describe("select", output))
    short = f" (pool exhausted after {report['selected']})" if selection.exhausted else ""
    typer.echo(
        f"selected {report['selected']}/{n} {unit}s{short} in {report['passes']} passes: "
        f"coverage {100 * report['coverage']:.1f}% of {report['pool_tags']} tags, "
        f"{report['avg_tags_selected']:.2f} tags on average (pool {report['avg_tags_pool']:.2f}); "
        f"wrote {output}"
    )
