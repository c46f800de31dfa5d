"""How the input is cut into work units, which rank and shard each unit becomes, and which lines repeat an
earlier document id.

A unit is a run of consecutive lines of one input file. Units never span files. A unit closes after
``max_docs`` lines, or once the estimated size of its shard reaches ``max_bytes`` (estimated from the
raw line bytes, the speech ratio and ``AUDIO_BYTES_PER_TEXT_BYTE``, so the cut is a pure function of the
input and the arguments, never of timing). Units are numbered over all files in order; unit ``u`` goes to
rank ``u % world_size`` as that rank's shard ``u // world_size``. Every rank reads every file but keeps
only the lines of its own units, so no rank needs a precomputed index of the input.

Duplicate ids. A document id is claimed by the first line, in input order (files in order, then lines),
that holds a readable record with that id; a later line with the same id (in the same or another file,
whichever shard or rank it lands on) is marked in its unit with the place of the first, and skipped as
``duplicate_id``. Every rank sees every line, so all ranks agree without talking to each other. The claimed
ids are kept as 64-bit digests (about 70 bytes of memory per document).

Compressed inputs are read only as far as they are verified (``data.text_inputs``); a damaged tail is
recorded in ``PlanErrors``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field

from megatron_inserter.data.synth.config import ShardSize
from megatron_inserter.data.synth.corpus import read_line
from megatron_inserter.data.text_inputs import (
    InputFile,
    StreamCheck,
    check_stream,
    compression_of,
    iter_lines,
)

# FLAC bytes of speech per byte of spoken text, measured with the espeak backend on the demo corpus
# (English about 1.2 kB, Chinese about 1.8 kB per UTF-8 byte). Only decides where a shard ends; raw lines
# also hold JSON syntax (and \u escapes), so real shards come out somewhat smaller than the target.
AUDIO_BYTES_PER_TEXT_BYTE = 1400.0


@dataclass
class WorkUnit:
    unit_index: int  # global, over all ranks
    rank: int
    shard_index: int  # this rank's shard number
    file: InputFile
    first_line: int  # 1-based line number of lines[0]
    lines: list[bytes]
    duplicates: dict[int, str] = field(default_factory=dict)  # index into lines -> "source:line" of the first

    @property
    def planned(self) -> tuple[str, int, int]:
        """What a finished shard's manifest must record: (input, first line, number of lines)."""
        return self.file.source, self.first_line, len(self.lines)


@dataclass
class PlanErrors:
    """Compressed input files damaged after a verified part (its lines are used, the rest is not)."""

    files: list[dict]


def id_digest(doc_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(doc_id.encode("utf-8"), digest_size=8).digest(), "little")


def check_inputs(files: list[InputFile]) -> dict[str, StreamCheck]:
    """Every compressed input checked end to end (``text_inputs.check_stream``), by path."""
    return {f.path: check_stream(f.path) for f in files if compression_of(f.path) is not None}


def iter_units(
    files: list[InputFile], shard_size: ShardSize, speech_ratio: float, rank: int, world_size: int,
    errors: PlanErrors | None = None, *, json_key: str = "text", checks: dict[str, StreamCheck] | None = None,
) -> Iterator[WorkUnit]:
    """This rank's work units, in order. Raises ``CorruptInputError`` for a compressed file of which nothing
    can be verified."""
    byte_budget = None
    if shard_size.max_bytes is not None:
        byte_budget = shard_size.max_bytes / (speech_ratio * AUDIO_BYTES_PER_TEXT_BYTE)
    unit_index = 0
    claimed: dict[int, str] = {}  # id digest -> "source:line" of the line that claimed it

    for f in files:
        lines: list[bytes] = []
        duplicates: dict[int, str] = {}
        first_line = 1
        count = 0
        size = 0.0
        mine = unit_index % world_size == rank
        check = (checks or {}).get(f.path)
        if check is None and compression_of(f.path) is not None:
            check = check_stream(f.path)
        line_no = 0
        for line_no, raw in iter_lines(f.path, check=check):
            count += 1
            size += len(raw) + 1
            _, doc_id, _ = read_line(raw, f.source, line_no, json_key)
            if doc_id is not None:
                first = claimed.setdefault(id_digest(doc_id), f"{f.source}:{line_no}")
                if mine and first != f"{f.source}:{line_no}":
                    duplicates[len(lines)] = first
            if mine:
                lines.append(raw)
            full = (shard_size.max_docs is not None and count >= shard_size.max_docs) or (
                byte_budget is not None and size >= byte_budget
            )
            if full:
                if mine:
                    yield WorkUnit(unit_index, rank, unit_index // world_size, f, first_line, lines, duplicates)
                unit_index += 1
                mine = unit_index % world_size == rank
                lines, duplicates, count, size, first_line = [], {}, 0, 0.0, line_no + 1
        if check is not None and not check.ok and errors is not None:
            errors.files.append({"file": f.source, "after_line": line_no, "error": check.fault})
        if count:
            if mine:
                yield WorkUnit(unit_index, rank, unit_index // world_size, f, first_line, lines, duplicates)
            unit_index += 1
