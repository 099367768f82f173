"""Reading user records and writing outputs.

Inputs are chosen by extension: JSONL, JSON (a list of objects), CSV, parquet, or a folder saved by
`datasets.Dataset.save_to_disk`. Every record comes back with the line (or row) it came from, so a bad
record is reported as one line naming the file, the line and the field. Outputs are JSONL that
`datasets.load_dataset("json", data_files=...)` reads as is, written atomically (temp file + rename):
a crash never leaves a half-written output behind.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import InputError

INPUT_FORMATS = ("jsonl", "json", "csv", "parquet", "datasets folder")


@dataclass(frozen=True)
class Record:
    """One input record and where it came from (1-based line for text files, row for tables)."""

    data: dict[str, Any]
    line: int
    path: Path

    def error(self, message: str, field: str | None = None) -> InputError:
        return InputError(message, path=self.path, line=self.line, field=field)

    def require(self, field: str, kind: type | tuple[type, ...] = str) -> Any:
        """The value of `field`, or an InputError naming file, line and field."""
        if field not in self.data:
            raise self.error(f"missing (record has: {', '.join(sorted(self.data)) or 'no fields'})", field)
        value = self.data[field]
        if not isinstance(value, kind):
            names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            raise self.error(f"must be {names}, got {type(value).__name__}", field)
        return value


def read_records(path: str | os.PathLike, *, skipped: list[InputError] | None = None) -> Iterator[Record]:
    """Yield the records of a JSONL/JSON/CSV/parquet file or a `save_to_disk` folder, in order.

    Raises InputError (one line, with file and line) for a missing file, an unknown format, a line that
    is not JSON or a record that is not an object. With a `skipped` list, bad lines of a JSONL file are
    appended to it and reading goes on (whole-file errors still raise).
    """
    path = Path(path)
    if not path.exists():
        raise InputError("no such file or folder", path=path)
    if path.is_dir():
        yield from _read_datasets_folder(path)
        return
    suffix = path.suffix.lower()
    readers = {".json": _read_json, ".csv": _read_csv, ".parquet": _read_parquet}
    if suffix in (".jsonl", ".ndjson"):
        yield from _read_jsonl(path, skipped)
    elif suffix in readers:
        yield from readers[suffix](path)
    else:
        raise InputError(
            f"unknown input format `{suffix or '(none)'}`; expected one of {', '.join(INPUT_FORMATS)}",
            path=path,
        )


def _object_record(value: Any, path: Path, line: int) -> Record:
    if not isinstance(value, dict):
        raise InputError(f"expected a JSON object, got {type(value).__name__}", path=path, line=line)
    return Record(value, line, path)


def _read_jsonl(path: Path, skipped: list[InputError] | None = None) -> Iterator[Record]:
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                try:
                    value = json.loads(line)
                except json.JSONDecodeError as e:
                    raise InputError(
                        f"invalid JSON ({e.msg} at column {e.colno})", path=path, line=line_no
                    ) from e
                record = _object_record(value, path, line_no)
            except InputError as e:
                if skipped is None:
                    raise
                skipped.append(e)
                continue
            yield record


def _read_json(path: Path) -> Iterator[Record]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise InputError(f"invalid JSON ({e.msg})", path=path, line=e.lineno) from e
    if isinstance(value, dict):  # a single object, or {"data": [...]}-style wrappers are not guessed
        value = [value]
    if not isinstance(value, list):
        raise InputError(f"expected a list of objects, got {type(value).__name__}", path=path)
    for index, item in enumerate(value, 1):
        yield _object_record(item, path, index)


def _read_csv(path: Path) -> Iterator[Record]:
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        for row in reader:
            if None in row:  # more cells than header columns
                raise InputError(
                    f"{len(row[None])} more cells than the header has columns",
                    path=path,
                    line=reader.line_num,
                )
            yield Record(dict(row), reader.line_num, path)


def _read_parquet(path: Path) -> Iterator[Record]:
    import pyarrow.parquet as pq  # lazily: only parquet inputs need it

    try:
        table = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises several types for a non-parquet file
        raise InputError(f"not a readable parquet file ({e})", path=path) from e
    row = 0
    for batch in table.iter_batches():
        for item in batch.to_pylist():
            row += 1
            yield Record(item, row, path)


def _read_datasets_folder(path: Path) -> Iterator[Record]:
    import datasets  # lazily: heavy import

    try:
        data = datasets.load_from_disk(str(path))
    except Exception as e:  # datasets raises FileNotFoundError or ValueError variants
        raise InputError(f"not a folder saved by `datasets` ({e})", path=path) from e
    if isinstance(data, datasets.DatasetDict):
        if "train" not in data:
            raise InputError(f"a DatasetDict without a `train` split (has {list(data)})", path=path)
        data = data["train"]
    for row, item in enumerate(data, 1):
        yield Record(item, row, path)


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike, mode: str = "w"):
    """Open a temp file beside `path`; on success rename it over `path`, on error remove it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


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
