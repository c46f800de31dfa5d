"""Measured bytes of the tiny model on CPU (run in a spawned gloo process by test_plan.py): parameters,
mcore DDP's gradient buffer, the optimizer's state after one step and what autograd keeps for backward
during one micro-batch's forward."""

from __future__ import annotations

import dataclasses
from functools import partial

SEQ, CLIPS, CLIP_SAMPLES, FRAMES = 256, 4, 16000, 25  # 1 s clips: 100 mel frames, 50 positions, 25 frames


def tiny_config(input_mode: str):
    from megatron_inserter.models.presets import resolve

    cfg = resolve("tiny")
    return cfg.replace(encoder=dataclasses.replace(cfg.encoder, input_mode=input_mode))


def _batch(cfg, with_audio: bool):
    import torch

    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(10, 3000, (1, SEQ), generator=g)
    batch = {"tokens": tokens, "labels": torch.randint(10, 3000, (1, SEQ), generator=g),
             "position_ids": torch.arange(SEQ)[None]}
    if with_audio:
        for i in range(CLIPS):
            tokens[0, 10 + 40 * i: 10 + 40 * i + FRAMES] = cfg.audio_placeholder_id
        batch["audio"] = 0.1 * torch.randn(CLIPS, CLIP_SAMPLES, generator=g)
        batch["audio_lengths"] = torch.full((CLIPS,), CLIP_SAMPLES)
    return batch


class SavedTensors:
    """Bytes of the distinct storages autograd saves for backward, parameters and buffers left out."""

    def __init__(self, model):
        import torch

        self.skip = {t.untyped_storage().data_ptr() for t in list(model.parameters()) + list(torch.nn.Module.buffers(model))}
        self.seen: dict[int, int] = {}

    def pack(self, t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in self.skip:
            self.seen.setdefault(storage.data_ptr(), storage.nbytes())
        return t

    @property
    def bytes(self) -> int:
        return sum(self.seen.values())


def _loss_func(per_token):
    import torch

    total = per_token.float().sum()
    count = torch.tensor(per_token.numel(), dtype=torch.int)
    return total, count, {"lm loss": torch.stack([total.detach(), count.float()])}


def _forward_step(family, saved, data_iterator, chunk):
    """The schedule's forward step, with autograd's saved tensors recorded."""
    import torch

    batch = next(data_iterator)
    with torch.autograd.graph.saved_tensors_hooks(saved.pack, lambda t: t):
        return family.forward(chunk, batch), _loss_func


def measure(rank, world_size, runs):
    """[(model_type, input_mode) -> {"params", "param_bytes", "grad_bytes", "optimizer_bytes", "activation_bytes"}]"""
    import torch
    from megatron.core.distributed import DistributedDataParallelConfig
    from megatron.core.optimizer import OptimizerConfig

    from megatron_inserter.runtime import ParallelConfig, initialize_parallel
    from megatron_inserter.training.engine import (
        build_optimizer,
        configure_model_config,
        train_step,
        wrap_ddp,
    )
    from megatron_inserter.training.models import GPTFamily, InserterFamily

    initialize_parallel(ParallelConfig(seed=3))
    overrides = {"tensor_model_parallel_size": 1, "pipeline_model_parallel_size": 1, "context_parallel_size": 1,
                 "sequence_parallel": False, "bf16": False, "params_dtype": torch.float32,
                 "pipeline_dtype": torch.float32}
    out = []
    for model_type, mode in runs:
        cfg = tiny_config(mode)
        family = InserterFamily(cfg) if model_type == "inserter" else GPTFamily(cfg.llm, cfg.frame_spec())
        chunks = wrap_ddp(family.build_chunks(overrides, None),
                          DistributedDataParallelConfig(grad_reduce_in_fp32=True, use_distributed_optimizer=False))
        configure_model_config(chunks, ddp=True)
        optimizer = build_optimizer(chunks, OptimizerConfig(optimizer="adam", lr=1e-3, bf16=False,
                                                            params_dtype=torch.float32))
        model = chunks[0]
        batch = _batch(cfg, model_type == "inserter")
        saved = SavedTensors(model)

        train_step(partial(_forward_step, family, saved), iter([batch]), chunks, optimizer, None, 1, SEQ, 1,
                   increment=1)
        state = [v for s in optimizer.optimizer.state.values() for v in s.values() if torch.is_tensor(v)]
        out.append({
            "params": sum(p.numel() for p in model.parameters()),
            "param_bytes": sum(p.numel() * p.element_size() for p in model.parameters()),
            "grad_bytes": sum(b.grad_data.numel() * b.grad_data.element_size() for b in model.buffers),
            "optimizer_bytes": sum(v.numel() * v.element_size() for v in state if v.dim() > 0),
            "scalar_state": all(v.dim() == 0 for v in state if v.numel() == 1),
            "activation_bytes": saved.bytes,
        })
    return out
