"""Reading the input corpus: jsonl files (plain, .gz, .zst), given as files, globs or directories.

Lines are read as raw bytes; turning one line into a ``Document`` (or a skip reason) happens in
``parse_document`` so that one bad line never stops a file.
"""

from __future__ import annotations

import glob
import gzip
import io
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass

from megatron_inserter.data.synth.language import guess_language, normalize_language

JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".jsonl.zst", ".jsonl.zstd", ".json.gz", ".json.zst", ".ndjson")


class InputError(ValueError):
    """The input specification cannot be used; the message names the path and the fix."""


@dataclass(frozen=True)
class InputFile:
    path: str  # absolute path
    source: str  # name used in document ids and the ``source`` field (relative to the input root)


@dataclass(frozen=True)
class Document:
    id: str
    text: str
    lang: str
    source: str
    line: int


def _glob_root(pattern: str) -> str:
    """The longest leading directory of ``pattern`` without glob characters."""
    parts = pattern.split(os.sep)
    root = []
    for p in parts:
        if glob.has_magic(p):
            break
        root.append(p)
    return os.sep.join(root) or "."


def expand_inputs(specs: list[str] | tuple[str, ...]) -> list[InputFile]:
    """Files, globs and directories -> input files in a fixed order (each spec's matches sorted by path)."""
    out: list[InputFile] = []
    seen_paths: set[str] = set()
    seen_sources: dict[str, str] = {}
    for spec in specs:
        if os.path.isdir(spec):
            found = []
            for dirpath, dirnames, filenames in os.walk(spec):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                found += [os.path.join(dirpath, f) for f in filenames if f.endswith(JSONL_SUFFIXES)]
            if not found:
                raise InputError(f"input directory {spec!r} holds no {'/'.join(JSONL_SUFFIXES)} files")
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


def _open_binary(path: str) -> io.BufferedIOBase:
    if path.endswith(".gz"):
        return gzip.open(path, "rb")
    if path.endswith((".zst", ".zstd")):
        import zstandard

        raw = open(path, "rb")  # noqa: SIM115 - closed by the reader (closefd=True)
        return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(raw, closefd=True))
    return open(path, "rb")


def iter_raw_lines(path: str) -> Iterator[bytes]:
    """Raw lines of a (possibly compressed) file, without the line terminator."""
    with _open_binary(path) as stream:
        for line in stream:
            yield line.rstrip(b"\r\n")


def parse_document(raw: bytes, source: str, line: int, json_key: str) -> tuple[Document | None, str | None]:
    """One jsonl line -> ``(Document, None)`` or ``(None, skip reason)``. Never raises on bad data."""
    if not raw.strip():
        return None, "blank_line"
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None, "invalid_utf8"
    try:
        record = json.loads(decoded)
    except (json.JSONDecodeError, RecursionError):
        return None, "invalid_json"
    if not isinstance(record, dict):
        return None, "not_an_object"
    if json_key not in record:
        return None, "missing_text_key"
    text = record[json_key]
    if not isinstance(text, str):
        return None, "text_not_a_string"
    if not text.strip():
        return None, "empty_text"
    raw_id = record.get("id")
    doc_id = str(raw_id) if isinstance(raw_id, (str, int)) and str(raw_id) else f"{source}:{line}"
    lang_field = record.get("lang")
    if isinstance(lang_field, str) and lang_field.strip():
        lang = normalize_language(lang_field)
    else:
        lang = guess_language(text)
    if lang is None:
        return None, "unsupported_language"
    return Document(id=doc_id, text=text, lang=lang, source=source, line=line), None
