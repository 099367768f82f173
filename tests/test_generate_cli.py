"""`instructforge generate` in-process: outputs, manifest, cache reruns and one-line errors."""

from __future__ import annotations

import json
import re

import jsonschema
import pytest

SCHEMA = {
    "type": "object",
    "properties": {
        "word": {"type": "string", "maxLength": 12},
        "score": {"type": "integer", "minimum": 1, "maximum": 5},
    },
    "required": ["word", "score"],
    "additionalProperties": False,
}


@pytest.fixture
def prompts(tmp_path):
    path = tmp_path / "prompts.jsonl"
    lines = [{"id": f"p{i}", "messages": [{"role": "user", "content": f"word {i}"}]} for i in range(5)]
    lines.append({"id": "raw", "prompt": "A word:"})
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


@pytest.mark.engine
def test_generate_writes_schema_valid_rows_and_reruns_from_cache(cli_engine, prompts, tmp_path, run_cli):
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps(SCHEMA))
    out = tmp_path / "out.jsonl"
    args = [
        "generate",
        "-i",
        str(prompts),
        "-o",
        str(out),
        "--schema",
        str(schema),
        "--temperature",
        "0.7",
        "--max-tokens",
        "48",
    ]
    assert run_cli(args).code == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["p0", "p1", "p2", "p3", "p4", "raw"]
    for row in rows:
        assert row["failure"] is None, row
        jsonschema.validate(row["parsed"], SCHEMA)
        assert row["parsed"] == json.loads(row["text"])
    manifest = json.loads((tmp_path / "out.jsonl.manifest.json").read_text())
    assert manifest["engine_stats"]["requests"] == 6 and manifest["engine_stats"]["cache_hits"] == 0
    first = out.read_bytes()

    rerun_cli = run_cli(args)
    assert rerun_cli.code == 0 and "6 cache hits (100%), 0 model calls" in rerun_cli.last_line
    assert cli_engine[-1].stats.model_calls == 0
    rerun = [json.loads(line) for line in out.read_text().splitlines()]
    assert all(r["cached"] for r in rerun)
    assert [r["text"] for r in rerun] == [r["text"] for r in rows] and first != out.read_bytes()


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "prompts.jsonl:3: invalid JSON"),
        (
            '{"id": "x"}',
            "prompts.jsonl:3: each line needs exactly one of `messages`, `conversations`, `instr",
        ),
        ('{"messages": "hi"}', "prompts.jsonl:3: field `messages`: must be list, got str"),
        ('{"messages": [{"role": "user"}]}', "prompts.jsonl:3: field `messages`: items must be"),
        ('{"id": "a", "prompt": "dup"}', "prompts.jsonl:3: field `id`: must be a unique"),
        ("[1, 2]", "prompts.jsonl:3: expected a JSON object, got list"),
    ],
)
def test_bad_input_line_is_one_clear_error(tmp_path, run_cli, line, message):
    path = tmp_path / "prompts.jsonl"
    path.write_text('{"id": "a", "prompt": "ok"}\n\n' + line + "\n")
    code, _, err = run_cli(["generate", "-i", str(path), "-o", str(tmp_path / "o.jsonl")])
    err = err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert message in err and err.startswith("error: ")
    assert not (tmp_path / "o.jsonl").exists()


@pytest.mark.engine
def test_skip_bad_counts_skipped_lines(cli_engine, tmp_path, run_cli):
    path = tmp_path / "prompts.jsonl"
    path.write_text('{"id": 1, "prompt": "fine"}\n{broken\n{"id": 2, "prompt": "also fine"}\n')
    out = tmp_path / "out.jsonl"
    done = run_cli(["generate", "-i", str(path), "-o", str(out), "--skip-bad", "--max-tokens", "4"])
    assert done.code == 0
    assert [json.loads(x)["id"] for x in out.read_text().splitlines()] == [1, 2]
    manifest = json.loads((tmp_path / "out.jsonl.manifest.json").read_text())
    counts = manifest["counts"]
    assert counts["skipped_lines"] == 1 and "prompts.jsonl:2" in counts["skipped"][0]
    assert "1 bad lines skipped" in done.out


def test_missing_file_and_bad_schema(tmp_path, run_cli):
    code, _, err = run_cli(["generate", "-i", str(tmp_path / "nope.jsonl"), "-o", str(tmp_path / "o")])
    assert code == 2 and "nope.jsonl: no such file or folder" in err
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "x"}\n')
    schema = tmp_path / "s.json"
    schema.write_text('{"type": "objekt"}')
    code, _, err = run_cli(
        ["generate", "-i", str(prompts), "-o", str(tmp_path / "o"), "--schema", str(schema)]
    )
    assert code == 2 and "Invalid JSON schema" in err


@pytest.mark.engine
@pytest.mark.parametrize(
    ("flags", "check"),
    [
        (["--regex", r"[A-Z][a-z]{1,5}-\d{2}"], lambda t: re.fullmatch(r"[A-Z][a-z]{1,5}-[0-9]{2}", t)),
        (["--choice", "alpha", "--choice", "beta"], lambda t: t in ("alpha", "beta")),
        (["--grammar", "GRAMMAR"], lambda t: re.fullmatch(r"(ab|ba)( (ab|ba))*", t)),
    ],
    ids=["regex", "choice", "grammar"],
)
def test_generate_with_a_regex_a_choice_or_a_grammar(cli_engine, prompts, tmp_path, run_cli, flags, check):
    grammar = tmp_path / "pairs.lark"
    grammar.write_text('start: PAIR (" " PAIR)*\nPAIR: "ab" | "ba"\n')
    out = tmp_path / "out.jsonl"
    flags = [str(grammar) if f == "GRAMMAR" else f for f in flags]
    args = ["generate", "-i", str(prompts), "-o", str(out), "--max-tokens", "24", "--temperature", "1.0"]
    done = run_cli([*args, *flags])
    assert done.code == 0, done.err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    finished = [r for r in rows if r["finish_reason"] != "length"]
    assert len(finished) >= 2  # not a check of nothing
    for row in finished:
        assert row["failure"] is None and row["parsed"] == row["text"] and check(row["text"]), row
    manifest = json.loads((tmp_path / "out.jsonl.manifest.json").read_text())
    assert {"regex", "choice", "grammar"} & set(manifest["config"])


def test_one_constraint_at_a_time_and_an_inexpressible_one_is_refused(prompts, tmp_path, run_cli):
    out = str(tmp_path / "o.jsonl")
    code, _, err = run_cli(["generate", "-i", str(prompts), "-o", out, "--regex", "a+", "--choice", "b"])
    assert code == 2 and "one output constraint at a time, not --regex and --choice" in err
    code, _, err = run_cli(["generate", "-i", str(prompts), "-o", out, "--regex", r"(x)\1"])
    assert code == 2 and len(err.strip().splitlines()) == 1 and "backreferences are not supported" in err
