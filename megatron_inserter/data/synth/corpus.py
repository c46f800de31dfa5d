"""One input line -> a ``Document`` to synthesize, or the reason it is skipped.

Files are found and read by ``megatron_inserter.data.text_inputs`` (plain, .gz, .zst, checked end to end);
this module gives a line its document id, language and clean text. Control characters and terminal escape
sequences (ANSI CSI/OSC) are removed from the text before anything else sees it, so they are never spoken
and never kept in a transcript or a text segment; the count is kept on the document.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from megatron_inserter.data.synth.language import guess_language, normalize_language
from megatron_inserter.data.text_inputs import has_lone_surrogate, parse_record

# ESC-introduced sequences: CSI (ESC [ ... final byte), OSC (ESC ] ... BEL or ESC \), other two-byte escapes;
# their 8-bit forms (CSI = \x9b, OSC = \x9d); then any other C0/C1 control except tab, newline and return.
_ESCAPES = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"
    r"|(?:\x1b\]|\x9d)[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    r"|\x1b[@-Z\\^_]"
    r"|[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]"
)
_CONTROL_SPACES = re.compile(r"[\x0b\x0c\x1c-\x1f\x85]")  # controls that separate words: become a space


@dataclass(frozen=True)
class Document:
    id: str
    text: str
    lang: str
    source: str
    line: int
    removed_controls: int = 0  # control characters / escape-sequence characters taken out of the text


def strip_controls(text: str) -> tuple[str, int]:
    """``text`` without control characters and terminal escape sequences, and how many characters went.
    Controls that separate words (vertical tab, form feed, separators, NEL) become a space."""
    spaced = _CONTROL_SPACES.sub(" ", text)
    cleaned = _ESCAPES.sub("", spaced)
    return cleaned, len(text) - len(cleaned)


def document_id(record: dict, source: str, line: int) -> str | None:
    """The record's ``id`` (a string or integer), else ``SOURCE:LINE``; ``None`` for an unusable id."""
    raw_id = record.get("id")
    if isinstance(raw_id, bool) or not isinstance(raw_id, (str, int)) or not str(raw_id):
        return f"{source}:{line}"
    doc_id = str(raw_id)
    return None if has_lone_surrogate(doc_id) else doc_id


def read_line(raw: bytes, source: str, line: int, json_key: str) -> tuple[dict | None, str | None, str | None]:
    """The first step of ``parse_document``: ``(record, document id, None)`` or ``(None, None, skip reason)``.
    A line that passes it claims its document id (a later line with the same id is a duplicate)."""
    record, _, reason = parse_record(raw, json_key)
    if reason is not None:
        return None, None, reason
    doc_id = document_id(record, source, line)
    if doc_id is None:
        return None, None, "lone_surrogate"
    return record, doc_id, None


def make_document(record: dict, doc_id: str, source: str, line: int, json_key: str
                  ) -> tuple[Document | None, str | None]:
    """The second step: clean text and language -> ``(Document, None)`` or ``(None, skip reason)``."""
    text, removed = strip_controls(record[json_key])
    if not text.strip():
        return None, "empty_text"
    lang_field = record.get("lang")
    if isinstance(lang_field, str) and lang_field.strip():
        lang = normalize_language(lang_field)
    else:
        lang = guess_language(text)
    if lang is None:
        return None, "unsupported_language"
    return Document(id=doc_id, text=text, lang=lang, source=source, line=line, removed_controls=removed), None


def parse_document(raw: bytes, source: str, line: int, json_key: str) -> tuple[Document | None, str | None]:
    """One jsonl line -> ``(Document, None)`` or ``(None, skip reason)``. Never raises on bad data."""
    record, doc_id, reason = read_line(raw, source, line, json_key)
    if reason is not None:
        return None, reason
    return make_document(record, doc_id, source, line, json_key)
