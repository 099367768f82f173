"""Benchmark: exact cosine DBSCAN (engine.clustering.dbscan) against scikit-learn's DBSCAN, one input, one
run.

Inputs are tag-like phrases (2–4-word n-grams of the instructions, inputs and outputs in ../shared/data,
not starting or ending with a stop word) embedded with the packaged all-MiniLM-L6-v2 through the
embedding cache (the first run embeds up to 100K phrases; later runs read them back), plus a synthetic
clustered set on the unit sphere for the largest sizes. Each clusterer runs in its own child process,
so time and peak memory (ru_maxrss of that child) do not mix. Agreement must be 100%.

    python benchmarks/clustering.py                      # 10K, 30K, 100K phrases + synthetic, eps 0.05
    python benchmarks/clustering.py --sizes 10000 --eps 0.05 0.1
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"
sys.path.insert(0, str(REPO))

STOP_WORDS = frozenset(
    "a an the and or of to in on for with by at from as is are was were be been it its this that these "
    "those your you i we they he she his her their our my me us them not no but if so than then there "
    "here which who whom what when where how why can could should would will shall may might must do "
    "does did have has had into about over under out up down off".split()
)


def _documents(data: Path) -> list[str]:
    docs: list[str] = []
    for name in ("self_instruct_seed_tasks.jsonl", "user_oriented_instructions.jsonl"):
        for line in (data / name).read_text(encoding="utf-8").splitlines():
            task = json.loads(line)
            docs.append(task["instruction"])
            docs += [part for inst in task["instances"] for part in (inst["input"], inst["output"])]
    for node in sorted((data / "explore_instruct_demo_domain").glob("*.json")):
        for ex in json.loads(node.read_text(encoding="utf-8")).get("examples", []):
            docs += [ex["instruction"], ex["input"], ex["output"]]
    return docs


def tag_phrases(n: int, *, data: Path = SHARED_DATA, seed: int = 0) -> list[str]:
    """`n` distinct tag-like phrases; the first n of one seeded order, so smaller sets nest in larger."""
    phrases: set[str] = set()
    for doc in _documents(data):
        words = re.findall(r"[a-z]+(?:'[a-z]+)?", doc.lower())
        for size in (1, 2, 3, 4):
            for i in range(len(words) - size + 1):
                gram = words[i : i + size]
                if gram[0] in STOP_WORDS or gram[-1] in STOP_WORDS or min(len(gram[0]), len(gram[-1])) < 2:
                    continue
                phrases.add(" ".join(gram))
    ordered = sorted(phrases)
    if n > len(ordered):
        raise SystemExit(f"only {len(ordered)} distinct phrases in {data}; asked for {n}")
    order = np.random.default_rng(seed).permutation(len(ordered))[:n]
    return [ordered[i] for i in order]


def synthetic_clusters(centers: np.ndarray, n: int, *, seed: int = 0) -> np.ndarray:
    """`n` unit vectors in clusters of 1–60 around real phrase embeddings (tag variants of one tag).

    Each member has cosine U(0.96, 0.999) with its centre, so clusters mix core, border and noise points
    at eps = 0.05; the spectrum stays that of real embeddings (the noise is a small isotropic floor).
    """
    rng = np.random.default_rng(seed)
    sizes = np.minimum(rng.geometric(0.15, size=n), 60)
    sizes = sizes[: int(np.searchsorted(np.cumsum(sizes), n)) + 1]
    sizes[-1] -= sizes.sum() - n
    which = np.repeat(np.arange(len(sizes)), sizes) % len(centers)
    c = centers[which].astype(np.float64)
    noise = rng.standard_normal(c.shape)
    noise -= (noise * c).sum(1, keepdims=True) * c
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    cos = rng.uniform(0.96, 0.999, n)[:, None]
    return (c * cos + noise * np.sqrt(1 - cos**2)).astype(np.float32)


def isotropic_clusters(n: int, d: int = 384, *, seed: int = 0) -> np.ndarray:
    """The worst case for the projection bound: cluster centres uniform on the sphere (flat spectrum)."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((max(1, n // 7), d))
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    return synthetic_clusters(centers, n, seed=seed + 1)


def child(impl: str, data: str, eps: float, min_samples: int, labels_out: str) -> None:
    """Run one clusterer on one array and print a JSON line: seconds, peak and baseline RSS."""
    X = np.load(data)
    if impl == "sklearn":
        from sklearn.cluster import DBSCAN

        def run():
            return DBSCAN(eps=eps, min_samples=min_samples, metric="cosine").fit(X).labels_, {}
    else:
        from engine.clustering.dbscan import dbscan

        def run():
            result = dbscan(X, eps, min_samples, show_progress=False)
            return result.labels, result.stats

    import resource

    baseline = _rss_mib()
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    labels, stats = run()
    seconds = time.perf_counter() - start
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime  # all threads
    peak = _peak_rss_mib()
    np.save(labels_out, labels)
    keep = ("edges", "candidates", "ambiguous", "projection_dims", "t_prepare", "t_pass")
    print(
        json.dumps(
            {
                "seconds": seconds,
                "cpu_seconds": cpu,
                "peak_mib": peak,
                "baseline_mib": baseline,
                "stats": {k: stats[k] for k in keep if k in stats},
            }
        )
    )


def _peak_rss_mib() -> float:
    """VmHWM of this process image. Not ru_maxrss: Linux carries that over from the parent across
    fork + exec, so a child would report at least the parent's size."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def measure(impl: str, X: np.ndarray, eps: float, min_samples: int, work: Path) -> tuple[dict, np.ndarray]:
    data = work / "x.npy"
    np.save(data, X)
    out = work / f"labels_{impl}.npy"
    proc = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            impl,
            "--data",
            str(data),
            "--eps",
            str(eps),
            "--min-samples",
            str(min_samples),
            "--labels-out",
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    if proc.returncode:
        raise SystemExit(f"{impl} child failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1]), np.load(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 30_000, 100_000])
    parser.add_argument("--synthetic-sizes", type=int, nargs="*", default=[30_000, 100_000])
    parser.add_argument("--isotropic-sizes", type=int, nargs="*", default=[30_000])
    parser.add_argument("--eps", type=float, nargs="+", default=[0.05])
    parser.add_argument(
        "--larger-eps",
        type=float,
        default=0.1,
        help="also run this eps on phrase sets up to --larger-eps-max rows",
    )
    parser.add_argument("--larger-eps-max", type=int, default=30_000)
    parser.add_argument("--min-samples", type=int, default=2)
    parser.add_argument("--child", choices=["sklearn", "ours"], help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--labels-out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.data, args.eps[0], args.min_samples, args.labels_out)

    from engine.embeddings import Embedder

    phrases = tag_phrases(max(args.sizes))
    print(f"embedding {len(phrases):,} tag-like phrases (cached after the first run) ...", file=sys.stderr)
    vectors = Embedder(batch_size=256).embed(phrases)
    runs = [("phrases", n, eps) for n in args.sizes for eps in args.eps]
    runs += [
        ("phrases", n, args.larger_eps)
        for n in args.sizes
        if args.larger_eps and n <= args.larger_eps_max and args.larger_eps not in args.eps
    ]
    runs += [("synthetic", n, eps) for n in args.synthetic_sizes for eps in args.eps]
    runs += [("isotropic", n, eps) for n in args.isotropic_sizes for eps in args.eps]
    header = (
        f"{'set':<10} {'n':>7} {'eps':>5} | {'sklearn s (cpu)':>16} {'ours s (cpu)':>14} "
        f"{'speedup (cpu)':>14} | "
        f"{'sk MiB':>7} {'ours MiB':>8} (+algo) | {'agree':>6} {'clusters':>8} {'noise':>7} "
        f"{'edges':>9} {'k':>4}"
    )
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, n, eps in runs:
            if name == "phrases":
                X = vectors[:n]
            elif name == "synthetic":
                X = synthetic_clusters(vectors, n)
            else:
                X = isotropic_clusters(n)
            sk, sk_labels = measure("sklearn", X, eps, args.min_samples, Path(tmp))
            ours, our_labels = measure("ours", X, eps, args.min_samples, Path(tmp))
            agree = float((sk_labels == our_labels).mean())
            st = ours["stats"]
            rows.append(
                f"{name:<10} {n:>7,} {eps:>5} | {sk['seconds']:>7.1f} ({sk['cpu_seconds']:>6.1f}) "
                f"{ours['seconds']:>6.1f} ({ours['cpu_seconds']:>5.1f}) "
                f"{sk['seconds'] / ours['seconds']:>5.1f}x "
                f"({sk['cpu_seconds'] / ours['cpu_seconds']:>4.1f}x) | "
                f"{sk['peak_mib']:>7.0f} "
                f"{ours['peak_mib']:>8.0f} (+{ours['peak_mib'] - ours['baseline_mib']:.0f}) | "
                f"{agree:>6.1%} {int(our_labels.max()) + 1:>8,} {int((our_labels == -1).sum()):>7,} "
                f"{st.get('edges', 0):>9,} {str(st.get('projection_dims') or 'full'):>4}"
            )
            print(rows[-1], file=sys.stderr, flush=True)
            if agree != 1.0:
                raise SystemExit(f"labels differ on {name} n={n} eps={eps}: agreement {agree:.6%}")
    print(header)
    print("\n".join(rows))
    print(
        "speedup = sklearn wall seconds / ours (cpu: user+sys seconds of all threads, steadier on a shared "
        "box), one run each, each in its own child process; MiB = peak RSS (VmHWM) of that child (+algo: "
        "above the loaded input); edges = directed ε-pairs incl. self; k = projection width of the bound "
        f"pass; load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )


if __name__ == "__main__":
    main()
