"""`instructforge tag` on the real vLLM engine (tiny random-weight model): schema-valid rows, cache replay,
and kill -9 mid-run + rerun giving the same bytes as an uninterrupted run."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import jsonschema
import pytest

from engine.run.io import write_jsonl
from engine.structured import OutputSpec
from tagger.tagging import TagList

pytestmark = pytest.mark.engine

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def real_queries(shared_data, n):
    """The first n Self-Instruct seed tasks as {id, instruction, input} (input = first instance's)."""
    rows = []
    with open(shared_data / "self_instruct_seed_tasks.jsonl", encoding="utf-8") as f:
        for line in f:
            task = json.loads(line)
            rows.append(
                {
                    "id": task["id"],
                    "instruction": task["instruction"],
                    "input": (task["instances"] or [{}])[0].get("input", ""),
                }
            )
    return rows[:n]


def read_rows(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_tag_command_end_to_end(cli_engine, shared_data, tmp_path, capsys):
    from instructforge.cli import main

    write_jsonl(tmp_path / "data.jsonl", real_queries(shared_data, 4))
    # The InsTagger raw prompt (shorter than the chat one: room for the random model's long answers in the
    # fixture's 1024-token context); greedy, 512 new tokens, a truncated answer retried with 1024.
    args = [
        "tag",
        "--input",
        str(tmp_path / "data.jsonl"),
        "--out",
        str(tmp_path / "run"),
        "--shard-size",
        "3",
        "--prompt-format",
        "instagger",
    ]
    main(args)
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    assert summary.startswith("tagged ") and "/4 queries" in summary and "2 shards run" in summary
    rows = read_rows(tmp_path / "run" / "tags.jsonl")
    assert [r["id"] for r in rows] == [f"seed_task_{i}" for i in range(4)]
    schema = OutputSpec.of(TagList).schema
    for row in rows:  # every row either failed visibly or holds a schema-valid tag list
        assert row["failure"] in (None, "truncated", "invalid", "too_long")
        if row["failure"] is None:
            jsonschema.validate(row["tags"], schema)
    assert any(row["failure"] is None for row in rows)  # the random model's gibberish still parses
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["plan"]["queries"] == 4 and report["outputs"]["rows"] == 4
    assert cli_engine[0].stats.model_calls > 0
    before = (tmp_path / "run" / "tags.jsonl").read_bytes()
    main(args)  # everything done: no shard runs, no model call
    assert "0 shards run" in capsys.readouterr().out
    assert cli_engine[1].stats.model_calls == 0 and (tmp_path / "run" / "tags.jsonl").read_bytes() == before


def test_kill_and_rerun_gives_identical_output(cli_engine, tiny_model, shared_data, tmp_path, capsys):
    from instructforge.cli import main

    write_jsonl(tmp_path / "data.jsonl", real_queries(shared_data, 24))
    common = [
        "--input",
        str(tmp_path / "data.jsonl"),
        "--shard-size",
        "4",
        "--max-tokens",
        "64",
        "--last-try-max-tokens",
        "0",
    ]
    # Reference: uninterrupted, in-process on the session's tiny engine (same model, same 1024 context).
    main(["tag", *common, "--out", str(tmp_path / "ref")])
    capsys.readouterr()

    command = [
        sys.executable,
        "-m",
        "instructforge",
        "tag",
        *common,
        "--out",
        str(tmp_path / "run"),
        "--model",
        str(tiny_model),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--max-model-len",
        "1024",
    ]
    env = {**os.environ, "INSTRUCTFORGE_NO_PROGRESS": "1"}
    process = subprocess.Popen(
        command,
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    first_shard = tmp_path / "run" / ".done" / "tags-00000"
    deadline = time.monotonic() + 300
    while not first_shard.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGKILL)  # the CLI and the vLLM processes it started
    process.wait()
    assert first_shard.exists(), "the run died or timed out before its first shard"
    assert not (tmp_path / "run" / "tags.jsonl").exists(), "the kill came after the run had finished"

    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    shards_run = int(re.search(r"(\d+) shards run", done.stdout).group(1))
    assert 1 <= shards_run <= 5  # resumed after the finished shard(s), not started over
    assert (tmp_path / "run" / "tags.jsonl").read_bytes() == (tmp_path / "ref" / "tags.jsonl").read_bytes()
    shards = sorted(p.name for p in (tmp_path / "run" / "shards").iterdir())
    assert shards == [f"tags-{k:05d}.jsonl" for k in range(6)]
