"""A line -> a document to synthesize: document ids, language, control characters, every bad-record class."""

import json

import pytest

from megatron_inserter.data.synth.corpus import parse_document, strip_controls
from megatron_inserter.data.synth.language import guess_language, normalize_language, span_language


def test_document_id_is_the_id_field_else_file_and_line():
    doc, _ = parse_document(json.dumps({"id": "abc", "text": "Hello there."}).encode(), "x/a.jsonl", 7, "text")
    assert doc.id == "abc"
    doc, _ = parse_document(json.dumps({"text": "Hello there."}).encode(), "x/a.jsonl", 7, "text")
    assert doc.id == "x/a.jsonl:7" and doc.source == "x/a.jsonl" and doc.lang == "en"
    doc, _ = parse_document(json.dumps({"body": "Hello there."}).encode(), "a", 1, "body")
    assert doc.text == "Hello there."


@pytest.mark.parametrize("raw,reason", [
    (b"", "blank_line"),
    (b"   \t", "blank_line"),
    (b'{"text": "caf\xe9 au lait"}', "invalid_utf8"),
    (b'{"text": "unterminated', "invalid_json"),
    (b"[1, 2, 3]", "not_an_object"),
    (b'{"body": "no text key"}', "missing_text_key"),
    (b'{"text": 42}', "text_not_a_string"),
    (b'{"text": "   \\n  "}', "empty_text"),
    ('{"text": "Привет, как дела у тебя сегодня?"}'.encode(), "unsupported_language"),
    (b'{"text": "Bonjour tout le monde", "lang": "fr"}', "unsupported_language"),
])
def test_bad_records_become_skip_reasons(raw, reason):
    doc, got = parse_document(raw, "a.jsonl", 1, "text")
    assert doc is None and got == reason


def test_language_field_and_guess():
    assert normalize_language("en-US") == "en" and normalize_language("zh_Hans") == "zh"
    assert normalize_language("cmn") == "zh" and normalize_language("de") is None
    assert guess_language("The weather is fine today.") == "en"
    assert guess_language("今天天气很好，我们去公园散步吧。Hello") == "zh"
    assert guess_language("Привет мир") is None
    assert guess_language("12345 !!!") is None
    doc, _ = parse_document(json.dumps({"text": "今天天气很好", "lang": "zh-CN"}).encode(), "a", 1, "text")
    assert doc.lang == "zh"


@pytest.mark.parametrize("raw,reason", [
    (b'{"text": "a \\ud800 b"}', "lone_surrogate"),
    (b'{"id": "x\\udc00", "text": "Hello there."}', "lone_surrogate"),
    (b"[" * 100_000 + b"]" * 100_000, "nested_too_deep"),
    (b'{"text": "\\u001b[31m\\u0007\\u0000"}', "empty_text"),  # nothing left once the controls are gone
])
def test_hostile_records_become_skip_reasons(raw, reason):
    doc, got = parse_document(raw, "a.jsonl", 1, "text")
    assert doc is None and got == reason


def test_control_characters_and_terminal_escapes_leave_the_text():
    text = "Red \x1b[1;31malert\x1b[0m here\x07, a title\x1b]0;owned\x07 and\x0bmore\x00 words\u009b2J."
    cleaned, removed = strip_controls(text)
    assert cleaned == "Red alert here, a title and more words."
    assert removed == len(text) - len(cleaned)
    doc, _ = parse_document(json.dumps({"text": text}).encode(), "a.jsonl", 1, "text")
    assert doc.text == cleaned and doc.removed_controls == removed
    kept = "Tabs\tand\nnewlines\r\nstay, as do emoji \U0001F600 and 中文。"
    assert strip_controls(kept) == (kept, 0)


def test_a_span_is_spoken_in_the_language_of_its_own_letters():
    assert span_language("the quick brown fox", "zh") == "en"
    assert span_language("我们去公园散步吧", "en") == "zh"
    assert span_language("在 Python 里写代码", "zh") is None  # mixed scripts: no single voice reads it
    assert span_language("Привет мир", "en") is None
    assert span_language("2024, 3.14!", "zh") == "zh"  # no letters: the document's language
    assert span_language("café crème brûlée", "zh") == "en"
