"""Shared pieces of the multi-process runtime tests: a tiny Qwen2-shaped GPTModel trained on fixed data
under any TP/PP/VPP/DP layout, starting from weights loaded out of one dist checkpoint."""

from __future__ import annotations

import dataclasses
import os
from functools import partial

import torch

from megatron_inserter.models.llm import LLMConfig, build_gpt, build_pipeline_chunks, transformer_config
from megatron_inserter.runtime import ParallelConfig, initialize_parallel

TINY = LLMConfig(num_layers=4, hidden_size=32, ffn_hidden_size=64, num_attention_heads=4,
                 num_query_groups=2, vocab_size=100, max_position_embeddings=64, add_qkv_bias=True)
TINY_TIED = dataclasses.replace(TINY, tie_embeddings=True)
SEQ, MBS, GBS = 16, 2, 8


def global_batches(num_steps: int, seed: int = 7) -> list[torch.Tensor]:
    """Counting sequences from random starts (learnable, so the loss falls within a few steps)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(num_steps):
        start = torch.randint(0, TINY.vocab_size, (GBS, 1), generator=g)
        out.append((start + torch.arange(SEQ + 1)) % TINY.vocab_size)
    return out


def build_chunks(tp: int, pp: int, vp: int | None, tied: bool = False):
    llm = TINY_TIED if tied else TINY
    config = transformer_config(llm, tensor_model_parallel_size=tp, pipeline_model_parallel_size=pp,
                                virtual_pipeline_model_parallel_size=vp)
    return build_pipeline_chunks(partial(build_gpt, llm, config, tensor_model_parallel_size=tp), vp)


def sharded_state(chunks) -> dict:
    return {f"model{i}": c.sharded_state_dict() for i, c in enumerate(chunks)}


def save_checkpoint(chunks, path: str) -> None:
    from megatron.core import dist_checkpointing

    os.makedirs(path, exist_ok=True)
    dist_checkpointing.save(sharded_state(chunks), path)


def load_checkpoint(chunks, path: str) -> None:
    from megatron.core import dist_checkpointing

    state = dist_checkpointing.load(sharded_state(chunks), path)
    for i, c in enumerate(chunks):
        c.load_state_dict(state[f"model{i}"])


def forward_step(data_iterator, model):
    tokens = next(data_iterator)
    inputs, labels = tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()
    pos = torch.arange(SEQ).unsqueeze(0).expand_as(inputs)
    out = model(inputs, pos, None, labels=labels)

    def loss_func(per_token):
        mask = torch.ones_like(per_token)
        total = (per_token.float() * mask).sum()
        count = mask.sum()
        return total, count.int(), {"lm loss": torch.stack([total.detach(), count])}

    return out, loss_func


def microbatches_for_rank(batch: torch.Tensor, dp_rank: int, dp_size: int) -> list[torch.Tensor]:
    local = batch.chunk(dp_size)[dp_rank]
    return list(local.split(MBS))


def train(rank, world_size, ckpt_dir, tp=1, pp=1, vp=None, steps=3, ddp=True, eval_only=False, tied=False):
    """Load the checkpoint into this layout, run ``steps`` optimizer steps (or one eval), return losses."""
    from megatron.core import parallel_state as ps
    from megatron.core.distributed import DistributedDataParallelConfig
    from megatron.core.optimizer import OptimizerConfig

    from megatron_inserter.training.engine import (
        build_optimizer,
        configure_model_config,
        eval_step,
        train_step,
        wrap_ddp,
    )

    initialize_parallel(ParallelConfig(tensor_model_parallel_size=tp, pipeline_model_parallel_size=pp,
                                       virtual_pipeline_model_parallel_size=vp))
    chunks = build_chunks(tp, pp, vp, tied)
    load_checkpoint(chunks, ckpt_dir)
    if ddp:
        chunks = wrap_ddp(chunks, DistributedDataParallelConfig(grad_reduce_in_fp32=True))
    configure_model_config(chunks, ddp=ddp)
    dp_rank, dp_size = ps.get_data_parallel_rank(), ps.get_data_parallel_world_size()
    n_micro = GBS // MBS // dp_size
    losses = []
    if eval_only:
        mbs = microbatches_for_rank(global_batches(1)[0], dp_rank, dp_size)
        its = [iter(list(mbs)) for _ in chunks]
        out = eval_step(forward_step, its if vp else its[0], chunks, n_micro, SEQ, MBS)
        return out["lm loss"]
    optimizer = build_optimizer(chunks, OptimizerConfig(optimizer="adam", lr=1e-2, clip_grad=1.0,
                                                        weight_decay=0.01, bf16=False, fp16=False))
    for batch in global_batches(steps):
        mbs = microbatches_for_rank(batch, dp_rank, dp_size)
        its = [iter(list(mbs)) for _ in chunks]
        res = train_step(forward_step, its if vp else its[0], chunks, optimizer, None,
                         n_micro, SEQ, MBS, increment=GBS)
        losses.append(res.losses["lm loss"])
    return losses


def make_reference_checkpoint(rank, world_size, ckpt_dir, tied=False):
    initialize_parallel(ParallelConfig(seed=1234))
    chunks = build_chunks(1, 1, None, tied)
    save_checkpoint(chunks, ckpt_dir)
    return True
