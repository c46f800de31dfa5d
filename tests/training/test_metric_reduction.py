"""Logged numbers are global under every layout: losses (and their per-component gap parts) summed over the
data-parallel and context-parallel ranks, encoder FLOPs counted once per clip."""

import pytest

from tests.harness import run_distributed
from tests.training.runs import common_flags, train_results

STEPS = {"model_type": "inserter", "seq_length": 64, "train_iters": 2, "lr_warmup_iters": 0, "eval_iters": 1,
         "eval_interval": 2, "split": "80,20,0"}


def test_data_parallel_logs_the_same_losses_as_one_rank(corpus):
    tok, prefix = corpus
    argv = common_flags(tok, prefix, **STEPS)  # global batch 4 = micro-batch 2 x 2 micro-batches, or x 2 ranks
    (one,) = run_distributed(train_results, 1, [argv])[0]
    per_rank = [runs[0] for runs in run_distributed(train_results, 2, [argv])]
    names = [k for k in one["history"][0] if k.startswith("loss") or k == "lm loss"]
    # The blend's two components each report their after-speech and random-text losses.
    assert {"loss after speech [tiny]", "loss after random text [tiny_asr]"} <= set(names)
    for rank, run in enumerate(per_rank):
        for step, ref in zip(run["history"], one["history"]):
            for name in names:
                assert step[name] == pytest.approx(ref[name], rel=1e-5), (rank, step["iteration"], name)
        for name in names:
            assert run["validation"][0][name] == pytest.approx(one["validation"][0][name], rel=1e-5), (rank, name)


def _context_parallel_reduction(rank, world_size):
    import torch
    from megatron.core import parallel_state as ps

    from megatron_inserter.runtime import ParallelConfig, destroy_parallel, initialize_parallel
    from megatron_inserter.training.engine import reduce_loss_sums
    from megatron_inserter.training.flops import counts_encoder_flops

    out = {}
    try:
        for layout in ({"context_parallel_size": 2}, {}):
            initialize_parallel(ParallelConfig(**layout))
            # Each rank holds the sums of its part of the sequence (cp) or of its samples (dp); tensor-parallel
            # peers hold the same sums. The mean is over every part of every sample, whatever the layout.
            part = ps.get_data_parallel_rank() * ps.get_context_parallel_world_size() + ps.get_context_parallel_rank()
            sums = {"lm loss": torch.tensor([10.0 * (part + 1), 2.0 + part], dtype=torch.float64)}
            counts = torch.tensor([int(counts_encoder_flops())])
            torch.distributed.all_reduce(counts)
            out[str(layout)] = {"loss": reduce_loss_sums(sums)["lm loss"], "encoder_counted": int(counts),
                                "cp": ps.get_context_parallel_world_size(),
                                "dp": ps.get_data_parallel_world_size()}
            ps.destroy_model_parallel()
    finally:
        destroy_parallel()
    return out


def test_context_parallel_ranks_are_reduced_and_counted_once():
    results = run_distributed(_context_parallel_reduction, 2)
    assert results[0] == results[1]  # every rank logs the same numbers
    by_layout = results[0]
    both_parts = (10 + 20) / (2 + 3)
    # Two context-parallel ranks: each holds half of every sequence; its clips are encoded by both.
    assert by_layout[str({"context_parallel_size": 2})] == {"loss": both_parts, "encoder_counted": 1, "cp": 2, "dp": 1}
    # Two data-parallel ranks: each holds its own samples and clips.
    assert by_layout[str({})] == {"loss": both_parts, "encoder_counted": 2, "cp": 1, "dp": 2}
