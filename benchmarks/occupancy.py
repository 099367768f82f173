"""Benchmark: engine occupancy of the two schedules, on the default model, in one run.

Occupancy is what vLLM's scheduler ran per engine step (requests and tokens), read from its own per-step
iteration details. On a GPU a decode step costs about the same at any occupancy (memory-bound), so
engine steps are the GPU-relevant cost and the running requests per step its throughput; the scheduler
is the same code on CPU and GPU, so these CPU figures are the ones a GPU would see. tok/s and wall time
are this 2-core CPU's, where a step's cost grows with its batch: read them as a sanity check only.

Workloads, each run through the CLI in a fresh process per schedule, request cache off, `--repeats`
times to tell whether a schedule reproduces its own output (figures are means over the repeats, with the
occupancy's range):
  tag            `instructforge tag` on the 427 shared instructions (175 seed + 252 user-oriented tasks)
  self-instruct  SELF-INSTRUCT with --num-instructions 50, its Python entry point (what the CLI runs), so
                 the bootstrap rounds' own occupancy is reported beside the whole run's (deterministic =
                 today's 16-prompt rounds; throughput = rounds sized to the engine)
  raw            `instructforge generate`: 1,024 chat requests (the user-oriented instructions, repeated,
                 made distinct), greedy, at most 256 tokens, so output lengths vary as the model stops

    .venv/bin/python benchmarks/occupancy.py                       # all three, 2 repeats (~40 min here)
    .venv/bin/python benchmarks/occupancy.py --workloads raw --repeats 1
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data"
SCHEDULES = ("deterministic", "throughput")


def tasks(name: str) -> list[dict]:
    with open(DATA / name, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def tag_workload(work: Path) -> tuple[list[str], str, str]:
    rows = [
        {
            "id": t["id"],
            "instruction": t["instruction"],
            "input": (t["instances"] or [{}])[0].get("input", ""),
        }
        for name in ("self_instruct_seed_tasks.jsonl", "user_oriented_instructions.jsonl")
        for t in tasks(name)
    ]
    data = write_jsonl(work / "queries.jsonl", rows)
    return ["tag", "--input", str(data), "--out", "{out}"], "report.json:engine", "tags.jsonl"


def self_instruct_workload(work: Path) -> tuple[list[str], str, str]:
    return (
        [str(Path(__file__).resolve()), "--self-instruct-run", "{out}"],
        "stats.json:engine_stats",
        "data.jsonl",
    )


def self_instruct_run(out: Path, schedule: str) -> None:
    """The whole pipeline from an empty request cache (the run's occupancy: in the throughput schedule its
    steps 2-3 overlap the rounds), then the bootstrap alone on the same model with a cache of its own
    (the rounds' own occupancy)."""
    from engine import Engine
    from engine.run.directory import RunDir
    from engine.run.io import write_json
    from generators.self_instruct.pipeline import SelfInstructConfig, run_self_instruct
    from generators.self_instruct.seed_tasks import load_seed_tasks
    from generators.self_instruct.tasks import bootstrap

    config, seeds = SelfInstructConfig(num_instructions=50), load_seed_tasks()
    with Engine("default", cache_dir=out / "cache", schedule=schedule) as engine:
        run_self_instruct(engine, config, seeds, RunDir(out))
        with engine.fork(cache_dir=out / "rounds-cache") as alone:
            bootstrap(alone, config, seeds)
            rounds = alone.stats.occupancy.to_dict()
        write_json(out / "stats.json", {"engine_stats": engine.stats.to_dict(), "bootstrap": rounds})


def raw_workload(work: Path, n: int = 1024) -> tuple[list[str], str, str]:
    texts = [t["instruction"] for t in tasks("user_oriented_instructions.jsonl")]
    rows = [
        {"id": f"r{i}", "messages": [{"role": "user", "content": f"{texts[i % len(texts)]} (variant {i})"}]}
        for i in range(n)
    ]
    data = write_jsonl(work / "raw.jsonl", rows)
    return (
        ["generate", "-i", str(data), "-o", "{out}/out.jsonl", "--max-tokens", "256"],
        "out.jsonl.manifest.json:stats",
        "out.jsonl",
    )


def mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)


def figures(occupancies: list[dict]) -> dict:
    """The engine figures of a schedule's runs: means, and the occupancy's range (single runs of a
    dependent flow vary with the lengths of the few answers that pace it)."""
    percents = [o["occupancy_pct"] for o in occupancies]
    return {
        "steps": round(mean(o["engine_steps"] for o in occupancies)),
        "slots": occupancies[0]["slots"],
        "running": mean(o["mean_running"] for o in occupancies),
        "occupancy": mean(percents),
        "range": f"{min(percents):.1f}-{max(percents):.1f}",
        "tok_step": mean(o["tokens_per_step"] for o in occupancies),
    }


WORKLOADS = {"tag": tag_workload, "self-instruct": self_instruct_workload, "raw": raw_workload}


def run_once(args: list[str], out: Path, stats_file: str, output_file: str, schedule: str) -> dict:
    own_script = args[0].endswith(".py")  # self-instruct runs through its Python entry point
    command = [
        sys.executable,
        *([] if own_script else ["-m", "instructforge"]),
        *[a.replace("{out}", str(out)) for a in args],
        "--schedule",
        schedule,
        *([] if own_script else ["--no-cache"]),
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "INSTRUCTFORGE_NO_PROGRESS": "1"}
    start = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    stats_file, key = stats_file.split(":")  # the file holding the engine's statistics, and their key
    record = json.loads((out / stats_file).read_text())
    stats = record[key]
    return {
        "stats": stats,
        "wall": wall,
        "output": (out / output_file).read_bytes(),
        "bootstrap": record.get("bootstrap"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--workloads", default=",".join(WORKLOADS), help="comma-separated: tag,self-instruct,raw"
    )
    parser.add_argument("--repeats", type=int, default=2, help="runs per schedule (identical output check)")
    parser.add_argument("--schedules", default=",".join(SCHEDULES), help="comma-separated, default both")
    parser.add_argument("--self-instruct-run", type=Path, help=argparse.SUPPRESS)  # the child process
    parser.add_argument("--schedule", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.self_instruct_run:
        sys.path.insert(0, str(REPO))
        return self_instruct_run(args.self_instruct_run, args.schedule)
    rows = []
    with tempfile.TemporaryDirectory(prefix="occupancy-") as tmp:
        work = Path(tmp)
        for name in args.workloads.split(","):
            cli, stats_file, output_file = WORKLOADS[name](work)
            for schedule in args.schedules.split(","):
                runs = [
                    run_once(cli, work / f"{name}-{schedule}-{k}", stats_file, output_file, schedule)
                    for k in range(args.repeats)
                ]
                stats = [r["stats"] for r in runs]
                rows.append(
                    {
                        "workload": name,
                        "schedule": schedule,
                        **figures([s["occupancy"] for s in stats]),
                        "requests": round(mean(s["model_calls"] for s in stats)),
                        "retried": round(mean(s["retried"] for s in stats)),
                        "tok_s": mean(s["tokens_per_second"] for s in stats),
                        "gen_s": mean(s["generation_seconds"] for s in stats),
                        "wall": mean(r["wall"] for r in runs),
                        "same": "-"
                        if len(runs) < 2
                        else "yes"
                        if all(r["output"] == runs[0]["output"] for r in runs)
                        else "no",
                    }
                )
                if runs[0]["bootstrap"]:
                    rows.append(
                        {
                            **rows[-1],
                            "workload": f"{name} (rounds)",
                            **figures([r["bootstrap"] for r in runs]),
                            "requests": 0,
                            "retried": 0,
                            "tok_s": 0.0,
                            "gen_s": 0.0,
                            "wall": 0.0,
                            "same": "-",
                        }
                    )
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    header = (
        f"{'workload':14s} {'schedule':13s} {'requests':>8s} {'retried':>7s} {'steps':>6s} "
        f"{'running/slots':>13s} {'occupancy':>9s} {'range':>11s} {'tok/step':>8s} {'tok/s':>6s} "
        f"{'gen s':>6s} {'wall s':>6s} {'same output':>11s}"
    )
    print(header.replace("workload      ", "workload              "))
    for r in rows:
        print(
            f"{r['workload']:22s} {r['schedule']:13s} {r['requests']:8d} {r['retried']:7d} {r['steps']:6d} "
            f"{r['running']:7.1f}/{r['slots']:<5d} {r['occupancy']:8.1f}% {r['range']:>11s} "
            f"{r['tok_step']:8.1f} {r['tok_s']:6.0f} {r['gen_s']:6.1f} {r['wall']:6.1f} {r['same']:>11s}"
        )
    print(
        "\nthroughput / deterministic, measured in this run (rounds: SELF-INSTRUCT's bootstrap rounds alone):"
    )
    for name in dict.fromkeys(r["workload"] for r in rows):
        if len({r["schedule"] for r in rows if r["workload"] == name}) < len(SCHEDULES):
            continue
        d, t = (next(r for r in rows if r["workload"] == name and r["schedule"] == s) for s in SCHEDULES)
        speed = f", tok/s x{t['tok_s'] / d['tok_s']:.2f}" if d["tok_s"] else ""
        print(
            f"  {name:22s} occupancy x{t['occupancy'] / max(d['occupancy'], 1e-9):.2f}, "
            f"engine steps x{t['steps'] / max(d['steps'], 1):.2f}, "
            f"tok/step x{t['tok_step'] / max(d['tok_step'], 1e-9):.2f}{speed}"
        )
    whole = {r["schedule"]: r for r in rows if r["workload"] == "self-instruct"}
    rounds = {r["schedule"]: r for r in rows if r["workload"] == "self-instruct (rounds)"}
    if "throughput" in whole and "deterministic" in rounds:
        ratio = whole["throughput"]["occupancy"] / max(rounds["deterministic"]["occupancy"], 1e-9)
        print(
            "  self-instruct whole run (throughput) against today's 16-prompt rounds (deterministic): "
            f"occupancy x{ratio:.2f}"
        )


if __name__ == "__main__":
    main()
