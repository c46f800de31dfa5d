"""Outputs appear only when complete: a failure while writing leaves nothing at the output path."""

import os

import pytest

from megatron_inserter.convert.errors import ConversionError
from megatron_inserter.convert.layout import staged_directory


def test_output_appears_only_on_success(tmp_path):
    out = tmp_path / "out"
    with staged_directory(str(out)) as tmp:
        assert not out.exists()
        with open(os.path.join(tmp, "a.txt"), "w") as f:
            f.write("done")
    assert (out / "a.txt").read_text() == "done"
    assert os.listdir(tmp_path) == ["out"]


def test_failure_while_writing_removes_the_staging_directory(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(RuntimeError), staged_directory(str(out)) as tmp:
        with open(os.path.join(tmp, "half.bin"), "wb") as f:
            f.write(b"x")
        raise RuntimeError("disk full")
    assert os.listdir(tmp_path) == []


def test_an_existing_non_empty_output_is_refused(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "x").write_text("x")
    with pytest.raises(ConversionError, match="already exists"), staged_directory(str(tmp_path / "out")):
        pass
