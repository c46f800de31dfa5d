import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from megatron_inserter.data.indexed.low_level import InterleavedLowLevelDataset
from megatron_inserter.data.indexed.preprocess import PreprocessConfig, preprocess
from megatron_inserter.data.indexed.sources import plan_partitions
from tests.data.indexed.expected import stored_layout
from tests.data.indexed.tiny_corpus import make_documents, shard_sample, write_jsonl, write_shards


def _files(prefix: str) -> list[str]:
    d, base = os.path.split(prefix)
    return sorted(n for n in os.listdir(d) if n.startswith(base) and n.endswith((".bin", ".idx", ".meta.json")))


def test_shards_round_trip_into_text_audio_and_asr_datasets(tiny_dataset, tiny_docs, tiny_tokenizer):
    tok = tiny_tokenizer
    ds = InterleavedLowLevelDataset(tiny_dataset, tok)
    asr = InterleavedLowLevelDataset(tiny_dataset + "_asr", tok)
    assert ds.num_documents == len(tiny_docs)
    span = 0
    for d, doc in enumerate(tiny_docs):
        seqs, modes, spans = stored_layout(doc, tok)
        s0, s1 = ds.document_indices[d], ds.document_indices[d + 1]
        assert [list(ds.text[i][0]) for i in range(s0, s1)] == seqs
        assert [int(ds.text[i][1]) for i in range(s0, s1)] == modes
        for pcm, seg in zip(spans, [s for s in doc["segments"] if s["type"] == "speech"]):
            stored = ds.audio[span]
            assert stored.dtype == np.int16 and np.array_equal(stored, pcm)  # bit-exact through FLAC
            a0 = asr.document_indices[span]
            assert list(asr.text[a0][0]) == [tok.bos_id]  # the ASR document starts with the BOS too
            a0 += 1
            assert list(asr.text[a0][0]) == [tok.audio_bos_id, tok.audio_placeholder_id, tok.audio_eos_id]
            assert list(asr.text[a0 + 1][0]) == tok.tokenize(seg["text"]) + [tok.eod_id]
            span += 1
    assert span == ds.num_spans == asr.num_documents
    stats = json.loads(Path(tiny_dataset + ".stats.json").read_text())
    samples = sum(len(s["pcm"]) for doc in tiny_docs for s in doc["segments"] if s["type"] == "speech")
    assert stats["documents"] == len(tiny_docs) and stats["skipped_total"] == 0
    assert stats["speech_hours"] == pytest.approx(samples / 16000 / 3600)
    assert not os.path.exists(tiny_dataset + ".tmp")


def test_two_partitions_on_two_workers_equal_one(tmp_path, tiny_dataset, tiny_shards, tiny_tokenizer_path):
    prefix = str(tmp_path / "par")
    stats = preprocess(PreprocessConfig([tiny_shards], prefix, "sentencepiece", tiny_tokenizer_path,
                                        workers=2, partitions=2, progress=False))
    assert stats["partitions"] == 2
    one = _files(tiny_dataset)
    assert [n.replace("tiny", "par") for n in one] == _files(prefix)
    for name in one:
        a, b = Path(os.path.dirname(tiny_dataset), name), Path(tmp_path, name.replace("tiny", "par"))
        if name.endswith(".meta.json"):
            ma, mb = json.loads(a.read_text()), json.loads(b.read_text())
            assert ma["num_tokens"] == mb["num_tokens"] and ma["tokenizer"] == mb["tokenizer"]
        else:
            assert a.read_bytes() == b.read_bytes(), name


def test_corrupt_members_and_a_truncated_shard_are_counted_skips(tmp_path, tiny_tokenizer_path):
    import webdataset as wds

    docs = make_documents(12, seed=9)
    shard_dir = tmp_path / "shards"
    write_shards(docs[:8], str(shard_dir), docs_per_shard=8)
    speech = [i for i, d in enumerate(docs[8:], 8) if any(s["type"] == "speech" for s in d["segments"])]
    bad_audio, bad_json = speech[0], next(i for i in range(8, 12) if i != speech[0])
    with wds.TarWriter(str(shard_dir / "tiny-00000-000001.tar"), mtime=0) as w:
        for i in range(8, 12):
            sample = shard_sample(docs[i])
            if i == bad_audio:
                sample["0.flac"] = b"fLaC garbage"
            if i == bad_json:
                sample["json"] = b"{not json"
            w.write(sample)
    good = (shard_dir / "tiny-00000-000000.tar").read_bytes()
    (shard_dir / "tiny-00000-000002.tar").write_bytes(good[: len(good) // 2])  # cut mid-member
    stats = preprocess(PreprocessConfig([str(shard_dir)], str(tmp_path / "out"), "sentencepiece",
                                        tiny_tokenizer_path, progress=False))
    assert stats["skipped"]["bad_audio"] == 1 and stats["skipped"]["bad_json"] == 1
    assert stats["skipped"]["shard_truncated"] == 1
    ds = InterleavedLowLevelDataset(str(tmp_path / "out"))
    kept_from_truncated = ds.num_documents - 8 - 2
    assert 0 <= kept_from_truncated < 8 and stats["documents"] == ds.num_documents


def test_jsonl_text_byte_range_partitions_equal_one(tmp_path, tiny_docs, tiny_tokenizer, tiny_tokenizer_path):
    path = write_jsonl(tiny_docs, str(tmp_path / "c.jsonl"))
    with open(path, "ab") as f:
        f.write(b'{"text": 5}\n{"other": "x"}\n')
    assert len(plan_partitions([path], 3)) == 3
    outs = []
    for k in (1, 3):
        prefix = str(tmp_path / f"t{k}")
        stats = preprocess(PreprocessConfig([path], prefix, "sentencepiece", tiny_tokenizer_path, partitions=k,
                                            progress=False))
        assert stats["skipped"] == {"bad_json": 1, "missing_json_key": 1}
        outs.append(prefix)
    for ext in (".bin", ".idx"):
        assert Path(outs[0] + ext).read_bytes() == Path(outs[1] + ext).read_bytes()
    ds = InterleavedLowLevelDataset(outs[0], tiny_tokenizer)
    assert ds.audio is None and ds.num_documents == len(tiny_docs)
    text = "".join(s["text"] for s in tiny_docs[5]["segments"])
    assert list(ds.text[5][0]) == [tiny_tokenizer.bos_id] + tiny_tokenizer.tokenize(text) + [tiny_tokenizer.eod_id]


def test_a_failed_merge_publishes_nothing_and_a_rerun_reuses_finished_partitions(
        tmp_path, monkeypatch, tiny_shards, tiny_tokenizer_path):
    from megatron_inserter.data.indexed import preprocess as pp

    prefix = str(tmp_path / "out")
    cfg = PreprocessConfig([tiny_shards], prefix, "sentencepiece", tiny_tokenizer_path, partitions=2, progress=False)
    monkeypatch.setattr(pp.InterleavedWriter, "add_partition", lambda self, p: (_ for _ in ()).throw(OSError("disk")))
    with pytest.raises(OSError):
        preprocess(cfg)
    assert not any(n.endswith(".idx") for n in os.listdir(tmp_path))
    assert sorted(n for n in os.listdir(prefix + ".tmp") if n.endswith(".done.json")) == [
        "part-00000.done.json", "part-00001.done.json"]
    monkeypatch.undo()
    calls = []
    monkeypatch.setattr(pp, "run_partition", lambda task: calls.append(task) or {})
    stats = preprocess(cfg)
    assert calls == [] and stats["documents"] > 0
    assert InterleavedLowLevelDataset(prefix).num_documents == stats["documents"]
    shutil.rmtree(tmp_path)
