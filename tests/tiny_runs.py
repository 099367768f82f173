"""The small runs several test modules share (the end-to-end tests and the golden test run the same ones),
and a peek into a request cache while another process writes it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

SHORT_SEEDS = [  # seed tasks short enough for the tiny model's 1024-token context
    "Name a fruit.",
    "Add two numbers.",
    "Say hello politely.",
    "Spell a short word.",
    "Pick a color.",
    "Count to five.",
    "Is it true? Answer yes or no.",
    "Name a city.",
]


def cached_requests(cache_dir: Path) -> int:
    """Finished requests in the engine's request cache (SQLite, WAL: readable while it is written)."""
    path = cache_dir / "requests.sqlite"
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(path, timeout=1) as db:
            return db.execute("SELECT COUNT(*) FROM generations").fetchone()[0]
    except sqlite3.Error:  # not created yet
        return 0


def self_instruct_args(out: Path, seeds: Path, *extra: str, n: int = 3) -> list[str]:
    """`self-instruct` bounded for the tiny model: few, short candidates and one instance each."""
    return [
        "self-instruct",
        "-n",
        str(n),
        "--out",
        str(out),
        "--seed-tasks",
        str(seeds),
        "--batch-size",
        "4",
        "--max-new-per-prompt",
        "2",
        "--max-instances",
        "1",
        "--keep-cut-off",
        "--min-words",
        "1",
        "--max-top-ups",
        "1",
        *extra,
    ]


def explore_args(out: Path, seeds: Path) -> list[str]:
    """`explore` one level deep with one new subtask and small example counts."""
    return [
        "explore",
        "--domain",
        "Email writing",
        "--seed-examples",
        str(seeds),
        "--depth",
        "1",
        "--out",
        str(out),
        "--new-subtasks",
        "1",
        "--subtasks-per-request",
        "1",
        "--examples-per-node",
        "4,2",
        "--examples-per-request",
        "2",
        "--max-attempts",
        "1",
        "--max-tokens",
        "400",
        "--sample-size",
        "50",
    ]


ALPACA_SEEDS = ("Name a fruit.", "Say hello.", "Pick a color.")


def alpaca_config():
    """Alpaca bounded for the tiny model: its JSON stays inside the 1024-token test context."""
    from generators.alpaca import AlpacaConfig

    return AlpacaConfig(
        num_instructions=2,
        batch_size=3,
        num_tasks_per_prompt=2,
        max_tokens=200,
        instruction_chars=60,
        instance_chars=40,
        drop_cut_off=False,
        max_stalled_rounds=2,
    )


def kill_once_cached(command: list[str], env: dict[str, str], cache_dir: Path, at_least: int = 20) -> int:
    """Start `command`, SIGKILL its process group once `at_least` requests are in its cache (or it ends,
    or 300 s pass); return how many requests the cache then holds."""
    import os
    import signal
    import subprocess
    import time

    victim = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and victim.poll() is None and cached_requests(cache_dir) < at_least:
        time.sleep(0.02)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    return cached_requests(cache_dir)
