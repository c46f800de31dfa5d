"""Send a micro-batch from the tensor-parallel source rank to the rest of its tensor-parallel group.

Only the source rank reads data; the others receive the same tensors. Shapes vary between micro-batches
(``audio`` is ``[n_clips, max_samples]``, possibly ``[0, 0]``), so a small header with every tensor's
dtype and shape goes first, then one broadcast per dtype of the flattened tensors.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

_DTYPES = [torch.int64, torch.float32, torch.bfloat16, torch.int32, torch.bool, torch.float16]
_MAX_DIMS = 4


def broadcast_batch(batch: dict[str, torch.Tensor] | None, keys: list[str], src: int, group,
                    device: torch.device) -> dict[str, torch.Tensor]:
    """``batch`` on the source rank (global rank ``src``), None elsewhere; returns the batch on every rank."""
    is_src = dist.get_rank() == src
    header = torch.zeros(len(keys), 2 + _MAX_DIMS, dtype=torch.int64)
    if is_src:
        missing = [k for k in keys if k not in batch]
        if missing:
            raise KeyError(f"micro-batch lacks {missing}")
        for i, k in enumerate(keys):
            t = batch[k]
            if t.dim() > _MAX_DIMS:
                raise ValueError(f"{k} has {t.dim()} dimensions (at most {_MAX_DIMS} are broadcast)")
            header[i, 0] = _DTYPES.index(t.dtype)
            header[i, 1] = t.dim()
            header[i, 2:2 + t.dim()] = torch.tensor(t.shape, dtype=torch.int64)
    header = header.to(device)
    dist.broadcast(header, src, group=group)
    header = header.cpu()
    specs = []
    for i, k in enumerate(keys):
        dtype = _DTYPES[int(header[i, 0])]
        shape = tuple(int(x) for x in header[i, 2:2 + int(header[i, 1])])
        specs.append((k, dtype, shape))
    out = {}
    for dtype in [d for d in _DTYPES if any(d == sd for _, sd, _ in specs)]:  # same order on every rank
        group_keys = [(k, s) for k, d, s in specs if d == dtype]
        numel = sum(_numel(s) for _, s in group_keys)
        if is_src:
            flat = torch.cat([batch[k].to(device).reshape(-1) for k, _ in group_keys]) if numel else \
                torch.empty(0, dtype=dtype, device=device)
        else:
            flat = torch.empty(numel, dtype=dtype, device=device)
        if numel:
            dist.broadcast(flat, src, group=group)
        offset = 0
        for k, s in group_keys:
            n = _numel(s)
            out[k] = flat[offset:offset + n].view(s)
            offset += n
    return {k: out[k] for k in keys}


def _numel(shape: tuple) -> int:
    n = 1
    for d in shape:
        n *= d
    return n
