"""Indexed datasets: preprocessing (shards/jsonl -> .bin/.idx) and packed interleaved training samples."""

from megatron_inserter.data.indexed.blend import build_datasets, dataset_config, parse_blend
from megatron_inserter.data.indexed.collate import collate_batch
from megatron_inserter.data.indexed.dataset import InterleavedDataset, InterleavedDatasetConfig
from megatron_inserter.data.indexed.sampler import PretrainingBatchSampler

__all__ = [
    "InterleavedDataset", "InterleavedDatasetConfig", "PretrainingBatchSampler", "build_datasets",
    "collate_batch", "dataset_config", "parse_blend",
]
