"""What the model benchmarks share: offline, quiet runs and the real seed tasks in ../shared/data.

from common import SHARED_DATA, seed_instructions   # benchmarks run as `python benchmarks/NAME.py`
"""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("INSTRUCTFORGE_NO_PROGRESS", "1")

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def seed_instructions() -> list[str]:
    """The 175 SELF-INSTRUCT seed instructions, in file order."""
    with (SHARED_DATA / "self_instruct_seed_tasks.jsonl").open(encoding="utf-8") as f:
        return [json.loads(line)["instruction"] for line in f if line.strip()]
