"""megatron-core's fused QKV layout <-> separate q / k / v projections.

megatron-core stores ``linear_qkv`` rows grouped per query group g: [q heads of g; k_g; v_g], each head
``head_dim`` rows (``SelfAttention.get_query_key_value_tensors`` splits it that way). Hugging Face keeps
q, k, v as separate [heads * head_dim, ...] / [groups * head_dim, ...] tensors. The same functions serve
weights ([rows, in]) and biases ([rows]).
"""

from __future__ import annotations

import torch


def fuse(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, groups: int, head_dim: int) -> torch.Tensor:
    per = heads // groups
    rest = q.shape[1:]
    parts = (q.reshape(groups, per * head_dim, *rest), k.reshape(groups, head_dim, *rest),
             v.reshape(groups, head_dim, *rest))
    return torch.cat(parts, dim=1).reshape(groups * (per + 2) * head_dim, *rest)


def split(qkv: torch.Tensor, heads: int, groups: int, head_dim: int
          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    per = heads // groups
    rest = qkv.shape[1:]
    x = qkv.reshape(groups, (per + 2) * head_dim, *rest)
    q = x[:, : per * head_dim].reshape(heads * head_dim, *rest)
    k = x[:, per * head_dim: (per + 1) * head_dim].reshape(groups * head_dim, *rest)
    v = x[:, (per + 1) * head_dim:].reshape(groups * head_dim, *rest)
    return q.contiguous(), k.contiguous(), v.contiguous()
