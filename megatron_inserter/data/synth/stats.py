"""Counters of a synthesis run: per shard (stored in its completion manifest), summed per rank and per run."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field, fields

from megatron_inserter.data.text_inputs import SKIP_REASONS as LINE_SKIP_REASONS

# Why a line was not synthesized: the reader's reasons, then synthesis's own.
SKIP_REASONS = {
    **LINE_SKIP_REASONS,
    "duplicate_id": "its document id was already used by an earlier line",
    "unsupported_language": "its language is not one the TTS backend speaks",
    "too_short": "too few words for one span",
    "no_speakable_span": "every span mixes scripts or uses one no voice reads",
    "tts_failed": "speech synthesis failed for every span",
}


@dataclass
class SynthStats:
    docs_read: int = 0  # input lines looked at
    docs_written: int = 0
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> documents
    docs_by_lang: dict[str, int] = field(default_factory=dict)  # written documents per language
    spans: int = 0  # speech spans written
    spans_by_lang: dict[str, int] = field(default_factory=dict)  # written spans per spoken language
    spans_unspeakable: int = 0  # mixed or unsupported script: the span stayed text
    spans_failed: int = 0  # TTS failed after retries: the span stayed text
    spans_capped: int = 0  # over --max-speech-seconds-per-doc: the span stayed text
    tts_retries: int = 0
    words: int = 0  # words of the written documents
    spoken_words: int = 0  # of those, words inside speech spans
    speech_seconds: float = 0.0
    tts_seconds: float = 0.0  # time spent inside the TTS backend
    worker_seconds: float = 0.0  # wall time of the worker processes
    docs_cleaned: int = 0  # written documents that had control characters / escape sequences removed
    control_chars_removed: int = 0
    shards: int = 0  # shard files written
    shard_bytes: int = 0

    def skip(self, reason: str, n: int = 1) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + n

    def add(self, other: SynthStats) -> SynthStats:
        for f in fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            setattr(self, f.name, dict(Counter(a) + Counter(b)) if isinstance(a, dict) else a + b)
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> SynthStats:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def summary(self) -> dict:
        """The counters plus the derived figures a user looks at first."""
        out = self.to_dict()
        out["docs_skipped"] = sum(self.skipped.values())
        out["speech_hours"] = self.speech_seconds / 3600.0
        out["speech_ratio"] = self.spoken_words / self.words if self.words else 0.0
        # Real-time factor of the TTS (seconds of compute per second of audio) and its inverse, per core.
        out["real_time_factor"] = self.tts_seconds / self.speech_seconds if self.speech_seconds else None
        out["x_real_time_per_core"] = self.speech_seconds / self.tts_seconds if self.tts_seconds else None
        out["docs_per_worker_second"] = self.docs_read / self.worker_seconds if self.worker_seconds else None
        return out


def merge(stats) -> SynthStats:
    total = SynthStats()
    for s in stats:
        total.add(s)
    return total
