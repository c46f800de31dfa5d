"""Rows an evaluation could not use: each with its row id, the stage and the reason.

Every evaluation collects them in one :class:`Skips` (a row is listed once, with its first reason) and
reports them twice: a summary with the first rows on stderr, and the full list in ``results.json``
(``skipped``). Stages: ``input`` (a bad line, a missing field, missing audio), ``generation`` (the model
failed or was never asked), ``scoring`` (checks that cannot run on the row), ``judge`` (no valid verdict).
"""

from __future__ import annotations

import sys
import unicodedata
from collections import Counter
from dataclasses import asdict, dataclass
from typing import TextIO

STAGES = ("input", "generation", "scoring", "judge")
SHOWN_ON_STDERR = 20
KEPT_IN_RESULTS = 10_000
MAX_REASON_CHARS = 300


def printable(text: str, limit: int = MAX_REASON_CHARS) -> str:
    """One line, control characters (ANSI escapes included) shown escaped, at most ``limit`` characters."""
    text = " ".join(str(text).split())
    text = "".join(repr(c)[1:-1] if unicodedata.category(c)[0] == "C" else c for c in text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True)
class Skip:
    row: str
    stage: str
    reason: str


class Skips:
    def __init__(self) -> None:
        self._items: dict[str, Skip] = {}

    def add(self, stage: str, row: str, reason: str) -> None:
        if stage not in STAGES:
            raise ValueError(f"unknown skip stage {stage!r}")
        row = printable(row, 200)
        if row not in self._items:
            self._items[row] = Skip(row, stage, printable(reason))

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, row: str) -> bool:
        return printable(row, 200) in self._items

    def __iter__(self):
        return iter(self._items.values())

    def by_stage(self) -> dict[str, int]:
        counts = Counter(s.stage for s in self._items.values())
        return {stage: counts[stage] for stage in STAGES if counts[stage]}

    def as_dict(self) -> dict:
        rows = [asdict(s) for s in list(self._items.values())[:KEPT_IN_RESULTS]]
        return {"total": len(self), "by_stage": self.by_stage(), "rows": rows}

    def report(self, prog: str, total_rows: int | None = None, file: TextIO | None = None) -> None:
        """``prog: N rows skipped (input 2, judge 1): ...`` and the first rows, one per line, on stderr."""
        if not self._items:
            return
        file = file or sys.stderr
        of = f" of {total_rows}" if total_rows is not None else ""
        stages = ", ".join(f"{stage} {n}" for stage, n in self.by_stage().items())
        print(f"{prog}: {len(self)}{of} rows skipped ({stages}); row: reason", file=file)
        for skip in list(self._items.values())[:SHOWN_ON_STDERR]:
            print(f"  [{skip.stage}] {skip.row}: {skip.reason}", file=file)
        if len(self) > SHOWN_ON_STDERR:
            print(f"  ... and {len(self) - SHOWN_ON_STDERR} more (all in results.json, 'skipped')", file=file)
