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
    losses: dict[str, float]  # per-token means over the global batch
    grad_norm: float | None
    skipped: bool


def sum_microbatch_losses(losses_reduced: list[dict]) -> dict[str, torch.Tensor]:
    """This rank's ``{name: tensor([sum, count])}`` (float64) summed over the schedule's micro-batches.

    Each entry of ``losses_reduced`` is one micro-batch's report of per-token loss sums and token counts
    (see ``losses.LossFunction``); only the last pipeline stage has any.
    """
    names = sorted(losses_reduced[0]) if losses_reduced else []
    return {name: torch.stack([d[name].detach() for d in losses_reduced]).sum(0).double() for name in names}


def add_loss_sums(into: dict[str, torch.Tensor], sums: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Accumulate ``[sum, count]`` pairs (validation adds one schedule call after another)."""
    for name, value in sums.items():
        into[name] = into[name] + value if name in into else value
    return into


def reduce_loss_sums(sums: dict[str, torch.Tensor]) -> dict[str, float]:
    """Collective: the per-token means over every data-parallel and context-parallel rank, on every rank.

    Context-parallel ranks each hold the losses of their part of the sequence, data-parallel ranks those
    of their samples: the sums and counts are added over both (megatron-core's data-parallel group with
    the context-parallel ranks), then the last pipeline stage shares the result with the other stages.
    """
    agg = {}
    if parallel_state.is_pipeline_last_stage(ignore_virtual=True) and sums:
        names = sorted(sums)
        flat = torch.stack([sums[n] for n in names])
        torch.distributed.all_reduce(flat, group=parallel_state.get_data_parallel_group(with_context_parallel=True))
        agg = dict(zip(names, flat))
    # Broadcast from the last pipeline stage so every rank logs the same numbers.
    if parallel_state.get_pipeline_model_parallel_world_size() > 1:
        pp_group = parallel_state.get_pipeline_model_parallel_group()
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
) -> dict[str, torch.Tensor]:
    """One call of megatron-core's schedule; returns this rank's loss sums (``sum_microbatch_losses``)."""
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
    return sum_microbatch_losses(losses)


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
    sums = run_microbatches(forward_step, data_iterator, chunks, num_microbatches, seq_length,
                            micro_batch_size, forward_only=False)
    ok, grad_norm, _ = optimizer.step()
    if ok and scheduler is not None:
        scheduler.step(increment=increment)
    return StepResult(losses=reduce_loss_sums(sums), grad_norm=grad_norm, skipped=not ok)


@torch.no_grad()
def eval_sums(forward_step, data_iterator, chunks, num_microbatches, seq_length, micro_batch_size) -> dict:
    """Forward only over ``num_microbatches``; this rank's loss sums (add them up, then ``reduce_loss_sums``)."""
    for chunk in chunks:
        chunk.eval()
    try:
        return run_microbatches(forward_step, data_iterator, chunks, num_microbatches, seq_length,
                                micro_batch_size, forward_only=True)
    finally:
        for chunk in chunks:
            chunk.train()


def eval_step(forward_step, data_iterator, chunks, num_microbatches, seq_length, micro_batch_size) -> dict:
    """Collective: per-token mean losses of a forward-only pass over ``num_microbatches``."""
    return reduce_loss_sums(eval_sums(forward_step, data_iterator, chunks, num_microbatches, seq_length,
                                      micro_batch_size))
