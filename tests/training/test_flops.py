"""Who counts the encoder's FLOPs: one rank per context-parallel group of the first pipeline stage."""

from __future__ import annotations

from tests.harness import run_distributed


def _counting_ranks(rank, world_size, tp, pp, cp):
    from megatron_inserter.runtime import ParallelConfig, destroy_parallel, initialize_parallel
    from megatron_inserter.training.flops import counts_encoder_flops

    initialize_parallel(ParallelConfig(tensor_model_parallel_size=tp, pipeline_model_parallel_size=pp,
                                       context_parallel_size=cp))
    try:
        return counts_encoder_flops()
    finally:
        destroy_parallel()


def test_one_rank_of_a_context_parallel_group_counts_the_encoder():
    # Both context-parallel ranks encode the same clips; summed, each clip must be counted once.
    assert run_distributed(_counting_ranks, 2, 1, 1, 2, timeout=300) == [True, False]
