"""Generated coloured noise mixed into speech at a chosen signal-to-noise ratio (``--noise-snr-db``,
``--noise-share``).

Noise is white (flat spectrum), pink (power falling as 1/f) or brown (1/f^2), shaped from Gaussian white
noise in the frequency domain, zero mean. The SNR is defined on the whole clip: ``10 log10(P_speech /
P_noise)`` with ``P`` the mean square. When the mix would clip, speech and noise are scaled down together
(the SNR is unchanged) and the gain is recorded as the segment's ``volume``, so the recorded SNR is the one
measured between the stored audio and the stored speech times its gain. Everything is drawn from the
span's own generator: the same span gets the same noise in every run.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NOISE_TYPES = ("white", "pink", "brown")
PEAK = 0.99  # mixes are scaled to stay below this peak


@dataclass(frozen=True)
class NoiseChoice:
    kind: str
    snr_db: float


def draw_noise(rng: np.random.Generator, share: float, snr_range: tuple[float, float] | None) -> NoiseChoice | None:
    """Whether a span gets noise (probability ``share``), which colour, and at which SNR (uniform in the range,
    rounded to 0.01 dB)."""
    if not snr_range or share <= 0:
        return None
    hit = rng.random() < share
    kind = NOISE_TYPES[int(rng.integers(len(NOISE_TYPES)))]
    snr = round(float(rng.uniform(snr_range[0], snr_range[1])), 2)
    return NoiseChoice(kind, snr) if hit else None


def coloured_noise(kind: str, num_samples: int, rng: np.random.Generator) -> np.ndarray:
    """Zero-mean noise of unit power (mean square 1) with a white, pink or brown spectrum."""
    if kind not in NOISE_TYPES:
        raise ValueError(f"unknown noise type {kind!r} (choose from {', '.join(NOISE_TYPES)})")
    white = rng.standard_normal(num_samples)
    if kind != "white" and num_samples > 2:
        spectrum = np.fft.rfft(white)
        freqs = np.fft.rfftfreq(num_samples)
        scale = np.zeros_like(freqs)
        exponent = 0.5 if kind == "pink" else 1.0  # amplitude ~ f^-1/2 (power 1/f) or f^-1 (power 1/f^2)
        scale[1:] = freqs[1:] ** -exponent
        white = np.fft.irfft(spectrum * scale, n=num_samples)
    noise = white - white.mean()
    power = float(np.mean(noise**2))
    return noise / np.sqrt(power) if power > 0 else noise


def mix_at_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> tuple[np.ndarray, float]:
    """``(mix, gain)``: ``gain * (speech + noise scaled to snr_db)``, with ``gain <= 1`` keeping the peak below
    ``PEAK``. Raises ``ValueError`` for silent speech (no SNR can be defined)."""
    speech = np.asarray(speech, dtype=np.float64)
    p_speech = float(np.mean(speech**2))
    if p_speech <= 0:
        raise ValueError("silent audio: no SNR can be defined")
    noise = np.asarray(noise, dtype=np.float64)
    noise = noise * np.sqrt(p_speech / (10.0 ** (snr_db / 10.0)) / float(np.mean(noise**2)))
    mix = speech + noise
    peak = float(np.max(np.abs(mix)))
    gain = min(1.0, PEAK / peak) if peak > 0 else 1.0
    return (mix * gain).astype(np.float32), gain


def measured_snr_db(clean: np.ndarray, mixed: np.ndarray) -> float:
    """The SNR of ``mixed`` against ``clean`` (both at the same gain): mean squares over the whole clip."""
    clean = np.asarray(clean, dtype=np.float64)
    residual = np.asarray(mixed, dtype=np.float64) - clean
    return 10.0 * np.log10(np.mean(clean**2) / np.mean(residual**2))


def add_noise(speech: np.ndarray, choice: NoiseChoice, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """``speech`` with ``choice``'s noise (drawn from ``rng``) at its SNR -> ``(mix, gain)``."""
    return mix_at_snr(speech, coloured_noise(choice.kind, len(speech), rng), choice.snr_db)
