"""Data-parallel row splitting and the order-preserving gather."""

import random

import pytest

from megatron_inserter.eval.slices import gather_rows, shard_bounds, split_rows


@pytest.mark.parametrize("num_rows", [0, 1, 2, 5, 11])
@pytest.mark.parametrize("size", [1, 2, 3, 4])
def test_split_then_gather_equals_one_rank(num_rows, size):
    rows = [{"uid": f"r{i}", "value": i * i} for i in range(num_rows)]
    parts = [split_rows(rows, rank, size) for rank in range(size)]
    assert gather_rows(parts) == split_rows(rows, 0, 1) == rows
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1


def test_gather_by_key_restores_order_of_shuffled_parts():
    rows = [{"uid": f"r{i}"} for i in range(10)]
    parts = [split_rows(rows, rank, 2) for rank in range(2)]
    for part in parts:
        random.Random(0).shuffle(part)
    assert gather_rows(parts, order=[r["uid"] for r in rows], key=lambda r: r["uid"]) == rows


def test_gather_rejects_missing_and_duplicated_rows():
    rows = [{"uid": f"r{i}"} for i in range(4)]
    order = [r["uid"] for r in rows]
    with pytest.raises(ValueError, match="no result"):
        gather_rows([rows[:2], rows[3:]], order=order, key=lambda r: r["uid"])
    with pytest.raises(ValueError, match="more than one rank"):
        gather_rows([rows[:3], rows[2:]], order=order, key=lambda r: r["uid"])


def test_bad_rank_is_an_error():
    with pytest.raises(ValueError, match="--dp-rank"):
        shard_bounds(10, 2, 2)
