"""Whole runs: independence from worker count and node split, bad-input accounting, start-up errors."""

import ctypes
import json

import pytest

from megatron_inserter.data.synth.cli import main
from tests.data.synth.conftest import shard_bytes, synth_args, write_corpus
from tests.data.synth.test_shards import read_samples


def _samples_by_key(out):
    return {s["__key__"]: {k: v for k, v in s.items() if not k.startswith("__")} for s in read_samples(out)}


def test_output_does_not_depend_on_worker_count(reference_run, tmp_path):
    corpus, ref_out, _ = reference_run
    assert main(synth_args(corpus, tmp_path / "out", "--workers", "1")) == 0
    assert shard_bytes(tmp_path / "out") == shard_bytes(ref_out)  # byte-identical shards


def test_two_nodes_make_the_same_samples_as_one(reference_run, tmp_path):
    corpus, ref_out, _ = reference_run
    out = tmp_path / "out"
    for rank in (1, 0):
        assert main(synth_args(corpus, out, "--rank", str(rank), "--world-size", "2")) == 0
    names = shard_bytes(out)
    assert any("-00001-" in n for n in names) and any("-00000-" in n for n in names)
    assert _samples_by_key(out) == _samples_by_key(ref_out)
    stats = json.loads((out / "stats.json").read_text())
    ref_stats = json.loads((ref_out / "stats.json").read_text())
    for key in ("docs_read", "docs_written", "skipped", "spans", "words", "spoken_words", "speech_seconds"):
        assert stats[key] == ref_stats[key]


def test_bad_input_is_counted_never_fatal(reference_run):
    _, out, texts = reference_run
    stats = json.loads((out / "stats.json").read_text())
    assert stats["skipped"] == {
        "blank_line": 1, "invalid_json": 1, "invalid_utf8": 1, "missing_text_key": 1, "too_short": 1,
        "unsupported_language": 1, "empty_text": 1,
    }
    assert stats["docs_written"] == len(texts) and stats["docs_read"] == len(texts) + 7
    assert stats["docs_by_lang"]["en"] > 0 and stats["docs_by_lang"]["zh"] > 0
    assert 0.2 < stats["speech_ratio"] < 0.45 and stats["speech_hours"] > 0
    assert stats["x_real_time_per_core"] > 1 and stats["spans_failed"] == 0
    rank = json.loads((out / "stats-00000.json").read_text())
    assert rank["docs_written"] == stats["docs_written"] and rank["failed_units"] == []


def test_resume_with_other_arguments_is_refused(reference_run, capsys):
    corpus, out, _ = reference_run
    before = shard_bytes(out)
    assert main(synth_args(corpus, out, "--seed", "99")) == 2
    assert "seed: stored 1234, now 99" in capsys.readouterr().err
    assert shard_bytes(out) == before


def test_missing_models_and_missing_espeak_fail_before_any_work(tmp_path, capsys, monkeypatch):
    write_corpus(tmp_path / "c", n_docs=2, bad=False)
    out = tmp_path / "out"
    assert main(synth_args(tmp_path / "c", out, "--tts", "nemo", "--tts-model", str(tmp_path / "fp.nemo"),
                           "--vocoder-model", str(tmp_path / "hg.nemo"))) == 2
    assert "--tts-model" in capsys.readouterr().err and not out.exists()

    real_cdll = ctypes.CDLL
    monkeypatch.setattr("ctypes.util.find_library", lambda name: None)
    monkeypatch.setattr("shutil.which", lambda name: None)
    monkeypatch.setattr(ctypes, "CDLL", lambda name, *a, **k: (_ for _ in ()).throw(OSError("missing"))
                        if "espeak" in str(name) else real_cdll(name, *a, **k))
    assert main(synth_args(tmp_path / "c", out)) == 2
    err = capsys.readouterr().err
    assert "espeak-ng is not installed" in err and "apt-get install espeak-ng" in err
    assert not out.exists()


def test_unknown_flags_are_errors():
    with pytest.raises(SystemExit):
        main(["--input", "x", "--output-dir", "y", "--no-such-flag"])
