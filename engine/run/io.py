"""Reading user records and writing outputs.

Inputs are chosen by extension: JSONL, JSON (a list of objects), CSV, parquet, or a folder saved by
`datasets.Dataset.save_to_disk`. Every record comes back with the line (or row) it came from, so a bad
record is reported as one line naming the file, the line and the field. Outputs are JSONL that
`datasets.load_dataset("json", data_files=...)` reads as is, written atomically (temp file + rename):
a crash never leaves a half-written output behind (engine/run/atomic.py, re-exported here).
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import ConfigError, InputError
from engine.run.atomic import atomic_writer as atomic_writer
from engine.run.atomic import published_together as published_together
from engine.run.atomic import settle
from engine.run.atomic import to_json_line as to_json_line
from engine.run.atomic import write_json as write_json
from engine.run.atomic import write_jsonl as write_jsonl

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


class UniqueIds:
    """Where ids key the data (one tag row per sample and turn, one sample per id), a second record with
    an id already seen is refused: `FILE:LINE: duplicate id 'x' (first at line N)`. 1 and "1" differ."""

    def __init__(self) -> None:
        self._first: dict[tuple[Any, ...], tuple[Path, int]] = {}

    def check(self, record: Record, sample_id: Any, *more: Any, what: str = "", field: str = "id") -> None:
        if not isinstance(sample_id, (str, int)) or isinstance(sample_id, bool):
            raise record.error(f"must be a string or int, got {type(sample_id).__name__}", field)
        key = (type(sample_id).__name__, sample_id, *more)
        path, line = self._first.setdefault(key, (record.path, record.line))
        if (path, line) != (record.path, record.line):
            where = f"line {line}" if path == record.path else f"{path}:{line}"
            raise record.error(f"duplicate id {sample_id!r}{what} (first at {where})")


def read_records(path: str | os.PathLike, *, skipped: list[InputError] | None = None) -> Iterator[Record]:
    """Yield the records of a JSONL/JSON/CSV/parquet file or a `save_to_disk` folder, in order.

    Raises InputError (one line, with file and line) for a missing file, an unknown format, a line that
    is not JSON or a record that is not an object. With a `skipped` list, bad lines of a JSONL file are
    appended to it and reading goes on (whole-file errors still raise).
    """
    path = Path(path)
    if not path.exists():
        settle(path)  # a set of outputs whose publication a kill interrupted: complete it
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
    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, 1):
            try:
                line = _decode(raw[3:] if line_no == 1 and raw.startswith(BOM) else raw, path, line_no)
                if not line.strip():
                    continue
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
        value = json.loads(_text(path))
    except json.JSONDecodeError as e:
        raise InputError(f"invalid JSON ({e.msg})", path=path, line=e.lineno) from e
    if isinstance(value, dict):  # a single object, or {"data": [...]}-style wrappers are not guessed
        value = [value]
    if not isinstance(value, list):
        raise InputError(f"expected a list of objects, got {type(value).__name__}", path=path)
    for index, item in enumerate(value, 1):
        yield _object_record(item, path, index)


def _read_csv(path: Path) -> Iterator[Record]:
    reader = csv.DictReader(io.StringIO(_text(path), newline=""), strict=True)
    try:
        for row in reader:
            if None in row or None in row.values():  # more or fewer cells than the header has columns
                cells = sum(v is not None for k, v in row.items() if k is not None) + len(row.get(None, []))
                columns = len(reader.fieldnames or [])
                raise InputError(f"{cells} cells, the header has {columns}", path=path, line=reader.line_num)
            yield Record(dict(row), reader.line_num, path)
    except csv.Error as e:  # an unclosed or misplaced quote
        raise InputError(f"malformed CSV ({e})", path=path, line=reader.line_num) from e


BOM = b"\xef\xbb\xbf"
"""The UTF-8 byte-order mark Excel writes at the start of "CSV UTF-8" (and some editors of JSONL)."""


def _decode(raw: bytes, path: Path, line: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(
            f"not UTF-8 text (byte 0x{raw[e.start]:02x} at column {e.start + 1})", path=path, line=line
        ) from e


def _text(path: Path) -> str:
    """A whole file as text (a leading BOM dropped); undecodable bytes are FILE:LINE errors."""
    raw = path.read_bytes()
    raw = raw[3:] if raw.startswith(BOM) else raw
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise InputError(f"not UTF-8 text (byte 0x{raw[e.start]:02x})", path=path, line=line) from e


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


def check_outputs(outputs: Iterable[str | os.PathLike], inputs: Iterable[str | os.PathLike] = ()) -> None:
    """Before any work: no file is given twice as an input (its rows would count twice); every output is
    a file that can be written there, none is an input (it would be destroyed) and no two are the same
    file (one would be lost). A set of these outputs that a killed run left half-published is completed."""
    read: dict[Path, Path] = {}
    for given in map(Path, inputs):
        first = read.setdefault(given.resolve(), given)
        if first is not given:
            raise ConfigError(
                f"{given} is given twice as an input ({first} and {given}): its rows would be read twice",
                parameter="input",
            )
    written: dict[Path, Path] = {}
    for given in map(Path, outputs):
        settle(given)
        path = given.resolve()
        if path in read:
            raise ConfigError(
                f"the output {given} is also an input: it would be overwritten", parameter="output"
            )
        if path in written:
            raise ConfigError(
                f"{given} is given for two outputs: one would overwrite the other", parameter="output"
            )
        written[path] = given
        if path.is_dir():
            raise InputError("is a folder; give a file path for this output", path=given)
        folder = next(p for p in path.parents if p.exists())
        if not os.access(folder, os.W_OK | os.X_OK):
            raise InputError(f"cannot write here ({folder} is not writable)", path=given)
