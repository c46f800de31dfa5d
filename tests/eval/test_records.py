"""Atomic outputs and the crash-safe, de-duplicating record log."""

from megatron_inserter.eval.records import RecordLog, read_jsonl, write_jsonl_atomic


def test_record_log_drops_a_torn_line_and_keeps_the_last_record(tmp_path):
    path = tmp_path / "log.jsonl"
    with RecordLog(path) as log:
        log.append({"uid": "a", "v": 1})
        log.append({"uid": "b", "v": 1})
        log.append({"uid": "a", "v": 2})
    with open(path, "a") as f:
        f.write('{"uid": "c", "v"')  # interrupted write
    with RecordLog(path) as log:
        assert len(log) == 2 and log.get("a")["v"] == 2 and "c" not in log
        assert log.dropped_lines == 1
        log.append({"uid": "c", "v": 3})
    assert [r["uid"] for r in read_jsonl(path).rows] == ["a", "b", "c"]


def test_read_jsonl_reports_bad_lines_with_file_and_line(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"a": 1}\nnot json\n[1, 2]\n\n{"b": 2}\n')
    read = read_jsonl(path)
    assert read.rows == [{"a": 1}, {"b": 2}]
    assert [(b.line, b.reason.split(" ")[0]) for b in read.bad_lines] == [(2, "not"), (3, "expected")]
    assert str(read.bad_lines[0]).startswith(f"{path}:2:")


def test_atomic_write_leaves_no_temporary_files(tmp_path):
    write_jsonl_atomic(tmp_path / "out.jsonl", [{"x": "é"}])
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]
    assert (tmp_path / "out.jsonl").read_text(encoding="utf-8") == '{"x": "é"}\n'


def test_a_log_torn_inside_a_multibyte_character_resumes(tmp_path):
    path = tmp_path / "log.jsonl"
    with RecordLog(path) as log:
        log.append({"uid": "a", "response": "好"})
    with open(path, "ab") as f:
        f.write('{"uid": "b", "response": "语'.encode()[:-1])  # the crash cut the last character in half
    with RecordLog(path) as log:
        assert len(log) == 1 and log.get("a")["response"] == "好" and log.dropped_lines == 1
        log.append({"uid": "b", "response": "语音"})
    assert [r["response"] for r in read_jsonl(path).rows] == ["好", "语音"]


def test_lines_that_are_not_text_or_too_deep_are_bad_lines_not_crashes(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_bytes(b'{"a": 1}\n{"b": "\xff\xfe"}\n' + b"[" * 100_000 + b'\n{"c": "\\udc80"}\n{"d": 4}\n')
    read = read_jsonl(path)
    assert read.rows == [{"a": 1}, {"d": 4}] and read.row_lines == [1, 5]
    reasons = [(b.line, b.reason) for b in read.bad_lines]
    assert reasons[0] == (2, "not valid UTF-8 (byte 7)") and reasons[1] == (3, "JSON nested too deeply")
    assert reasons[2][0] == 4 and "lone surrogate" in reasons[2][1]
