"""The one reader of text inputs: jsonl files (plain, ``.gz`` or ``.zst``) given as files, globs or directories.

    skips = SkipReport(prog="inserter preprocess")
    for rec in read_records(expand_inputs(["corpus/"]), "text", skips):
        rec.path, rec.line, rec.record, rec.text    # file, 1-based line number, the JSON object, its text
    skips.counts                                    # Counter({"invalid_json": 2, ...})

Layers, each usable alone:
  expand_inputs(specs)        files, globs, directories -> ``InputFile``s in a fixed order
  check_stream(path)          a compressed file checked end to end -> ``StreamCheck``
  iter_lines(path, ...)       (line number, raw bytes) of one file (a byte range of a plain file)
  parse_record(raw, key)      one line -> ``(record, text, None)`` or ``(None, None, skip reason)``; never raises
  read_records(files, key)    all of it, every skip counted with its file:line and reason

Integrity. gzip checks a member's CRC-32 and length only at the member's end, and a truncated zstd frame
just stops, so a compressed file is checked in a first pass (decompressing, keeping nothing) before any of
its lines is used. Only the lines of complete, verified blocks (gzip members; zstd frames, with their
content checksum when they carry one) are ever yielded. A fault after at least one good block: the lines of
the good blocks are used and the rest of the file is a counted ``corrupt_stream`` skip. A fault in the
first block: nothing of the file can be trusted, and reading it raises ``CorruptInputError`` naming it.

Bad lines never stop a file: blank lines, invalid UTF-8 (a line torn inside a multibyte character
included), invalid JSON, JSON nested too deeply to parse, non-objects, a missing or non-string text field,
lone UTF-16 surrogates and empty text are skip reasons.
"""

from __future__ import annotations

import glob
import json
import os
import sys
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TextIO

from megatron_inserter.errors import DataError, UsageError

TEXT_SUFFIXES = tuple(f"{base}{comp}" for base in (".jsonl", ".ndjson", ".json")
                      for comp in ("", ".gz", ".zst", ".zstd"))
# A directory is searched for these only (a bare .json next to the corpus is usually metadata).
DIRECTORY_SUFFIXES = tuple(s for s in TEXT_SUFFIXES if s != ".json")
GZIP_SUFFIXES = (".gz",)
ZSTD_SUFFIXES = (".zst", ".zstd")
READ_CHUNK = 1 << 20
OUT_CHUNK = 8 << 20  # largest piece of decompressed output held at once
ZSTD_FEED = OUT_CHUNK // 32768  # zstd input per call: expanding at most ~32768-fold, its output fits OUT_CHUNK
MAX_LINE_BYTES = 256 << 20  # a longer line is skipped as "line_too_long" (never held in memory whole)

SKIP_REASONS = {
    "blank_line": "blank line",
    "line_too_long": f"longer than {MAX_LINE_BYTES >> 20} MiB",
    "invalid_utf8": "not valid UTF-8",
    "invalid_json": "not valid JSON",
    "nested_too_deep": "JSON nested too deeply to parse",
    "not_an_object": "not a JSON object",
    "missing_text_key": "has no text field",
    "text_not_a_string": "its text field is not a string",
    "lone_surrogate": "its text holds a lone UTF-16 surrogate (\\ud800-\\udfff)",
    "empty_text": "its text is empty",
    "corrupt_stream": "the compressed stream is damaged here; the rest of the file is not used",
}


class InputError(UsageError):
    """The input specification cannot be used (nothing matches, ambiguous names); says which and why."""


class CorruptInputError(DataError):
    """A compressed input whose first block is already damaged: none of its lines can be trusted."""

    def __init__(self, path: str, fault: str):
        super().__init__(f"{path}: {fault}; none of its lines can be verified, so the file is not used "
                         "(re-create or re-download it, or remove it from the inputs)")
        self.path = path
        self.fault = fault


@dataclass(frozen=True)
class InputFile:
    path: str  # absolute path
    source: str  # the name relative to the input root given ("sub/a.jsonl"); unique within one run


@dataclass(frozen=True)
class StreamCheck:
    """The outcome of checking a compressed file: its first ``verified_bytes`` decompressed bytes belong to
    complete, verified blocks; ``fault`` says what is wrong after them (``None``: the whole file is good)."""

    verified_bytes: int
    fault: str | None = None

    @property
    def ok(self) -> bool:
        return self.fault is None


@dataclass(frozen=True)
class TextRecord:
    path: str
    line: int
    record: dict
    text: str


class SkipReport:
    """Counted skips: ``counts[reason]``; the first ``show`` are also printed on stderr as
    ``PROG: skipped FILE:LINE: why``, later ones only counted (``overflow`` says so, once)."""

    def __init__(self, counts: Counter | None = None, *, prog: str = "inserter", show: int = 10,
                 stream: TextIO | None = None, overflow: str = "further skipped lines are counted, not listed"):
        self.counts = counts if counts is not None else Counter()
        self.prog = prog
        self.show = show
        self.stream = stream
        self.overflow = overflow
        self.shown = 0

    def add(self, reason: str, where: str, detail: str | None = None) -> None:
        self.counts[reason] += 1
        stream = self.stream or sys.stderr
        if self.shown < self.show:
            print(f"{self.prog}: skipped {where}: {detail or SKIP_REASONS.get(reason, reason)}", file=stream)
        elif self.shown == self.show:
            print(f"{self.prog}: {self.overflow}", file=stream)
        self.shown += 1

    @property
    def total(self) -> int:
        return sum(self.counts.values())


# --- which files ------------------------------------------------------------------------------------------

def is_text_input(path: str) -> bool:
    return path.endswith(TEXT_SUFFIXES)


def _glob_root(pattern: str) -> str:
    """The longest leading directory of ``pattern`` without glob characters."""
    root = []
    for part in pattern.split(os.sep):
        if glob.has_magic(part):
            break
        root.append(part)
    return os.sep.join(root) or "."


def expand_inputs(specs: Iterable[str]) -> list[InputFile]:
    """Files, globs and directories (searched recursively) -> input files in a fixed order: each spec's
    matches sorted by path. ``source`` names must be unique: they prefix the document ids."""
    out: list[InputFile] = []
    seen_paths: set[str] = set()
    seen_sources: dict[str, str] = {}
    for spec in specs:
        spec = os.fspath(spec)
        if os.path.isdir(spec):
            found = []
            for dirpath, dirnames, filenames in os.walk(spec):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                found += [os.path.join(dirpath, f) for f in filenames
                          if f.endswith(DIRECTORY_SUFFIXES) and not f.startswith(".")]
            if not found:
                raise InputError(f"input directory {spec!r} holds no {'/'.join(DIRECTORY_SUFFIXES)} files")
            pairs = [(p, os.path.relpath(p, spec)) for p in sorted(found)]
        elif glob.has_magic(spec):
            matches = sorted(p for p in glob.glob(spec, recursive=True) if os.path.isfile(p))
            if not matches:
                raise InputError(f"input pattern {spec!r} matches no files")
            root = _glob_root(spec)
            pairs = [(p, os.path.relpath(p, root)) for p in matches]
        elif os.path.isfile(spec):
            pairs = [(spec, os.path.basename(spec))]
        else:
            raise InputError(f"input {spec!r} does not exist (give jsonl files, globs or directories)")
        for path, source in pairs:
            apath = os.path.abspath(path)
            if apath in seen_paths:
                continue
            if source in seen_sources:
                raise InputError(
                    f"inputs {seen_sources[source]!r} and {apath!r} both get the document-id prefix {source!r}; "
                    "pass their common parent directory instead so the ids stay unique"
                )
            seen_paths.add(apath)
            seen_sources[source] = apath
            out.append(InputFile(apath, source.replace(os.sep, "/")))
    if not out:
        raise InputError("no input files given")
    return out


# --- decompression, block by block --------------------------------------------------------------------------

def compression_of(path: str) -> str | None:
    """``"gzip"``, ``"zstd"`` or ``None`` (plain), from the file name."""
    if path.endswith(GZIP_SUFFIXES):
        return "gzip"
    if path.endswith(ZSTD_SUFFIXES):
        return "zstd"
    return None


class _Fault(Exception):
    pass


def _gzip_blocks(f) -> Iterator[tuple[bytes, bool]]:
    """``(decompressed bytes, block complete)``; a block is one gzip member, complete once its CRC-32 and
    length are checked. Trailing zero bytes after the last member are ignored (as gzip does). Output comes in
    pieces of at most ``OUT_CHUNK`` bytes, whatever the compression ratio."""
    pending, member = b"", 0
    while True:
        data = pending or f.read(READ_CHUNK)
        pending = b""
        if not data:
            return
        while member and not data.strip(b"\0"):  # zero padding after the last member
            data = f.read(READ_CHUNK)
            if not data:
                return
        member += 1
        d = zlib.decompressobj(wbits=31)
        at_end = False
        while True:
            try:
                out = d.decompress(data, OUT_CHUNK)
            except zlib.error as e:
                raise _Fault(f"gzip member {member} is damaged ({e})") from None
            if out:
                yield out, False
            if d.eof:
                yield b"", True
                pending = d.unused_data
                break
            data = d.unconsumed_tail
            if not data and not at_end:
                data = f.read(READ_CHUNK)
                at_end = not data
            elif not data and not out:
                raise _Fault(f"the file ends inside gzip member {member} (truncated)")


def _pieces(f, size: int) -> Iterator[bytes]:
    while chunk := f.read(READ_CHUNK):
        for i in range(0, len(chunk), size):
            yield chunk[i:i + size]


def _zstd_blocks(f) -> Iterator[tuple[bytes, bool]]:
    """Same for zstd: a block is one frame, complete at its end (its content checksum checked when the frame
    carries one). Skippable frames count as empty blocks. Input goes in by ``ZSTD_FEED`` bytes, which bounds
    each output piece (zstd expands at most about 32768-fold)."""
    import zstandard

    dctx = zstandard.ZstdDecompressor()
    pieces = _pieces(f, ZSTD_FEED)
    carry, frame = b"", 0
    while True:
        data = carry or next(pieces, b"")
        carry = b""
        if not data:
            return
        frame += 1
        d = dctx.decompressobj()
        while True:
            try:
                out = d.decompress(data)
            except zstandard.ZstdError as e:
                raise _Fault(f"zstd frame {frame} is damaged ({e})") from None
            if out:
                yield out, False
            if d.eof:
                yield b"", True
                carry = d.unused_data
                break
            data = next(pieces, b"")
            if not data:
                raise _Fault(f"the file ends inside zstd frame {frame} (truncated)")


def _blocks(path: str, f) -> Iterator[tuple[bytes, bool]]:
    kind = compression_of(path)
    if kind == "gzip":
        return _gzip_blocks(f)
    if kind == "zstd":
        return _zstd_blocks(f)
    raise ValueError(f"{path} is not compressed")


def check_stream(path: str) -> StreamCheck:
    """Decompress ``path`` keeping nothing; how much of it is verified and what is wrong after that."""
    verified = total = 0
    with open(path, "rb") as f:
        try:
            for out, complete in _blocks(path, f):
                total += len(out)
                if complete:
                    verified = total
        except _Fault as e:
            return StreamCheck(verified, str(e))
    return StreamCheck(verified)


# --- lines ------------------------------------------------------------------------------------------------

class _TooLong(bytes):
    """Stands in for a line longer than ``MAX_LINE_BYTES`` (whose bytes were dropped while reading)."""


def _strip_cr(line: bytes) -> bytes:
    return line[:-1] if line.endswith(b"\r") else line


def _split_lines(chunks: Iterable[bytes], first_line: int, keep_tail: bool = True) -> Iterator[tuple[int, bytes]]:
    """Lines of the concatenated ``chunks`` (``\\n`` or ``\\r\\n`` ends), numbered from ``first_line``. The
    last line may lack its end; ``keep_tail=False`` drops such a line (it continues where reading stopped).
    A line longer than ``MAX_LINE_BYTES`` comes out as a ``_TooLong`` marker."""
    n = first_line
    parts: list[bytes] = []  # the pieces of a line that spans chunks
    size = 0
    for chunk in chunks:
        if not chunk:
            continue
        lines = chunk.split(b"\n")
        tail = lines.pop()
        for line in lines:
            if size:  # the end of a line that started in an earlier chunk
                line = _TooLong() if size + len(line) > MAX_LINE_BYTES else b"".join(parts) + line
                parts, size = [], 0
            elif len(line) > MAX_LINE_BYTES:
                line = _TooLong()
            yield n, line if isinstance(line, _TooLong) else _strip_cr(line)
            n += 1
        if tail:
            size += len(tail)
            if size > MAX_LINE_BYTES:
                parts = []  # its bytes are dropped; ``size`` goes on counting to its end
            else:
                parts.append(tail)
    if size and keep_tail:
        yield n, _TooLong() if size > MAX_LINE_BYTES else _strip_cr(b"".join(parts))


def _plain_chunks(f, start: int, end: int | None) -> Iterator[bytes]:
    f.seek(start)
    pos = start
    while end is None or pos < end:
        chunk = f.read(READ_CHUNK if end is None else min(READ_CHUNK, end - pos))
        if not chunk:
            return
        pos += len(chunk)
        yield chunk


def _verified_chunks(path: str, f, check: StreamCheck) -> Iterator[bytes]:
    """The decompressed bytes of ``path`` up to its verified end."""
    got = 0
    try:
        for out, _ in _blocks(path, f):
            if not check.ok and got + len(out) >= check.verified_bytes:
                yield out[: check.verified_bytes - got]
                return
            got += len(out)
            yield out
    except _Fault as e:
        raise CorruptInputError(path, f"{e} (the file changed while it was read)") from None


def iter_lines(path: str, *, start: int = 0, end: int | None = None, first_line: int = 1,
               check: StreamCheck | None = None) -> Iterator[tuple[int, bytes]]:
    """``(line number, raw line without its end)`` of one file.

    A plain file may be read from byte ``start`` (a line start; ``first_line`` is its number) up to ``end``.
    A compressed file is read whole, and only up to its verified end (``check``, computed here when not
    given); raises ``CorruptInputError`` when none of it is verified. A line that runs past the verified end
    is dropped; the caller learns about the fault from ``check.fault``.
    """
    if compression_of(path) is None:
        with open(path, "rb") as f:
            yield from _split_lines(_plain_chunks(f, start, end), first_line)
        return
    if start or end is not None:
        raise ValueError(f"{path}: a compressed file is read whole (no byte range)")
    check = check or check_stream(path)
    if not check.ok and check.verified_bytes == 0:
        raise CorruptInputError(path, check.fault)
    with open(path, "rb") as f:
        yield from _split_lines(_verified_chunks(path, f, check), first_line, keep_tail=check.ok)


# --- records ----------------------------------------------------------------------------------------------

def parse_object(raw: bytes) -> tuple[dict | None, str | None]:
    """One raw line -> ``(JSON object, None)`` or ``(None, skip reason)``. Never raises on bad data."""
    if isinstance(raw, _TooLong):
        return None, "line_too_long"
    if not raw or raw.isspace():
        return None, "blank_line"
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None, "invalid_utf8"
    try:
        record = json.loads(decoded)
    except RecursionError:
        return None, "nested_too_deep"
    except json.JSONDecodeError:
        return None, "invalid_json"
    if not isinstance(record, dict):
        return None, "not_an_object"
    return record, None


def parse_record(raw: bytes, key: str = "text") -> tuple[dict | None, str | None, str | None]:
    """One raw line -> ``(record, text, None)`` or ``(None, None, skip reason)``. Never raises on bad data."""
    record, reason = parse_object(raw)
    if reason is not None:
        return None, None, reason
    if key not in record:
        return None, None, "missing_text_key"
    text = record[key]
    if not isinstance(text, str):
        return None, None, "text_not_a_string"
    # Valid UTF-8 cannot hold a surrogate: only a \uD800-\uDFFF escape in the JSON can put one in the text.
    if b"\\" in raw and not text.isascii() and has_lone_surrogate(text):
        return None, None, "lone_surrogate"
    if not text or text.isspace():
        return None, None, "empty_text"
    return record, text, None


def has_lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def read_records(files: Iterable[InputFile | str], key: str = "text", skips: SkipReport | None = None,
                 ) -> Iterator[TextRecord]:
    """Every good record of ``files`` in order; bad lines and damaged stream tails go to ``skips``."""
    skips = skips if skips is not None else SkipReport()
    for f in files:
        path = f.path if isinstance(f, InputFile) else os.fspath(f)
        yield from read_file_records(path, key, skips)


def read_file_records(path: str, key: str, skips: SkipReport, *, start: int = 0, end: int | None = None,
                      first_line: int = 1) -> Iterator[TextRecord]:
    """The good records of one file (or of a byte range of a plain file), skips counted in ``skips``."""
    check = check_stream(path) if compression_of(path) is not None else None
    line = first_line - 1
    for line, raw in iter_lines(path, start=start, end=end, first_line=first_line, check=check):
        record, text, reason = parse_record(raw, key)
        if reason is None:
            yield TextRecord(path, line, record, text)
        else:
            detail = f"no {key!r} field" if reason == "missing_text_key" else (
                f"its {key!r} field is not a string" if reason == "text_not_a_string" else None)
            skips.add(reason, f"{path}:{line}", detail)
    if check is not None and not check.ok:
        skips.add("corrupt_stream", f"{path}:{line + 1}",
                  f"{check.fault}; the {line - first_line + 1} lines before it are used, the rest of the "
                  "file is not (re-create the file to use all of it)")
