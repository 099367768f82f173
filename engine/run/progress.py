"""Progress bars for long loops: stderr, with rate and ETA, quiet when INSTRUCTFORGE_NO_PROGRESS=1."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any


def progress(
    iterable: Iterable | None = None,
    *,
    total: int | None = None,
    desc: str = "",
    unit: str = "it",
    **kwargs: Any,
):
    """A tqdm bar on stderr (rate + ETA); stdout stays free for the one-line summary."""
    from tqdm.auto import tqdm

    disable = os.environ.get("INSTRUCTFORGE_NO_PROGRESS") == "1"
    return tqdm(
        iterable,
        total=total,
        desc=desc,
        unit=unit,
        file=sys.stderr,
        mininterval=0.5,
        dynamic_ncols=True,
        disable=disable,
        **kwargs,
    )
