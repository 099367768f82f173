"""Writing outputs so that a kill never leaves a half-written file, or half of a set of files.

`atomic_writer` writes a temp file beside its target and renames it over the target: a file is the old
one or the new one. `published_together` does the same for several files at once (a kept file and its
dropped file, a data file and its manifest), with a journal that a rerun uses to complete a set whose
publication a kill interrupted. `settle` is that completion; every write runs it first, and it also
removes the temp files a killed run left for the same target.

    with published_together():
        write_jsonl(kept_path, kept)
        write_jsonl(dropped_path, dropped)
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from collections.abc import Iterable
from contextvars import ContextVar
from pathlib import Path
from typing import Any

TEMP_SUFFIX = ".tmp"
JOURNAL_SUFFIX = ".publish"
_TEMP_TAIL = re.compile(r"(\d+)-[a-z0-9_]+" + re.escape(TEMP_SUFFIX))
"""Temp files of target NAME are `.NAME.<pid>-<random>.tmp`: the pid tells a killed run's leftover from a
live writer's file."""
_STAGED: ContextVar[dict[Path, Path] | None] = ContextVar("staged", default=None)
_COMMITTING: set[Path] = set()
"""Journals this process is completing right now (a settle must not complete them a second time)."""


def _temp_file(target: Path) -> tuple[int, Path]:
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.{os.getpid()}-", suffix=TEMP_SUFFIX, dir=target.parent)
    return fd, Path(tmp)


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike, mode: str = "w"):
    """Open a temp file beside `path`; on success rename it over `path`, on error remove it.

    What a killed run left for `path` is settled first (`settle`). Inside `published_together()`, the
    rename waits for the end of that block."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    settle(path)
    fd, tmp = _temp_file(path)
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; an output gets what the umask allows
        staged = _STAGED.get()
        if staged is None:
            os.replace(tmp, path)
        else:  # published with the rest of its set; a target written twice keeps its last version
            earlier = staged.pop(path.absolute(), None)
            if earlier is not None:
                earlier.unlink(missing_ok=True)
            staged[path.absolute()] = tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def published_together():
    """Every file written inside the block (atomic_writer, write_jsonl, write_json, write_manifest) is
    published as one set when the block ends: never a new file beside an old one of the same set. An
    error inside the block publishes nothing. Inside it, the new files are not visible yet.

    Every file goes to its temp file first; then a journal listing (temp, target) pairs is written into
    each target folder (the last one written is the commit point); then the set's old files are removed,
    each temp is renamed onto its target, and the journals are removed. A kill before the last journal
    leaves the old set (the next write removes the temps); a kill after it leaves new files and absent
    ones, never old ones, and the next write, read or output check of any of them completes the set
    (`settle`)."""
    if _STAGED.get() is not None:  # nested: the outer block publishes
        yield
        return
    staged: dict[Path, Path] = {}
    token = _STAGED.set(staged)
    try:
        yield
    except BaseException:
        for tmp in staged.values():
            tmp.unlink(missing_ok=True)
        raise
    finally:
        _STAGED.reset(token)
    _publish([(tmp, target) for target, tmp in staged.items()])


def _publish(files: list[tuple[Path, Path]]) -> None:
    if len(files) <= 1:
        for tmp, target in files:
            os.replace(tmp, target)
        return
    first = {target.parent: target for _, target in reversed(files)}  # each folder's first target
    name = f".{files[0][1].name}.{os.getpid()}-{os.urandom(4).hex()}{JOURNAL_SUFFIX}"
    journals = [folder / name for folder in dict.fromkeys(target.parent for _, target in files)]
    entry = {
        "pid": os.getpid(),
        "files": [[str(t), str(p)] for t, p in files],
        "journals": [str(j) for j in journals],
    }
    written: list[Path] = []
    try:
        for journal in journals:
            fd, tmp = _temp_file(first[journal.parent])
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(entry, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, journal)
            written.append(journal)
            _sync_folder(journal.parent)
    except BaseException:  # before the commit point: the old set stays
        for path in [*written, *(tmp for tmp, _ in files)]:
            path.unlink(missing_ok=True)
        raise
    _COMMITTING.update(journals)
    try:
        try:
            _complete(files, journals)
        except KeyboardInterrupt:  # Ctrl-C after the commit point: finish the set (a few renames), then stop
            _complete(files, journals)
            raise
    finally:
        _COMMITTING.difference_update(journals)


def _complete(files: list[tuple[Path, Path]], journals: list[Path]) -> None:
    """Roll a committed set forward. Idempotent: a kill in here is completed by the next settle."""
    pending = [(tmp, target) for tmp, target in files if tmp.exists()]
    for _, target in pending:  # no old file may stay beside a new one
        target.unlink(missing_ok=True)
    for tmp, target in pending:
        with contextlib.suppress(FileNotFoundError):  # another process completed it meanwhile
            os.replace(tmp, target)
    for folder in dict.fromkeys(target.parent for _, target in pending):
        _sync_folder(folder)
    for journal in journals:
        journal.unlink(missing_ok=True)


def settle(path: str | os.PathLike) -> None:
    """Finish what a killed run left beside `path`: complete every set whose publication it had begun
    (a journal in this folder), then remove its leftover temp files of `path`. What live processes are
    writing is left alone."""
    path = Path(path)
    try:
        names = os.listdir(path.parent)
    except (FileNotFoundError, NotADirectoryError):
        return
    for name in names:
        if name.startswith(".") and name.endswith(JOURNAL_SUFFIX):
            journal = (path.parent / name).absolute()
            try:
                entry = json.loads(journal.read_text(encoding="utf-8"))
                pid = int(entry["pid"])
                files = [(Path(tmp), Path(target)) for tmp, target in entry["files"]]
                journals = [Path(p) for p in entry["journals"]]
            except (OSError, ValueError, KeyError, TypeError):
                continue  # completed meanwhile, or not one of ours
            if journal in _COMMITTING or (pid != os.getpid() and _alive(pid)):
                continue
            if all(j.exists() for j in journals):  # committed: roll forward
                _complete(files, journals)
            else:  # killed while writing its journals (nothing renamed yet), or after completing the set
                for leftover in [*(tmp for tmp, _ in files), *journals]:
                    leftover.unlink(missing_ok=True)
    prefix = f".{path.name}."
    for name in names:
        match = _TEMP_TAIL.fullmatch(name[len(prefix) :]) if name.startswith(prefix) else None
        if match and int(match[1]) != os.getpid() and not _alive(int(match[1])):
            (path.parent / name).unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _sync_folder(folder: Path) -> None:
    """Make the renames in `folder` durable, in the order they were made."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)  # reading the umask means setting it: put it straight back
    os.umask(mask)
    return mask


def to_json_line(row: Any) -> str:
    """One JSONL line: UTF-8 kept readable, key order kept (stable, byte-identical reruns)."""
    return json.dumps(row, ensure_ascii=False) + "\n"


def write_jsonl(path: str | os.PathLike, rows: Iterable[Any]) -> int:
    """Write rows atomically as JSONL; return how many were written."""
    count = 0
    with atomic_writer(path) as f:
        for row in rows:
            f.write(to_json_line(row))
            count += 1
    return count


def write_json(path: str | os.PathLike, value: Any) -> None:
    """Write one JSON document atomically, indented for people to read."""
    with atomic_writer(path) as f:
        json.dump(value, f, ensure_ascii=False, indent=2)
        f.write("\n")
