"""Speech audio as a megatron-core indexed dataset of int16 PCM (16 kHz mono), one sequence per span.

Reading one span is a memory-mapped slice: no decoding and O(1) seeking, so data-loader workers stay
cheap. Decoding (FLAC and anything else libsndfile reads) happens once, at preprocessing time.
"""

from __future__ import annotations

import io

import numpy as np

from megatron_inserter.data.frames import SAMPLE_RATE
from megatron_inserter.errors import DataError

AUDIO_SUFFIX = "_audio"
AUDIO_DTYPE = np.int16
PCM_SCALE = 1.0 / 32768.0


class AudioDecodeError(DataError):
    """Audio that cannot be stored; ``reason`` is the skip reason preprocessing counts it under."""

    def __init__(self, message: str, reason: str = "bad_audio") -> None:
        super().__init__(message)
        self.reason = reason


def decode_audio(data: bytes, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Encoded audio (FLAC, WAV, ...) -> mono int16 PCM at ``sample_rate``.

    16-bit input is returned bit-exact. Multi-channel audio is averaged to mono; another sample rate is
    resampled with soxr. Raises ``AudioDecodeError`` for data libsndfile cannot read, and for float audio
    holding NaN or infinite samples (reason ``nonfinite_audio``: stored as int16 they would become
    silence or a full-scale square wave).
    """
    import soundfile as sf

    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            sr = f.samplerate
            exact = f.subtype in ("PCM_16", "PCM_S8", "PCM_U8") and f.channels == 1 and sr == sample_rate
            pcm = f.read(dtype="int16" if exact else "float32", always_2d=True)
    except (RuntimeError, sf.LibsndfileError, EOFError, ValueError) as e:
        raise AudioDecodeError(str(e)) from e
    if exact:
        return np.ascontiguousarray(pcm[:, 0])
    if not np.isfinite(pcm).all():
        bad = int(np.count_nonzero(~np.isfinite(pcm)))
        raise AudioDecodeError(f"{bad} NaN or infinite samples", reason="nonfinite_audio")
    mono = pcm.mean(axis=1)
    if sr != sample_rate:
        import soxr

        mono = soxr.resample(mono, sr, sample_rate)
    return float_to_int16(mono)


def float_to_int16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(np.asarray(x, dtype=np.float64) * 32768.0), -32768, 32767).astype(AUDIO_DTYPE)


def int16_to_float(x: np.ndarray) -> np.ndarray:
    """PCM int16 -> float32 in [-1, 1) (the batch contract's audio scale)."""
    return np.asarray(x, dtype=np.float32) * np.float32(PCM_SCALE)
