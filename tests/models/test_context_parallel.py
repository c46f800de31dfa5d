"""Context-parallel slicing: Megatron's load-balanced chunk assignment, and slices gather back exactly."""

import pytest
import torch

from megatron_inserter.models.context_parallel import (
    check_context_parallel_supported,
    cp_positions,
    gather_cp_slices,
    slice_batch_for_cp,
    slice_for_cp,
)


def test_two_ranks_take_outer_and_inner_chunks():
    assert cp_positions(8, 2, 0).tolist() == [0, 1, 6, 7]
    assert cp_positions(8, 2, 1).tolist() == [2, 3, 4, 5]
    assert cp_positions(8, 4, 3).tolist() == [3, 4]


@pytest.mark.parametrize("cp", [1, 2, 4])
@pytest.mark.parametrize("seq_dim,shape", [(1, (3, 16)), (0, (16, 3, 5))])
def test_slices_round_trip(cp, seq_dim, shape):
    x = torch.randn(*shape)
    slices = [slice_for_cp(x, seq_dim, cp, r) for r in range(cp)]
    assert all(s.shape[seq_dim] == shape[seq_dim] // cp for s in slices)
    assert torch.equal(gather_cp_slices(slices, seq_dim), x)


def test_batch_slicing_touches_sequence_tensors_only():
    batch = {"tokens": torch.arange(16).view(2, 8), "labels": torch.arange(16).view(2, 8) + 1,
             "loss_mask": torch.ones(2, 8), "position_ids": torch.arange(8).expand(2, 8),
             "audio": torch.randn(3, 100), "audio_lengths": torch.tensor([100, 50, 20])}
    out = slice_batch_for_cp(batch, cp_size=2, cp_rank=1)
    assert out["tokens"].tolist() == [[2, 3, 4, 5], [10, 11, 12, 13]]
    assert out["labels"].tolist() == [[3, 4, 5, 6], [11, 12, 13, 14]]
    assert out["audio"] is batch["audio"] and out["audio_lengths"] is batch["audio_lengths"]


def test_indivisible_sequence_is_refused():
    with pytest.raises(ValueError, match="divisible by 2 x context-parallel size = 4"):
        slice_for_cp(torch.zeros(1, 10), 1, cp_size=2, cp_rank=0)


def test_context_parallel_needs_transformer_engine():
    check_context_parallel_supported(1, use_te=False)
    with pytest.raises(ValueError, match="Transformer Engine"):
        check_context_parallel_supported(2, use_te=False)
