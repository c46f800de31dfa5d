"""Work units: a pure function of the input and the arguments, split across ranks without overlap."""

import gzip
import json

import pytest

from megatron_inserter.data.synth.config import ShardSize
from megatron_inserter.data.synth.plan import AUDIO_BYTES_PER_TEXT_BYTE, PlanErrors, iter_units
from megatron_inserter.data.text_inputs import CorruptInputError, expand_inputs


def _files(tmp_path, sizes=(7, 3, 0, 5)):
    for i, n in enumerate(sizes):
        (tmp_path / f"f{i}.jsonl").write_bytes(b"".join(b'{"text": "line %d of %d"}\n' % (j, i) for j in range(n)))
    return expand_inputs([str(tmp_path)])


def _all(files, size, world):
    return [u for r in range(world) for u in iter_units(files, size, 0.3, r, world)]


def test_units_cover_every_line_once_for_any_world_size(tmp_path):
    files = _files(tmp_path)
    single = _all(files, ShardSize(max_docs=3), 1)
    assert [(u.file.source, u.first_line, len(u.lines)) for u in single] == [
        ("f0.jsonl", 1, 3), ("f0.jsonl", 4, 3), ("f0.jsonl", 7, 1), ("f1.jsonl", 1, 3),
        ("f3.jsonl", 1, 3), ("f3.jsonl", 4, 2),
    ]
    for world in (2, 3, 7):
        units = _all(files, ShardSize(max_docs=3), world)
        by_index = {u.unit_index: u for u in units}
        assert sorted(by_index) == list(range(len(single)))
        for u in single:  # same unit boundaries and lines, whatever the world size
            v = by_index[u.unit_index]
            assert (v.file, v.first_line, v.lines) == (u.file, u.first_line, u.lines)
            assert (v.rank, v.shard_index) == (u.unit_index % world, u.unit_index // world)


def test_byte_target_cuts_units_by_estimated_shard_size(tmp_path):
    files = _files(tmp_path, sizes=(40,))
    line_bytes = len(b'{"text": "line 10 of 0"}\n')
    target = int(10 * line_bytes * 0.3 * AUDIO_BYTES_PER_TEXT_BYTE)  # about ten lines' worth of audio
    units = _all(files, ShardSize(max_bytes=target), 1)
    assert sum(len(u.lines) for u in units) == 40
    assert all(9 <= len(u.lines) <= 11 for u in units[:-1])


def test_truncated_compressed_file_keeps_the_lines_before_the_damage(tmp_path):
    first = gzip.compress(b"".join(b'{"text": "line %d"}\n' % j for j in range(1000)))  # a complete member
    second = gzip.compress(b"".join(b'{"text": "line %d"}\n' % j for j in range(1000, 2000)))
    (tmp_path / "bad.jsonl.gz").write_bytes(first + second[: len(second) // 2])
    errors = PlanErrors(files=[])
    units = list(iter_units(expand_inputs([str(tmp_path)]), ShardSize(max_docs=100), 0.3, 0, 1, errors))
    assert errors.files and errors.files[0]["file"] == "bad.jsonl.gz"
    lines = [l for u in units for l in u.lines]
    assert 0 < len(lines) < 2000 and lines[0] == b'{"text": "line 0"}'
    assert len(lines) == 1000 and errors.files[0]["after_line"] == 1000  # exactly the verified member


def test_nothing_verifiable_is_an_error_naming_the_file(tmp_path):
    data = gzip.compress(b"".join(b'{"text": "line %d"}\n' % j for j in range(2000)))
    (tmp_path / "bad.jsonl.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptInputError, match="bad.jsonl.gz"):
        list(iter_units(expand_inputs([str(tmp_path)]), ShardSize(max_docs=100), 0.3, 0, 1))


def test_a_repeated_id_is_marked_wherever_it_lands(tmp_path):
    def line(doc_id, text="some words"):
        return json.dumps({"id": doc_id, "text": text}) + "\n"

    (tmp_path / "a.jsonl").write_text(line("x") + line("y") + "{bad\n" + line("x") + line("z"))
    (tmp_path / "b.jsonl").write_text(line("q") + line("y") + json.dumps({"text": "no id"}) + "\n" + line("z"))
    files = expand_inputs([str(tmp_path)])
    for world in (1, 2, 3):
        units = [u for r in range(world) for u in iter_units(files, ShardSize(max_docs=2), 0.3, r, world)]
        marked = {(u.file.source, u.first_line + i): first for u in units for i, first in u.duplicates.items()}
        assert marked == {("a.jsonl", 4): "a.jsonl:1", ("b.jsonl", 2): "a.jsonl:2", ("b.jsonl", 4): "a.jsonl:5"}
