"""How much speech a training sample holds: from the datasets themselves, or documented defaults.

    stats = clip_stats_of_blend(["0.4", "data/inter", "0.3", "data/inter_asr", "0.3", "data/text"], spec)
    stats = ClipStats.assumed(spec)                  # 3.5 s clips, 70% of positions audio
    load = speech_load(stats, spec, seq_length=8192, micro_batch_size=1, input_mode="window",
                       window_positions=1500, thd=True)

A dataset written by ``inserter preprocess`` carries its audio as an indexed dataset of int16 PCM, one
sequence per speech span, and a sidecar naming it; the span lengths give the exact placeholder count of
every span (``frames.num_audio_frames``), so the share of audio positions and the encoder windows per
position follow without reading any audio. A plain Megatron text dataset (no sidecar) has none. A blend
mixes its datasets by weight (unweighted: by size), as the samples do.

Without data the defaults are InSerter-like interleaved pre-training: every clip 3.5 s long and 70% of
the positions audio placeholders (about 66 clips per 8192-position sample). Real data has a spread of clip
lengths, and ``masked`` batches pad to their longest clip: give ``--data-path`` for that.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from megatron_inserter.data.frames import FrameSpec
from megatron_inserter.errors import DataError
from megatron_inserter.training.memory_model import SpeechLoad

DEFAULT_CLIP_SECONDS = 3.5
DEFAULT_AUDIO_SHARE = 0.7


def _window_frames(mel: np.ndarray, spec: FrameSpec) -> np.ndarray:
    """Adapter frames of windows with ``mel`` log-mel frames (``frames._window_frames``, vectorised)."""
    positions = np.where(mel > 0, (mel - 1) // spec.conv_stride + 1, 0)
    if spec.queries_per_window:  # a Q-Former emits a fixed number of frames per window
        return np.where(positions > 0, spec.queries_per_window, 0)
    return positions // spec.adapter_downsample


def _positions(mel: np.ndarray | int, spec: FrameSpec):
    return np.where(np.asarray(mel) > 0, (np.asarray(mel) - 1) // spec.conv_stride + 1, 0)


@dataclass
class ClipStats:
    """Speech per position of the training samples."""

    source: str  # "assumed" or the dataset prefixes
    audio_share: float  # placeholder positions / all positions
    windows_per_position: float  # encoder windows (clips of at most 30 s) per position
    mel_hist: np.ndarray  # share of windows by log-mel frames (index = frames)
    mean_clip_seconds: float  # per speech span

    @classmethod
    def assumed(cls, spec: FrameSpec, clip_seconds: float | None = None,
                audio_share: float | None = None) -> ClipStats:
        seconds = DEFAULT_CLIP_SECONDS if clip_seconds is None else clip_seconds
        share = DEFAULT_AUDIO_SHARE if audio_share is None else audio_share
        if not 0 <= share < 1:
            raise ValueError(f"the audio share of positions must be in [0, 1), got {share}")
        samples = round(seconds * spec.sample_rate)
        full, rest = divmod(samples, spec.max_window_samples)
        window_mel = spec.max_window_samples // spec.hop_length
        mels = [window_mel] * full + ([rest // spec.hop_length] if rest >= spec.hop_length else [])
        frames = int(_window_frames(np.asarray(mels, dtype=np.int64), spec).sum()) if mels else 0
        if share and frames == 0:
            raise ValueError(f"a {seconds} s clip gives no audio frames")
        hist = np.bincount(np.asarray(mels, dtype=np.int64), minlength=window_mel + 1).astype(np.float64)
        hist /= max(hist.sum(), 1)
        windows = share * len(mels) / frames if frames else 0.0
        return cls("assumed", share, windows, hist, seconds)

    def clips_per_sample(self, seq_length: int) -> float:
        return self.windows_per_position * seq_length

    def describe(self) -> str:
        where = "assumed" if self.source == "assumed" else f"from {self.source}"
        return (f"{self.mean_clip_seconds:.2f} s mean clips, {100 * self.audio_share:.1f}% of positions audio "
                f"({where})")


# --- from datasets --------------------------------------------------------------------------------------


@dataclass
class _DatasetSpeech:
    positions: float  # expanded positions of the whole dataset
    audio_positions: float
    windows: float
    spans: int
    span_samples: float
    mel_counts: np.ndarray  # windows by log-mel frames


def _dataset_speech(prefix: str, spec: FrameSpec) -> _DatasetSpeech:
    from megatron_inserter.data.indexed.index_format import idx_path, read_index
    from megatron_inserter.data.indexed.metadata import read_metadata

    window_mel = spec.max_window_samples // spec.hop_length
    try:
        meta = read_metadata(prefix)
        text = read_index(idx_path(prefix), multimodal=meta is not None)
        positions = float(np.asarray(text.sequence_lengths, dtype=np.int64).sum())
        if meta is None or not meta.audio_prefix:
            return _DatasetSpeech(positions, 0.0, 0.0, 0, 0.0, np.zeros(window_mel + 1))
        audio = read_index(idx_path(os.path.join(os.path.dirname(prefix), meta.audio_prefix)), multimodal=False)
        samples = np.asarray(audio.sequence_lengths, dtype=np.int64)
    except (FileNotFoundError, ValueError) as e:  # DataError is a ValueError
        raise DataError(f"--data-path {prefix}: {e}") from None
    full, rest = np.divmod(samples, spec.max_window_samples)
    rest_mel = rest // spec.hop_length
    counts = np.bincount(rest_mel[rest_mel > 0], minlength=window_mel + 1).astype(np.float64)
    counts[window_mel] += float(full.sum())
    frames = _window_frames(np.arange(window_mel + 1), spec)
    counts[frames == 0] = 0.0  # too short for a frame: never reaches the encoder
    audio_positions = float((counts * frames).sum())
    return _DatasetSpeech(positions=positions - len(samples) + audio_positions, audio_positions=audio_positions,
                          windows=float(counts.sum()), spans=len(samples), span_samples=float(samples.sum()),
                          mel_counts=counts)


def clip_stats_of_blend(data_path: Sequence[str], spec: FrameSpec) -> ClipStats:
    """The clip statistics of a ``--data-path`` blend (weights as Megatron's, or by size)."""
    from megatron_inserter.data.indexed.blend import parse_blend

    prefixes, weights = parse_blend(data_path)
    parts = [_dataset_speech(p, spec) for p in prefixes]
    if weights is None:
        weights = [p.positions for p in parts]
    total_weight = sum(weights)
    if total_weight <= 0:
        raise DataError(f"--data-path {' '.join(data_path)} holds no tokens")
    share = windows = clips_weighted = seconds_weighted = 0.0
    hist = np.zeros_like(parts[0].mel_counts)
    for w, p in zip(weights, parts):
        if p.positions <= 0:
            continue
        w = w / total_weight
        share += w * p.audio_positions / p.positions
        windows += w * p.windows / p.positions
        if p.windows:
            hist += w / p.positions * p.mel_counts  # windows per position of this component, by length
        if p.spans:
            span_rate = w * p.spans / p.positions
            clips_weighted += span_rate
            seconds_weighted += span_rate * p.span_samples / p.spans / spec.sample_rate
    if hist.sum() > 0:
        hist /= hist.sum()
    mean_seconds = seconds_weighted / clips_weighted if clips_weighted else 0.0
    return ClipStats(" ".join(prefixes), share, windows, hist, mean_seconds)


# --- one micro-batch ------------------------------------------------------------------------------------


def expected_max(hist: np.ndarray, n: int) -> float:
    """Expected largest index among ``n`` draws from the distribution ``hist``."""
    if n <= 0 or hist.sum() <= 0:
        return 0.0
    cdf = np.cumsum(hist / hist.sum())
    below = np.concatenate([[0.0], cdf[:-1]])
    return float((np.arange(len(hist)) * (np.clip(cdf, 0, 1) ** n - np.clip(below, 0, 1) ** n)).sum())


def speech_load(stats: ClipStats, spec: FrameSpec, seq_length: int, micro_batch_size: int, input_mode: str,
                window_positions: int, thd: bool) -> SpeechLoad:
    """The encoder's work for one micro-batch: expected clips, frames and padded sizes.

    window: every clip padded to 30 s. masked: a batch of clips padded to its longest (the expected
    maximum over the micro-batch's clips). packed: the clips' own frames; with Transformer Engine one THD
    sequence, otherwise windows of ``window_positions`` filled end to end.
    """
    clips = stats.windows_per_position * seq_length * micro_batch_size
    if clips <= 0:
        return SpeechLoad.none()
    frames = stats.audio_share * seq_length * micro_batch_size
    mel = np.arange(len(stats.mel_hist))
    window_mel = spec.max_window_samples // spec.hop_length
    mean_mel = float((stats.mel_hist * mel).sum())
    mean_positions = float((stats.mel_hist * _positions(mel, spec)).sum())
    if input_mode == "window":
        padded_mel = window_mel
    elif input_mode == "masked":
        padded_mel = expected_max(stats.mel_hist, max(1, round(clips)))
    else:
        padded_mel = None
    if padded_mel is not None:
        positions_per_clip = float(_positions(round(padded_mel), spec))
        positions = clips * positions_per_clip
        rows, row_length = clips, positions_per_clip
        pooled = clips * (positions_per_clip // spec.adapter_downsample)
        mel_frames = clips * padded_mel
    else:
        positions = clips * mean_positions
        rows = 1.0 if thd else max(1.0, math.ceil(positions / window_positions))
        row_length = positions if thd else min(positions, float(window_positions))
        pooled = frames
        mel_frames = clips * (mean_mel + 2)
    max_mel = expected_max(stats.mel_hist, max(1, round(clips)))
    audio_samples = clips * (window_mel if input_mode == "window" else max_mel) * spec.hop_length
    return SpeechLoad(clips=clips, frames=frames, mel_frames=mel_frames, positions=positions, rows=rows,
                      row_length=row_length, pooled=pooled, audio_samples=audio_samples)
