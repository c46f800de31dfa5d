"""Blends and splits with Megatron's syntax, built by megatron-core's BlendedMegatronDatasetBuilder.

    config = dataset_config(["0.4", "data/inter", "0.3", "data/inter_asr", "0.3", "data/text"], "969,30,1",
                            seq_length=2048, seed=1234, tokenizer=tok, frame_spec=spec, path_to_cache="cache/")
    train, valid, test = build_datasets(config, num_samples=(train_samples, valid_samples, test_samples))

Each prefix is one ``inserter preprocess`` output (or its ``_asr`` view, or a plain Megatron text dataset).
A blend of several prefixes is a megatron-core ``BlendedDataset``; it needs an initialised
``torch.distributed`` process group (a gloo group of size 1 is enough in a single process).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
from megatron.core.datasets.utils import get_blend_from_list

from megatron_inserter.data.frames import FrameSpec
from megatron_inserter.data.indexed.dataset import InterleavedDataset, InterleavedDatasetConfig


def parse_blend(data_path: Sequence[str]) -> tuple[list[str], list[float] | None]:
    """``--data-path`` values -> (prefixes, weights or None): ``["0.4", "A", "0.6", "B"]`` or ``["A", "B"]``."""
    items = [p for p in data_path if p.strip()]
    if not items:
        raise ValueError("--data-path is empty")
    prefixes, weights = get_blend_from_list(items)
    if weights is not None and any(w <= 0 for w in weights):
        raise ValueError(f"--data-path weights must be positive: {weights}")
    return prefixes, weights


def dataset_config(
    data_path: Sequence[str],
    split: str,
    seq_length: int,
    seed: int,
    tokenizer,
    frame_spec: FrameSpec | None = None,
    path_to_cache: str | None = None,
    mid_level_dataset_surplus: float = 0.005,
) -> InterleavedDatasetConfig:
    return InterleavedDatasetConfig(
        random_seed=seed, sequence_length=seq_length, blend=parse_blend(data_path), split=split,
        tokenizer=tokenizer, frame_spec=frame_spec or FrameSpec(), path_to_cache=path_to_cache,
        mid_level_dataset_surplus=mid_level_dataset_surplus,
    )


def build_datasets(
    config: InterleavedDatasetConfig,
    num_samples: Sequence[int | None] = (None, None, None),
    is_built_on_rank: Callable[[], bool] | None = None,
):
    """(train, valid, test): each an InterleavedDataset, a BlendedDataset of them, or None (empty split).

    ``num_samples`` per split as for Megatron (e.g. train_iters * global_batch_size); None = one epoch
    (only for unweighted blends). ``is_built_on_rank`` defaults to every rank.
    """
    builder = BlendedMegatronDatasetBuilder(InterleavedDataset, list(num_samples),
                                            is_built_on_rank or (lambda: True), config)
    train, valid, test = builder.build()
    return train, valid, test
