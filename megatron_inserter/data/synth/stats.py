"""Counters of a synthesis run: per shard (stored in its completion manifest), summed per rank and per run.

Every counter adds up across shards, so the run's figures are exact sums: durations and latencies are
stored as histograms (``latency_hist``: key ``k`` counts requests that took at most ``1.05**k`` ms;
``asr_wer_hist``: key ``"0.15"`` counts round trips with an error rate in [0.15, 0.20), ``">1"`` above 1),
from which ``summary`` derives percentiles.
"""

from __future__ import annotations

import math
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
    "asr_rejected": "no span passed the ASR round-trip check",
}
LATENCY_BASE = 1.05
WER_BUCKET = 0.05


def latency_bucket(seconds: float) -> str:
    return str(max(0, math.ceil(math.log(max(seconds * 1000.0, 1e-3), LATENCY_BASE))))


def wer_bucket(wer: float) -> str:
    return ">1" if wer > 1.0 else f"{min(math.floor(wer / WER_BUCKET + 1e-9) * WER_BUCKET, 1.0):.2f}"


def _add(a, b):
    """Sum of two counters: numbers add, dicts add key by key (recursively)."""
    if isinstance(a, dict) or isinstance(b, dict):
        out = dict(a or {})
        for k, v in (b or {}).items():
            out[k] = _add(out.get(k), v) if k in out else v
        return out
    return (a or 0) + (b or 0)


def subtract(now, before):
    """``now - before`` for counters as ``_add`` sums them (zero entries left out)."""
    if before is None:
        return now
    if isinstance(now, dict):
        out = {}
        for k, v in now.items():
            d = subtract(v, before.get(k))
            if d not in (0, 0.0, {}):
                out[k] = d
        return out
    return now - before


def new_server_stats() -> dict:
    return {"requests": 0, "ok": 0, "failed": {}, "latency_hist": {}, "latency_seconds": 0.0, "audio_seconds": 0.0}


def percentile_from_hist(hist: dict[str, int], q: float) -> float | None:
    """The ``q`` quantile (0..1) of a ``latency_hist`` in seconds (to the bucket's 5% resolution)."""
    total = sum(hist.values())
    if not total:
        return None
    need, seen = q * total, 0
    for key in sorted(hist, key=int):
        seen += hist[key]
        if seen >= need:
            return LATENCY_BASE ** int(key) / 1000.0
    return LATENCY_BASE ** max(map(int, hist)) / 1000.0


def server_summary(s: dict) -> dict:
    """Per-server figures: requests, failures by reason, latency percentiles (s), real-time factor."""
    hist = s.get("latency_hist") or {}
    out = {k: s.get(k) for k in ("requests", "ok", "failed")}
    out.update({f"latency_p{q}_s": percentile_from_hist(hist, q / 100) for q in (50, 90, 99)})
    ok = s.get("ok") or 0
    out["latency_mean_s"] = s.get("latency_seconds", 0.0) / ok if ok else None
    audio = s.get("audio_seconds") or 0.0
    if audio:
        out["audio_seconds"] = audio
        out["real_time_factor"] = s.get("latency_seconds", 0.0) / audio
    return out


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
    spans_asr_rejected: int = 0  # no voice passed the ASR round-trip check: the span stayed text
    tts_retries: int = 0  # spans spoken again (by another voice) after a failed synthesis
    asr_checked: int = 0  # ASR round trips (a span spoken twice is checked twice)
    asr_resynthesized: int = 0  # spans spoken again by another voice after failing the check
    asr_wer_hist: dict[str, int] = field(default_factory=dict)  # error rate of every round trip
    asr_wer_sum: float = 0.0
    spans_noisy: int = 0  # written spans with added noise
    noise_types: dict[str, int] = field(default_factory=dict)
    tts_failures: dict[str, int] = field(default_factory=dict)  # failed TTS requests by reason (servers)
    tts_servers: dict[str, dict] = field(default_factory=dict)  # server -> requests, failures, latencies
    asr_servers: dict[str, dict] = field(default_factory=dict)
    words: int = 0  # words of the written documents
    spoken_words: int = 0  # of those, words inside speech spans
    speech_seconds: float = 0.0
    tts_seconds: float = 0.0  # time spent inside the TTS backend
    worker_seconds: float = 0.0  # wall time of the worker processes
    worker_cpu_seconds: float = 0.0  # CPU time of the worker processes (all their threads)
    docs_cleaned: int = 0  # written documents that had control characters / escape sequences removed
    control_chars_removed: int = 0
    shards: int = 0  # shard files written
    shard_bytes: int = 0

    def skip(self, reason: str, n: int = 1) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + n

    def add(self, other: SynthStats) -> SynthStats:
        for f in fields(self):
            setattr(self, f.name, _add(getattr(self, f.name), getattr(other, f.name)))
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
        out["asr_wer_mean"] = self.asr_wer_sum / self.asr_checked if self.asr_checked else None
        for name in ("tts_servers", "asr_servers"):
            out[name] = {url: server_summary(s) for url, s in sorted(getattr(self, name).items())}
        return out


def merge(stats) -> SynthStats:
    total = SynthStats()
    for s in stats:
        total.add(s)
    return total
