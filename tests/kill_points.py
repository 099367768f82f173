"""Kill points: one `instructforge` command run many times from one warmed-up process, each run a forked
child that a signal stops just before its k-th durable write (a rename onto a file, or a step's marker),
then rerun. The suite in tests/test_kills.py drives it; a fork costs milliseconds where a fresh Python
with torch and outlines imported costs seconds, so every kill point of every command stays cheap.

    python tests/kill_points.py PLAN.json

PLAN: {"args": [..., "{out}", ...], "work": folder, "model_free": bool,
       "runs": [{"name", "signal": "KILL" | "INT" | null, "at": fraction of the whole run's writes,
                 "then_rerun": bool}], "before": {"relative path": "text"}}.
Writes work/<name>/ (the run's output, in place of "{out}"), work/<name>.json (per attempt: exit code,
stdout, stderr, writes made, and the files right after a kill), and work/reference/ first (uninterrupted).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import pathlib
import signal
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def files_of(folder: Path) -> dict[str, str]:
    """Every file under `folder` (hidden ones too) -> a short digest of its bytes."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()[:16]
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def prepare(out: Path, before: dict[str, str]) -> None:
    for name, text in before.items():  # an earlier run's outputs, which a kill must not mix with new ones
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(text, encoding="utf-8")


def attempt(
    args: list[str], out: Path, log: Path, stop_at: int | None, sig: int | None, modules: Path | None = None
) -> dict:
    """One run in a forked child: its exit code (negative: killed by that signal), output and writes;
    `modules` gets the names of the modules the run imported."""
    read_out, write_out = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: the command, with a signal before write number `stop_at`
        os.close(read_out)
        for fd, name in ((1, "out"), (2, "err")):
            target = os.open(log.with_suffix(f".{name}"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(target, fd)
        writes = [0]

        def counted(real):
            def write(*a, **k):
                writes[0] += 1
                os.write(write_out, b".")  # the parent counts what a killed child made
                if writes[0] == stop_at:
                    sys.stdout.flush()
                    sys.stderr.flush()
                    os.kill(os.getpid(), sig)
                return real(*a, **k)

            return write

        os.replace = counted(os.replace)
        pathlib.Path.touch = counted(pathlib.Path.touch)
        code = 0
        try:
            from instructforge.cli import main

            main([a.replace("{out}", str(out)) for a in args])
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except BaseException:  # noqa: BLE001 - reported through the exit code and stderr
            import traceback

            traceback.print_exc()
            code = 99
        if modules is not None:
            modules.write_text("\n".join(sorted(sys.modules)), encoding="utf-8")
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    os.close(write_out)
    writes = 0
    while chunk := os.read(read_out, 4096):
        writes += len(chunk)
    os.close(read_out)
    _, status = os.waitpid(pid, 0)
    code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    return {
        "code": code,
        "writes": writes,
        "out": log.with_suffix(".out").read_text(encoding="utf-8", errors="replace"),
        "err": log.with_suffix(".err").read_text(encoding="utf-8", errors="replace"),
    }


def warm_up(modules: list[str]) -> None:
    """Import what a run imported, so each forked run starts with it loaded (best effort)."""
    for name in modules:
        if name.startswith(("__main__", "_pytest", "pytest")):
            continue
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001, S112 - a module that imports only in context: the child loads it
            continue


def main(plan_path: str) -> None:
    plan = json.loads(Path(plan_path).read_text(encoding="utf-8"))
    work, args = Path(plan["work"]), plan["args"]
    importlib.import_module("instructforge.cli")._register()
    sys.setrecursionlimit(10_000)

    reference = work / "reference"
    prepare(reference, plan.get("before", {}))
    modules = work / "modules.txt"
    whole = attempt(args, reference, work / "reference.log", None, None, modules)
    (work / "reference.json").write_text(json.dumps([whole]), encoding="utf-8")
    if whole["code"] != 0:
        return
    warm_up(modules.read_text(encoding="utf-8").split())
    total = whole["writes"]
    for run in plan["runs"]:
        out = work / run["name"]
        prepare(out, plan.get("before", {}))
        stop_at = min(total, max(1, round(run["at"] * total)))
        sig = getattr(signal, f"SIG{run['signal']}")
        attempts = [attempt(args, out, work / f"{run['name']}-0.log", stop_at, sig)]
        attempts[0]["stop_at"] = stop_at
        attempts[0]["files"] = files_of(out)
        if run.get("then_rerun", True):
            attempts.append(attempt(args, out, work / f"{run['name']}-1.log", None, None))
        (work / f"{run['name']}.json").write_text(json.dumps(attempts), encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv[1])
