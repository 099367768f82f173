"""The one seed derivation: every random choice and sampling seed of a run derives from the run seed and
the identity of what it decides (step, round, prompt index, node, attempt), never from Python's salted
`hash` or from call order, so a rerun takes the same decisions and sends the same requests.

    rng = random.Random(derive_seed(config.seed, "bootstrap", round_, index))
"""

from __future__ import annotations

import hashlib


def derive_seed(run_seed: int, *parts: object) -> int:
    """A stable 31-bit seed from the run seed and the parts that name one decision (sha256)."""
    text = ":".join(str(p) for p in (run_seed, *parts))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big") & 0x7FFFFFFF
