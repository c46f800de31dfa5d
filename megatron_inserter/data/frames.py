"""The one source of truth for how many positions a speech clip occupies.

The dataset expands every speech span into exactly ``num_audio_frames(...)`` placeholder tokens and the
model emits exactly that many encoder+adapter frames for it, so the two can never disagree.

Pipeline for one clip of ``n`` samples at 16 kHz:
  log-mel  : n // hop                     (STFT with centre padding, the last frame dropped, as Whisper)
  conv1    : k=3, stride 1, pad 1         (length kept)
  conv2    : k=3, stride s, pad 1         -> (m - 1) // s + 1
  adapter  : pooling / frame stacking k  -> e // k  (remainder frames dropped, as AvgPool1d does)
             or a Q-Former with q queries -> q, whatever the window's length (``queries_per_window``)
Clips longer than the encoder window are split into windows (see ``split_windows``); each window is
encoded separately, so a long span's frame count is the sum over its windows: for a Q-Former
q * ceil(n / window), except that a last window shorter than one hop (10 ms) has no encoder position and
is dropped, as every window without an output frame is.
"""

from __future__ import annotations

from dataclasses import dataclass

SAMPLE_RATE = 16_000


@dataclass(frozen=True)
class FrameSpec:
    """Everything the frame count depends on. ``models.presets`` builds it from a model config."""

    sample_rate: int = SAMPLE_RATE
    hop_length: int = 160  # 10 ms
    conv_stride: int = 2  # Whisper's second convolution
    adapter_downsample: int = 2  # Qwen2-Audio average pooling (or frames stacked by the MLP adapter)
    max_window_seconds: float = 30.0  # Whisper's window
    # Q-Former adapter: frames per window (its query count), replacing the downsampled encoder positions.
    queries_per_window: int | None = None

    @property
    def max_window_samples(self) -> int:
        return int(round(self.max_window_seconds * self.sample_rate))

    @property
    def min_samples(self) -> int:
        """Shortest clip that yields at least one output frame (a whole number of hops: the count depends on
        ``n // hop_length`` only)."""
        n = self.hop_length
        while _window_frames(n, self) == 0:
            if n >= self.max_window_samples:
                raise ValueError(f"{self}: no clip within one window yields an output frame")
            n += self.hop_length
        return n


def _window_frames(num_samples: int, spec: FrameSpec) -> int:
    mel = num_samples // spec.hop_length
    if mel == 0:
        return 0
    enc = (mel - 1) // spec.conv_stride + 1
    if spec.queries_per_window is not None:
        return spec.queries_per_window
    return enc // spec.adapter_downsample


def split_windows(num_samples: int, spec: FrameSpec = FrameSpec()) -> list[int]:
    """Lengths (in samples) of the encoder windows a clip is cut into, in order."""
    if num_samples < 0:
        raise ValueError(f"negative audio length {num_samples}")
    w = spec.max_window_samples
    full, rest = divmod(num_samples, w)
    return [w] * full + ([rest] if rest else [])


def num_audio_frames(num_samples: int, spec: FrameSpec = FrameSpec()) -> int:
    """Number of encoder+adapter output frames (= placeholder positions) for a clip of ``num_samples``."""
    return sum(_window_frames(n, spec) for n in split_windows(num_samples, spec))


def window_frames(num_samples: int, spec: FrameSpec = FrameSpec()) -> list[int]:
    """Frames per encoder window, matching ``split_windows``; windows too short for a frame give 0."""
    return [_window_frames(n, spec) for n in split_windows(num_samples, spec)]
