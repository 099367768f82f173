"""The one file fingerprint: xxh128 (xxh3, 128-bit) over files' names and bytes, streamed.

What goes into a fingerprint is fixed by its caller (the model's weights in every request-cache key, the
embedding model in the embedding cache, a tagging run's input, a method's prompts and seed tasks in its
run config), so one function takes the few knobs that keep each caller's fingerprint what it has been.

    fingerprint(sorted(folder.rglob("*.safetensors")), root=folder)
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

CHUNK = 1 << 24


def fingerprint(
    files: Iterable[Path], *, root: Path | None = None, header: bytes = b"", name_end: bytes = b""
) -> str:
    """Hex xxh128 of `header`, then per file (in the order given) its path relative to `root` (POSIX form,
    followed by `name_end`; left out without a root) and its bytes."""
    import xxhash

    digest = xxhash.xxh128()
    digest.update(header)
    for path in files:
        if root is not None:
            digest.update(path.relative_to(root).as_posix().encode() + name_end)
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                digest.update(chunk)
    return digest.hexdigest()
