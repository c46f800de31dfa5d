import pytest
import torch
from torch.utils.data import DataLoader

from megatron_inserter.data.indexed import (
    PretrainingBatchSampler,
    build_datasets,
    collate_batch,
    dataset_config,
)


def _loader(ds, consumed, mbs=2, rank=0, dp=1, workers=0):
    sampler = PretrainingBatchSampler(len(ds), consumed, mbs, rank, dp)
    return DataLoader(ds, batch_sampler=sampler, num_workers=workers, collate_fn=collate_batch)


@pytest.fixture(scope="module")
def train_ds(tiny_dataset, tiny_tokenizer, tmp_path_factory):
    cfg = dataset_config([tiny_dataset], "1,0,0", seq_length=64, seed=3, tokenizer=tiny_tokenizer,
                         path_to_cache=str(tmp_path_factory.mktemp("cache")))
    return build_datasets(cfg, num_samples=(60, None, None))[0]


def test_resume_from_consumed_samples_gives_the_same_stream(train_ds):
    full = list(_loader(train_ds, 0, workers=2))
    resumed = list(_loader(train_ds, 10, workers=2))
    assert len(resumed) == len(full) - 5 and len(full) >= 30
    for a, b in zip(full[5:], resumed):
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_data_parallel_ranks_partition_each_global_batch(train_ds):
    one = list(PretrainingBatchSampler(len(train_ds), 4, 4, 0, 1))
    r0 = list(PretrainingBatchSampler(len(train_ds), 4, 2, 0, 2))
    r1 = list(PretrainingBatchSampler(len(train_ds), 4, 2, 1, 2))
    assert len(r0) == len(r1) == len(one)
    for g, a, b in zip(one, r0, r1):
        assert a + b == g


def test_sampler_rejects_a_checkpoint_from_a_longer_run():
    with pytest.raises(ValueError, match="outside"):
        PretrainingBatchSampler(10, 12, 2)
    assert [len(b) for b in PretrainingBatchSampler(7, 0, 2, drop_last=False)] == [2, 2, 2, 1]
