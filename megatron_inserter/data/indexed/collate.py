"""Micro-batch collation into the batch contract (see COMMON contract 4)."""

from __future__ import annotations

import numpy as np
import torch

from megatron_inserter.data.indexed.audio_store import PCM_SCALE

_STACKED = ("tokens", "labels", "loss_mask", "position_ids")


def collate_batch(samples: list[dict]) -> dict[str, torch.Tensor]:
    """Stack the token fields; concatenate every sample's audio clips (row-major order, as their
    placeholder runs appear) into ``audio [n_clips, max_samples]`` float32 in [-1, 1], zero padded, with
    ``audio_lengths [n_clips]``. No clips -> ``audio`` of shape [0, 0]."""
    if not samples:
        raise ValueError("empty micro-batch")
    batch = {k: torch.stack([s[k] for s in samples]) for k in _STACKED}
    batch["loss_mask"] = batch["loss_mask"].float()
    clips = [c for s in samples for c in s["audio"]]
    lengths = [len(c) for c in clips]
    audio = np.empty((len(clips), max(lengths, default=0)), dtype=np.float32)
    for i, c in enumerate(clips):
        audio[i, : len(c)] = c
        audio[i, len(c):] = 0.0
    audio *= np.float32(PCM_SCALE)  # int16 -> [-1, 1), exact in float32
    batch["audio"] = torch.from_numpy(audio)
    batch["audio_lengths"] = torch.tensor(lengths, dtype=torch.int64)
    batch["num_padding"] = torch.tensor([int(s.get("num_padding", 0)) for s in samples], dtype=torch.int64)
    if "dataset_id" in samples[0]:
        batch["dataset_id"] = torch.tensor([int(s["dataset_id"]) for s in samples], dtype=torch.int64)
    return batch
