"""The one configuration object of a synthesis run, and the parsing of ``--shard-size``."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

DEFAULT_SPEECH_RATIO = {"word": 0.3, "sentence": 0.4}  # the best settings reported for InSerter


@dataclass(frozen=True)
class ShardSize:
    """A shard closes after ``max_docs`` input lines, or once its estimated size reaches ``max_bytes``."""

    max_bytes: int | None = None
    max_docs: int | None = None

    def __str__(self) -> str:
        return f"{self.max_docs}" if self.max_docs is not None else f"{self.max_bytes}B"


_UNITS = {
    "": 1, "b": 1,
    "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9, "t": 10**12, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}


def parse_shard_size(text: str) -> ShardSize:
    """``"1GB"``, ``"500MB"``, ``"2GiB"`` -> a byte target; a bare integer ``"1000"`` -> documents per shard."""
    s = str(text).strip()
    if re.fullmatch(r"\d+", s):
        n = int(s)
        if n <= 0:
            raise ValueError(f"--shard-size {text!r}: the number of documents per shard must be positive")
        return ShardSize(max_docs=n)
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([a-zA-Z]*)", s)
    unit = m.group(2).lower() if m else None
    if not m or unit not in _UNITS or unit in ("", "b") and "." in m.group(1):
        raise ValueError(
            f"--shard-size {text!r} is neither a document count (e.g. 1000) nor a size (e.g. 500MB, 1GB, 2GiB)"
        )
    n = int(float(m.group(1)) * _UNITS[unit])
    if n <= 0:
        raise ValueError(f"--shard-size {text!r} must be positive")
    return ShardSize(max_bytes=n)


@dataclass(frozen=True)
class SynthConfig:
    inputs: tuple[str, ...]
    output_dir: str
    tts: str = "espeak"
    span_mode: str = "word"
    speech_ratio: float = 0.3
    workers: int = 1
    seed: int = 1234
    json_key: str = "text"
    min_span_words: int = 5
    max_span_words: int = 15
    speaker_policy: str = "span"
    shard_size: ShardSize = field(default_factory=lambda: ShardSize(max_bytes=10**9))
    rank: int = 0
    world_size: int = 1
    max_speech_seconds_per_doc: float = 600.0
    tts_model: str | None = None
    vocoder_model: str | None = None
    name: str = "interleaved"
    espeak_engine: str = "auto"
    tts_batch_size: int = 16
    text_normalization: bool = True
    text_norm_cache_dir: str | None = None
    tts_attempts: int = 2
    progress: bool = True

    def __post_init__(self):
        if self.span_mode not in DEFAULT_SPEECH_RATIO:
            raise ValueError(f"--span-mode must be word or sentence, got {self.span_mode!r}")
        if not 0.0 < self.speech_ratio < 1.0:
            raise ValueError(f"--speech-ratio must be in (0, 1), got {self.speech_ratio}")
        if self.min_span_words < 1 or self.max_span_words < self.min_span_words:
            raise ValueError(
                f"need 1 <= --min-span-words ({self.min_span_words}) <= --max-span-words ({self.max_span_words})"
            )
        if self.speaker_policy not in ("span", "document"):
            raise ValueError(f"--speaker-policy must be span or document, got {self.speaker_policy!r}")
        if self.world_size < 1 or not 0 <= self.rank < self.world_size:
            raise ValueError(f"need 0 <= --rank ({self.rank}) < --world-size ({self.world_size})")
        if self.workers < 1:
            raise ValueError(f"--workers must be >= 1, got {self.workers}")
        if self.max_speech_seconds_per_doc <= 0:
            raise ValueError("--max-speech-seconds-per-doc must be positive")
        if not re.fullmatch(r"[A-Za-z0-9_]+", self.name):
            raise ValueError(f"--name {self.name!r}: use letters, digits and underscores only")
        if self.tts not in ("espeak", "nemo"):
            raise ValueError(f"--tts must be espeak or nemo, got {self.tts!r}")

    def fingerprint(self) -> dict:
        """Everything that decides which samples the run produces (not how fast, nor on which rank)."""
        d = asdict(self)
        for k in ("workers", "rank", "progress", "output_dir", "text_norm_cache_dir", "tts_batch_size"):
            d.pop(k)
        d["shard_size"] = str(self.shard_size)
        d["inputs"] = list(self.inputs)
        return d
