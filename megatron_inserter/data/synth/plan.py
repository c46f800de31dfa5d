"""How the input is cut into work units and which rank and shard each unit becomes.

A unit is a run of consecutive lines of one input file. Units never span files. A unit closes after
``max_docs`` lines, or once the estimated size of its shard reaches ``max_bytes`` (estimated from the
raw line bytes, the speech ratio and ``AUDIO_BYTES_PER_TEXT_BYTE``, so the cut is a pure function of the
input and the arguments, never of timing). Units are numbered over all files in order; unit ``u`` goes to
rank ``u % world_size`` as that rank's shard ``u // world_size``. Every rank reads every file but keeps
only the lines of its own units, so no rank needs a precomputed index of the input.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from megatron_inserter.data.synth.config import ShardSize
from megatron_inserter.data.synth.corpus import InputFile, iter_raw_lines

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


@dataclass
class PlanErrors:
    """Input files that could not be read to the end (the lines before the error are still used)."""

    files: list[dict]


def iter_units(
    files: list[InputFile], shard_size: ShardSize, speech_ratio: float, rank: int, world_size: int,
    errors: PlanErrors | None = None,
) -> Iterator[WorkUnit]:
    """This rank's work units, in order."""
    byte_budget = None
    if shard_size.max_bytes is not None:
        byte_budget = shard_size.max_bytes / (speech_ratio * AUDIO_BYTES_PER_TEXT_BYTE)
    unit_index = 0

    for f in files:
        lines: list[bytes] = []
        first_line = 1
        count = 0
        size = 0.0
        mine = unit_index % world_size == rank
        line_no = 0
        try:
            for line_no, raw in enumerate(iter_raw_lines(f.path), start=1):
                count += 1
                size += len(raw) + 1
                if mine:
                    lines.append(raw)
                full = (shard_size.max_docs is not None and count >= shard_size.max_docs) or (
                    byte_budget is not None and size >= byte_budget
                )
                if full:
                    if mine:
                        yield WorkUnit(unit_index, rank, unit_index // world_size, f, first_line, lines)
                    unit_index += 1
                    mine = unit_index % world_size == rank
                    lines, count, size, first_line = [], 0, 0.0, line_no + 1
        except Exception as e:  # noqa: BLE001 - truncated .gz/.zst, unreadable file: keep what was read
            if errors is not None:
                errors.files.append({"file": f.source, "after_line": line_no, "error": f"{type(e).__name__}: {e}"})
        if count:
            if mine:
                yield WorkUnit(unit_index, rank, unit_index // world_size, f, first_line, lines)
            unit_index += 1
