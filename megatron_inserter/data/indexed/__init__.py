"""Indexed datasets: preprocessing (shards/jsonl -> .bin/.idx) and packed interleaved training samples.

The training-side names are imported on first use: preprocessing needs neither torch nor megatron-core,
and importing this package must not pay their seconds of start-up.
"""

from importlib import import_module

_EXPORTS = {
    "InterleavedDataset": "megatron_inserter.data.indexed.dataset",
    "InterleavedDatasetConfig": "megatron_inserter.data.indexed.dataset",
    "PretrainingBatchSampler": "megatron_inserter.data.indexed.sampler",
    "build_datasets": "megatron_inserter.data.indexed.blend",
    "collate_batch": "megatron_inserter.data.indexed.collate",
    "dataset_config": "megatron_inserter.data.indexed.blend",
    "parse_blend": "megatron_inserter.data.indexed.blend",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value
