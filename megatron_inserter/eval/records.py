"""JSON-lines input and output for evaluation runs.

* :func:`read_jsonl` reads a file and reports each bad line (file and line number) instead of failing
  the whole run.
* :func:`write_jsonl_atomic`, :func:`write_text_atomic`, :func:`write_json_atomic` write a sibling temp file
  and rename it, so a reader never sees a half-written output.
* :class:`RecordLog` is the resumable log behind long jobs: one JSON object per line, appended with
  flush + fsync after each record. Reopening it keeps the last record of every key, drops a line torn by a
  crash, and rewrites the file compacted before appending again.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self


@dataclass
class BadLine:
    path: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"


@dataclass
class JsonlRead:
    rows: list[dict] = field(default_factory=list)
    bad_lines: list[BadLine] = field(default_factory=list)


def read_jsonl(path: str | os.PathLike) -> JsonlRead:
    """All JSON objects of ``path``; blank lines are ignored, bad lines are returned in ``bad_lines``."""
    out = JsonlRead()
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                out.bad_lines.append(BadLine(str(path), lineno, f"not valid JSON ({err.msg})"))
                continue
            if not isinstance(obj, dict):
                out.bad_lines.append(
                    BadLine(str(path), lineno, f"expected a JSON object, got {type(obj).__name__}")
                )
                continue
            out.rows.append(obj)
    return out


def _atomic_write(path: str | os.PathLike, write) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, default=_json_default)


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):  # numpy scalars and arrays
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def write_jsonl_atomic(path: str | os.PathLike, rows: Iterable[dict]) -> None:
    def write(f):
        for row in rows:
            f.write(dumps(row) + "\n")

    _atomic_write(path, write)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    _atomic_write(path, lambda f: f.write(text))


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    _atomic_write(
        path, lambda f: f.write(json.dumps(obj, ensure_ascii=False, indent=2, default=_json_default) + "\n")
    )


class RecordLog:
    """Append-only, crash-safe map from ``record[key]`` to record, stored as JSON lines."""

    def __init__(self, path: str | os.PathLike, key: str = "uid"):
        self.path = Path(path)
        self.key = key
        self._records: dict[str, dict] = {}
        self.dropped_lines = 0
        needs_rewrite = False
        if self.path.exists():
            read = read_jsonl(self.path)
            self.dropped_lines = len(read.bad_lines)
            for row in read.rows:
                if key not in row:
                    self.dropped_lines += 1
                    continue
                if row[key] in self._records:
                    needs_rewrite = True
                self._records[row[key]] = row
            needs_rewrite = needs_rewrite or self.dropped_lines > 0 or not _ends_with_newline(self.path)
        if needs_rewrite:
            write_jsonl_atomic(self.path, self._records.values())
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a", encoding="utf-8")

    def __contains__(self, uid: str) -> bool:
        return uid in self._records

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[dict]:
        return iter(self._records.values())

    def get(self, uid: str) -> dict | None:
        return self._records.get(uid)

    def append(self, record: dict) -> None:
        if self.key not in record:
            raise KeyError(f"record for {self.path} has no {self.key!r} field")
        self._file.write(dumps(record) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())
        self._records[record[self.key]] = record

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _ends_with_newline(path: Path) -> bool:
    size = path.stat().st_size
    if size == 0:
        return True
    with open(path, "rb") as f:
        f.seek(size - 1)
        return f.read(1) == b"\n"
