"""Where each clip goes when several clips share the encoder (``input_mode="packed"``).

Two layouts, both pure index arithmetic on the clips' frame counts:

``ClipLayout`` (the convolutions): every clip's log-mel frames are laid end to end on one time axis, each
clip starting at an even offset and followed by at least one zero frame. With the Whisper front end (conv1
k=3 stride 1 pad 1, conv2 k=3 stride 2 pad 1) and conv1's output zeroed outside each clip's valid range, a
kernel never reads a neighbour: conv1 at a clip's last kept frame reads the clip's own tail frames, conv2's
first output of the next clip reads a zeroed gap, exactly the zero padding the clip would see alone. The
convolutions then cost the clips' own frames, not a padded batch.

``WindowPlan`` (the attention, CPU path): the encoder positions of all clips are bin-packed (first fit,
longest clip first) into windows of at most ``capacity`` positions, ``[positions, windows, d]`` with a
block-diagonal attention mask. The encoder uses the longest clip as the capacity: attention then spends
the least on other clips' (masked) keys, about 1.1x the FLOPs of exact per-clip attention at the
qwen2-audio-7b shape. With Transformer Engine on CUDA the clips form one THD sequence instead (``cu_seqlens``,
see ``SpeechEncoder``), which needs no windows and no mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def conv_out(frames: torch.Tensor, stride: int) -> torch.Tensor:
    """Frames after a k=3, pad=1 convolution of stride ``stride``; 0 stays 0."""
    return torch.where(frames > 0, torch.div(frames - 1, stride, rounding_mode="floor") + 1,
                       torch.zeros_like(frames))


def _ranges(starts: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Concatenation of ``arange(start, start + count)`` over clips, in clip order."""
    total = int(counts.sum())
    if total == 0:
        return torch.zeros(0, dtype=torch.long, device=counts.device)
    first = torch.cumsum(counts, 0) - counts  # where each clip's run begins in the output
    within = torch.arange(total, device=counts.device) - torch.repeat_interleave(first, counts)
    return torch.repeat_interleave(starts, counts) + within


def position_ids(positions: torch.Tensor) -> torch.Tensor:
    """Position within its clip (0..positions[i]-1) of every packed position, clip by clip."""
    return _ranges(torch.zeros_like(positions), positions)


@dataclass
class ClipLayout:
    """One time axis holding every clip's kept mel frames, with zero gaps (see the module docstring).

    ``kept[i]``: mel frames of clip i that the front end reads (its valid frames plus tail frames);
    ``conv1_valid[i]``: conv1 outputs of clip i that conv2 may read (the rest are zeroed);
    ``positions[i]``: encoder positions (conv2 outputs) of clip i.
    """

    offsets: torch.Tensor  # [n] first mel frame of each clip on the axis (even)
    kept: torch.Tensor
    conv1_valid: torch.Tensor
    positions: torch.Tensor
    length: int  # mel frames on the axis
    stride: int

    @classmethod
    def build(cls, kept: torch.Tensor, conv1_valid: torch.Tensor, positions: torch.Tensor,
              stride: int) -> ClipLayout:
        kept = kept.long()
        if bool((conv1_valid > kept).any()):
            raise ValueError("a clip's valid conv1 outputs cannot exceed its kept mel frames")
        # Each block is its kept frames plus at least one zero frame (kept + 1), rounded up to the stride so
        # that the next clip's first conv2 output is centred on its own first frame.
        block = torch.where(kept > 0, (kept + stride) // stride * stride, torch.zeros_like(kept))
        offsets = torch.cumsum(block, 0) - block
        length = int(block.sum())
        return cls(offsets, kept, conv1_valid.long(), positions.long(), length, stride)

    def mel_index(self) -> torch.Tensor:
        """Axis index of every kept mel frame, clip by clip (matches ``frames[i, :, :kept[i]]`` order)."""
        return _ranges(self.offsets, self.kept)

    def conv1_mask(self) -> torch.Tensor:
        """[length] 1 where conv1's output belongs to a clip's valid range, 0 in gaps and past it."""
        mask = torch.zeros(self.length, dtype=torch.bool, device=self.offsets.device)
        mask[_ranges(self.offsets, self.conv1_valid)] = True
        return mask

    def position_index(self) -> torch.Tensor:
        """Index of every clip's encoder positions in conv2's output, clip by clip."""
        return _ranges(torch.div(self.offsets, self.stride, rounding_mode="floor"), self.positions)



@dataclass
class WindowPlan:
    """Clips' encoder positions bin-packed into windows (CPU attention with an explicit mask)."""

    window_of_clip: list[int]
    offset_in_window: list[int]
    window_length: int  # positions of the fullest window (every window is padded to it)
    num_windows: int

    @classmethod
    def first_fit(cls, positions: list[int], capacity: int) -> WindowPlan:
        """First-fit decreasing: clips longest first, each into the first window with room for it."""
        too_long = [p for p in positions if p > capacity]
        if too_long:
            raise ValueError(f"a clip of {max(too_long)} encoder positions does not fit a window of {capacity}")
        fill: list[int] = []
        window = [0] * len(positions)
        offset = [0] * len(positions)
        for i in sorted(range(len(positions)), key=lambda i: (-positions[i], i)):
            if positions[i] == 0:
                continue
            w = next((w for w, used in enumerate(fill) if used + positions[i] <= capacity), len(fill))
            if w == len(fill):
                fill.append(0)
            window[i], offset[i] = w, fill[w]
            fill[w] += positions[i]
        return cls(window, offset, max(fill, default=0), len(fill))

    def slot_index(self, positions: list[int], device=None) -> torch.Tensor:
        """For every packed position (clip by clip), its flat slot ``window * window_length + offset``."""
        starts = torch.tensor([w * self.window_length + o for w, o in zip(self.window_of_clip,
                                                                         self.offset_in_window)],
                              dtype=torch.long, device=device)
        return _ranges(starts, torch.tensor(positions, dtype=torch.long, device=device))

    def attention_mask(self, positions: list[int], device=None) -> torch.Tensor:
        """[windows, 1, L, L] bool, True where attention is blocked: a position sees only its own clip.

        Padding slots form one block of their own, so no row of the softmax is empty.
        """
        segment = torch.full((self.num_windows * self.window_length,), -1, dtype=torch.long, device=device)
        clip_ids = torch.repeat_interleave(torch.arange(len(positions), device=device),
                                           torch.tensor(positions, dtype=torch.long, device=device))
        segment[self.slot_index(positions, device)] = clip_ids
        segment = segment.view(self.num_windows, self.window_length)
        return (segment[:, :, None] != segment[:, None, :]).unsqueeze(1)


def cu_seqlens(positions: torch.Tensor) -> torch.Tensor:
    """[n + 1] int32 cumulative sequence lengths of the clips (THD layout, clips without positions kept)."""
    return torch.nn.functional.pad(torch.cumsum(positions, 0), (1, 0)).to(torch.int32)
