"""SIGKILL and SIGINT at several points of each command, then a rerun (the fault suite's interrupts).

Each command runs on the tiny model with the request cache of its golden run (tests/golden/<case>), so
no model starts: what is under test is what a command leaves on disk when it is stopped between two
durable writes, and how a rerun resumes from it. tests/kill_points.py runs the command uninterrupted,
then for each row of the table stops a run just before its k-th durable write (k: the first write, half
way, the last one) and reruns it. Every rerun must give the uninterrupted run's files byte for byte (run
figures such as timings and cache counters aside, as in tests/test_golden.py) and leave no temp file or
journal behind; a SIGINT must end with exit 130 and one line; and where an earlier run's outputs were
there, a kill must never leave a new file of a set beside an old one.

A kill while the model generates, with half a batch cached, is covered per engine schedule elsewhere:
tests/test_self_instruct.py, tests/test_tagger_engine.py, tests/test_openai_batch.py and
tests/test_schedules.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import test_golden

REPO = Path(__file__).resolve().parent.parent
INTERRUPTED = (
    "interrupted: finished requests are cached and finished steps saved; rerun the same command to resume"
)
# (name, signal, where: the fraction of the uninterrupted run's durable writes made before the signal)
POINTS = [
    ("kill-first", "KILL", 0.0),
    ("kill-half", "KILL", 0.5),
    ("kill-last", "KILL", 1.0),
    ("int-third", "INT", 0.34),
]
OLD = '{"from": "an earlier run"}\n'


def dedup(tmp: Path) -> list[str]:
    """`dedup` with a pool, writing a kept file and a dropped file (the set that must not mix)."""
    rows = [
        "Name a fruit.",
        "Name a fruit please.",
        "Add two numbers.",
        "Say hello politely.",
        "Pick a color.",
    ]
    test_golden.write_jsonl(tmp / "rows.jsonl", [{"instruction": t} for t in rows])
    test_golden.write_jsonl(tmp / "pool.jsonl", [{"instruction": "Pick a colour."}])
    run = tmp / "run"
    return ["dedup", "--input", str(tmp / "rows.jsonl"), "--pool", str(tmp / "pool.jsonl"),
            "--output", str(run / "kept.jsonl"), "--dropped", str(run / "dropped.jsonl")]  # fmt: skip


# command -> (how its arguments are made, its golden cache or None, an earlier run's outputs of one set)
COMMANDS = {
    "generate": (test_golden.generate, "generate", ["out.jsonl", "out.jsonl.manifest.json"]),
    "self-instruct": (test_golden.self_instruct, "self-instruct", []),
    "dynosaur": (test_golden.dynosaur, "dynosaur", []),
    "explore": (test_golden.explore, "explore", []),
    "tag": (test_golden.tag, "tag", []),
    "dedup": (dedup, None, ["kept.jsonl", "dropped.jsonl"]),
}


@pytest.fixture(scope="module")
def killed_runs(tmp_path_factory, tiny_model):
    """command -> its work folder, where tests/kill_points.py left every run and what each attempt did."""
    done: dict[str, Path] = {}

    def run(command: str) -> Path:
        if command in done:
            return done[command]
        make_args, golden, old_set = COMMANDS[command]
        work = tmp_path_factory.mktemp(command)
        args = [a.replace(str(work / "run"), "{out}") for a in make_args(work)]
        if golden is not None:
            cache = work / "cache"
            recorded = (test_golden.GOLDEN / golden / "cache.jsonl").read_text(encoding="utf-8")
            test_golden.load_entries(cache, [json.loads(line) for line in recorded.splitlines()])
            args += ["--model", str(tiny_model), "--cache-dir", str(cache), "--max-model-len", "1024"]
        plan = {
            "work": str(work),
            "args": args,
            "before": {name: OLD for name in old_set},
            "runs": [{"name": name, "signal": sig, "at": at} for name, sig, at in POINTS],
        }
        (work / "plan.json").write_text(json.dumps(plan), encoding="utf-8")
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "INSTRUCTFORGE_NO_PROGRESS": "1", "PYTHONPATH": str(REPO)}
        driver = [sys.executable, str(REPO / "tests" / "kill_points.py"), str(work / "plan.json")]
        finished = subprocess.run(driver, env=env, capture_output=True, text=True, timeout=600, cwd=REPO)
        assert finished.returncode == 0, finished.stderr[-3000:]
        (whole,) = json.loads((work / "reference.json").read_text())
        assert whole["code"] == 0, whole["err"][-3000:]
        if golden is not None:
            assert " 0 model calls" in whole["out"], whole["out"]  # every request came from the cache
        done[command] = work
        return work

    return run


def outputs(folder: Path) -> dict[str, bytes]:
    """The run's files as the golden test compares them: manifests, dataset cards, report pages and the lock
    aside, run figures left out, the run's own path neutral."""
    files = test_golden.run_files(folder, folder)
    if "report.json" in files:  # Dynosaur's history lists what each invocation added: a run figure too
        report = json.loads(files["report.json"])
        report.pop("history", None)
        files["report.json"] = json.dumps(report).encode()
    return files


@pytest.mark.parametrize("point", [p[0] for p in POINTS])
@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_stopped_run_reruns_to_the_uninterrupted_outputs(killed_runs, command, point):
    work = killed_runs(command)
    stopped, rerun = json.loads((work / f"{point}.json").read_text())
    signal_name = dict((p[0], p[1]) for p in POINTS)[point]
    if signal_name == "KILL":
        assert stopped["code"] == -9, (stopped["code"], stopped["err"][-2000:])
        assert stopped["writes"] == stopped["stop_at"]  # it died there, before the run's end
    else:  # Ctrl-C: exit 130 and one line (after what the command printed while it worked)
        assert stopped["code"] == 130, stopped["err"][-2000:]
        lines = stopped["err"].strip().splitlines()
        assert lines[-1] == INTERRUPTED and not [ln for ln in lines[:-1] if ln.startswith("error")], lines
    assert "Traceback" not in stopped["err"] + rerun["err"]
    assert rerun["code"] == 0, rerun["err"][-2000:]

    assert outputs(work / point) == outputs(work / "reference")
    leftovers = [p.name for p in (work / point).rglob(".*") if p.name.endswith((".tmp", ".publish"))]
    assert not leftovers, leftovers

    old_set = COMMANDS[command][2]
    if old_set:  # right after the kill: each file of the set is the earlier run's, or new, or absent
        old = hashlib.sha256(OLD.encode()).hexdigest()[:16]
        states = {stopped["files"].get(name, "absent") for name in old_set}
        assert not (old in states and states - {old, "absent"}), (point, stopped["files"])
        assert all((work / point / name).read_text() != OLD for name in old_set)  # then all new


def dead_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    ended = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    return int(ended.stdout)


def test_a_killed_runs_temp_files_are_removed_by_the_next_write_and_a_live_ones_kept(tmp_path):
    from engine.run.io import write_jsonl

    stale = tmp_path / f".o.jsonl.{dead_pid()}-ab12_x.tmp"
    live = tmp_path / f".o.jsonl.{os.getppid()}-cd34.tmp"  # pytest's parent is alive: a writer at work
    other = tmp_path / f".p.jsonl.{dead_pid()}-ef56.tmp"  # another target's: left to that target's writes
    for path in (stale, live, other):
        path.write_text("half a file")
    write_jsonl(tmp_path / "o.jsonl", [{"a": 1}])
    assert not stale.exists() and live.exists() and other.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, other.name, "o.jsonl"])


HALF_PUBLISHED = """
import os, signal, sys
from pathlib import Path
from engine.run.io import published_together, write_jsonl

real, folder, stop = os.replace, Path(sys.argv[1]), sys.argv[2]
def replace(src, dst):
    if os.path.relpath(dst, folder).startswith(stop):
        os.kill(os.getpid(), signal.SIGKILL)
    return real(src, dst)
os.replace = replace
with published_together():
    write_jsonl(folder / "kept.jsonl", [{"run": "new"}])
    write_jsonl(folder / "sub" / "dropped.jsonl", [{"run": "new"}])
"""


def killed_while_publishing(folder: Path, stop: str) -> tuple[Path, Path]:
    """kept.jsonl and sub/dropped.jsonl of an earlier run, then a process that publishes new ones as one
    set and is killed just before it renames a file onto the path starting with `stop`."""
    from engine.run.io import write_jsonl

    kept, dropped = folder / "kept.jsonl", folder / "sub" / "dropped.jsonl"
    write_jsonl(kept, [{"run": "old"}])
    write_jsonl(dropped, [{"run": "old"}])
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    script = [sys.executable, "-c", HALF_PUBLISHED, str(folder), stop]
    killed = subprocess.run(script, env=env, capture_output=True, text=True)
    assert killed.returncode == -9, killed.stderr
    return kept, dropped


def test_a_set_killed_between_its_renames_is_never_old_beside_new_and_the_next_read_completes_it(tmp_path):
    from engine.run.io import read_records

    kept, dropped = killed_while_publishing(tmp_path, "sub/dropped.jsonl")  # kept.jsonl is renamed
    assert kept.read_text() == '{"run": "new"}\n' and not dropped.exists()  # new and absent, never old
    assert len(list(tmp_path.rglob(".*.publish"))) == 2  # a journal in each folder of the set

    assert [r.data for r in read_records(dropped)] == [{"run": "new"}]  # completed from the journal
    assert kept.read_text() == '{"run": "new"}\n'
    files = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert files == ["kept.jsonl", "sub/dropped.jsonl"]


def test_a_set_killed_before_its_last_journal_stays_the_old_set(tmp_path):
    from engine.run.atomic import settle

    kept, dropped = killed_while_publishing(tmp_path, "sub/.kept.jsonl")  # the journal in sub/
    assert len(list(tmp_path.rglob(".*.publish"))) == 1  # beside kept.jsonl only: not committed
    settle(dropped)  # sub/ first: its temp goes, as the next write there would remove it
    settle(kept)
    assert kept.read_text() == dropped.read_text() == '{"run": "old"}\n'
    files = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert files == ["kept.jsonl", "sub/dropped.jsonl"]


def test_an_error_inside_a_set_publishes_none_of_it(tmp_path):
    from engine.run.io import published_together, write_jsonl

    write_jsonl(tmp_path / "a.jsonl", [{"run": "old"}])
    with pytest.raises(ValueError), published_together():
        write_jsonl(tmp_path / "a.jsonl", [{"run": "new"}])
        write_jsonl(tmp_path / "b.jsonl", ({"n": 1 / 1} if i == 0 else int("x") for i in range(2)))
    assert [p.name for p in tmp_path.iterdir()] == ["a.jsonl"]
    assert (tmp_path / "a.jsonl").read_text() == '{"run": "old"}\n'
