"""Golden runs: each method on the tiny model, recorded once, must give the same bytes and hit the cache.

tests/golden/<case>/ holds what a recorded run produced: `cache.jsonl` (every request-cache entry, key and
record) and `files/` (every output file of the run, with the run's temp folder written as <TMP>). A check
loads those entries into an empty request cache, runs the same command, and requires 100 % cache hits
(so no request-cache key changed) and byte-identical outputs (so no parsing, filter or writer changed).
Manifests are left out: they carry timings and versions.

A change that alters results on purpose re-records (and says why in its commit):

    INSTRUCTFORGE_RECORD_GOLDEN=1 .venv/bin/python -m pytest tests/test_golden.py
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.tiny_runs import ALPACA_SEEDS, SHORT_SEEDS, alpaca_config, explore_args, self_instruct_args

GOLDEN = Path(__file__).parent / "golden"
RECORD = os.environ.get("INSTRUCTFORGE_RECORD_GOLDEN") == "1"
SKIP_FILES = {"manifest.json", ".lock", "README.md", "run_config.yaml", "report.html"}
PUBLISHED_SUFFIXES = (".manifest.json", ".README.md", ".config.yaml", ".report.html")
"""The dataset card, its config and the report page carry timings and versions, as the manifest does
(tests/test_publish.py checks them)."""
# What a cached rerun reports differently by design: cache flags, engine counters, timings. Left out of
# JSON and JSONL files before they are compared; everything else must match byte for byte.
RUN_FIGURES = {
    "cached",
    "engine",
    "engine_stats",
    "this_run",
    "added_this_run",
    "model_calls",
    "seconds",
    "samples_per_second",
    "tokens_per_second",
}
CARD = (
    "---\nlicense: mit\ntask_categories:\n- question-answering\n---\n# trivia_qa_mini\n\n"
    "## Dataset Description\n\n### Dataset Summary\n\nTrivia questions with answer options.\n"
)
QA_ROWS = [
    ("Which planet is called the red planet?", ["Venus", "Mars", "Jupiter"], "Mars"),
    ("What do bees make?", ["honey", "silk", "wax paper"], "honey"),
    ("How many legs does a spider have?", ["six", "eight", "ten"], "eight"),
]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def self_instruct(tmp: Path) -> list[str]:
    seeds = write_jsonl(
        tmp / "seeds.jsonl", [{"instruction": t, "is_classification": "?" in t} for t in SHORT_SEEDS]
    )
    return self_instruct_args(tmp / "run", seeds)


def dynosaur(tmp: Path) -> list[str]:
    data = tmp / "collection" / "trivia_qa_mini"
    write_jsonl(
        data / "train.jsonl",
        [{"id": i, "question": q, "choices": c, "answer": a} for i, (q, c, a) in enumerate(QA_ROWS)],
    )
    (data / "README.md").write_text(CARD, encoding="utf-8")
    return [
        "dynosaur",
        "--datasets",
        str(data),
        "--out",
        str(tmp / "run"),
        "--demos",
        "0",
        "--max-tasks",
        "1",
        "--max-tokens",
        "160",
        "--max-instruction-chars",
        "40",
    ]


def explore(tmp: Path) -> list[str]:
    seeds = write_jsonl(
        tmp / "seeds.jsonl",
        [
            {
                "instruction": f"Draft item{k} about{k} topic{k} now{k}",
                "input": "",
                "output": "Dear team, thanks.",
            }
            for k in range(3)
        ],
    )
    return explore_args(tmp / "run", seeds)


def tag(tmp: Path) -> list[str]:
    shared = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
    rows = []
    for line in (shared / "self_instruct_seed_tasks.jsonl").read_text(encoding="utf-8").splitlines()[:4]:
        task = json.loads(line)
        rows.append(
            {
                "id": task["id"],
                "instruction": task["instruction"],
                "input": (task["instances"] or [{}])[0].get("input", ""),
            }
        )
    data = write_jsonl(tmp / "data.jsonl", rows)
    return [
        "tag",
        "--input",
        str(data),
        "--out",
        str(tmp / "run"),
        "--shard-size",
        "3",
        "--prompt-format",
        "instagger",
    ]


def generate(tmp: Path) -> list[str]:
    prompts = write_jsonl(
        tmp / "prompts.jsonl",
        [
            *({"id": f"p{i}", "messages": [{"role": "user", "content": f"word {i}"}]} for i in range(5)),
            {"id": "raw", "prompt": "A word:"},
        ],
    )
    schema = tmp / "schema.json"
    schema.write_text(
        json.dumps(
            {
                "type": "object",
                "additionalProperties": False,
                "required": ["word"],
                "properties": {"word": {"type": "string", "maxLength": 12}},
            }
        )
    )
    (tmp / "run").mkdir()
    return [
        "generate",
        "-i",
        str(prompts),
        "-o",
        str(tmp / "run" / "out.jsonl"),
        "--schema",
        str(schema),
        "--temperature",
        "0.7",
        "--max-tokens",
        "48",
    ]


CASES = {
    "self-instruct": self_instruct,
    "dynosaur": dynosaur,
    "explore": explore,
    "tag": tag,
    "generate": generate,
}


def fixed_folder(case: str) -> Path:
    """Inputs and the run live at the same path in every session: some outputs name files by a digest
    of their input's path (Dynosaur's per-dataset files)."""
    import tempfile

    folder = Path(tempfile.gettempdir()) / "instructforge-golden" / case
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def run_files(run: Path, tmp: Path) -> dict[str, bytes]:
    """Every output file of the run (manifests aside), with the temp folder's path made neutral."""
    return {
        str(p.relative_to(run)): without_run_figures(p).replace(str(tmp).encode(), b"<TMP>")
        for p in sorted(run.rglob("*"))
        if p.is_file() and p.name not in SKIP_FILES and not p.name.endswith(PUBLISHED_SUFFIXES)
    }


def without_run_figures(path: Path) -> bytes:
    """The file's bytes; a JSON value holding run figures is dumped again without them."""

    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in RUN_FIGURES}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    def neutral(raw: bytes) -> bytes:  # raw bytes where nothing is left out: formatting is compared too
        value = json.loads(raw)
        kept = strip(value)
        return raw if kept == value else json.dumps(kept, ensure_ascii=False).encode()

    data = path.read_bytes()
    if path.suffix == ".json":
        return neutral(data)
    if path.suffix == ".jsonl":
        return b"".join(neutral(line) + b"\n" for line in data.splitlines())
    return data


def cache_entries(cache_dir: Path) -> list[dict]:
    import sqlite3

    with sqlite3.connect(cache_dir / "requests.sqlite") as db:
        rows = db.execute("SELECT key, record FROM generations ORDER BY key").fetchall()
    return [{"key": k, "record": json.loads(r)} for k, r in rows]


def load_entries(cache_dir: Path, entries: list[dict]) -> None:
    from engine.cache import RequestCache

    cache = RequestCache(cache_dir / "requests.sqlite")
    for entry in entries:
        cache.put(entry["key"], entry["record"])
    cache.close()


@pytest.mark.engine
@pytest.mark.parametrize("case", sorted(CASES))
def test_golden_run_is_byte_identical_from_the_recorded_cache(case, cli_engine, tmp_path, capsys):
    from instructforge.cli import main

    golden = GOLDEN / case
    cache_dir = tmp_path / "cli-cache"  # the cli_engine fixture's cache folder
    if not RECORD:
        assert golden.is_dir(), f"no golden recording for {case}: record with INSTRUCTFORGE_RECORD_GOLDEN=1"
        load_entries(
            cache_dir,
            [json.loads(line) for line in (golden / "cache.jsonl").read_text(encoding="utf-8").splitlines()],
        )
    work = fixed_folder(case)
    main(CASES[case](work))
    files = run_files(work / "run", work)
    stats = cli_engine[-1].stats
    if RECORD:
        record(golden, files, cache_dir, stats)
        return
    check_against_golden(golden, files, stats)


@pytest.mark.engine
def test_golden_alpaca_run_is_byte_identical_from_the_recorded_cache(engine, tmp_path):
    """Alpaca through its Python entry point: the CLI's token budget (3072) exceeds the tiny context."""
    from engine.run.directory import RunDir
    from generators.alpaca import run_alpaca
    from generators.self_instruct.seed_tasks import load_seed_tasks

    golden = GOLDEN / "alpaca"
    if not RECORD:
        load_entries(
            engine.cache_dir,
            [json.loads(line) for line in (golden / "cache.jsonl").read_text(encoding="utf-8").splitlines()],
        )
    work = fixed_folder("alpaca")
    seeds = write_jsonl(
        work / "seeds.jsonl", [{"instruction": t, "input": "", "output": "ok"} for t in ALPACA_SEEDS]
    )
    run_alpaca(engine, alpaca_config(), load_seed_tasks(seeds), RunDir(work / "run"))
    files = run_files(work / "run", work)
    if RECORD:
        record(golden, files, engine.cache_dir, engine.stats)
        return
    check_against_golden(golden, files, engine.stats)


def record(golden: Path, files: dict[str, bytes], cache_dir: Path, stats) -> None:
    shutil.rmtree(golden, ignore_errors=True)
    for name, data in files.items():
        (golden / "files" / name).parent.mkdir(parents=True, exist_ok=True)
        (golden / "files" / name).write_bytes(data)
    (golden / "cache.jsonl").write_text(
        "".join(json.dumps(e, ensure_ascii=False, sort_keys=True) + "\n" for e in cache_entries(cache_dir)),
        encoding="utf-8",
    )
    assert stats.model_calls > 0


def check_against_golden(golden: Path, files: dict[str, bytes], stats) -> None:
    assert stats.requests > 0 and stats.model_calls == 0 and stats.cache_hits == stats.requests, stats
    recorded = {
        str(p.relative_to(golden / "files")): p.read_bytes()
        for p in sorted((golden / "files").rglob("*"))
        if p.is_file()
    }
    assert sorted(files) == sorted(recorded)
    for name in recorded:
        assert files[name] == recorded[name], f"{golden.name}: {name} differs from the golden run"
