"""One optimizer step on megatron-core pieces: mcore DDP, the Megatron optimizer, the pipeline schedules.

These are the few calls every training entry point needs (the trainer, the tests, the benchmarks):

    chunks = wrap_ddp(build_chunks(...), ddp_config)
    optimizer = build_optimizer(chunks, OptimizerConfig(...))
    metrics = train_step(forward_step, data_iterator, chunks, optimizer, scheduler, ...)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from megatron.core import parallel_state
from megatron.core.distributed import (
    DistributedDataParallel,
    DistributedDataParallelConfig,
    finalize_model_grads,
)
from megatron.core.optimizer import OptimizerConfig, get_megatron_optimizer
from megatron.core.pipeline_parallel import get_forward_backward_func
from megatron.core.transformer.module import MegatronModule


def wrap_ddp(chunks: Sequence[MegatronModule], ddp_config: DistributedDataParallelConfig) -> list:
    """Wrap each model chunk (one per virtual pipeline stage) in megatron-core's DDP.

    The chunks' config must already have ``calculate_per_token_loss=True`` (see configure_model_config):
    DDP fixes its gradient scaling when it is built.
    """
    if not chunks[0].config.calculate_per_token_loss:
        raise ValueError("model config needs calculate_per_token_loss=True before DDP wrapping")
    wrapped = []
    for i, chunk in enumerate(chunks):
        wrapped.append(
            DistributedDataParallel(
                config=chunk.config,
                ddp_config=ddp_config,
                module=chunk,
                # Only the first chunk overlaps its grad all-reduce with backward, as Megatron-LM does.
                disable_bucketing=i > 0,
            )
        )
    return wrapped


def build_optimizer(chunks: Sequence, config: OptimizerConfig):
    if config.use_distributed_optimizer and not torch.cuda.is_available():
        raise ValueError("--use-distributed-optimizer needs CUDA tensors; on CPU use the plain optimizer")
    return get_megatron_optimizer(config, list(chunks))


def configure_model_config(chunks: Sequence, ddp: bool) -> None:
    """Point the model config the schedules read at the grad-sync and grad-finalize functions.

    Losses are per-token sums (``calculate_per_token_loss``): forward-step loss functions return
    ``(loss_sum, num_tokens, {name: tensor([sum, count])})`` and finalize_model_grads divides the
    gradients by the global token count, so the result does not depend on how the global batch is
    split across microbatches and data-parallel ranks.
    """
    config = chunks[0].config
    if not config.calculate_per_token_loss:
        raise ValueError("model config needs calculate_per_token_loss=True")
    config.finalize_model_grads_func = finalize_model_grads
    if ddp:
        no_sync = [c.no_sync for c in chunks]
        config.no_sync_func = no_sync[0] if len(no_sync) == 1 else no_sync


@dataclass
class StepResult:
    losses: dict[str, float]  # averaged over microbatches (and data-parallel ranks)
    grad_norm: float | None
    skipped: bool


def _average_losses(losses_reduced: list[dict]) -> dict[str, float]:
    """Average the per-microbatch loss dicts on the last stage and share them with every rank.

    Each entry is ``{name: tensor([sum, count])}``: sums of per-token values and the token counts, so
    the result is the exact per-token mean over the whole global batch.
    """
    names = sorted(losses_reduced[0]) if losses_reduced else []
    agg = {}
    if parallel_state.is_pipeline_last_stage(ignore_virtual=True):
        for name in names:
            total = torch.stack([d[name] for d in losses_reduced]).sum(0).double()
            torch.distributed.all_reduce(total, group=parallel_state.get_data_parallel_group())
            agg[name] = total
    # Broadcast from the last pipeline stage so every rank logs the same numbers.
    pp_group = parallel_state.get_pipeline_model_parallel_group()
    if parallel_state.get_pipeline_model_parallel_world_size() > 1:
        obj = [{k: v.tolist() for k, v in agg.items()}]
        last = torch.distributed.get_process_group_ranks(pp_group)[-1]
        torch.distributed.broadcast_object_list(obj, src=last, group=pp_group)
        agg = {k: torch.tensor(v, dtype=torch.float64) for k, v in obj[0].items()}
    return {k: float(v[0] / v[1]) if v[1] > 0 else float("nan") for k, v in agg.items()}


def run_microbatches(
    forward_step: Callable,
    data_iterator: Iterator | list[Iterator],
    chunks: Sequence,
    num_microbatches: int,
    seq_length: int,
    micro_batch_size: int,
    forward_only: bool,
) -> dict[str, float]:
    fwd_bwd = get_forward_backward_func()
    losses = fwd_bwd(
        forward_step_func=forward_step,
        data_iterator=data_iterator,
        model=list(chunks),
        num_microbatches=num_microbatches,
        seq_length=seq_length,
        micro_batch_size=micro_batch_size,
        forward_only=forward_only,
    )
    return _average_losses(losses)


def train_step(
    forward_step: Callable,
    data_iterator: Iterator | list[Iterator],
    chunks: Sequence,
    optimizer,
    scheduler,
    num_microbatches: int,
    seq_length: int,
    micro_batch_size: int,
    increment: int,
) -> StepResult:
    for chunk in chunks:
        if hasattr(chunk, "zero_grad_buffer"):
            chunk.zero_grad_buffer()
    optimizer.zero_grad()
    losses = run_microbatches(forward_step, data_iterator, chunks, num_microbatches, seq_length,
                              micro_batch_size, forward_only=False)
    ok, grad_norm, _ = optimizer.step()
    if ok and scheduler is not None:
        scheduler.step(increment=increment)
    return StepResult(losses=losses, grad_norm=grad_norm, skipped=not ok)


@torch.no_grad()
def eval_step(forward_step, data_iterator, chunks, num_microbatches, seq_length, micro_batch_size) -> dict:
    for chunk in chunks:
        chunk.eval()
    try:
        return run_microbatches(forward_step, data_iterator, chunks, num_microbatches, seq_length,
                                micro_batch_size, forward_only=True)
    finally:
        for chunk in chunks:
            chunk.train()
