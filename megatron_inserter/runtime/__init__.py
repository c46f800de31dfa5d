"""Process start-up: distributed environment, megatron parallel state, seeds and the CPU bridges."""

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
