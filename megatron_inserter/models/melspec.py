"""Whisper log-mel features from 16 kHz PCM, computed with ``torch.stft`` on the model's device.

Numerically the same as Whisper / Hugging Face's ``WhisperFeatureExtractor``: 25 ms Hann window (n_fft 400),
10 ms hop, centre (reflect) padding with the last STFT frame dropped, power spectrum, Slaney mel filters
(Slaney scale and area normalization, 0-8 kHz), log10 clamped at 1e-10, floored at (max - 8), then
(x + 4) / 4.

Three modes (see ``SpeechEncoder``):
  window : every clip zero-padded to the 30 s window, 3000 frames, the floor taken over all of them; this is
           what Whisper and Qwen2-Audio feed their encoders (the feature extractor's default).
  masked : only ``n // hop`` frames per clip count as valid (``frames.py``); the floor is taken over the valid
           frames and invalid frames are set to 0, so a clip gives the same features alone or padded in a batch.
           Valid frames see zeros after the clip's end, exactly as in window mode.
  packed : window mode's values cut short: a clip's valid frames plus the two that follow them (all that the
           encoder's two k=3 convolutions read past the clip's end), floored with the window's maximum; the
           rest 0. The encoder's valid outputs then equal window mode's, at the cost of the clip's own frames.
"""

from __future__ import annotations

import math

import torch

from megatron_inserter.data.frames import SAMPLE_RATE


def _hz_to_mel(freq: torch.Tensor) -> torch.Tensor:
    """Slaney mel scale: linear below 1 kHz, logarithmic above."""
    logstep = 27.0 / math.log(6.4)
    linear = 3.0 * freq / 200.0
    log = 15.0 + torch.log(torch.clamp(freq, min=1e-10) / 1000.0) * logstep
    return torch.where(freq >= 1000.0, log, linear)


def _mel_to_hz(mels: torch.Tensor) -> torch.Tensor:
    logstep = math.log(6.4) / 27.0
    linear = 200.0 * mels / 3.0
    log = 1000.0 * torch.exp(logstep * (mels - 15.0))
    return torch.where(mels >= 15.0, log, linear)


def mel_filters(num_mel_bins: int, n_fft: int = 400, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """Slaney-normalized triangular filters, float64, shape [num_mel_bins, n_fft // 2 + 1]."""
    num_freqs = n_fft // 2 + 1
    fmax = sample_rate / 2.0
    mel_points = torch.linspace(float(_hz_to_mel(torch.tensor(0.0, dtype=torch.float64))),
                                float(_hz_to_mel(torch.tensor(fmax, dtype=torch.float64))),
                                num_mel_bins + 2, dtype=torch.float64)
    edges = _mel_to_hz(mel_points)  # [m + 2] filter edges in Hz
    fft_freqs = torch.linspace(0.0, float(sample_rate // 2), num_freqs, dtype=torch.float64)
    widths = torch.diff(edges)  # [m + 1]
    slopes = edges[None, :] - fft_freqs[:, None]  # [f, m + 2]
    down = -slopes[:, :-2] / widths[:-1]
    up = slopes[:, 2:] / widths[1:]
    filters = torch.clamp(torch.minimum(down, up), min=0.0)  # [f, m]
    filters = filters * (2.0 / (edges[2:] - edges[:-2]))[None, :]
    return filters.T.contiguous()


class LogMel(torch.nn.Module):
    """Batched log-mel; the filter bank is a non-persistent buffer so it follows the module's device."""

    def __init__(self, num_mel_bins: int, n_fft: int = 400, hop_length: int = 160,
                 sample_rate: int = SAMPLE_RATE, window_seconds: float = 30.0):
        super().__init__()
        self.num_mel_bins = num_mel_bins
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.window_samples = round(window_seconds * sample_rate)
        # Float32 constants, computed on the CPU even when the model is built on the meta device
        # (conversion). Not buffers: a bf16 model (Float16Module casts every buffer) must still compute
        # the features in float32 with exact filters, as Whisper was trained; they are copied to the
        # audio's device on first use and never checkpointed.
        with torch.device("cpu"):
            self._constants = {"cpu": (mel_filters(num_mel_bins, n_fft, sample_rate).float(),
                                       torch.hann_window(n_fft, dtype=torch.float32))}

    def constants(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(mel filter bank [mels, freqs], Hann window [n_fft]) in float32 on ``device``."""
        key = str(device)
        if key not in self._constants:
            filters, window = self._constants["cpu"]
            self._constants[key] = (filters.to(device), window.to(device))
        return self._constants[key]

    @property
    def window_frames(self) -> int:
        return self.window_samples // self.hop_length

    def _log_power_mel(self, audio: torch.Tensor) -> torch.Tensor:
        filters, window = self.constants(audio.device)
        stft = torch.stft(audio.float(), self.n_fft, self.hop_length, window=window,
                          center=True, pad_mode="reflect", return_complex=True)
        power = (stft[..., :-1].abs() ** 2).contiguous()  # [b, f, t]
        mel = filters @ power  # [b, m, t]
        return torch.clamp(mel, min=1e-10).log10()

    def window_mode(self, audio: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """[n, samples] -> [n, mels, 3000]: each clip zero-padded (or cut) to the window, as Whisper."""
        audio = _zero_beyond(audio, lengths)
        w = self.window_samples
        audio = audio[:, :w] if audio.shape[1] >= w else torch.nn.functional.pad(audio, (0, w - audio.shape[1]))
        log_spec = self._log_power_mel(audio)
        peak = log_spec.amax(dim=(1, 2), keepdim=True)
        return (torch.maximum(log_spec, peak - 8.0) + 4.0) / 4.0

    def masked_mode(self, audio: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[n, samples] -> ([n, mels, max(n_i // hop)], valid frame counts n_i // hop); invalid frames are 0."""
        audio = _zero_beyond(audio, lengths)
        frames = torch.div(lengths, self.hop_length, rounding_mode="floor")
        num_frames = max(int(frames.max().item()) if frames.numel() else 0, 1)
        # Enough trailing zeros that no valid frame reaches the reflected right edge: valid frames then see
        # zeros after the clip's end whether the clip is alone or padded in a batch.
        need = num_frames * self.hop_length + self.n_fft // 2 + 1
        if audio.shape[1] < need:
            audio = torch.nn.functional.pad(audio, (0, need - audio.shape[1]))
        log_spec = self._log_power_mel(audio)[:, :, :num_frames]
        valid = torch.arange(num_frames, device=audio.device)[None, :] < frames[:, None]  # [n, t]
        peak = log_spec.masked_fill(~valid[:, None, :], float("-inf")).amax(dim=(1, 2), keepdim=True)
        peak = torch.where(torch.isfinite(peak), peak, torch.zeros_like(peak))
        feats = (torch.maximum(log_spec, peak - 8.0) + 4.0) / 4.0
        return feats * valid[:, None, :].to(feats.dtype), frames

    def packed_mode(self, audio: torch.Tensor, lengths: torch.Tensor,
                    tail: int = 2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """[n, samples] -> (features [n, mels, max kept], valid frames ``n_i // hop``, kept frames per clip).

        Kept frames are ``min(valid + tail, window frames)`` (0 for a clip without a valid frame) and hold
        exactly what ``window_mode`` gives at those frames: the floor is the 30 s window's maximum, which no
        frame more than ``tail`` past the valid ones can raise (their STFT windows hold no sample of the clip).
        """
        audio = _zero_beyond(audio, lengths)
        hop, window = self.hop_length, self.window_frames
        frames = torch.div(lengths.to(audio.device), hop, rounding_mode="floor")
        kept = torch.where(frames > 0, torch.clamp(frames + tail, max=window), torch.zeros_like(frames))
        num_kept = max(int(kept.max()) if kept.numel() else 0, 1)
        # Frames up to ``valid + tail`` must see the window's zeros, not the reflected right edge of a shorter
        # buffer: pad to one more frame than that (or to the window, which is then window mode itself).
        width = min(self.window_samples, (num_kept + 1) * hop + self.n_fft // 2 + 1)
        audio = audio[:, :width] if audio.shape[1] >= width else torch.nn.functional.pad(
            audio, (0, width - audio.shape[1]))
        log_spec = self._log_power_mel(audio)[:, :, :num_kept + 1]
        t = torch.arange(log_spec.shape[-1], device=audio.device)[None, :]
        in_floor = t < torch.clamp(frames + tail + 1, max=window)[:, None]
        peak = log_spec.masked_fill(~in_floor[:, None, :], float("-inf")).amax(dim=(1, 2), keepdim=True)
        peak = torch.where(torch.isfinite(peak), peak, torch.zeros_like(peak))
        feats = (torch.maximum(log_spec, peak - 8.0) + 4.0) / 4.0
        keep = (t < kept[:, None])[:, None, :num_kept]
        return feats[:, :, :num_kept] * keep.to(feats.dtype), frames, kept


def _zero_beyond(audio: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    if audio.dim() != 2:
        raise ValueError(f"audio must be [num_clips, samples], got shape {tuple(audio.shape)}")
    if lengths.shape != (audio.shape[0],):
        raise ValueError(f"audio_lengths must be [{audio.shape[0]}], got shape {tuple(lengths.shape)}")
    if audio.shape[0] and int(lengths.max()) > audio.shape[1]:
        raise ValueError(f"an audio length ({int(lengths.max())}) exceeds the padded audio width "
                         f"({audio.shape[1]})")
    keep = torch.arange(audio.shape[1], device=audio.device)[None, :] < lengths[:, None].to(audio.device)
    return audio.float() * keep
