"""Process start-up: distributed environment, megatron parallel state, seeds and the CPU bridges.

  env.py         where this process sits in the job: rank, world size, rendezvous (torchrun, srun, alone)
  parallel.py    ``initialize_parallel``: torch.distributed, megatron parallel state and seeds
  cpu_compat.py  megatron-core on machines without CUDA: every bridge in one place
"""

from megatron_inserter.runtime.env import DistEnv, first_host, resolve_dist_env
from megatron_inserter.runtime.parallel import (
    ParallelConfig,
    destroy_parallel,
    device,
    initialize_parallel,
    set_seeds,
    validate_sizes,
)

__all__ = [
    "DistEnv", "ParallelConfig", "destroy_parallel", "device", "first_host", "initialize_parallel",
    "resolve_dist_env", "set_seeds", "validate_sizes",
]
