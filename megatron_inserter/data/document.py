"""The interleaved document of a shard: an ordered list of text and speech segments.

Synthesis writes shards only through ``to_members`` and preprocessing reads them only through
``from_members``, so this module is the shard format. One document is the tar members of one webdataset key:

  KEY.json     {"format_version": 2, "id", "lang", "source", "segments": [...]}   (UTF-8, sorted keys)
  KEY.0.flac   the audio of the first speech segment, KEY.1.flac the second, ...

  text segment    {"type": "text", "text"}
  speech segment  {"type": "speech", "text" (the transcript), "audio" (member suffix, "0.flac"),
                   "duration" (s), "num_samples", "sample_rate", "speaker", "language", "tts",
                   "tts_model", "controls": {"speed", "pitch", "volume", "noise", "snr_db"},
                   "gender" (of the voice, when the voice pool says), "asr_wer" (the round-trip error
                   rate when the span was checked by ASR: WER for English, CER for Chinese, a fraction)}

The segment texts concatenate to the document text. Shards written before ``format_version`` existed
(version 1) hold the same fields minus ``language``, ``tts``, ``tts_model`` and ``controls`` (and may lack
``speaker``); they read as version 2 with those fields ``None``, as do version-2 shards written before
``gender`` and ``asr_wer`` were recorded. Reading is strict: a record that breaks
the format is a ``ShardRecordError`` naming the shard, the key and what is wrong, with a short ``reason``
for counting skips. Pure data: no audio decoding here.
"""

from __future__ import annotations

import hashlib
import json
import math
import tarfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from megatron_inserter.errors import DataError

FORMAT_VERSION = 2
SAMPLE_RATE = 16_000


class ShardRecordError(DataError):
    """One document of a shard breaks the format. ``reason`` is the skip-counter name."""

    def __init__(self, reason: str, shard: str, key: str, what: str):
        super().__init__(f"{shard or '<shard>'}: document {key!r}: {what}")
        self.reason = reason
        self.what = what
        self.shard = shard
        self.key = key


@dataclass(frozen=True)
class TTSControls:
    """How a speech segment was spoken. ``speed`` and ``pitch`` are relative to the voice's defaults (1.0 =
    unchanged), ``volume`` is a linear gain; ``noise`` names added noise and ``snr_db`` its level. ``None``:
    not set / not applied."""

    speed: float | None = None
    pitch: float | None = None
    volume: float | None = None
    noise: str | None = None
    snr_db: float | None = None


@dataclass(frozen=True)
class TextSegment:
    text: str

    @property
    def is_speech(self) -> bool:
        return False


@dataclass(frozen=True)
class SpeechSegment:
    text: str  # the transcript: exactly the document text this audio replaces
    audio: str  # tar member suffix of its audio ("0.flac"): the member is "{key}.{audio}"
    duration: float  # seconds
    num_samples: int
    sample_rate: int = SAMPLE_RATE
    speaker: str | None = None  # voice / speaker id of the TTS backend
    language: str | None = None  # the language the span was spoken in ("en", "zh")
    tts: str | None = None  # backend ("espeak", "nemo")
    tts_model: str | None = None  # the backend's model or engine version
    controls: TTSControls = field(default_factory=TTSControls)
    gender: str | None = None  # of the voice, as its voice pool gives it
    asr_wer: float | None = None  # round-trip ASR error rate (fraction) when the span was checked

    @property
    def is_speech(self) -> bool:
        return True


Segment = TextSegment | SpeechSegment


@dataclass(frozen=True)
class ShardDocument:
    id: str
    segments: tuple[Segment, ...]
    lang: str | None = None
    source: str | None = None  # the input file the document came from

    @property
    def key(self) -> str:
        return document_key(self.id)

    @property
    def text(self) -> str:
        return "".join(s.text for s in self.segments)

    @property
    def speech(self) -> list[SpeechSegment]:
        return [s for s in self.segments if isinstance(s, SpeechSegment)]


def document_key(doc_id: str) -> str:
    """The webdataset key of a document: the SHA-1 hex digest of its id (no dots, fixed length)."""
    return hashlib.sha1(doc_id.encode("utf-8")).hexdigest()


def split_member_name(name: str) -> tuple[str, str]:
    """webdataset's rule: the key is the path up to the first dot of the file name; the rest is the suffix."""
    directory, _, base = name.rpartition("/")
    stem, _, suffix = base.partition(".")
    return (f"{directory}/{stem}" if directory else stem), suffix


# --- writing ----------------------------------------------------------------------------------------------

def _segment_json(seg: Segment) -> dict:
    if isinstance(seg, TextSegment):
        return {"type": "text", "text": seg.text}
    c = seg.controls
    return {
        "type": "speech", "text": seg.text, "audio": seg.audio, "duration": seg.duration,
        "num_samples": seg.num_samples, "sample_rate": seg.sample_rate, "speaker": seg.speaker,
        "language": seg.language, "tts": seg.tts, "tts_model": seg.tts_model,
        "controls": {"speed": c.speed, "pitch": c.pitch, "volume": c.volume, "noise": c.noise, "snr_db": c.snr_db},
        "gender": seg.gender, "asr_wer": seg.asr_wer,
    }


def to_json(doc: ShardDocument) -> bytes:
    meta = {"format_version": FORMAT_VERSION, "id": doc.id, "lang": doc.lang, "source": doc.source,
            "segments": [_segment_json(s) for s in doc.segments]}
    return json.dumps(meta, ensure_ascii=False, sort_keys=True).encode("utf-8")


def to_members(doc: ShardDocument, audio: dict[str, bytes]) -> dict[str, bytes]:
    """``{"KEY.json": ..., "KEY.0.flac": ...}`` in tar order; ``audio`` maps each speech segment's
    ``audio`` suffix to its encoded bytes (one entry per speech segment, no others)."""
    names = [s.audio for s in doc.speech]
    if len(set(names)) != len(names) or set(names) != set(audio):
        raise ValueError(f"document {doc.id!r}: audio members {sorted(audio)} do not match its speech segments "
                         f"{names}")
    for name in names:
        if name == "json" or "/" in name or not name:
            raise ValueError(f"document {doc.id!r}: bad audio member suffix {name!r}")
    key = doc.key
    members = {f"{key}.json": to_json(doc)}
    members.update((f"{key}.{name}", audio[name]) for name in names)
    return members


# --- reading ----------------------------------------------------------------------------------------------

def _number(value, *, integer: bool = False) -> bool:
    if isinstance(value, bool):
        return False
    if integer:
        return isinstance(value, int)
    return isinstance(value, (int, float)) and math.isfinite(value)


def _optional(value, kind) -> bool:
    return value is None or (isinstance(value, kind) and not isinstance(value, bool))


def _controls(raw, fail) -> TTSControls:
    if raw is None:
        return TTSControls()
    if not isinstance(raw, dict):
        fail("bad_json", "speech segment 'controls' is not an object")
    values = {}
    for name in ("speed", "pitch", "volume", "snr_db"):
        v = raw.get(name)
        if v is not None and not _number(v):
            fail("bad_json", f"controls.{name} is {v!r}, not a finite number or null")
        values[name] = None if v is None else float(v)
    if not _optional(raw.get("noise"), str):
        fail("bad_json", f"controls.noise is {raw.get('noise')!r}, not a string or null")
    return TTSControls(noise=raw.get("noise"), **values)


def _speech(seg: dict, index: int, key: str, audio: dict[str, bytes], fail) -> SpeechSegment:
    name = seg.get("audio")
    if not isinstance(name, str) or not name:
        fail("bad_json", f"speech segment {index} has no 'audio' member name")
    if name not in audio:
        fail("missing_audio", f"speech segment {index} names audio member {key}.{name}, which the shard lacks")
    num_samples, sample_rate, duration = seg.get("num_samples"), seg.get("sample_rate"), seg.get("duration")
    if not _number(num_samples, integer=True) or num_samples < 0:
        fail("bad_json", f"speech segment {index}: num_samples {num_samples!r} is not a count")
    if not _number(sample_rate, integer=True) or sample_rate <= 0:
        fail("bad_json", f"speech segment {index}: sample_rate {sample_rate!r} is not a positive integer")
    if not _number(duration) or duration < 0:
        fail("bad_json", f"speech segment {index}: duration {duration!r} is not a length in seconds")
    for name_ in ("speaker", "language", "tts", "tts_model", "gender"):
        if not _optional(seg.get(name_), str):
            fail("bad_json", f"speech segment {index}: {name_} {seg.get(name_)!r} is not a string or null")
    wer = seg.get("asr_wer")
    if wer is not None and (not _number(wer) or wer < 0):
        fail("bad_json", f"speech segment {index}: asr_wer {wer!r} is not a non-negative number or null")
    return SpeechSegment(
        text=seg["text"], audio=name, duration=float(duration), num_samples=num_samples, sample_rate=sample_rate,
        speaker=seg.get("speaker"), language=seg.get("language"), tts=seg.get("tts"), tts_model=seg.get("tts_model"),
        controls=_controls(seg.get("controls"), fail), gender=seg.get("gender"),
        asr_wer=None if wer is None else float(wer),
    )


def from_members(members: dict[str, bytes], shard: str = "") -> tuple[ShardDocument, dict[str, bytes]]:
    """The document held by ``members`` (tar member name -> bytes, all of one key, as ``to_members`` makes
    them) -> ``(document, {audio suffix: encoded bytes})``. Raises ``ShardRecordError`` (a ``DataError``)
    naming ``shard`` and the key for anything malformed."""
    keys = {split_member_name(n)[0] for n in members}
    if len(keys) != 1:
        raise ValueError(f"members of one document expected, got keys {sorted(keys)}")
    key = keys.pop()

    def fail(reason: str, what: str):
        raise ShardRecordError(reason, shard, key, what)

    by_suffix = {split_member_name(n)[1]: b for n, b in members.items()}
    if "json" not in by_suffix:
        fail("missing_json", "no .json member")
    try:
        meta = json.loads(by_suffix["json"].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        fail("bad_json", f"the .json member is not valid UTF-8 JSON ({e})")
    if not isinstance(meta, dict):
        fail("bad_json", "the .json member is not a JSON object")
    version = meta.get("format_version", 1)
    if not _number(version, integer=True) or version < 1:
        fail("bad_json", f"format_version {version!r} is not a positive integer")
    if version > FORMAT_VERSION:
        fail("unsupported_format", f"format_version {version} is newer than this reader ({FORMAT_VERSION}); "
                                   "upgrade megatron-inserter")
    doc_id = meta.get("id", key)
    if isinstance(doc_id, int) and not isinstance(doc_id, bool):
        doc_id = str(doc_id)
    if not isinstance(doc_id, str) or not doc_id:
        fail("bad_json", f"id {doc_id!r} is not a non-empty string")
    for name in ("lang", "source"):
        if not _optional(meta.get(name), str):
            fail("bad_json", f"{name} {meta.get(name)!r} is not a string or null")
    raw_segments = meta.get("segments")
    if not isinstance(raw_segments, list):
        fail("bad_json", "'segments' is missing or not a list")
    audio = {n: b for n, b in by_suffix.items() if n != "json"}
    segments: list[Segment] = []
    for i, seg in enumerate(raw_segments):
        if not isinstance(seg, dict) or not isinstance(seg.get("text"), str):
            fail("bad_json", f"segment {i} is not an object with a 'text' string")
        kind = seg.get("type")
        if kind == "text":
            segments.append(TextSegment(seg["text"]))
        elif kind == "speech":
            segments.append(_speech(seg, i, key, audio, fail))
        else:
            fail("bad_json", f"segment {i} has type {kind!r} (expected 'text' or 'speech')")
    names = [s.audio for s in segments if isinstance(s, SpeechSegment)]
    if len(set(names)) != len(names):
        fail("bad_json", f"two speech segments share one audio member ({names})")
    doc = ShardDocument(doc_id, tuple(segments), lang=meta.get("lang"), source=meta.get("source"))
    return doc, {n: audio[n] for n in names}


def tar_documents(path: str, on_damage: Callable[[str | None, BaseException], None] | None = None
                  ) -> Iterator[tuple[str, dict[str, bytes]]]:
    """``(key, {member name: bytes})`` per document of a shard, in tar order (members of one document are
    adjacent). A tar that ends or breaks off keeps the documents read before the damage and calls
    ``on_damage(last key, error)``."""
    key, members = None, {}
    try:
        with tarfile.open(path, "r|*") as tar:
            for info in tar:
                if not info.isfile():
                    continue
                k, _ = split_member_name(info.name)
                if k != key and key is not None:
                    yield key, members
                    members = {}
                key = k
                f = tar.extractfile(info)
                members[info.name] = f.read() if f is not None else b""
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
        if on_damage is not None:
            on_damage(key, e)
        return
    if key is not None:
        yield key, members
