"""``synth-filter`` on hostile shards: failing segments become text, documents without speech are dropped,
undecodable audio, malformed records and a truncated tar are counted, never fatal."""

import json
import os

import numpy as np
import pytest

from megatron_inserter.data.document import ShardDocument, SpeechSegment, TextSegment
from megatron_inserter.data.synth.asr.base import Transcriber
from megatron_inserter.data.synth.config import FilterConfig
from megatron_inserter.data.synth.filter import filter_shard
from megatron_inserter.data.synth.shards import ShardWriter, encode_flac, iter_shard_members
from megatron_inserter.errors import UsageError


class LengthTranscriber(Transcriber):
    """Knows each clip by its length: ``answers[num_samples]``."""

    def __init__(self, answers):
        self.answers = answers
        self.calls = 0

    def transcribe(self, clips):
        self.calls += len(clips)
        return [self.answers[len(audio)] for audio, _ in clips]


def _speech(text, name, n):
    return SpeechSegment(text, name, n / 16000, n, speaker="v1", language="en", tts="openai")


def _write(path, docs):
    w = ShardWriter(str(path))
    for doc, audio in docs:
        w.add(doc, audio)
    w.commit()


def test_hostile_shards(tmp_path):
    tone = {n: np.full(n, 0.1, np.float32) for n in (8000, 9000, 10000, 11000)}
    answers = {8000: "one two three", 9000: "nothing like it", 10000: "four five six", 11000: "seven eight nine"}
    docs = [
        (ShardDocument("a", (TextSegment("Start "), _speech("one two three", "0.flac", 8000), TextSegment(" mid "),
                             _speech("ten eleven twelve", "1.flac", 9000), TextSegment(" end."))),
         {"0.flac": encode_flac(tone[8000]), "1.flac": encode_flac(tone[9000])}),
        (ShardDocument("b", (_speech("alpha beta gamma", "0.flac", 9000), TextSegment(" tail"))),
         {"0.flac": encode_flac(tone[9000])}),
        (ShardDocument("c", (_speech("four five six", "0.flac", 10000), TextSegment(" and "),
                             _speech("bad audio here", "1.flac", 10))),
         {"0.flac": encode_flac(tone[10000]), "1.flac": b"not flac at all"}),
    ]
    src = tmp_path / "shards"
    src.mkdir()
    _write(src / "s-0.tar", docs)
    raw = (src / "s-0.tar").read_bytes()
    (src / "s-1.tar").write_bytes(raw[: len(raw) * 2 // 3])  # breaks off inside the last document
    _write(src / "s-2.tar", [(ShardDocument("d", (_speech("seven eight nine", "0.flac", 11000),)),
                              {"0.flac": encode_flac(tone[11000])})])
    with open(src / "s-2.tar", "r+b") as f:  # the JSON of its only document is no longer JSON
        data = f.read()
        at = data.index(b'{"format_version"')
        f.seek(at)
        f.write(b"!!")

    out = tmp_path / "out"
    (out / "filter-manifests").mkdir(parents=True)
    cfg = FilterConfig(shards=str(src), output_dir=str(out), asr_url=("http://127.0.0.1:9/v1",), asr_model="m",
                       max_span_wer=0.3)
    transcriber = LengthTranscriber(answers)
    stats = filter_shard(str(src / "s-0.tar"), cfg, transcriber, None)
    kept = {}
    for key, members in iter_shard_members(str(out / "s-0.tar")):
        meta = json.loads(members[f"{key}.json"])
        kept[meta["id"]] = meta
    assert sorted(kept) == ["a", "c"] and stats.skipped == {"asr_rejected": 1}  # "b" had no good speech
    a = kept["a"]["segments"]
    assert [s["type"] for s in a] == ["text", "speech", "text"]
    assert "".join(s["text"] for s in a) == "Start one two three mid ten eleven twelve end."
    assert a[1]["asr_wer"] == 0.0 and a[1]["audio"] == "0.flac"
    c = kept["c"]["segments"]
    assert [s["type"] for s in c] == ["speech", "text"] and c[1]["text"] == " and bad audio here"
    assert stats.asr_checked == 4 == transcriber.calls and stats.spans == 2 and stats.spans_asr_rejected == 2
    assert stats.spans_failed == 1 and stats.docs_read == 3 and stats.docs_written == 2

    truncated = filter_shard(str(src / "s-1.tar"), cfg, transcriber, None)
    assert truncated.skipped.get("shard_truncated") == 1 and truncated.docs_read == 2
    malformed = filter_shard(str(src / "s-2.tar"), cfg, transcriber, None)
    assert malformed.skipped == {"bad_json": 1} and malformed.docs_written == 0
    manifest = json.loads((out / "filter-manifests" / "s-2.tar.json").read_text())
    assert manifest["skipped"][0]["reason"] == "bad_json"
    assert not [p for p in os.listdir(out) if p.startswith(".")]


def test_filter_flags_are_checked(tmp_path):
    with pytest.raises(UsageError, match="ASR model"):
        FilterConfig(shards="a", output_dir="b")
    with pytest.raises(UsageError, match="must differ"):
        FilterConfig(shards="a", output_dir="a/", asr_model="m.nemo")
