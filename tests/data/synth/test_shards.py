"""Shards read back with webdataset + soundfile match their metadata and their source documents."""

import hashlib
import io
import json
import os

import numpy as np
import pytest
import soundfile as sf
import webdataset as wds

from megatron_inserter.data.document import ShardDocument, TextSegment
from megatron_inserter.data.synth.shards import (
    RunArgumentsMismatch,
    ShardWriter,
    check_run_arguments,
    is_complete,
    read_manifests,
)
from megatron_inserter.errors import DataError


def read_samples(out):
    urls = [str(out / p) for p in sorted(os.listdir(out)) if p.endswith(".tar")]
    return list(wds.WebDataset(urls, shardshuffle=False))


def test_round_trip_with_webdataset_and_soundfile(reference_run):
    _, out, texts = reference_run
    samples = read_samples(out)
    assert len(samples) == len(texts)
    seen = set()
    for sample in samples:
        meta = json.loads(sample["json"])
        assert sample["__key__"] == hashlib.sha1(meta["id"].encode()).hexdigest()
        assert "".join(seg["text"] for seg in meta["segments"]) == texts[meta["id"]]
        speech = [seg for seg in meta["segments"] if seg["type"] == "speech"]
        assert speech and meta["lang"] in ("en", "zh")
        for i, seg in enumerate(speech):
            assert seg["audio"] == f"{i}.flac"
            audio, rate = sf.read(io.BytesIO(sample[seg["audio"]]), dtype="float32")
            info = sf.info(io.BytesIO(sample[seg["audio"]]))
            assert rate == seg["sample_rate"] == 16000 and info.subtype == "PCM_16" and info.channels == 1
            assert len(audio) == seg["num_samples"]
            assert abs(seg["duration"] - len(audio) / 16000) < 1e-9
            assert np.abs(audio).max() > 0.01
        seen.add(meta["id"])
    assert seen == set(texts)


def test_writer_renames_only_when_committed(tmp_path):
    path = tmp_path / "s-00000-000000.tar"
    doc = ShardDocument("k", (TextSegment("hello"),))
    w = ShardWriter(str(path))
    w.add(doc, {})
    assert not path.exists() and os.path.basename(w.tmp_path).startswith(".")
    w.abort()
    assert os.listdir(tmp_path) == []
    w = ShardWriter(str(path))
    w.add(doc, {})
    w.commit()
    assert os.listdir(tmp_path) == [path.name]
    assert [s["__key__"] for s in wds.WebDataset([str(path)], shardshuffle=False)] == [doc.key]


def test_run_arguments_are_stored_and_checked(tmp_path):
    assert check_run_arguments(str(tmp_path), {"seed": 1, "mode": "word"}) is False
    assert check_run_arguments(str(tmp_path), {"seed": 1, "mode": "word"}) is True
    try:
        check_run_arguments(str(tmp_path), {"seed": 2, "mode": "word"})
    except RunArgumentsMismatch as e:
        assert "seed: stored 1, now 2" in str(e) and "new --output-dir" in str(e)
    else:
        raise AssertionError("a changed seed must be refused")


def test_a_run_of_the_earlier_document_keying_is_not_resumed(tmp_path):
    from megatron_inserter.data.synth.config import SynthConfig

    fingerprint = SynthConfig(input=("a",), output_dir="o").fingerprint()
    earlier = {k: v for k, v in fingerprint.items() if k != "document_keying"}
    check_run_arguments(str(tmp_path), earlier)
    with pytest.raises(RunArgumentsMismatch, match="earlier version of inserter synth.*new --output-dir"):
        check_run_arguments(str(tmp_path), fingerprint)


@pytest.mark.parametrize("content", [b'{"arguments": {"seed": 1', b"\xff\xfe garbage", b"[1, 2]", b'{"args": {}}'])
def test_a_corrupt_run_record_is_an_error_naming_the_file(tmp_path, content):
    (tmp_path / "synth-run.json").write_bytes(content)
    with pytest.raises(DataError, match="synth-run.json") as e:
        check_run_arguments(str(tmp_path), {"seed": 1})
    assert "delete it" in str(e.value)


def test_a_corrupt_manifest_is_redone_and_named_when_stats_are_read(tmp_path):
    (tmp_path / "manifests").mkdir()
    (tmp_path / "manifests" / "t-00000-000000.json").write_bytes(b'{"shard": nu')
    assert not is_complete(str(tmp_path), "t-00000-000000")
    with pytest.raises(DataError, match="t-00000-000000.json.*not valid JSON"):
        read_manifests(str(tmp_path), "t")


def test_a_manifest_made_from_other_input_lines_is_refused(tmp_path):
    (tmp_path / "manifests").mkdir()
    manifest = {"shard": None, "input": "a.jsonl", "first_line": 1, "num_lines": 3, "stats": {}}
    (tmp_path / "manifests" / "t-00000-000000.json").write_text(json.dumps(manifest))
    assert is_complete(str(tmp_path), "t-00000-000000", ("a.jsonl", 1, 3))
    with pytest.raises(DataError, match="input changed since this run started"):
        is_complete(str(tmp_path), "t-00000-000000", ("a.jsonl", 1, 4))
