"""Input reading: files, globs, directories, compression, document ids, and every bad-record class."""

import gzip
import json

import pytest
import zstandard

from megatron_inserter.data.synth.corpus import InputError, expand_inputs, iter_raw_lines, parse_document
from megatron_inserter.data.synth.language import guess_language, normalize_language

LINES = [json.dumps({"text": f"document number {i}"}).encode() for i in range(5)]


def _write_all_formats(d):
    (d / "sub").mkdir(parents=True)
    (d / "a.jsonl").write_bytes(b"\n".join(LINES) + b"\n")
    with gzip.open(d / "sub" / "b.jsonl.gz", "wb") as f:
        f.write(b"\n".join(LINES))  # no trailing newline
    (d / "sub" / "c.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(b"\r\n".join(LINES) + b"\r\n"))
    (d / "notes.txt").write_text("ignored")


def test_compressed_and_plain_files_read_the_same_lines(tmp_path):
    _write_all_formats(tmp_path)
    files = expand_inputs([str(tmp_path)])
    assert [f.source for f in files] == ["a.jsonl", "sub/b.jsonl.gz", "sub/c.jsonl.zst"]
    for f in files:
        assert list(iter_raw_lines(f.path)) == LINES


def test_globs_files_and_missing_inputs(tmp_path):
    _write_all_formats(tmp_path)
    files = expand_inputs([str(tmp_path / "**" / "*.jsonl*")])
    assert sorted(f.source for f in files) == ["a.jsonl", "sub/b.jsonl.gz", "sub/c.jsonl.zst"]
    assert [f.source for f in expand_inputs([str(tmp_path / "a.jsonl")])] == ["a.jsonl"]
    with pytest.raises(InputError, match="does not exist"):
        expand_inputs([str(tmp_path / "nope.jsonl")])
    with pytest.raises(InputError, match="matches no files"):
        expand_inputs([str(tmp_path / "*.parquet")])
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "a.jsonl").write_bytes(LINES[0])
    with pytest.raises(InputError, match="document-id prefix"):
        expand_inputs([str(tmp_path / "a.jsonl"), str(tmp_path / "other" / "a.jsonl")])


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
