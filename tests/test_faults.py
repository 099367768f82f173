"""The fault suite: bad inputs, flags and outputs across the commands, each one line on stderr with the exit
code it promises (2: the user can fix it), no traceback, and the input and earlier outputs untouched.

Each case needs no model: every check runs before one would start. Add a row when a new fault is found.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

FILES = {
    "prompts.jsonl": b'{"prompt": "Say hi."}\n',
    "latin1.jsonl": b'{"prompt": "ok"}\n{"prompt": "caf\xe9"}\n',
    "latin1.json": b'[{"instruction": "ok"},\n {"instruction": "caf\xe9"}]\n',
    "empty_prompt.jsonl": b'{"prompt": "  "}\n',
    "rows.csv": b"\xef\xbb\xbfinstruction,input,output\nName a fruit.,,Apple\nName a fruit please.,,Pear\n",
    "bad_quote.csv": b'instruction,input,output\n"unclosed,,x\nok,,y\n',
    "short_row.csv": b"instruction,input,output\nonly one cell\n",
    "wide_row.csv": b"instruction,input,output\na,b,c,d\n",
    "seeds.jsonl": b'{"instruction": "Name a fruit.", "input": "", "output": "Apple"}\n',
    "tags.jsonl": b'{"id": 1, "turn": 0, "query": "q", "tags": ["a"]}\n',
    "batch.jsonl": json.dumps({"custom_id": "a", "body": {"model": "m", "messages": []}}).encode() + b"\n",
    "notes.txt": b"plain text\n",
    "dup_tags.jsonl": b'{"id": 1, "turn": 0, "tags": ["a"]}\n{"id": 1, "turn": 0, "tags": ["b"]}\n',
    "bad_turn.jsonl": b'{"id": 1, "turn": "first", "tags": ["a"]}\n',
    "list_id.jsonl": b'{"id": [1], "turn": 0, "tags": ["a"]}\n',
    "dup_data.jsonl": b'{"id": 1, "instruction": "a", "output": "x"}\n{"id": 1, "instruction": "b"}\n',
}

# (id, arguments, the message's expected part)  {d} is the case's folder; every case exits 2.
CASES = [
    (
        "not-utf8-jsonl",
        "generate -i {d}/latin1.jsonl -o {d}/o.jsonl",
        "latin1.jsonl:2: not UTF-8 text (byte 0xe9",
    ),
    ("not-utf8-json", "dedup --input {d}/latin1.json --output {d}/o.jsonl", "latin1.json:2: not UTF-8 text"),
    (
        "empty-prompt",
        "generate -i {d}/empty_prompt.jsonl -o {d}/o.jsonl",
        "empty_prompt.jsonl:1: field `prompt`: must not be empty",
    ),
    (
        "output-is-input",
        "generate -i {d}/prompts.jsonl -o {d}/prompts.jsonl",
        "is also an input: it would be overwritten",
    ),
    ("dedup-output-is-input", "dedup --input {d}/seeds.jsonl --output {d}/seeds.jsonl", "is also an input"),
    (
        "dedup-dropped-is-output",
        "dedup --input {d}/seeds.jsonl --output {d}/o.jsonl --dropped {d}/o.jsonl",
        "given for two outputs",
    ),
    ("output-is-folder", "generate -i {d}/prompts.jsonl -o {d}", "is a folder; give a file path"),
    ("dedup-output-is-folder", "dedup --input {d}/seeds.jsonl --output {d}", "is a folder"),
    (
        "select-output-is-input",
        "select --input {d}/tags.jsonl --output {d}/tags.jsonl --n 1",
        "is also an input",
    ),
    ("batch-output-is-input", "batch -i {d}/batch.jsonl -o {d}/batch.jsonl", "is also an input"),
    (
        "batch-errors-is-output",
        "batch -i {d}/batch.jsonl -o {d}/o.jsonl --errors {d}/o.jsonl",
        "given for two outputs",
    ),
    ("csv-unclosed-quote", "dedup --input {d}/bad_quote.csv --output {d}/o.jsonl", "bad_quote.csv:"),
    (
        "csv-too-few-cells",
        "dedup --input {d}/short_row.csv --output {d}/o.jsonl",
        "short_row.csv:2: 1 cells, the header has 3",
    ),
    (
        "csv-too-many-cells",
        "dedup --input {d}/wide_row.csv --output {d}/o.jsonl",
        "wide_row.csv:2: 4 cells, the header has 3",
    ),
    ("unknown-format", "generate -i {d}/notes.txt -o {d}/o.jsonl", "notes.txt: unknown input format `.txt`"),
    ("missing-input", "generate -i {d}/nope.jsonl -o {d}/o.jsonl", "nope.jsonl: no such file or folder"),
    ("max-tokens-zero", "generate -i {d}/prompts.jsonl -o {d}/o.jsonl --max-tokens 0", "--max-tokens"),
    (
        "temperature-negative",
        "generate -i {d}/prompts.jsonl -o {d}/o.jsonl --temperature -1",
        "--temperature",
    ),
    ("n-zero", "generate -i {d}/prompts.jsonl -o {d}/o.jsonl --n 0", "--n"),
    (
        "two-constraints",
        "generate -i {d}/prompts.jsonl -o {d}/o.jsonl --regex a --choice b",
        "one output constraint at a time",
    ),
    (
        "regex-backreference",
        "generate -i {d}/prompts.jsonl -o {d}/o.jsonl --regex (a)\\1",
        "backreferences are not supported",
    ),
    (
        "grammar-undefined-rule",
        "generate -i {d}/prompts.jsonl -o {d}/o.jsonl --grammar {d}/g.lark",
        "grammar constraint",
    ),
    (
        "schema-not-json",
        "generate -i {d}/prompts.jsonl -o {d}/o.jsonl --schema {d}/notes.txt",
        "not a readable JSON schema",
    ),
    ("unknown-option", "generate -i {d}/prompts.jsonl -o {d}/o.jsonl --bogus", "No such option: --bogus"),
    ("missing-option", "generate -o {d}/o.jsonl", "Missing option '--input'"),
    (
        "unit-not-a-choice",
        "select --input {d}/tags.jsonl --output {d}/o.jsonl --n 1 --unit turn",
        "'turn' is not one of",
    ),
    ("top-verbs-zero", "diversity {d}/seeds.jsonl --top-verbs 0", "--top-verbs"),
    (
        "rows-per-split-zero",
        "dynosaur --datasets {d}/seeds.jsonl --out {d}/run --rows-per-split 0",
        "--rows-per-split",
    ),
    (
        "scale-out-without-ray",
        "generate -i {d}/prompts.jsonl -o {d}/o.jsonl --replicas 2",
        "--replicas only apply on Ray",
    ),
    ("model-map-malformed", "batch -i {d}/batch.jsonl -o {d}/o.jsonl --model-map gpt-4o", "takes NAME=PATH"),
    (
        "tag-into-tag-run-of-other-command",
        "normalize --input {d}/tags.jsonl --out {d}/claimed",
        "holds a `tag` run, not a `normalize` one",
    ),
    ("self-instruct-zero", "self-instruct -n 0 --out {d}/run", "num_instructions"),
    (
        "cluster-bad-device",
        "cluster --input {d}/seeds.jsonl --output {d}/o.jsonl --field instruction --device tpu",
        "device",
    ),
    (
        "select-duplicate-id",
        "select --input {d}/dup_tags.jsonl --output {d}/o.jsonl --n 1",
        "dup_tags.jsonl:2: duplicate id 1 for turn 0 (first at line 1)",
    ),
    (
        "tag-eval-duplicate-id",
        "tag-eval --predicted {d}/dup_tags.jsonl --gold {d}/tags.jsonl --no-fuzzy",
        "dup_tags.jsonl:2: duplicate id 1 for turn 0 (first at line 1)",
    ),
    (
        "normalize-duplicate-id",
        "normalize --input {d}/dup_tags.jsonl --out {d}/run",
        "dup_tags.jsonl:2: duplicate id 1 for turn 0 (first at line 1)",
    ),
    (
        "select-data-duplicate-id",
        "select --input {d}/tags.jsonl --data {d}/dup_data.jsonl --output {d}/o.jsonl --n 1",
        "dup_data.jsonl:2: duplicate id 1 (first at line 1)",
    ),
    (
        "tag-file-turn-not-int",
        "select --input {d}/bad_turn.jsonl --output {d}/o.jsonl --n 1",
        "bad_turn.jsonl:1: field `turn`: must be an int, got str",
    ),
    (
        "tag-file-id-not-scalar",
        "tag-eval --predicted {d}/list_id.jsonl --gold {d}/tags.jsonl --no-fuzzy",
        "list_id.jsonl:1: field `id`: must be a string or int, got list",
    ),
    (
        "dedup-pool-is-input",
        "dedup --input {d}/seeds.jsonl --pool {d}/seeds.jsonl --output {d}/o.jsonl",
        "is given twice as an input",
    ),
    (
        "replay-same-file-twice",
        "replay --previous {d}/seeds.jsonl --previous {d}/seeds.jsonl -k 1 -o {d}/o.jsonl --strategy random",
        "is given twice as an input",
    ),
    (
        "cluster-output-is-input",
        "cluster --input {d}/seeds.jsonl --output {d}/seeds.jsonl --field instruction",
        "is also an input",
    ),
    (
        "dedup-stem-and-unicode",
        "dedup --input {d}/seeds.jsonl --output {d}/o.jsonl --stem --unicode",
        "Cannot use both",
    ),
]


@pytest.fixture
def case_dir(tmp_path) -> Path:
    for name, data in FILES.items():
        (tmp_path / name).write_bytes(data)
    (tmp_path / "g.lark").write_text("start: undefined_rule\n")
    claimed = tmp_path / "claimed"  # a tag run with finished work: no other command may write into it
    (claimed / ".done").mkdir(parents=True)
    (claimed / ".done" / "queries").touch()
    (claimed / "run_config.json").write_text(json.dumps({"command": "tag", "config": {}}))
    return tmp_path


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(("args", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_fault_is_one_line_exit_2_and_touches_nothing(case_dir, run_cli, args, message):
    before = snapshot(case_dir)
    code, out, err = run_cli(args.format(d=case_dir).split())
    lines = err.strip().splitlines()
    assert code == 2, (code, err)
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert message in lines[0], lines[0]
    assert "Traceback" not in out + err
    after = snapshot(case_dir)
    assert {
        k: v for k, v in after.items() if k in before
    } == before  # inputs and earlier outputs as they were
    claimed = {"run/run_config.json", "run/.done", "run/.lock"}  # a run directory claimed, nothing done
    assert not set(after) - set(before) - claimed, set(after) - set(before)


def test_a_bom_in_a_csv_is_accepted(case_dir, run_cli):
    done = run_cli(["dedup", "--input", str(case_dir / "rows.csv"), "--output", str(case_dir / "o.jsonl")])
    assert done.code == 0, done.err
    rows = [json.loads(line) for line in (case_dir / "o.jsonl").read_text().splitlines()]
    assert [r["instruction"] for r in rows] == ["Name a fruit."]  # the second is a near-duplicate


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_a_read_only_output_folder_is_refused_before_any_work(case_dir, run_cli):
    locked = case_dir / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    code, _, err = run_cli(["generate", "-i", str(case_dir / "prompts.jsonl"), "-o", str(locked / "o.jsonl")])
    assert code == 2 and "cannot write here" in err


def test_the_suite_is_at_least_the_size_it_promises():
    assert len(CASES) >= 40


def test_a_run_directory_in_use_by_another_process_is_refused_naming_it(tmp_path, run_cli):
    import subprocess
    import sys

    script = (
        "import sys, time\nfrom engine.run.directory import RunDir\n"
        "RunDir(sys.argv[1]).claim('tag', {})\nprint('held', flush=True)\ntime.sleep(60)"
    )
    repo = Path(__file__).resolve().parents[1]
    command = [sys.executable, "-c", script, str(tmp_path / "run")]
    holder = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=repo)
    try:
        assert holder.stdout.readline().strip() == "held"
        tags = tmp_path / "tags.jsonl"
        tags.write_bytes(FILES["tags.jsonl"])
        code, _, err = run_cli(["normalize", "--input", str(tags), "--out", str(tmp_path / "run")])
        assert code == 2 and f"is in use by process {holder.pid}" in err
    finally:
        holder.kill()
        holder.wait()
    again = run_cli(["normalize", "--input", str(tags), "--out", str(tmp_path / "run2")])
    assert again.code == 0, again.err


def test_outputs_honour_the_umask(tmp_path):
    from engine.run.io import write_jsonl

    old = os.umask(0o022)
    try:
        write_jsonl(tmp_path / "o.jsonl", [{"a": 1}])
    finally:
        os.umask(old)
    assert (tmp_path / "o.jsonl").stat().st_mode & 0o777 == 0o644


def test_a_run_that_had_nothing_to_ask_says_so(tmp_path, run_cli):
    data = tmp_path / "collection" / "closed"
    data.mkdir(parents=True)
    (data / "train.jsonl").write_text('{"question": "q", "answer": "a"}\n')
    (data / "README.md").write_text("---\nlicense: other\n---\n# closed\n")  # an excluded license
    done = run_cli(["dynosaur", "--datasets", str(data), "--out", str(tmp_path / "run")])
    assert done.code == 0, done.err
    assert "skipped closed: excluded_license (other)" in done.err
    assert "nothing needed the model (done before, or nothing to ask)" in done.last_line
    assert "already done" not in done.out


def test_duplicate_sample_ids_are_refused_before_tagging(tmp_path, cli_engine, run_cli):
    data = tmp_path / "data.jsonl"
    data.write_text(
        '{"id": "a", "instruction": "x"}\n{"id": "b", "instruction": "y"}\n{"id": "a", "instruction": "z"}\n'
    )
    code, _, err = run_cli(["tag", "--input", str(data), "--out", str(tmp_path / "run")])
    assert code == 2 and err.strip() == f"error: {data}:3: duplicate id 'a' (first at line 1)", err
    assert not (tmp_path / "run" / "tags.jsonl").exists() and cli_engine[-1].stats.requests == 0
