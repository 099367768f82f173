"""Benchmark: data-parallel engine replicas on Ray (engine/backends/ray.py) vs one in-process engine.

One run measures, each configuration in a fresh process on the same requests (the real SELF-INSTRUCT seed
and user-oriented instructions from ../shared/data, sampled with per-request seeds, cache off):
the in-process vLLM engine, then the Ray backend with each replica count of --replicas (and, on CPU, each
--cpus-per-replica), all running the batch as the same pieces of --piece-size requests. Output tok/s is
given excluding engine start (generation only) and including it (start + generation), each as a ratio to
the in-process engine, with whether the outputs equal the in-process ones. On this 2-core box it runs
inside a loopback-only network namespace:

    unshare -n sh -c 'ip link set lo up && .venv/bin/python benchmarks/scaling.py --replicas 1 2 \
        --cpus-per-replica 1 2'

On a GPU machine or cluster (recipe; Ray may use the network there, hence --allow-network), e.g. 8 GPUs:
one engine, data parallel, tensor parallel, and both:

    .venv/bin/python benchmarks/scaling.py --allow-network --model ~/models/InsTagger --compiled \\
        --requests 8192 --max-tokens 256 --replicas 1 2 4 8
    .venv/bin/python benchmarks/scaling.py --allow-network --model ~/models/InsTagger --compiled \\
        --requests 8192 --max-tokens 256 --replicas 1 2 4 --tensor-parallel-size 2
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
DATA = REPO.parent / "shared" / "data"


def instructions(n: int) -> list[str]:
    """n instructions: the 175 seed tasks then the 252 user-oriented ones, repeated when n is larger."""
    rows = []
    for name in ("self_instruct_seed_tasks.jsonl", "user_oriented_instructions.jsonl"):
        with open(DATA / name, encoding="utf-8") as f:
            rows += [json.loads(line)["instruction"] for line in f if line.strip()]
    return [rows[i % len(rows)] for i in range(n)]


def measure(config: dict) -> dict:
    """Start one engine (in-process, or Ray with `replicas`), run the batch, return the timings."""
    from engine.engine import Engine
    from engine.types import Request, Sampling

    requests = [
        Request(
            messages=[{"role": "user", "content": text}],
            sampling=Sampling(temperature=0.7, max_tokens=config["max_tokens"], seed=i),
        )
        for i, text in enumerate(instructions(config["requests"]))
    ]
    scale_out = (
        {}
        if config["replicas"] == 0
        else {
            "backend": "ray",
            "ray": {"replicas": config["replicas"], "cpus_per_replica": config["cpus_per_replica"]},
        }
    )
    with Engine(
        config["model"],
        use_cache=False,
        enforce_eager=not config["compiled"],
        tensor_parallel_size=config["tensor_parallel_size"],
        piece_size=config["piece_size"],
        **scale_out,
    ) as engine:
        start = time.perf_counter()
        engine.backend  # noqa: B018 -- starts the engine(s); timed apart from generation
        started = time.perf_counter()
        results = engine.run(requests)
        done = time.perf_counter()
    tokens = sum(c.output_tokens for r in results for c in r.completions)
    return {
        "start_s": started - start,
        "generate_s": done - started,
        "tokens": tokens,
        "digest": hashlib.sha256(json.dumps([r.text for r in results]).encode()).hexdigest(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--requests", type=int, default=256)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--tensor-parallel-size", type=int, default=1)
    parser.add_argument(
        "--piece-size",
        type=int,
        default=64,
        help="requests per piece, the same in every configuration (see EngineOptions)",
    )
    parser.add_argument(
        "--cpus-per-replica",
        type=float,
        nargs="+",
        default=[None],
        help="CPU only: cores per replica, each value measured for every replica count "
        "(default: the engine's, the machine's cores split evenly)",
    )
    parser.add_argument("--compiled", action="store_true", help="vLLM compiled mode (default: eager)")
    parser.add_argument(
        "--allow-network",
        action="store_true",
        help="run outside a loopback-only network namespace (a real cluster)",
    )
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one config (JSON) and exit
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(json.loads(args.one))))
        return
    if not args.allow_network and {name for _, name in socket.if_nameindex()} != {"lo"}:
        sys.exit(
            "Ray must not reach beyond loopback here: run inside `unshare -n sh -c 'ip link set lo up "
            "&& ...'`, or pass --allow-network on a machine where that is allowed."
        )
    base = {
        "model": args.model,
        "requests": args.requests,
        "max_tokens": args.max_tokens,
        "tensor_parallel_size": args.tensor_parallel_size,
        "compiled": args.compiled,
        "piece_size": args.piece_size,
    }
    rows = []
    configs = [(0, None)] + [(n, c) for c in args.cpus_per_replica for n in args.replicas]  # 0: in-process
    for replicas, cpus in configs:
        config = {**base, "replicas": replicas, "cpus_per_replica": cpus}
        env = {**os.environ, "INSTRUCTFORGE_NO_PROGRESS": "1"}
        out = subprocess.run(
            [sys.executable, __file__, "--one", json.dumps(config)],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if out.returncode != 0:
            sys.exit(
                f"{'in-process' if not replicas else f'{replicas} replicas'} failed:\n{out.stderr[-3000:]}"
            )
        rows.append((replicas, cpus, json.loads(out.stdout.strip().splitlines()[-1])))

    print(
        f"\n{args.requests} requests x <= {args.max_tokens} tokens in pieces of {args.piece_size}, model "
        f"{args.model}, {os.cpu_count()} CPUs, tensor parallel {args.tensor_parallel_size}"
    )
    print(
        f"{'engine':<18}{'cores':>6}{'start s':>9}{'generate s':>12}{'tokens':>8}{'tok/s gen':>11}"
        f"{'tok/s +start':>14}{'gen ratio':>11}{'+start ratio':>14}  same output"
    )
    base_m = rows[0][2]
    rate = lambda m: m["tokens"] / m["generate_s"]  # noqa: E731
    whole = lambda m: m["tokens"] / (m["start_s"] + m["generate_s"])  # noqa: E731
    for replicas, cpus, m in rows:
        name = "in-process" if replicas == 0 else f"ray x{replicas} replica{'s' * (replicas > 1)}"
        cores = "all" if replicas == 0 else "split" if cpus is None else f"{cpus:g}"
        print(
            f"{name:<18}{cores:>6}{m['start_s']:>9.1f}{m['generate_s']:>12.1f}{m['tokens']:>8}"
            f"{rate(m):>11.0f}{whole(m):>14.0f}{rate(m) / rate(base_m):>10.2f}x"
            f"{whole(m) / whole(base_m):>13.2f}x  {m['digest'] == base_m['digest']}"
        )
    print("ratios: against the in-process engine measured in this run")


if __name__ == "__main__":
    main()
