"""Preprocessing inputs: webdataset tar shards of interleaved documents, or jsonl text.

Everything streams: a shard is read member by member (``tarfile`` stream mode) and each document is parsed
by ``megatron_inserter.data.document.from_members`` (the shard format's one reader); jsonl text is read by
``megatron_inserter.data.text_inputs`` (the one text reader: plain, .gz, .zst, checked end to end). Memory
stays flat whatever the corpus size. A bad record is a counted skip with its reason (the first few also
shown on stderr with their file and line or shard and key); it never stops the run.

Partitions are contiguous runs of input (whole files, or byte ranges of plain jsonl files cut at line
starts), so merging them in order gives exactly the document order of a single sequential pass.
"""

from __future__ import annotations

import glob
import itertools
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from megatron_inserter.data import text_inputs
from megatron_inserter.data.document import ShardRecordError, SpeechSegment, from_members, tar_documents
from megatron_inserter.data.indexed.audio_store import AudioDecodeError, decode_audio
from megatron_inserter.data.text_inputs import SkipReport
from megatron_inserter.errors import DataError

SHARD_EXTENSIONS = (".tar", ".tar.gz", ".tgz")
JSONL_EXTENSIONS = text_inputs.TEXT_SUFFIXES
_SPLITTABLE = (".jsonl", ".json", ".ndjson")  # plain text: cut into byte ranges for more partitions
# The text reader's skip reasons under the names preprocessing has always counted them.
_JSONL_REASONS = {"invalid_json": "bad_json", "invalid_utf8": "bad_json", "not_an_object": "bad_json",
                  "text_not_a_string": "bad_json", "missing_text_key": "missing_json_key"}


@dataclass
class Segment:
    text: str
    audio: np.ndarray | None = None  # int16 PCM for a speech span, None for text

    @property
    def is_speech(self) -> bool:
        return self.audio is not None


@dataclass
class Document:
    id: str
    segments: list[Segment]


@dataclass(frozen=True)
class InputRange:
    """A whole file (end = -1) or the lines of a plain jsonl file starting in [start, end); ``first_line``
    is the number of the line at ``start``."""

    path: str
    start: int = 0
    end: int = -1
    first_line: int = 1


class SkipDocument(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class _CountingReport(SkipReport):
    """A ``SkipReport`` that counts under preprocessing's reason names."""

    def add(self, reason: str, where: str, detail: str | None = None) -> None:
        super().add(_JSONL_REASONS.get(reason, reason), where,
                    detail or text_inputs.SKIP_REASONS.get(reason))


def input_kind(path: str) -> str:
    if path.endswith(SHARD_EXTENSIONS):
        return "shards"
    if path.endswith(JSONL_EXTENSIONS):
        return "jsonl"
    raise DataError(f"input {path!r}: unknown kind (expected {'/'.join(SHARD_EXTENSIONS)} shards or "
                    f"{'/'.join(JSONL_EXTENSIONS)} text)")


def expand_inputs(inputs: list[str]) -> tuple[str, list[str]]:
    """Directories, globs and files -> (kind, sorted file list). All inputs must be of one kind. A directory
    holding shards gives its shards (its stats*.json are not inputs); otherwise its jsonl files."""
    files: list[str] = []
    for item in inputs:
        if os.path.isdir(item):
            names = sorted(os.listdir(item))
            found = [os.path.join(item, n) for n in names if n.endswith(SHARD_EXTENSIONS)]
            if not found:
                found = [os.path.join(item, n) for n in names
                         if n.endswith(text_inputs.DIRECTORY_SUFFIXES) and not n.startswith(".")]
        elif any(c in item for c in "*?["):
            found = sorted(glob.glob(item))
        else:
            if not os.path.exists(item):
                raise FileNotFoundError(f"input {item!r} does not exist")
            found = [item]
        if not found:
            raise FileNotFoundError(f"input {item!r} holds no shards (*.tar) or jsonl files")
        files.extend(found)
    kinds = {input_kind(f) for f in files}
    if len(kinds) > 1:
        raise DataError(f"inputs mix shards and jsonl ({sorted(kinds)}): preprocess them separately")
    return kinds.pop(), files


def plan_partitions(files: list[str], num_partitions: int) -> list[list[InputRange]]:
    """Split the inputs into at most ``num_partitions`` contiguous, roughly equal partitions."""
    ranges: list[InputRange] = []
    sizes: list[int] = []
    for f in files:
        if f.endswith(_SPLITTABLE) and num_partitions > len(files):
            size = os.path.getsize(f)
            pieces = -(-num_partitions // len(files))
            cuts = _line_starts(f, [size * i // pieces for i in range(pieces)]) + [(size, 0)]
            for (a, line), (b, _) in itertools.pairwise(cuts):
                if b > a:
                    ranges.append(InputRange(f, a, b, line))
                    sizes.append(b - a)
        else:
            ranges.append(InputRange(f))
            sizes.append(max(os.path.getsize(f), 1))
    k = max(1, min(num_partitions, len(ranges)))
    bounds = np.searchsorted(np.cumsum(sizes), np.arange(1, k) * sum(sizes) / k, side="left")
    groups, start = [], 0
    for b in list(bounds) + [len(ranges) - 1]:
        end = max(int(b) + 1, start + 1)
        if start < len(ranges):
            groups.append(ranges[start:end])
        start = end
    return [g for g in groups if g]


def _line_starts(path: str, offsets: list[int]) -> list[tuple[int, int]]:
    """For each offset (ascending): the first line start at or after it and that line's number, found in one
    pass over the file. A line starts at 0 and after every ``\\n``."""
    out: list[tuple[int, int]] = []
    todo = list(offsets)
    while todo and todo[0] <= 0:
        out.append((0, 1))
        todo.pop(0)
    base = newlines = 0  # bytes read before the current chunk, and the line ends among them
    with open(path, "rb") as f:
        while todo:
            chunk = f.read(text_inputs.READ_CHUNK)
            if not chunk:
                break
            while todo and todo[0] - 1 - base < len(chunk):
                nl = chunk.find(b"\n", max(todo[0] - 1 - base, 0))
                if nl < 0:
                    break  # the line goes on in the next chunk
                out.append((base + nl + 1, newlines + chunk.count(b"\n", 0, nl + 1) + 1))
                todo.pop(0)
            base += len(chunk)
            newlines += chunk.count(b"\n")
    out += [(base, newlines + 1)] * len(todo)
    return out


def read_jsonl(r: InputRange, json_key: str, skipped: Counter, report: SkipReport | None = None
               ) -> Iterator[Document]:
    """Text documents from the lines of ``r``; each line a JSON object with a string ``json_key``. Bad lines
    are counted in ``skipped`` (and the first few shown on stderr with file:line); a compressed file is read
    only as far as it is verified (a damaged tail counts ``corrupt_stream``; a file with nothing verified
    raises ``CorruptInputError``)."""
    report = report or _CountingReport(skipped, prog="inserter")
    end = None if r.end < 0 else r.end
    for rec in text_inputs.read_file_records(r.path, json_key, report, start=r.start, end=end,
                                             first_line=r.first_line):
        yield Document(f"{r.path}:{rec.line}", [Segment(rec.text)])


def read_shard(path: str, skipped: Counter, report: SkipReport | None = None) -> Iterator[Document]:
    """Documents of one webdataset shard, parsed by ``data.document.from_members``, audio decoded to int16
    PCM. A malformed document is a counted skip (its ``ShardRecordError`` reason, ``bad_audio``,
    ``empty_audio``); a truncated or corrupt tar keeps the documents read before the damage and counts
    ``shard_truncated``."""
    report = report or SkipReport(skipped, prog="inserter")
    for key, doc, audio in shard_documents(path, report):
        try:
            segments = [Segment(s.text, _decode(s, audio[s.audio], path, key)) if isinstance(s, SpeechSegment)
                        else Segment(s.text) for s in doc.segments]
        except SkipDocument as e:
            report.add(e.reason, f"{path}: document {key!r}")
            continue
        yield Document(doc.id, segments)


def _decode(seg: SpeechSegment, data: bytes, path: str, key: str) -> np.ndarray:
    try:
        audio = decode_audio(data)
    except AudioDecodeError as e:
        raise SkipDocument(getattr(e, "reason", "bad_audio")) from None
    if audio.size == 0:
        raise SkipDocument("empty_audio")
    return audio


def grouped_members(path: str, report: SkipReport) -> Iterator[tuple[str, dict[str, bytes]]]:
    """``(key, {member name: bytes})`` per document of a shard (``document.tar_documents``); a tar that ends
    or breaks off counts ``shard_truncated`` in ``report``."""
    def damaged(key, e):
        report.add("shard_truncated", path, f"the tar ends or breaks after {key!r} ({e}); the documents before "
                                            "it are used")

    yield from tar_documents(path, damaged)


def read_shard_texts(path: str, skipped: Counter) -> Iterator[str]:
    """The full text of each document of a shard (all segments joined), read from the JSON only."""
    for _, doc, _ in shard_documents(path, SkipReport(skipped, prog="inserter")):
        yield doc.text


def shard_documents(path: str, report: SkipReport):
    """``(key, document, {member name: bytes})`` for each document of a shard that
    ``data.document.from_members`` accepts; a malformed one is counted in ``report`` under its
    ``ShardRecordError`` reason, and a damaged tar as ``grouped_members`` counts it."""
    for key, members in grouped_members(path, report):
        try:
            doc, audio = from_members(members, shard=path)
        except ShardRecordError as e:
            report.add(e.reason, f"{path}: document {key!r}", e.what)
            continue
        yield key, doc, audio
