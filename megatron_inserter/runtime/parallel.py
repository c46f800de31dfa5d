"""Process-group start-up: torch.distributed, megatron parallel state, seeds.

    from megatron_inserter.runtime import ParallelConfig, initialize_parallel
    initialize_parallel(ParallelConfig(tensor_model_parallel_size=2, pipeline_model_parallel_size=2))

Works under torchrun, under slurm's srun (no wrapper) and as a single process. NCCL on CUDA, gloo on CPU
(with the megatron-core CPU bridges applied).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist

from megatron_inserter.runtime import cpu_compat
from megatron_inserter.runtime.env import DistEnv, resolve_dist_env


@dataclass
class ParallelConfig:
    tensor_model_parallel_size: int = 1
    pipeline_model_parallel_size: int = 1
    virtual_pipeline_model_parallel_size: int | None = None
    context_parallel_size: int = 1
    seed: int = 1234
    distributed_timeout_minutes: int = 30

    @property
    def model_parallel_size(self) -> int:
        return self.tensor_model_parallel_size * self.pipeline_model_parallel_size * self.context_parallel_size

    def data_parallel_size(self, world_size: int) -> int:
        validate_sizes(self, world_size)
        return world_size // self.model_parallel_size


def validate_sizes(cfg: ParallelConfig, world_size: int) -> None:
    for name in ("tensor_model_parallel_size", "pipeline_model_parallel_size", "context_parallel_size"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(cfg, name)}")
    mp = cfg.model_parallel_size
    if world_size % mp != 0:
        raise ValueError(
            f"world size {world_size} is not divisible by tensor ({cfg.tensor_model_parallel_size}) x "
            f"pipeline ({cfg.pipeline_model_parallel_size}) x context ({cfg.context_parallel_size}) "
            f"parallel sizes = {mp}; change the parallel sizes or the number of processes"
        )
    vp = cfg.virtual_pipeline_model_parallel_size
    if vp is not None and vp > 1 and cfg.pipeline_model_parallel_size < 2:
        raise ValueError("virtual pipeline parallelism needs --pipeline-model-parallel-size >= 2")


def device() -> torch.device:
    """The device this rank computes on."""
    if torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def set_seeds(seed: int, pp_rank: int = 0) -> None:
    """Seed Python, numpy, torch and megatron's model-parallel RNG tracker.

    As Megatron-LM does, the data seed differs per pipeline stage; the tracker gives tensor-parallel
    ranks distinct streams for parallel regions and identical ones elsewhere.
    """
    from megatron.core import tensor_parallel

    s = seed + 100 * pp_rank
    random.seed(s)
    np.random.seed(s)
    torch.manual_seed(s)
    tensor_parallel.model_parallel_cuda_manual_seed(s)


def initialize_parallel(cfg: ParallelConfig, env: DistEnv | None = None) -> DistEnv:
    """Initialize torch.distributed (if needed), megatron parallel state and seeds. Idempotent per config."""
    from megatron.core import parallel_state

    env = env or resolve_dist_env()
    validate_sizes(cfg, env.world_size)
    cuda = torch.cuda.is_available()
    if not cuda:
        cpu_compat.apply()
    else:
        torch.cuda.set_device(env.local_rank % torch.cuda.device_count())

    if not dist.is_initialized():
        env.export()
        dist.init_process_group(
            backend="nccl" if cuda else "gloo",
            init_method="env://",
            rank=env.rank,
            world_size=env.world_size,
            timeout=timedelta(minutes=cfg.distributed_timeout_minutes),
        )
    elif dist.get_world_size() != env.world_size:
        raise RuntimeError(f"process group has {dist.get_world_size()} ranks but the environment says "
                           f"{env.world_size}")

    if parallel_state.model_parallel_is_initialized():
        parallel_state.destroy_model_parallel()
    vp = cfg.virtual_pipeline_model_parallel_size
    parallel_state.initialize_model_parallel(
        tensor_model_parallel_size=cfg.tensor_model_parallel_size,
        pipeline_model_parallel_size=cfg.pipeline_model_parallel_size,
        virtual_pipeline_model_parallel_size=vp if vp and vp > 1 else None,
        context_parallel_size=cfg.context_parallel_size,
        distributed_timeout_minutes=cfg.distributed_timeout_minutes,
    )
    set_seeds(cfg.seed, parallel_state.get_pipeline_model_parallel_rank())
    return env


def destroy_parallel() -> None:
    from megatron.core import parallel_state

    if parallel_state.model_parallel_is_initialized():
        parallel_state.destroy_model_parallel()
    if dist.is_initialized():
        dist.destroy_process_group()
