"""Context-parallel sequence slicing, the way Megatron does it (load-balanced for causal attention).

The sequence is cut into ``2 * cp`` equal chunks; CP rank ``r`` keeps chunks ``r`` and ``2 * cp - 1 - r``,
so every rank gets the same share of the causal attention work. ``megatron.core.utils.
get_batch_on_this_cp_rank`` does the same for dicts of ``[b, s, ...]`` tensors; here the sequence dimension
is explicit so the model can slice its ``[s, b, h]`` embeddings after splicing the audio frames into them.

Context-parallel attention itself is Transformer Engine's (ring attention over the CP group); megatron-core's
local attention refuses ``context_parallel_size > 1``. ``check_context_parallel_supported`` says so up front.
"""

from __future__ import annotations

import torch

# Batch keys that carry a sequence dimension (dim 1) and are sliced for the CP rank.
SEQUENCE_KEYS = ("tokens", "labels", "loss_mask", "position_ids")


def _cp_size_rank(cp_size: int | None, cp_rank: int | None) -> tuple[int, int]:
    if cp_size is None or cp_rank is None:
        from megatron.core import parallel_state as ps

        cp_size = ps.get_context_parallel_world_size() if cp_size is None else cp_size
        cp_rank = ps.get_context_parallel_rank() if cp_rank is None else cp_rank
    if not 0 <= cp_rank < cp_size:
        raise ValueError(f"context-parallel rank {cp_rank} is outside 0..{cp_size - 1}")
    return cp_size, cp_rank


def cp_positions(seq_len: int, cp_size: int, cp_rank: int, device=None) -> torch.Tensor:
    """Sequence positions held by ``cp_rank``, in the order it holds them."""
    chunks = 2 * cp_size
    if seq_len % chunks:
        raise ValueError(f"sequence length {seq_len} must be divisible by 2 x context-parallel size = {chunks}; "
                         f"pad the sequence (e.g. --seq-length a multiple of {chunks})")
    size = seq_len // chunks
    first = torch.arange(cp_rank * size, (cp_rank + 1) * size, device=device)
    last = torch.arange((chunks - 1 - cp_rank) * size, (chunks - cp_rank) * size, device=device)
    return torch.cat([first, last])


def slice_for_cp(tensor: torch.Tensor, seq_dim: int, cp_size: int | None = None,
                 cp_rank: int | None = None) -> torch.Tensor:
    """This rank's part of ``tensor`` along ``seq_dim``; the identity when cp_size is 1."""
    cp_size, cp_rank = _cp_size_rank(cp_size, cp_rank)
    if cp_size == 1:
        return tensor
    index = cp_positions(tensor.shape[seq_dim], cp_size, cp_rank, device=tensor.device)
    return tensor.index_select(seq_dim, index)


def slice_batch_for_cp(batch: dict, cp_size: int | None = None, cp_rank: int | None = None) -> dict:
    """A copy of ``batch`` with tokens/labels/loss_mask/position_ids ([b, s]) sliced for the CP rank.

    Use it for what the training loop consumes itself (the loss mask); the model takes full-length tokens,
    labels and position ids, splices the audio frames on the full sequence and slices internally.
    """
    out = dict(batch)
    for key in SEQUENCE_KEYS:
        if out.get(key) is not None:
            out[key] = slice_for_cp(out[key], 1, cp_size, cp_rank)
    return out


def gather_cp_slices(slices: list[torch.Tensor], seq_dim: int) -> torch.Tensor:
    """Inverse of ``slice_for_cp``: the per-rank slices (rank order) back in sequence order."""
    cp_size = len(slices)
    seq_len = sum(s.shape[seq_dim] for s in slices)
    order = torch.cat([cp_positions(seq_len, cp_size, r) for r in range(cp_size)])
    stacked = torch.cat(slices, dim=seq_dim)
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(seq_len)
    return stacked.index_select(seq_dim, inverse.to(stacked.device))


def check_context_parallel_supported(context_parallel_size: int, use_te: bool) -> None:
    if context_parallel_size > 1 and not use_te:
        raise ValueError(
            f"context parallelism (--context-parallel-size {context_parallel_size}) needs Transformer Engine "
            "attention on CUDA (megatron-core's local attention has no ring attention); run on GPUs with "
            "transformer-engine installed, or use --context-parallel-size 1")
