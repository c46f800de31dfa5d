"""The interface every TTS backend implements: a batch of (text, language, speaker) in, 16 kHz audio out.

Local backends (espeak, nemo) synthesize a batch in the calling thread. A ``concurrent`` backend (TTS
servers) instead speaks one request per call of ``synthesize_one`` from up to ``concurrency`` threads at
once; the scheduler (``schedule.py``) keeps that many requests in flight.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from megatron_inserter.data.document import TTSControls
from megatron_inserter.errors import InserterError

SAMPLE_RATE = 16_000


class TTSUnavailableError(InserterError, RuntimeError):
    """The backend cannot run on this machine (missing program, library or model file); says how to fix it."""

    exit_code = 2


class TTSError(RuntimeError):
    """Synthesis of one request failed."""


@dataclass(frozen=True)
class TTSRequest:
    text: str
    language: str  # "en" or "zh"
    speaker: str  # one of ``backend.speakers(language)``
    speed: float | None = None  # relative speaking speed, for backends that take one (``takes_speed``)


class TTSBackend(ABC):
    """Turns text into 16 kHz mono float32 audio in [-1, 1].

    ``synthesize`` returns one array per request, in order; an empty array marks a request that produced
    no audio. A raised exception means the whole batch failed (the caller retries request by request).
    """

    name: str = "tts"
    batch_size: int = 1  # how many requests the backend prefers per call
    languages: tuple[str, ...] = ("en", "zh")
    concurrent: bool = False  # True: ``synthesize_one`` is called from ``concurrency`` threads at once
    concurrency: int = 1
    takes_speed: bool = False  # whether ``TTSRequest.speed`` is sent

    @abstractmethod
    def speakers(self, language: str) -> list[str]:
        """The speaker pool for ``language``, in a fixed order."""

    @abstractmethod
    def synthesize(self, requests: list[TTSRequest]) -> list[np.ndarray]:
        """Audio for each request: 1-D float32 at ``SAMPLE_RATE``."""

    def describe(self, request: TTSRequest) -> tuple[str | None, TTSControls]:
        """``(model, controls)`` recorded with a span spoken for ``request``: the backend's model or engine
        version, and the speed/pitch/volume it was spoken with (``None`` where not applicable)."""
        return None, TTSControls()

    def synthesize_one(self, request: TTSRequest) -> np.ndarray:
        """Audio for one request; raises ``TTSError`` when this request fails (a concurrent backend raises
        ``servers.ServiceUnavailableError`` when no server can answer: the shard then fails)."""
        return self.synthesize([request])[0]

    def gender(self, speaker: str) -> str | None:
        """The gender of a speaker when the backend knows it (``male``, ``female``)."""
        return None

    def collect_stats(self) -> dict:
        """Counters to add to the shard's ``SynthStats`` (per-server requests and latencies); then reset."""
        return {}

    def close(self) -> None:
        pass


def resampled_length(num_samples: int, sample_rate: int) -> int:
    """Length of ``to_16k`` output for an input of ``num_samples`` at ``sample_rate``."""
    if sample_rate == SAMPLE_RATE:
        return num_samples
    return len(to_16k(np.zeros(num_samples, dtype=np.float32), sample_rate))


def to_16k(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Mono float32 audio at ``sample_rate`` -> float32 at 16 kHz, clipped to [-1, 1]."""
    audio = np.asarray(audio, dtype=np.float32).reshape(-1)
    if sample_rate != SAMPLE_RATE and len(audio):
        import soxr

        audio = soxr.resample(audio, sample_rate, SAMPLE_RATE, quality="HQ").astype(np.float32, copy=False)
    return np.clip(audio, -1.0, 1.0)
