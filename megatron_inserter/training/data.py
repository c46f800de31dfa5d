"""Training and validation batches: blended indexed datasets -> this rank's micro-batches, step by step.

Only tensor-parallel rank 0 of the first and of the last pipeline stage read data (the first stage needs
tokens and audio, the last the targets and masks); they send each micro-batch to their tensor-parallel
peers. Middle pipeline stages get None. The sampler starts at the run's consumed-samples count, so a
resumed run reads exactly the micro-batches the uninterrupted run would have read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from megatron.core import parallel_state as ps

from megatron_inserter.data.indexed import (
    PretrainingBatchSampler,
    build_datasets,
    collate_batch,
    dataset_config,
    parse_blend,
)
from megatron_inserter.training.arguments import TrainingArguments
from megatron_inserter.training.broadcast import broadcast_batch
from megatron_inserter.training.flag_checks import RunLayout

TEXT_KEYS = ["tokens", "labels", "loss_mask", "position_ids"]
AUDIO_KEYS = ["audio", "audio_lengths"]


def stage_needs_data() -> bool:
    return ps.is_pipeline_first_stage(ignore_virtual=True) or ps.is_pipeline_last_stage(ignore_virtual=True)


def reads_data() -> bool:
    return ps.get_tensor_model_parallel_rank() == 0 and stage_needs_data()


def build_train_valid(args: TrainingArguments, layout: RunLayout, tokenizer, frame_spec):
    """Collective (every rank calls it; data-reading ranks get the datasets, the others None)."""
    cache = args.data_cache_path or os.path.join(os.path.dirname(os.path.abspath(parse_blend(args.data_path)[0][0])),
                                                 "cache")
    cfg = dataset_config(args.data_path, args.split, args.seq_length, args.seed, tokenizer, frame_spec,
                         path_to_cache=cache)
    eval_samples = args.eval_iters * layout.global_batch_size
    num_samples = (args.train_iters * layout.global_batch_size, eval_samples, eval_samples)
    train, valid, _ = build_datasets(cfg, num_samples, is_built_on_rank=reads_data)
    if reads_data() and train is None:
        raise ValueError(f"--split {args.split} leaves no training data in --data-path {' '.join(args.data_path)}")
    return train, valid


@dataclass
class BatchSource:
    """This rank's micro-batches, ``num_microbatches`` per optimizer step."""

    dataset: object | None
    consumed_samples: int
    layout: RunLayout
    micro_batch_size: int
    num_workers: int
    with_audio: bool
    device: torch.device

    def __post_init__(self):
        self._iterator = None
        if self.dataset is not None and reads_data():
            sampler = PretrainingBatchSampler(len(self.dataset), self.consumed_samples, self.micro_batch_size,
                                              ps.get_data_parallel_rank(), ps.get_data_parallel_world_size())
            loader = torch.utils.data.DataLoader(
                self.dataset, batch_sampler=sampler, num_workers=self.num_workers, collate_fn=collate_batch,
                pin_memory=self.device.type == "cuda", persistent_workers=False)
            self._iterator = iter(loader)

    @property
    def keys(self) -> list[str]:
        first = ps.is_pipeline_first_stage(ignore_virtual=True)
        return TEXT_KEYS + (AUDIO_KEYS if self.with_audio and first else [])

    def _next_local(self) -> dict | None:
        if self._iterator is None:
            if self.dataset is None and reads_data():
                raise RuntimeError("no dataset to read (is --eval-iters 0 or the split empty?)")
            return None
        try:
            return next(self._iterator)
        except StopIteration:
            raise RuntimeError(f"the dataset ran out after {self.consumed_samples} samples; it was built for "
                               f"fewer samples than the run needs") from None

    def next_step(self) -> list[dict | None]:
        """The micro-batches of the next optimizer step on this rank (None entries on middle stages)."""
        out = []
        tp_group = ps.get_tensor_model_parallel_group()
        for _ in range(self.layout.num_microbatches):
            batch = self._next_local() if reads_data() else None
            if stage_needs_data():
                if ps.get_tensor_model_parallel_world_size() > 1:
                    batch = broadcast_batch(batch, self.keys, ps.get_tensor_model_parallel_src_rank(), tp_group,
                                            self.device)
                else:
                    batch = {k: batch[k].to(self.device, non_blocking=True) for k in self.keys}
            out.append(batch)
            self.consumed_samples += self.micro_batch_size * self.layout.data_parallel_size
        return out


def step_iterators(microbatches: list, num_chunks: int):
    """The schedule's data_iterator: one iterator per model chunk over the same micro-batches."""
    its = [iter(microbatches) for _ in range(num_chunks)]
    return its if num_chunks > 1 else its[0]
