"""The shard document type: exact round trips through tar members, shards of the earlier format still read,
and every malformed record a ``ShardRecordError`` naming the shard, the key and what is wrong."""

import io
import json
import tarfile

import pytest

from megatron_inserter.data.document import (
    FORMAT_VERSION,
    ShardDocument,
    ShardRecordError,
    SpeechSegment,
    TextSegment,
    TTSControls,
    document_key,
    from_members,
    to_members,
)
from megatron_inserter.errors import DataError


def _doc(doc_id="doc-1") -> tuple[ShardDocument, dict[str, bytes]]:
    segments = (
        TextSegment("Before the clip, "),
        SpeechSegment("these words were spoken", "0.flac", 1.25, 20000, 16000, speaker="espeak:en-us+f3:p45:r175",
                      language="en", tts="espeak", tts_model="espeak-ng 1.51",
                      controls=TTSControls(speed=1.0, pitch=0.9), gender="female", asr_wer=0.125),
        TextSegment(" 然后是中文，"),
        SpeechSegment("以及合成的语音。", "1.flac", 0.5, 8000, controls=TTSControls(volume=0.5, noise="babble",
                                                                        snr_db=12.5)),
    )
    return ShardDocument(doc_id, segments, lang="en", source="corpus/a.jsonl"), {"0.flac": b"fLaC-0", "1.flac": b"x"}


def _tar_round_trip(members: dict[str, bytes]) -> dict[str, bytes]:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    with tarfile.open(fileobj=buf, mode="r") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar}


def test_document_round_trips_through_tar_members():
    doc, audio = _doc()
    members = to_members(doc, audio)
    key = document_key("doc-1")
    assert list(members) == [f"{key}.json", f"{key}.0.flac", f"{key}.1.flac"]
    assert json.loads(members[f"{key}.json"])["format_version"] == FORMAT_VERSION
    back, back_audio = from_members(_tar_round_trip(members), shard="s.tar")
    assert back == doc and back_audio == audio
    assert back.text == "Before the clip, these words were spoken 然后是中文，以及合成的语音。"
    assert to_members(back, back_audio) == members  # byte-identical when written again


def test_to_members_refuses_audio_that_does_not_match_the_segments():
    doc, audio = _doc()
    with pytest.raises(ValueError, match="do not match"):
        to_members(doc, {"0.flac": b"a"})
    with pytest.raises(ValueError, match="do not match"):
        to_members(doc, {**audio, "2.flac": b"extra"})


def test_shards_of_the_earlier_format_still_read():
    meta = {"id": 17, "lang": "zh", "source": "test", "segments": [
        {"type": "text", "text": "前面的文字"},
        {"type": "speech", "text": "语音", "speaker": "spk0", "duration": 0.5, "sample_rate": 16000,
         "num_samples": 8000, "audio": "0.flac"},
    ]}
    doc, audio = from_members({"abc.json": json.dumps(meta).encode(), "abc.0.flac": b"flac"})
    assert doc.id == "17" and doc.lang == "zh" and audio == {"0.flac": b"flac"}
    speech = doc.segments[1]
    assert speech == SpeechSegment("语音", "0.flac", 0.5, 8000, 16000, speaker="spk0")
    assert speech.language is None and speech.controls == TTSControls()
    assert speech.gender is None and speech.asr_wer is None
    v2 = {**meta, "format_version": 2, "segments": [{**meta["segments"][1], "language": "zh", "tts": "espeak"}]}
    doc, _ = from_members({"abc.json": json.dumps(v2).encode(), "abc.0.flac": b"flac"})
    assert doc.segments[0].gender is None and doc.segments[0].asr_wer is None  # v2 before these were recorded
    doc, _ = from_members({"abc.json": json.dumps({"segments": [{"type": "text", "text": "x"}]}).encode()})
    assert doc.id == "abc"  # no id: the key


def _members(meta, **extra) -> dict[str, bytes]:
    raw = meta if isinstance(meta, bytes) else json.dumps(meta).encode()
    return {"k1.json": raw, **{f"k1.{n}": b for n, b in extra.items()}}


SPEECH = {"type": "speech", "text": "t", "audio": "0.flac", "duration": 1.0, "num_samples": 16000,
          "sample_rate": 16000}


@pytest.mark.parametrize("members,reason,what", [
    ({"k1.0.flac": b"x"}, "missing_json", "no .json member"),
    (_members(b"{not json"), "bad_json", "not valid UTF-8 JSON"),
    (_members(b'{"segments": [], "id": "\xff"}'), "bad_json", "not valid UTF-8 JSON"),
    (_members([1, 2]), "bad_json", "not a JSON object"),
    (_members({"id": "d"}), "bad_json", "'segments' is missing"),
    (_members({"segments": [{"type": "text"}]}), "bad_json", "segment 0 is not an object with a 'text'"),
    (_members({"segments": [{"type": "image", "text": "x"}]}), "bad_json", "type 'image'"),
    (_members({"segments": [SPEECH]}), "missing_audio", "k1.0.flac, which the shard lacks"),
    (_members({"segments": [{**SPEECH, "num_samples": "many"}]}, **{"0.flac": b"a"}), "bad_json", "num_samples"),
    (_members({"segments": [{**SPEECH, "duration": float("nan")}]}, **{"0.flac": b"a"}), "bad_json", "duration"),
    (_members({"segments": [{**SPEECH, "controls": {"speed": "fast"}}]}, **{"0.flac": b"a"}), "bad_json",
     "controls.speed"),
    (_members({"segments": [SPEECH, SPEECH]}, **{"0.flac": b"a"}), "bad_json", "share one audio member"),
    (_members({"segments": [{**SPEECH, "asr_wer": -0.5}]}, **{"0.flac": b"a"}), "bad_json", "asr_wer -0.5"),
    (_members({"segments": [{**SPEECH, "asr_wer": "low"}]}, **{"0.flac": b"a"}), "bad_json", "asr_wer 'low'"),
    (_members({"segments": [{**SPEECH, "gender": 1}]}, **{"0.flac": b"a"}), "bad_json", "gender 1"),
    (_members({"format_version": 99, "segments": []}), "unsupported_format", "newer than this reader"),
    (_members({"id": ["x"], "segments": []}), "bad_json", "id ['x']"),
])
def test_malformed_records_name_the_shard_and_the_key(members, reason, what):
    with pytest.raises(ShardRecordError) as e:
        from_members(members, shard="shards/s-00000-000001.tar")
    assert isinstance(e.value, DataError) and e.value.reason == reason
    assert str(e.value).startswith("shards/s-00000-000001.tar: document 'k1': ") and what in str(e.value)
