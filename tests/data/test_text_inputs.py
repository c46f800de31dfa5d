"""The one text reader: files, globs, directories; plain, .gz and .zst read alike; damaged compressed streams
never used unverified; every bad line a counted skip with its file and line."""

import gzip
import json
import struct

import pytest
import zstandard

from megatron_inserter.data.text_inputs import (
    CorruptInputError,
    InputError,
    SkipReport,
    check_stream,
    expand_inputs,
    iter_lines,
    parse_record,
    read_file_records,
    read_records,
)

LINES = [json.dumps({"text": f"document number {i}"}).encode() for i in range(5)]
MANY = [json.dumps({"text": f"line {i} 你好"}, ensure_ascii=False).encode() for i in range(4000)]


def _write_all_formats(d):
    (d / "sub").mkdir(parents=True)
    (d / "a.jsonl").write_bytes(b"\n".join(LINES) + b"\n")
    with gzip.open(d / "sub" / "b.jsonl.gz", "wb") as f:
        f.write(b"\n".join(LINES))  # no trailing newline
    (d / "sub" / "c.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(b"\r\n".join(LINES) + b"\r\n"))
    (d / "notes.txt").write_text("ignored")


def _two_blocks(data: bytes, compress) -> tuple[bytes, int]:
    """``data`` compressed as two blocks (gzip members / zstd frames) split at a line end; the number of
    lines in the first."""
    cut = data.index(b"\n", len(data) // 2) + 1
    return compress(data[:cut]) + compress(data[cut:]), data[:cut].count(b"\n")


def test_compressed_and_plain_files_read_the_same_lines(tmp_path):
    _write_all_formats(tmp_path)
    files = expand_inputs([str(tmp_path)])
    assert [f.source for f in files] == ["a.jsonl", "sub/b.jsonl.gz", "sub/c.jsonl.zst"]
    for f in files:
        assert [raw for _, raw in iter_lines(f.path)] == LINES
        assert [n for n, _ in iter_lines(f.path)] == [1, 2, 3, 4, 5]


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


def test_multi_member_gzip_and_multi_frame_zstd_are_read_to_the_end(tmp_path):
    data = b"\n".join(MANY) + b"\n"
    zstd = zstandard.ZstdCompressor(write_checksum=True)
    for name, compress in (("m.jsonl.gz", gzip.compress), ("m.jsonl.zst", zstd.compress)):
        blob, _ = _two_blocks(data, compress)
        skippable = struct.pack("<II", 0x184D2A50, 3) + b"abc" if name.endswith(".zst") else b""
        (tmp_path / name).write_bytes(skippable + blob)
        assert check_stream(str(tmp_path / name)).ok
        assert [raw for _, raw in iter_lines(str(tmp_path / name))] == MANY


def test_a_gzip_with_a_bad_crc_is_an_error_naming_the_file(tmp_path):
    blob = bytearray(gzip.compress(b"\n".join(MANY) + b"\n"))
    blob[-8] ^= 0x01  # the CRC-32 in the trailer: every byte before it decompresses "fine"
    path = tmp_path / "crc.jsonl.gz"
    path.write_bytes(bytes(blob))
    check = check_stream(str(path))
    assert not check.ok and "incorrect data check" in check.fault and check.verified_bytes == 0
    skips = SkipReport()
    with pytest.raises(CorruptInputError, match="crc.jsonl.gz.*gzip member 1") as e:
        list(read_records([str(path)], "text", skips))
    assert "re-create" in str(e.value) and skips.total == 0


@pytest.mark.parametrize("name", ["t.jsonl.gz", "t.jsonl.zst"])
def test_a_truncated_single_block_file_is_an_error(tmp_path, name):
    compress = gzip.compress if name.endswith(".gz") else zstandard.ZstdCompressor().compress
    blob = compress(b"\n".join(MANY) + b"\n")
    (tmp_path / name).write_bytes(blob[: len(blob) * 2 // 3])
    with pytest.raises(CorruptInputError, match="truncated"):
        list(iter_lines(str(tmp_path / name)))


@pytest.mark.parametrize("name,damage", [("t.jsonl.gz", "cut"), ("t.jsonl.zst", "cut"),
                                         ("t.jsonl.gz", "crc"), ("t.jsonl.zst", "checksum")])
def test_a_damaged_second_block_keeps_the_verified_lines_and_counts_the_rest(tmp_path, capsys, name, damage):
    compress = gzip.compress if name.endswith(".gz") else zstandard.ZstdCompressor(write_checksum=True).compress
    blob, first_block_lines = _two_blocks(b"\n".join(MANY) + b"\n", compress)
    if damage == "cut":
        blob = blob[:-50]
    else:
        blob = bytearray(blob)
        blob[-8 if name.endswith(".gz") else -1] ^= 0x01
        blob = bytes(blob)
    path = tmp_path / name
    path.write_bytes(blob)
    skips = SkipReport(prog="inserter preprocess")
    records = list(read_records([str(path)], "text", skips))
    assert [r.text for r in records] == [f"line {i} 你好" for i in range(first_block_lines)]
    assert [r.line for r in records] == list(range(1, first_block_lines + 1))
    assert dict(skips.counts) == {"corrupt_stream": 1}
    err = capsys.readouterr().err
    assert f"inserter preprocess: skipped {path}:{first_block_lines + 1}:" in err
    assert "the rest of the file is not" in err


def test_bad_lines_are_counted_with_file_and_line(tmp_path, capsys):
    lines = [
        b'{"text": "good one"}',
        b"",
        b'{"text": "caf\xe9"}',
        b"{not json",
        b"[" * 100_000 + b"]" * 100_000,
        b"[1, 2]",
        b'{"body": "x"}',
        b'{"text": 7}',
        b'{"text": "lone \\ud834 surrogate"}',
        b'{"text": "paired \\ud834\\udd1e surrogates are fine"}',
        b'{"text": "  "}',
        b'{"text": "torn \xe4\xbd',  # the last line, torn inside a multibyte character
    ]
    path = tmp_path / "log.jsonl"
    path.write_bytes(b"\n".join(lines))
    skips = SkipReport(prog="inserter synth", show=4)
    records = list(read_records(expand_inputs([str(path)]), "text", skips))
    assert [(r.line, r.text) for r in records] == [(1, "good one"), (10, "paired \U0001d11e surrogates are fine")]
    assert dict(skips.counts) == {
        "blank_line": 1, "invalid_utf8": 2, "invalid_json": 1, "nested_too_deep": 1, "not_an_object": 1,
        "missing_text_key": 1, "text_not_a_string": 1, "lone_surrogate": 1, "empty_text": 1,
    }
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 5 and err[-1] == "inserter synth: further skipped lines are counted, not listed"
    assert err[1] == f"inserter synth: skipped {path}:3: not valid UTF-8"
    assert err[3] == f"inserter synth: skipped {path}:5: JSON nested too deeply to parse"


def test_a_log_torn_inside_a_character_reads_again_once_appended_to(tmp_path):
    path = tmp_path / "results.jsonl"
    done = [json.dumps({"uid": i, "text": f"答案 {i}"}, ensure_ascii=False).encode() for i in range(3)]
    torn = done[0][: done[0].index("答".encode()) + 1]  # killed inside a character of a fourth record
    path.write_bytes(b"\n".join(done) + b"\n" + torn)
    assert [parse_record(raw, "text")[2] for _, raw in iter_lines(str(path))] == [None, None, None, "invalid_utf8"]
    with open(path, "ab") as f:  # a resumed writer starts on a new line
        f.write(b"\n" + done[1] + b"\n")
    skips = SkipReport(show=0)
    assert [r.record["uid"] for r in read_records([str(path)], "text", skips)] == [0, 1, 2, 1]
    assert dict(skips.counts) == {"invalid_utf8": 1}


def test_byte_ranges_of_a_plain_file_give_the_lines_of_one_pass(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_bytes(b"\n".join(MANY[:50]) + b"\n")
    data = path.read_bytes()
    whole = list(read_file_records(str(path), "text", SkipReport()))
    cut = data.index(b"\n", 700) + 1
    first_line = data[:cut].count(b"\n") + 1
    parts = list(read_file_records(str(path), "text", SkipReport(), end=cut))
    parts += list(read_file_records(str(path), "text", SkipReport(), start=cut, first_line=first_line))
    assert [(r.line, r.text) for r in parts] == [(r.line, r.text) for r in whole]
    assert whole[-1].line == 50


def test_preprocess_reads_gzip_and_zstd_jsonl_exactly_as_plain(tmp_path):
    from megatron_inserter.data.indexed.preprocess import PreprocessConfig, preprocess
    from tests.data.indexed.tiny_corpus import make_documents, train_tokenizer, write_jsonl

    docs = make_documents(24, seed=5)
    plain = write_jsonl(docs, str(tmp_path / "c.jsonl"))
    data = (tmp_path / "c.jsonl").read_bytes()
    (tmp_path / "gz").mkdir()
    (tmp_path / "gz" / "c.jsonl.gz").write_bytes(gzip.compress(data))
    (tmp_path / "c.jsonl.zst").write_bytes(zstandard.ZstdCompressor(write_checksum=True).compress(data))
    tok = train_tokenizer(docs, str(tmp_path / "tok.model"))
    outputs = {}
    for name, inputs in (("plain", [plain]), ("gz", [str(tmp_path / "gz")]), ("zst", [str(tmp_path / "c.jsonl.zst")])):
        stats = preprocess(PreprocessConfig(inputs, str(tmp_path / name), "sentencepiece", tok, progress=False))
        assert stats["documents"] == len(docs) and stats["skipped_total"] == 0
        outputs[name] = [(tmp_path / f"{name}{ext}").read_bytes() for ext in (".bin", ".idx")]
    assert outputs["gz"] == outputs["plain"] == outputs["zst"]


@pytest.mark.parametrize("name", ["bomb.jsonl.gz", "bomb.jsonl.zst"])
def test_a_decompression_bomb_is_read_in_bounded_pieces_and_its_huge_line_skipped(tmp_path, monkeypatch, name):
    from megatron_inserter.data import text_inputs

    monkeypatch.setattr(text_inputs, "MAX_LINE_BYTES", 1 << 20)
    payload = b'{"text": "ok"}\n{"text": "' + b"a" * (40 << 20) + b'"}\n{"text": "after"}\n'
    compress = gzip.compress if name.endswith(".gz") else zstandard.ZstdCompressor().compress
    path = tmp_path / name
    path.write_bytes(compress(payload))
    assert path.stat().st_size < (1 << 20)  # a small file that expands 40-fold and more
    with open(path, "rb") as f:
        pieces = [len(out) for out, _ in text_inputs._blocks(str(path), f)]
    assert sum(pieces) == len(payload) and max(pieces) <= text_inputs.OUT_CHUNK
    skips = SkipReport(show=0)
    assert [(r.line, r.text) for r in read_records([str(path)], "text", skips)] == [(1, "ok"), (3, "after")]
    assert dict(skips.counts) == {"line_too_long": 1}
