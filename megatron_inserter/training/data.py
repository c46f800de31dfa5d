"""Training and validation batches: blended indexed datasets -> this rank's micro-batches, one at a time.

    source = BatchSource(dataset, consumed_samples, layout, micro_batch_size, num_workers, with_audio, device)
    stream = source.stream(num_chunks)               # the schedule's data_iterator for one optimizer step
    train_step(forward_step, stream.data_iterator, ...)
    stream.finish()                                  # every micro-batch of the step was taken

Only tensor-parallel rank 0 of the first and of the last pipeline stage read data (the first stage needs
tokens and audio, the last the targets and masks); they send each micro-batch to their tensor-parallel
peers. Middle pipeline stages get None. A micro-batch is read, sent and moved to the device when the
schedule's forward step first asks for it, and dropped once every model chunk has taken it: the batch
memory of a step does not grow with the number of micro-batches. Reading overlaps compute: loader workers
prefetch and collate (the modality-gap masks included) in the background, pinned memory and
non-blocking copies on CUDA. The sampler starts at the run's consumed-samples count, so a resumed run
reads exactly the micro-batches the uninterrupted run would have read.

Freed is not enough for a flat peak RSS: glibc raises its mmap threshold to the size of every large block
freed (up to 32 MiB), after which batches of clips of every length and their activations come from the
heap, which fragments and grows micro-batch after micro-batch (2.2x the RSS at 256 micro-batches than at
8, measured on CPU). ``keep_host_memory_flat`` fixes the threshold, as ``MALLOC_MMAP_THRESHOLD_`` would; the
trainer applies it on CUDA, where host memory holds only batches. On CPU the activations are host memory
too and an mmap per large block costs 2.4x the step time: set ``MALLOC_MMAP_THRESHOLD_=131072`` to trade
that time for a flat RSS (the CPU memory benchmark does).
"""

from __future__ import annotations

import ctypes
import os
import sys
from dataclasses import dataclass
from functools import partial

import torch
from megatron.core import parallel_state as ps

from megatron_inserter import lifetime
from megatron_inserter.data.indexed import (
    PretrainingBatchSampler,
    build_datasets,
    collate_batch,
    dataset_config,
    parse_blend,
)
from megatron_inserter.data.indexed.dataset import separate_documents
from megatron_inserter.training.arguments import TrainingArguments
from megatron_inserter.training.broadcast import broadcast_batch
from megatron_inserter.training.flag_checks import RunLayout
from megatron_inserter.training.losses import after_speech_mask, random_text_mask

TEXT_KEYS = ["tokens", "labels", "loss_mask", "position_ids"]
AUDIO_KEYS = ["audio", "audio_lengths"]
# What the loss needs besides the targets: the blend component of each sample and the modality-gap masks.
LOSS_KEYS = ["dataset_id", "after_speech", "random_text"]


_M_MMAP_THRESHOLD = -3  # mallopt parameter (malloc.h)
HOST_MMAP_THRESHOLD = 128 * 1024  # glibc's initial value, kept from rising


def keep_host_memory_flat() -> bool:
    """Fix glibc's mmap threshold for this process and the processes it forks (the loader workers): large
    blocks go back to the system when freed. Returns whether it was applied: not on other C libraries, and
    not when ``MALLOC_MMAP_THRESHOLD_`` already chose a value."""
    if not sys.platform.startswith("linux") or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    try:
        return ctypes.CDLL(None).mallopt(_M_MMAP_THRESHOLD, HOST_MMAP_THRESHOLD) == 1
    except (OSError, AttributeError):
        return False


def stage_needs_data() -> bool:
    return ps.is_pipeline_first_stage(ignore_virtual=True) or ps.is_pipeline_last_stage(ignore_virtual=True)


def reads_data() -> bool:
    return ps.get_tensor_model_parallel_rank() == 0 and stage_needs_data()


def blend_components(data_path: list[str]) -> list[str]:
    """Names of the blend's datasets in blend order (the ids a BlendedDataset gives its samples): the
    prefixes' file names, made unique. A single dataset is one component."""
    prefixes, _ = parse_blend(data_path)
    names: list[str] = []
    for prefix in prefixes:
        name = os.path.basename(os.path.normpath(prefix)) or prefix
        names.append(name if name not in names else f"{name}#{len(names)}")
    return names


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


@dataclass(frozen=True)
class GapMasks:
    """Collation for training: ``collate_batch`` plus the blend component of each sample and the
    modality-gap masks over the whole sequence (``losses``), computed on the CPU in the loader workers."""

    audio_eos_id: int
    eod_id: int
    window: int
    reset_position_ids: bool = False  # --reset-position-ids / --eod-mask-loss (dataset.separate_documents)
    eod_mask_loss: bool = False

    def __call__(self, samples: list[dict]) -> dict[str, torch.Tensor]:
        batch = separate_documents(collate_batch(samples), self.eod_id, self.reset_position_ids, self.eod_mask_loss)
        if "dataset_id" not in batch:  # a single dataset, not a blend
            batch["dataset_id"] = torch.zeros(len(samples), dtype=torch.int64)
        tokens, loss_mask = batch["tokens"], batch["loss_mask"]
        after_speech = after_speech_mask(tokens, loss_mask, self.audio_eos_id, self.eod_id, self.window)
        batch["after_speech"] = after_speech
        batch["random_text"] = random_text_mask(tokens, loss_mask, after_speech, self.audio_eos_id, self.eod_id,
                                                self.window, [int(s["sample_index"]) for s in samples])
        return batch


class _Indexed(torch.utils.data.Dataset):
    """The dataset's samples with their index (the seed of the sample's control-window draw)."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, idx: int) -> dict:
        return {**self.dataset[idx], "sample_index": idx}


@dataclass
class BatchSource:
    """This rank's micro-batches, read lazily by the pipeline schedule through ``stream``."""

    dataset: object | None
    consumed_samples: int
    layout: RunLayout
    micro_batch_size: int
    num_workers: int
    with_audio: bool
    device: torch.device
    collate: GapMasks | None = None  # None: plain collate_batch (no loss masks)

    def __post_init__(self):
        self._iterator = None
        self._clip_lengths: list[int] = []
        if self.dataset is not None and reads_data():
            sampler = PretrainingBatchSampler(len(self.dataset), self.consumed_samples, self.micro_batch_size,
                                              ps.get_data_parallel_rank(), ps.get_data_parallel_world_size())
            workers = self.num_workers
            loader = torch.utils.data.DataLoader(
                _Indexed(self.dataset), batch_sampler=sampler, num_workers=workers,
                collate_fn=self.collate or collate_batch, pin_memory=self.device.type == "cuda",
                persistent_workers=False, prefetch_factor=2 if workers else None,
                worker_init_fn=partial(_worker_init, os.getpid()) if workers else None)
            self._iterator = iter(loader)

    @property
    def keys(self) -> list[str]:
        keys = list(TEXT_KEYS)
        if self.with_audio and ps.is_pipeline_first_stage(ignore_virtual=True):
            keys += AUDIO_KEYS
        if self.collate is not None and ps.is_pipeline_last_stage(ignore_virtual=True):
            keys += LOSS_KEYS
        return keys

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

    def load(self) -> dict | None:
        """The next micro-batch on this rank's device (None on a stage that takes no data). Collective over
        the tensor-parallel group on the first and last pipeline stages."""
        if not stage_needs_data():
            return None
        batch = self._next_local() if reads_data() else None
        if batch is not None and "audio_lengths" in batch and ps.is_pipeline_first_stage(ignore_virtual=True):
            self._clip_lengths.extend(batch["audio_lengths"].tolist())
        if ps.get_tensor_model_parallel_world_size() > 1:
            return broadcast_batch(batch, self.keys, ps.get_tensor_model_parallel_src_rank(),
                                   ps.get_tensor_model_parallel_group(), self.device)
        return {k: batch[k].to(self.device, non_blocking=True) for k in self.keys}

    def stream(self, num_chunks: int, num_microbatches: int | None = None) -> MicroBatchStream:
        """The data iterator of one schedule call over ``num_microbatches`` (default: one optimizer step)."""
        n = self.layout.num_microbatches if num_microbatches is None else num_microbatches
        return MicroBatchStream(self, n, num_chunks)

    def take_clip_lengths(self) -> list[int]:
        """Sample counts of the clips read since the last call (for the encoder's FLOPs)."""
        out, self._clip_lengths = self._clip_lengths, []
        return out


class MicroBatchStream:
    """The schedule's ``data_iterator`` for one call: one iterator per model chunk (virtual pipeline stage).

    Each chunk takes the micro-batches in order; micro-batch k is loaded when the first chunk asks for it
    and released when the last one has taken it, so at most the chunks' lag (set by the pipeline schedule,
    not by the number of micro-batches) is held at once. ``held`` and ``peak_held`` count them.
    """

    def __init__(self, source: BatchSource, num_microbatches: int, num_chunks: int):
        self.source = source
        self.num_microbatches = num_microbatches
        self.num_chunks = num_chunks
        self.loaded = 0
        self.peak_held = 0
        self._held: dict[int, list] = {}  # k -> [batch, chunks still to take it]
        self._position = [0] * num_chunks
        self._iterators = [_ChunkIterator(self, i) for i in range(num_chunks)]

    @property
    def data_iterator(self):
        return self._iterators if self.num_chunks > 1 else self._iterators[0]

    @property
    def held(self) -> int:
        return len(self._held)

    def take(self, chunk: int):
        k = self._position[chunk]
        if k >= self.num_microbatches:
            raise StopIteration
        self._position[chunk] = k + 1
        entry = self._held.get(k)
        if entry is None:  # chunks advance one micro-batch at a time, so k is the next one to load
            entry = self._held[k] = [self.source.load(), self.num_chunks]
            self.loaded += 1
            self.peak_held = max(self.peak_held, len(self._held))
        entry[1] -= 1
        batch = entry[0]
        if entry[1] == 0:
            del self._held[k]
        return batch

    def finish(self) -> None:
        """After the schedule: every micro-batch was read (the sampler's position is the step's end)."""
        if self.loaded != self.num_microbatches or self._held:
            raise RuntimeError(f"the schedule took {self.loaded} of {self.num_microbatches} micro-batches")
        self.source.consumed_samples += (self.num_microbatches * self.source.micro_batch_size
                                         * self.source.layout.data_parallel_size)


class _ChunkIterator:
    def __init__(self, stream: MicroBatchStream, chunk: int):
        self._stream = stream
        self._chunk = chunk

    def __iter__(self):
        return self

    def __next__(self):
        return self._stream.take(self._chunk)


def _worker_init(parent_pid: int, worker_id: int) -> None:
    lifetime.die_with_parent(parent_pid)
