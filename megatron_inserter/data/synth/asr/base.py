"""The interface of every round-trip transcriber, and how a transcript is scored against its span.

A transcriber turns 16 kHz mono float32 clips into text. Local models (Hugging Face Whisper, NeMo) take a
batch in the calling thread; a ``concurrent`` one (ASR servers) takes one clip per ``transcribe_one`` call
from up to ``concurrency`` threads. ``None`` is a clip that could not be transcribed (a server refused it).

Scoring uses the normalizer of ``inserter eval asr`` (``eval.text_norm``): words for English (WER),
characters for Chinese (CER), as a fraction of the span's normalized length.
"""

from __future__ import annotations

import io

import numpy as np

from megatron_inserter.eval.text_norm import error_counts, normalize_chinese, normalize_english


class Transcriber:
    name = "asr"
    model = ""
    concurrent = False
    concurrency = 1
    batch_size = 8

    def transcribe(self, clips: list[tuple[np.ndarray, str]]) -> list[str | None]:
        """``[(audio, language), ...]`` -> one transcript per clip, in order."""
        return [self.transcribe_one(audio, language) for audio, language in clips]

    def transcribe_one(self, audio: np.ndarray, language: str) -> str | None:
        return self.transcribe([(audio, language)])[0]

    def collect_stats(self) -> dict:
        return {}

    def close(self) -> None:
        pass


def round_trip_error(reference: str, hypothesis: str | None, language: str) -> float | None:
    """The error rate of ``hypothesis`` against ``reference`` (a fraction; WER for English, CER for Chinese);
    ``None`` when the reference has nothing to score or there is no hypothesis."""
    if hypothesis is None:
        return None
    zh = language == "zh"
    norm = normalize_chinese if zh else normalize_english
    edits, total = error_counts([norm(reference)], [norm(hypothesis)], "char" if zh else "word")
    return edits / total if total else None


def wav_bytes(audio: np.ndarray, sample_rate: int = 16_000) -> bytes:
    """16-bit PCM WAV of float audio in [-1, 1] (each sample ``round(x * 32768)``, so int16/32768 values
    pass unchanged)."""
    import soundfile as sf

    pcm = np.clip(np.round(np.asarray(audio, dtype=np.float64) * 32768.0), -32768, 32767).astype(np.int16)
    buf = io.BytesIO()
    sf.write(buf, pcm, sample_rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()
