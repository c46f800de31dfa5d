"""Data-parallel evaluation: each rank answers one contiguous slice of the rows, rank 0 gathers them.

Slices are contiguous and balanced (sizes differ by at most one), so concatenating the slices in rank order
gives back the original order; :func:`gather_rows` can also restore the order by key when the parts were
written out of order (for example appended across resumed runs).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def check_rank(rank: int, size: int) -> None:
    if size < 1:
        raise ValueError(f"--dp-size must be >= 1, got {size}")
    if not 0 <= rank < size:
        raise ValueError(f"--dp-rank must be in [0, {size}), got {rank}")


def shard_bounds(num_rows: int, rank: int, size: int) -> tuple[int, int]:
    """[start, stop) of ``rank``'s slice: the first ``num_rows % size`` ranks get one extra row."""
    check_rank(rank, size)
    base, extra = divmod(num_rows, size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def split_rows(rows: Sequence[T], rank: int, size: int) -> list[T]:
    start, stop = shard_bounds(len(rows), rank, size)
    return list(rows[start:stop])


def gather_rows(
    parts: Sequence[Sequence[T]],
    order: Sequence[Hashable] | None = None,
    key: Callable[[T], Hashable] | None = None,
) -> list[T]:
    """Merge per-rank results. Without ``order``: concatenation in rank order. With ``order`` (the keys of
    all rows, in the original order) and ``key``: rows are placed by key; a key missing from every part or
    present in two parts is an error."""
    if order is None:
        return [row for part in parts for row in part]
    if key is None:
        raise ValueError("gather_rows: `key` is required when `order` is given")
    by_key: dict[Hashable, T] = {}
    for rank, part in enumerate(parts):
        for row in part:
            k = key(row)
            if k in by_key:
                raise ValueError(
                    f"gather_rows: key {k!r} was produced by more than one rank (again by rank {rank})"
                )
            by_key[k] = row
    missing = [k for k in order if k not in by_key]
    if missing:
        raise ValueError(
            f"gather_rows: {len(missing)} rows have no result from any rank (first: {missing[0]!r})"
        )
    return [by_key[k] for k in order]


def rank_file(directory: Path, stem: str, rank: int, size: int, suffix: str = ".jsonl") -> Path:
    """``{stem}.jsonl`` for one rank, ``{stem}.rank00001-of-00004.jsonl`` when data-parallel."""
    if size == 1:
        return directory / f"{stem}{suffix}"
    return directory / f"{stem}.rank{rank:05d}-of-{size:05d}{suffix}"


def done_marker(path: Path) -> Path:
    return path.with_name(path.name + ".done")


def wait_for_files(paths: Sequence[Path], timeout_s: float, poll_s: float = 10.0) -> list[Path]:
    """Wait until every path exists; returns the ones still missing when ``timeout_s`` runs out."""
    deadline = time.monotonic() + timeout_s
    while True:
        missing = [p for p in paths if not p.exists()]
        if not missing or time.monotonic() >= deadline:
            return missing
        time.sleep(min(poll_s, max(0.0, deadline - time.monotonic())))
