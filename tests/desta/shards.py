"""Synthesized shards with known voices, controls and added noise, for the DeSTA2 tests."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from megatron_inserter.data.document import (
    SAMPLE_RATE,
    ShardDocument,
    SpeechSegment,
    TextSegment,
    TTSControls,
)
from megatron_inserter.data.synth.shards import ShardWriter
from megatron_inserter.data.synth.speakers import EspeakSpeaker
from megatron_inserter.data.synth.tts.base import TTSRequest
from megatron_inserter.data.synth.tts.espeak import DEFAULT_PITCH, DEFAULT_RATE, EspeakBackend

PAUSED_TEXTS = (
    "It rained all day. We stayed inside, reading books, and then, at last, the sun came out.",
    "Well, that is fine. Tomorrow, perhaps, we will walk to the market, buy bread, and come home.",
    "The river was cold. Nobody swam that summer, and the boats stayed tied to the pier.",
)


@dataclass
class Clip:
    text: str
    speaker: str  # espeak speaker id
    noise: str | None = None  # "white" or "pink" (pink: 1/f power above 50 Hz)
    snr_db: float | None = None


def coloured_noise(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    white = rng.standard_normal(n)
    if kind == "white":
        return white
    freqs = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    shape = np.zeros_like(freqs)
    audible = freqs >= 50.0
    shape[audible] = freqs[audible] ** (-0.5 if kind == "pink" else -1.0)
    return np.fft.irfft(np.fft.rfft(white) * shape, n)


def mix_at_snr(clean: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``clean + noise`` scaled so that mean(clean^2) / mean(noise^2) is ``snr_db``."""
    scale = np.sqrt(np.mean(clean**2) / np.mean(noise**2) / 10 ** (snr_db / 10))
    return clean + scale * noise


_BACKEND: EspeakBackend | None = None


def synthesize(text: str, speaker: str) -> np.ndarray:
    global _BACKEND
    if _BACKEND is None:
        _BACKEND = EspeakBackend()
    return _BACKEND.synthesize([TTSRequest(text, "en", speaker)])[0].astype(np.float64)


def flac(audio: np.ndarray) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, np.clip(audio, -1, 1).astype(np.float32), SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


def write_shard(path: Path, clips: list[Clip], seed: int = 0, per_document: int = 2) -> None:
    """One shard: documents of ``per_document`` speech segments (with text between them), in clip order."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = ShardWriter(str(path))
    for d in range(0, len(clips), per_document):
        segments, audio = [], {}
        for n, clip in enumerate(clips[d:d + per_document]):
            pcm = synthesize(clip.text, clip.speaker)
            if clip.noise is not None:
                pcm = mix_at_snr(pcm, coloured_noise(clip.noise, len(pcm), rng), clip.snr_db)
                pcm /= max(1.0, float(np.max(np.abs(pcm))) / 0.99)  # no clipping; the ratio is unchanged
            spk = EspeakSpeaker.from_id(clip.speaker)
            segments += [TextSegment("Then "), SpeechSegment(
                text=clip.text, audio=f"{n}.flac", duration=len(pcm) / SAMPLE_RATE, num_samples=len(pcm),
                speaker=clip.speaker, language="en", tts="espeak", tts_model="espeak-ng test",
                controls=TTSControls(speed=spk.rate / DEFAULT_RATE, pitch=spk.pitch / DEFAULT_PITCH,
                                     noise=clip.noise, snr_db=clip.snr_db))]
            audio[f"{n}.flac"] = flac(pcm)
        writer.add(ShardDocument(f"{path.stem}/doc{d}", tuple(segments), lang="en"), audio)
    writer.commit()
