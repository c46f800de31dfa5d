"""Files that readers never see half-written: the one atomic-write helper of the project.

    with atomic_write("out/stats.json", "w") as f:   # OUT/.stats.json.<pid>.tmp, fsync, rename
        json.dump(stats, f)
    write_json_atomic("out/stats.json", stats)

The temporary name carries the pid (two processes writing the same path never share a temporary file);
the data is fsynced before the rename and the directory after it, so after a crash a reader sees the old
file or the new one, never a prefix. On any error the temporary file is removed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any


def temporary_path(path: str | os.PathLike) -> str:
    """The hidden sibling a file is written under before it is renamed into place."""
    path = os.fspath(path)
    directory, name = os.path.split(path)
    return os.path.join(directory, f".{name}.{os.getpid()}.tmp")


def fsync_directory(directory: str | os.PathLike) -> None:
    """Make a rename inside ``directory`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(os.fspath(directory) or ".", os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def publish(tmp: str | os.PathLike, path: str | os.PathLike) -> None:
    """Rename a finished, already fsynced ``tmp`` onto ``path`` and fsync the directory."""
    os.replace(tmp, path)
    fsync_directory(os.path.dirname(os.path.abspath(os.fspath(path))))


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", encoding: str | None = None) -> Iterator[IO[Any]]:
    """Write ``path`` under a temporary name; fsync and rename it into place when the block succeeds."""
    if mode not in ("w", "wb", "wt"):
        raise ValueError(f"atomic_write mode must be 'w', 'wt' or 'wb', got {mode!r}")
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = temporary_path(path)
    if "b" not in mode and encoding is None:
        encoding = "utf-8"
    try:
        with open(tmp, mode, encoding=encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        publish(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    with atomic_write(path, "wb") as f:
        f.write(data)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_write(path, "w") as f:
        f.write(text)


def write_json_atomic(path: str | os.PathLike, data: Any, *, indent: int | None = 2, sort_keys: bool = False) -> None:
    """``data`` as UTF-8 JSON (non-ASCII kept) with a trailing newline, atomically."""
    with atomic_write(path, "w") as f:
        json.dump(data, f, indent=indent, sort_keys=sort_keys, ensure_ascii=False)
        f.write("\n")
