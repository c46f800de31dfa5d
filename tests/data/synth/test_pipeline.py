"""Whole runs: independence from worker count and node split, bad-input accounting, start-up errors."""

import ctypes
import json

from megatron_inserter.data.document import from_members
from megatron_inserter.data.synth.cli import main
from tests.data.synth.conftest import demo_records, shard_bytes, synth_args, write_corpus
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


def test_unknown_flags_are_errors(capsys):
    assert main(["--input", "x", "--output-dir", "y", "--no-such-flag"]) == 2
    assert capsys.readouterr().err.strip() == "inserter synth: error: unrecognized arguments: --no-such-flag"
    assert main(["--input", "x", "--output-dir", "y", "--span-mod", "word"]) == 2
    assert "did you mean: --span-mod -> --span-mode" in capsys.readouterr().err


def test_a_compressed_input_that_fails_its_check_stops_the_run_before_any_work(tmp_path, capsys):
    write_corpus(tmp_path / "c", n_docs=4, bad=False)
    blob = bytearray((tmp_path / "c" / "b.jsonl.gz").read_bytes())
    blob[-8] ^= 0x01  # CRC-32 of the only member
    (tmp_path / "c" / "b.jsonl.gz").write_bytes(bytes(blob))
    assert main(synth_args(tmp_path / "c", tmp_path / "out")) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("inserter synth: error: ") and "b.jsonl.gz: gzip member 1 is damaged" in err[-1]
    assert not (tmp_path / "out").exists()


def test_hostile_documents_duplicates_mixed_scripts_and_control_characters(tmp_path, capsys):
    en, zh = [r["text"] for r in demo_records(40) if r["lang"] == "en"], [
        r["text"] for r in demo_records(40) if r["lang"] == "zh"]
    mixed = f"{en[0]} {zh[0]} {en[1]}"
    dirty = en[2].replace(" ", " \x1b[1;31m", 3).replace(".", ".\x07", 2)
    corpus = tmp_path / "c"
    corpus.mkdir()
    rows_a = [{"id": "mixed", "text": mixed}, {"id": "twice", "text": dirty}]
    rows_b = [{"id": "twice", "text": en[3]}, {"id": "other", "text": en[4]}]
    for name, rows in (("a.jsonl", rows_a), ("b.jsonl", rows_b)):
        (corpus / name).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    out = tmp_path / "out"
    assert main(synth_args(corpus, out, "--shard-size", "1", "--span-mode", "sentence", "--speech-ratio",
                           "0.6")) == 0
    err = capsys.readouterr().err
    assert "skipped b.jsonl:1: document id 'twice' was already used at a.jsonl:2" in err

    stats = json.loads((out / "stats.json").read_text())
    assert stats["skipped"] == {"duplicate_id": 1} and stats["docs_written"] == 3
    assert stats["docs_cleaned"] == 1 and stats["control_chars_removed"] == 3 * len("\x1b[1;31m") + 2
    manifests = [json.loads(p.read_text()) for p in sorted((out / "manifests").glob("*.json"))]
    assert [m["skipped_lines"] for m in manifests if m["skipped_lines"]] == [
        [{"line": 1, "reason": "duplicate_id", "id": "twice", "first": "a.jsonl:2"}]]

    docs = {}
    for sample in read_samples(out):
        members = {f"{sample['__key__']}.{k}": v for k, v in sample.items() if not k.startswith("__")}
        doc, _ = from_members(members)
        docs[doc.id] = doc
    assert sorted(docs) == ["mixed", "other", "twice"]
    assert docs["twice"].text == dirty.replace("\x1b[1;31m", "").replace("\x07", "")  # the first one, cleaned
    assert not any(ch < " " for doc in docs.values() for ch in doc.text)
    spoken = {seg.language for seg in docs["mixed"].speech}
    for seg in docs["mixed"].speech:
        zh_letters = [ch for ch in seg.text if "\u4e00" <= ch <= "\u9fff"]
        assert seg.language == ("zh" if zh_letters else "en")
        assert seg.speaker.startswith("espeak:cmn" if zh_letters else "espeak:en")
        assert seg.tts == "espeak" and seg.tts_model.startswith("espeak-ng") and seg.controls.speed > 0
    assert spoken == {"en", "zh"}
