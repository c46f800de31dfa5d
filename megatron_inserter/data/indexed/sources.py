"""Preprocessing inputs: webdataset tar shards of interleaved documents, or jsonl text.

Everything streams: a shard is read member by member (``tarfile`` stream mode), a jsonl file line by line
from a byte range, so memory stays flat whatever the corpus size. A bad record is a counted skip with its
reason; it never stops the run.

Partitions are contiguous runs of input (whole shards, or byte ranges of jsonl files cut at line starts),
so merging them in order gives exactly the document order of a single sequential pass.
"""

from __future__ import annotations

import glob
import itertools
import json
import os
import tarfile
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from megatron_inserter.data.indexed.audio_store import AudioDecodeError, decode_audio

SHARD_EXTENSIONS = (".tar", ".tar.gz", ".tgz")
JSONL_EXTENSIONS = (".jsonl", ".json", ".jsonl.zst")


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
    """A whole shard (end = -1) or the lines of a jsonl file starting in [start, end)."""

    path: str
    start: int = 0
    end: int = -1


class SkipDocument(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def input_kind(path: str) -> str:
    if path.endswith(SHARD_EXTENSIONS):
        return "shards"
    if path.endswith(JSONL_EXTENSIONS):
        return "jsonl"
    raise ValueError(f"input {path!r}: unknown kind (expected {SHARD_EXTENSIONS} shards or {JSONL_EXTENSIONS} text)")


def expand_inputs(inputs: list[str]) -> tuple[str, list[str]]:
    """Directories, globs and files -> (kind, sorted file list). All inputs must be of one kind."""
    files: list[str] = []
    for item in inputs:
        if os.path.isdir(item):  # a shard directory (its stats*.json are not inputs), else jsonl files
            names = sorted(os.listdir(item))
            found = [os.path.join(item, n) for n in names if n.endswith(SHARD_EXTENSIONS)] or [
                os.path.join(item, n) for n in names if n.endswith((".jsonl", ".jsonl.zst"))]
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
        raise ValueError(f"inputs mix shards and jsonl ({sorted(kinds)}): preprocess them separately")
    return kinds.pop(), files


def plan_partitions(files: list[str], num_partitions: int) -> list[list[InputRange]]:
    """Split the inputs into at most ``num_partitions`` contiguous, roughly equal partitions."""
    ranges: list[InputRange] = []
    sizes: list[int] = []
    for f in files:
        if f.endswith((".jsonl", ".json")) and num_partitions > len(files):
            size = os.path.getsize(f)
            pieces = -(-num_partitions // len(files))
            cuts = [_line_start(f, size * i // pieces) for i in range(pieces)] + [size]
            for a, b in itertools.pairwise(cuts):
                if b > a:
                    ranges.append(InputRange(f, a, b))
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


def _line_start(path: str, offset: int) -> int:
    """First line start at or after ``offset``."""
    if offset == 0:
        return 0
    with open(path, "rb") as f:
        f.seek(offset - 1)
        if f.read(1) == b"\n":
            return offset
        f.readline()
        return f.tell()


def read_jsonl(r: InputRange, json_key: str, skipped: Counter) -> Iterator[Document]:
    """Text documents from the lines of ``r``; each line a JSON object with ``json_key``."""
    for n, line in _jsonl_lines(r):
        if not line.strip():
            continue
        try:
            text = json.loads(line)[json_key]
        except (json.JSONDecodeError, UnicodeDecodeError, TypeError):
            skipped["bad_json"] += 1
            continue
        except KeyError:
            skipped["missing_json_key"] += 1
            continue
        if not isinstance(text, str):
            skipped["bad_json"] += 1
            continue
        yield Document(f"{r.path}:{n}", [Segment(text)])


def _jsonl_lines(r: InputRange) -> Iterator[tuple[int, bytes]]:
    if r.path.endswith(".zst"):
        import zstandard

        with open(r.path, "rb") as raw, zstandard.ZstdDecompressor().stream_reader(raw) as zf:
            import io

            for n, line in enumerate(io.BufferedReader(zf)):
                yield n, line
        return
    with open(r.path, "rb") as f:
        f.seek(r.start)
        pos, n = r.start, 0
        end = r.end if r.end >= 0 else float("inf")
        while pos < end:
            line = f.readline()
            if not line:
                break
            yield n, line
            pos += len(line)
            n += 1


def read_shard(path: str, skipped: Counter) -> Iterator[Document]:
    """Documents of one webdataset shard (``KEY.json`` + ``KEY.{i}.flac``). A truncated or corrupt tar
    keeps the documents read before the damage and counts ``shard_truncated``."""
    for key, members in _grouped_members(path, skipped):
        try:
            yield parse_document(key, members)
        except SkipDocument as e:
            skipped[e.reason] += 1


def _grouped_members(path: str, skipped: Counter) -> Iterator[tuple[str, dict[str, bytes]]]:
    key, members = None, {}
    try:
        with tarfile.open(path, "r|*") as tar:
            for info in tar:
                if not info.isfile():
                    continue
                k, ext = _split_key(info.name)
                if k != key and key is not None:
                    yield key, members
                    members = {}
                key = k
                f = tar.extractfile(info)
                members[ext] = f.read() if f is not None else b""
    except (tarfile.TarError, EOFError, OSError, zlib.error):
        skipped["shard_truncated"] += 1
        return
    if key is not None:
        yield key, members


def _split_key(name: str) -> tuple[str, str]:
    """webdataset's rule: the key is the path up to the first dot of the file name."""
    directory, base = os.path.split(name)
    stem, _, ext = base.partition(".")
    return (os.path.join(directory, stem) if directory else stem), ext


def parse_document(key: str, members: dict[str, bytes]) -> Document:
    if "json" not in members:
        raise SkipDocument("missing_json")
    try:
        meta = json.loads(members["json"])
        raw_segments = meta["segments"]
        if not isinstance(raw_segments, list):
            raise TypeError
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
        raise SkipDocument("bad_json") from None
    segments = []
    for seg in raw_segments:
        if not isinstance(seg, dict) or not isinstance(seg.get("text"), str):
            raise SkipDocument("bad_json")
        if seg.get("type") == "speech":
            name = seg.get("audio")
            if name not in members:
                raise SkipDocument("missing_audio")
            try:
                audio = decode_audio(members[name])
            except AudioDecodeError:
                raise SkipDocument("bad_audio") from None
            if audio.size == 0:
                raise SkipDocument("empty_audio")
            segments.append(Segment(seg["text"], audio))
        elif seg.get("type") == "text":
            segments.append(Segment(seg["text"]))
        else:
            raise SkipDocument("bad_json")
    return Document(str(meta.get("id", key)), segments)


def read_shard_texts(path: str, skipped: Counter) -> Iterator[str]:
    """The full text of each document of a shard (all segments joined), read from the JSON only."""
    for _, members in _grouped_members(path, skipped):
        try:
            segments = json.loads(members["json"])["segments"]
            yield "".join(s["text"] for s in segments)
        except (KeyError, TypeError, json.JSONDecodeError, UnicodeDecodeError):
            skipped["bad_json"] += 1
