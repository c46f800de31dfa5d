"""What a clip sounds like, measured from its samples (16 kHz mono float audio in [-1, 1], numpy only).

* Pauses and noise: a short-time spectrum (32 ms frames every 8 ms) is split into 32 bands and each band
  divided by its 10th-percentile level, so the noise looks the same in every band whatever its colour;
  frames within ``PAUSE_BAND_DB`` of the 10th-percentile of that whitened level are quiet, and runs of at
  least ``PAUSE_MIN_FRAMES`` quiet frames, less ``PAUSE_TRIM_FRAMES`` at each end, are pauses. The noise
  power is the mean power of the pause samples; the SNR is that of the whole clip,
  ``10 log10((P_clip - P_noise) / P_noise)`` with ``P`` the mean power over all samples (what synthesis
  records: clean power over noise power). A clip holding 30 ms of unbroken digital silence is clean
  (``noise_free``);
  a clip without pauses has no measurable SNR (None). Noise below about 50 Hz changes within a clip more
  slowly than its pauses last, so a recorded SNR that counts such power can differ from the measured one.
* Speech: frames louder than the noise by ``ACTIVE_ABOVE_NOISE_DB`` (and above ``ACTIVE_MIN_DBFS``) are
  active; the speech runs from the first active frame to the last.
* Fundamental frequency: YIN (de Cheveigne and Kawahara 2002) on 40 ms frames every 10 ms: the cumulative
  mean normalized difference, its first dip under ``YIN_THRESHOLD`` between 60 and 500 Hz, refined by
  parabolic interpolation; the clip's F0 is the median over voiced, active frames.
* Loudness: RMS of the active frames in dBFS (a full-scale square wave is 0 dBFS).
* Speaking rate: syllables (English: vowel groups per word; Chinese: one per character) and words per
  second of speech (first to last active frame).
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import asdict, dataclass

import numpy as np

SAMPLE_RATE = 16_000
FRAME, HOP = 512, 128  # 32 ms every 8 ms
BANDS = 32
FLOOR_PERCENTILE = 10.0
PAUSE_BAND_DB = 1.25
PAUSE_MIN_FRAMES, PAUSE_TRIM_FRAMES = 4, 3
ACTIVE_ABOVE_NOISE_DB = 6.0
ACTIVE_MIN_DBFS = -55.0
SILENCE_LEVEL = 2.5 / 32768  # samples this small are digital silence (at most 2 LSB of 16-bit audio)
SILENCE_MIN_S = 0.03  # a clip with this much unbroken digital silence has no added noise
F0_MIN_HZ, F0_MAX_HZ = 60.0, 500.0
YIN_FRAME, YIN_HOP = 640, 160  # 40 ms every 10 ms
YIN_THRESHOLD = 0.15
MIN_VOICED_FRAMES = 3


@dataclass
class Measurement:
    duration_s: float
    speech_s: float  # first to last active frame
    loudness_dbfs: float | None  # RMS of the active frames
    f0_hz: float | None  # median over voiced frames; None when too few frames are voiced
    voiced_share: float  # voiced frames / active frames
    snr_db: float | None  # None: clean (``noise_free``) or no pauses to measure the noise in
    noise_dbfs: float | None
    noise_free: bool  # the pauses are digital silence
    pause_s: float  # seconds of pause the noise was measured in
    syllables: int
    words: int
    syllables_per_s: float | None
    words_per_s: float | None

    def as_dict(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def _db(power: float) -> float:
    return 10.0 * math.log10(max(power, 1e-20))


def _frames(x: np.ndarray) -> np.ndarray:
    if len(x) < FRAME:
        x = np.pad(x, (0, FRAME - len(x)))
    return np.lib.stride_tricks.sliding_window_view(x, FRAME)[::HOP]


def _runs(quiet: np.ndarray) -> np.ndarray:
    """Frames inside runs of at least ``PAUSE_MIN_FRAMES + 2 * PAUSE_TRIM_FRAMES`` quiet frames, less the
    ``PAUSE_TRIM_FRAMES`` at each end of a run."""
    keep = np.zeros(len(quiet), dtype=bool)
    edges = np.diff(np.concatenate([[0], quiet.astype(np.int8), [0]]))
    for start, stop in zip(np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0]):
        if stop - start >= PAUSE_MIN_FRAMES + 2 * PAUSE_TRIM_FRAMES:
            keep[start + PAUSE_TRIM_FRAMES:stop - PAUSE_TRIM_FRAMES] = True
    return keep


def pauses(x: np.ndarray) -> np.ndarray:
    """A boolean mask over the samples of ``x``: its pauses (see the module docstring)."""
    frames = _frames(x)
    spectrum = np.abs(np.fft.rfft(frames * np.hanning(FRAME), axis=1)) ** 2
    edges = np.linspace(0, spectrum.shape[1], BANDS + 1).astype(int)
    bands = np.add.reduceat(spectrum, edges[:-1], axis=1)
    floor = np.percentile(bands, FLOOR_PERCENTILE, axis=0)
    whitened = np.mean(bands / np.maximum(floor, 1e-30), axis=1)
    quiet = whitened <= np.percentile(whitened, FLOOR_PERCENTILE) * 10 ** (PAUSE_BAND_DB / 10)
    mask = np.zeros(len(x), dtype=bool)
    for k in np.nonzero(_runs(quiet))[0]:
        mask[k * HOP:k * HOP + FRAME] = True
    return mask


def has_digital_silence(x: np.ndarray, min_samples: int) -> bool:
    """Whether ``x`` holds a run of at least ``min_samples`` samples of digital silence."""
    silent = np.abs(x) <= SILENCE_LEVEL
    if len(silent) < min_samples or not silent.any():
        return False
    edges = np.diff(np.concatenate([[0], silent.astype(np.int8), [0]]))
    return bool(np.max(np.nonzero(edges == -1)[0] - np.nonzero(edges == 1)[0]) >= min_samples)


def frame_powers(audio: np.ndarray) -> np.ndarray:
    """Mean square of each 32 ms frame (every 8 ms)."""
    frames = _frames(np.asarray(audio, dtype=np.float64))
    return np.mean(frames * frames, axis=1)


def yin_f0(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """F0 in Hz per 10 ms frame (NaN where unvoiced), by YIN."""
    x = np.asarray(audio, dtype=np.float64)
    tau_min = int(sample_rate / F0_MAX_HZ)
    tau_max = math.ceil(sample_rate / F0_MIN_HZ)
    width = YIN_FRAME
    span = width + tau_max
    if len(x) < span:
        return np.zeros(0)
    segments = np.lib.stride_tricks.sliding_window_view(x, span)[::YIN_HOP]
    n_fft = 1 << math.ceil(math.log2(span + width))
    head = segments[:, :width]
    # r[t] = sum_j head[j] * seg[j + t] for t in [0, tau_max]: cross-correlation by FFT.
    spec = np.fft.rfft(segments, n_fft) * np.conj(np.fft.rfft(head, n_fft))
    r = np.fft.irfft(spec, n_fft)[:, : tau_max + 1]
    sq = np.concatenate([np.zeros((len(segments), 1)), np.cumsum(segments * segments, axis=1)], axis=1)
    energy0 = sq[:, width:width + 1]  # sum of head^2
    taus = np.arange(tau_max + 1)
    energy_tau = sq[:, taus + width] - sq[:, taus]  # sum over the window shifted by tau
    diff = energy0 + energy_tau - 2.0 * r
    diff[:, 0] = 0.0
    cumulative = np.cumsum(diff[:, 1:], axis=1)
    cmnd = np.ones_like(diff)
    with np.errstate(divide="ignore", invalid="ignore"):
        cmnd[:, 1:] = diff[:, 1:] * taus[1:] / np.where(cumulative > 0, cumulative, np.inf)
    window = cmnd[:, tau_min:tau_max + 1]
    under = window[:, :-1] < YIN_THRESHOLD
    voiced = under.any(axis=1)
    first = np.argmax(under, axis=1)
    # walk down from the first lag under the threshold to the bottom of that dip
    bottom = window[:, 1:] >= window[:, :-1]  # lag i is a local minimum (or the last lag)
    lags = np.arange(bottom.shape[1])
    t = np.argmax(bottom & (lags >= first[:, None]), axis=1)
    t = np.clip(t, 1, window.shape[1] - 2)
    a, b, c = (np.take_along_axis(window, (t + d)[:, None], axis=1)[:, 0] for d in (-1, 0, 1))
    denominator = a - 2 * b + c
    with np.errstate(divide="ignore", invalid="ignore"):
        shift = np.where(denominator > 0, 0.5 * (a - c) / denominator, 0.0)
    f0 = sample_rate / (tau_min + t + np.clip(shift, -1.0, 1.0))
    return np.where(voiced, f0, np.nan)


_VOWEL_GROUPS = re.compile(r"[aeiouy]+")


def count_syllables(text: str) -> tuple[int, int]:
    """(syllables, words) of a transcript: English words by vowel groups (a final silent ``e`` dropped, at
    least one per word), Chinese / Japanese / Korean characters one syllable each."""
    syllables = words = 0
    for token in re.findall(r"\w+", unicodedata.normalize("NFKC", text).lower()):
        cjk = sum(1 for c in token if _is_cjk(c))
        if cjk:
            syllables += cjk
            words += cjk
            token = "".join(c for c in token if not _is_cjk(c))
            if not token:
                continue
        words += 1
        if token.isdigit():
            syllables += len(token)
            continue
        groups = len(_VOWEL_GROUPS.findall(token))
        if token.endswith("e") and not token.endswith(("le", "ee")) and groups > 1:
            groups -= 1
        syllables += max(groups, 1)
    return syllables, words


def _is_cjk(c: str) -> bool:
    return ("\u3040" <= c <= "\u30ff" or "\u3400" <= c <= "\u9fff" or "\uac00" <= c <= "\ud7af"
            or "\uf900" <= c <= "\ufaff")


def measure(audio: np.ndarray, text: str = "", sample_rate: int = SAMPLE_RATE) -> Measurement:
    if sample_rate != SAMPLE_RATE:
        raise ValueError(f"measure() expects {SAMPLE_RATE} Hz audio, got {sample_rate}")
    x = np.asarray(audio, dtype=np.float64).reshape(-1)
    if len(x) == 0:
        raise ValueError("measure() needs at least one sample")
    duration = len(x) / sample_rate
    in_pause = pauses(x)
    noise = float(np.mean(x[in_pause] ** 2)) if in_pause.any() else None
    clip_power = float(np.mean(x * x))
    noise_free = has_digital_silence(x, int(SILENCE_MIN_S * sample_rate))
    snr = None
    if noise is not None and not noise_free and 0 < noise < clip_power:
        snr = _db(clip_power - noise) - _db(noise)
    powers = frame_powers(x)
    threshold = 10 ** (ACTIVE_MIN_DBFS / 10)
    if noise is not None:
        threshold = max(threshold, noise * 10 ** (ACTIVE_ABOVE_NOISE_DB / 10))
    active = powers > threshold
    if active.any():
        first, last = int(np.argmax(active)), len(active) - 1 - int(np.argmax(active[::-1]))
        speech_s = min(duration, ((last - first) * HOP + FRAME) / sample_rate)
        loudness = _db(float(np.mean(powers[active])))
    else:
        speech_s, loudness = 0.0, None
    f0 = yin_f0(x, sample_rate)
    voiced, share = np.zeros(0), 0.0
    if len(f0) and active.any():
        centers = np.clip((np.arange(len(f0)) * YIN_HOP + YIN_FRAME // 2 - FRAME // 2) // HOP, 0, len(active) - 1)
        in_active = active[centers]
        voiced = f0[in_active & ~np.isnan(f0)]
        share = len(voiced) / max(int(in_active.sum()), 1)
    syllables, words = count_syllables(text)
    rate_ok = speech_s > 0 and syllables > 0
    return Measurement(
        duration_s=duration, speech_s=speech_s, loudness_dbfs=loudness,
        f0_hz=float(np.median(voiced)) if len(voiced) >= MIN_VOICED_FRAMES else None, voiced_share=share,
        snr_db=snr, noise_dbfs=None if noise is None or noise_free else _db(noise), noise_free=noise_free,
        pause_s=float(in_pause.sum()) / sample_rate, syllables=syllables, words=words,
        syllables_per_s=syllables / speech_s if rate_ok else None,
        words_per_s=words / speech_s if rate_ok and words else None,
    )
