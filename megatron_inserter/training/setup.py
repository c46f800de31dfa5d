"""Everything a run builds before its first step: process groups, model chunks, optimizer, schedule."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from megatron.core.distributed import DistributedDataParallelConfig
from megatron.core.optimizer import OptimizerConfig
from megatron.core.optimizer_param_scheduler import OptimizerParamScheduler

from megatron_inserter.data.tokenizers import build_tokenizer
from megatron_inserter.models.llm import use_transformer_engine
from megatron_inserter.runtime import ParallelConfig, initialize_parallel, resolve_dist_env
from megatron_inserter.training.arguments import ArgumentError, TrainingArguments
from megatron_inserter.training.engine import build_optimizer, configure_model_config, wrap_ddp
from megatron_inserter.training.flag_checks import RunLayout, check_flags, virtual_pipeline_size
from megatron_inserter.training.models import model_family, transformer_overrides

logger = logging.getLogger(__name__)


@dataclass
class Run:
    args: TrainingArguments
    layout: RunLayout
    tokenizer: object
    family: object
    chunks: list  # DDP-wrapped model chunks
    optimizer: object
    scheduler: OptimizerParamScheduler
    vp: int | None

    def parallel_layout(self) -> dict:
        a = self.args
        return {"tp": a.tensor_model_parallel_size, "pp": a.pipeline_model_parallel_size, "vp": self.vp,
                "cp": a.context_parallel_size, "dp": self.layout.data_parallel_size,
                "world_size": self.layout.world_size}


def _frozen_everything(chunks) -> bool:
    return not any(p.requires_grad for c in chunks for p in c.parameters())


def build_run(args: TrainingArguments) -> Run:
    cuda = torch.cuda.is_available()
    env = resolve_dist_env()
    layout = check_flags(args, env.world_size, cuda, use_transformer_engine())
    tokenizer = build_tokenizer(args.tokenizer_type, args.tokenizer_model)
    family = model_family(args, tokenizer)
    vp = virtual_pipeline_size(args, family.num_layers)
    initialize_parallel(ParallelConfig(
        tensor_model_parallel_size=args.tensor_model_parallel_size,
        pipeline_model_parallel_size=args.pipeline_model_parallel_size,
        virtual_pipeline_model_parallel_size=vp, context_parallel_size=args.context_parallel_size,
        seed=args.seed, distributed_timeout_minutes=args.distributed_timeout_minutes), env)

    chunks = family.build_chunks(transformer_overrides(args, vp), vp)
    if _frozen_everything(chunks):
        raise ArgumentError("every parameter is frozen: nothing to train")
    if cuda:
        chunks = [c.cuda(torch.cuda.current_device()) for c in chunks]
    if args.bf16:
        from megatron.core.transformer.module import Float16Module

        chunks = [Float16Module(c.config, c) for c in chunks]
    ddp_config = DistributedDataParallelConfig(
        grad_reduce_in_fp32=True, overlap_grad_reduce=False,
        use_distributed_optimizer=args.use_distributed_optimizer, check_for_nan_in_grad=cuda)
    chunks = wrap_ddp(chunks, ddp_config)
    configure_model_config(chunks, ddp=True)

    optimizer = build_optimizer(chunks, OptimizerConfig(
        optimizer="adam", lr=args.lr, min_lr=args.min_lr, weight_decay=args.weight_decay,
        adam_beta1=args.adam_beta1, adam_beta2=args.adam_beta2, adam_eps=args.adam_eps,
        clip_grad=args.clip_grad, bf16=args.bf16, fp16=False,
        params_dtype=torch.bfloat16 if args.bf16 else torch.float32,
        use_distributed_optimizer=args.use_distributed_optimizer))
    gbs = layout.global_batch_size
    decay_iters = args.lr_decay_iters if args.lr_decay_iters is not None else args.train_iters
    # Megatron's convention: the schedule counts samples, stepped by the global batch size.
    scheduler = OptimizerParamScheduler(
        optimizer, init_lr=0.0 if args.lr_warmup_iters else args.lr, max_lr=args.lr, min_lr=args.min_lr,
        lr_warmup_steps=args.lr_warmup_iters * gbs, lr_decay_steps=decay_iters * gbs,
        lr_decay_style=args.lr_decay_style, start_wd=args.weight_decay, end_wd=args.weight_decay,
        wd_incr_steps=args.train_iters * gbs, wd_incr_style="constant",
        use_checkpoint_opt_param_scheduler=False, override_opt_param_scheduler=True)
    return Run(args, layout, tokenizer, family, chunks, optimizer, scheduler, vp)
