"""JSON-lines input and output for evaluation runs.

* :func:`read_jsonl` reads a file and reports each bad line (file, line number and reason: not UTF-8, not
  JSON, nested too deeply, a lone surrogate, not an object) instead of failing the whole run.
* :func:`write_jsonl_atomic` and :func:`write_json_atomic` write through the project's one atomic writer
  (:mod:`megatron_inserter.files`), so a reader never sees a half-written output.
* :class:`RecordLog` is the resumable log behind long jobs: one JSON object per line, appended with
  flush + fsync after each record. Reopening it keeps the last record of every key, drops a line torn by a
  crash (even inside a multi-byte character), and rewrites the file compacted before appending again.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from megatron_inserter.files import atomic_write, write_text_atomic  # noqa: F401 (re-exported)


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
    row_lines: list[int] = field(default_factory=list)  # the line number of each row

    def numbered_rows(self) -> list[tuple[int, dict]]:
        return list(zip(self.row_lines, self.rows))


def parse_line(raw: bytes) -> dict | str:
    """The JSON object on one line, or the reason it is not usable."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        return f"not valid UTF-8 (byte {err.start})"
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as err:
        return f"not valid JSON ({err.msg})"
    except RecursionError:
        return "JSON nested too deeply"
    if not isinstance(obj, dict):
        return f"expected a JSON object, got {type(obj).__name__}"
    try:
        dumps(obj).encode("utf-8")
    except UnicodeEncodeError:
        return "holds a lone surrogate (\\ud800-\\udfff), which is not text"
    except (RecursionError, TypeError, ValueError):
        return "JSON nested too deeply"
    return obj


def read_jsonl(path: str | os.PathLike) -> JsonlRead:
    """All JSON objects of ``path``; blank lines are ignored, bad lines are returned in ``bad_lines``."""
    out = JsonlRead()
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            parsed = parse_line(raw)
            if isinstance(parsed, str):
                out.bad_lines.append(BadLine(str(path), lineno, parsed))
            else:
                out.rows.append(parsed)
                out.row_lines.append(lineno)
    return out


def dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, default=_json_default)


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):  # numpy scalars and arrays
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def write_jsonl_atomic(path: str | os.PathLike, rows: Iterable[dict]) -> None:
    with atomic_write(path, "w") as f:
        for row in rows:
            f.write(dumps(row) + "\n")


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    with atomic_write(path, "w") as f:
        f.write(json.dumps(obj, ensure_ascii=False, indent=2, default=_json_default) + "\n")


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
                if not isinstance(row.get(key), str):
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
