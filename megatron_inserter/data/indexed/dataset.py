"""InterleavedDataset: packed training samples of text with speech spans, a megatron-core MegatronDataset.

Built through ``BlendedMegatronDatasetBuilder`` (see ``blend.build_datasets``) so blends, splits and the
rank-0-builds-then-everyone-loads index cache work as for GPTDataset. A sample is a dict:

  tokens, labels [s] int64   labels[t] = tokens[t + 1] (the stream is ``seq_length + 1`` long)
  loss_mask [s] float32      1 where the target is text, 0 where it is a placeholder, an audio marker, pad or
                             context (a conversation's system/user turns and template text: the mode stored
                             with each sequence says which)
  position_ids [s] int64
  audio  list of int16 arrays, one per encoder window, in the order their placeholders appear
  num_padding int            padded positions at the end of the sample

A document is left out of the samples (counted, logged) when one of its speech spans is longer than a
sample or too short for one encoder frame under the model's ``FrameSpec`` (its transcript would then be
trained from no audio).

A conversation dataset (sidecar kind ``conversation``) is packed whole: a sample ends before a conversation
that does not fit in what is left of it (the rest is padding), so no turn is ever split across samples, and a
conversation longer than a sample is left out (counted, logged).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from megatron.core.datasets.blended_megatron_dataset_config import BlendedMegatronDatasetConfig
from megatron.core.datasets.megatron_dataset import MegatronDataset
from megatron.core.datasets.utils import Split

from megatron_inserter.data.frames import FrameSpec
from megatron_inserter.data.indexed.low_level import InterleavedLowLevelDataset
from megatron_inserter.data.indexed.sample_index import build_indices
from megatron_inserter.errors import DataError
from megatron_inserter.files import atomic_write, write_text_atomic

logger = logging.getLogger(__name__)
INDEX_VERSION = "interleaved-1"


@dataclass
class InterleavedDatasetConfig(BlendedMegatronDatasetConfig):
    """megatron-core's dataset config plus the frame layout. ``tokenizer`` is a
    ``megatron_inserter.data.tokenizers.Tokenizer``; ``blend``/``split`` as for GPT datasets."""

    frame_spec: FrameSpec = field(default_factory=FrameSpec)
    drop_last_partial_validation_sequence: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.mock:
            raise ValueError("no data given: set blend (--data-path) or blend_per_split")
        if self.tokenizer is None:
            raise ValueError("InterleavedDatasetConfig needs a tokenizer")
        if self.fast_cache_load or self.defer_npy_index_mmap:
            raise ValueError("fast_cache_load / defer_npy_index_mmap are not supported by InterleavedDataset")

    @property
    def frame_spec_key(self) -> dict:
        return asdict(self.frame_spec)

    @property
    def index_version(self) -> str:
        return INDEX_VERSION


class InterleavedDataset(MegatronDataset):
    def __init__(self, dataset: InterleavedLowLevelDataset, dataset_path: str | None, indices: np.ndarray,
                 num_samples: int | None, index_split: Split, config: InterleavedDatasetConfig) -> None:
        super().__init__(dataset, dataset_path, indices, num_samples, index_split, config)
        # A rebuilt dataset at the same path must not reuse stale sample caches.
        self.unique_identifiers["dataset_fingerprint"] = dataset.fingerprint()
        import hashlib
        import json

        self.unique_description = json.dumps(self.unique_identifiers, indent=4,
                                             default=lambda obj: obj.unique_identifiers)
        self.unique_description_hash = hashlib.md5(self.unique_description.encode("utf-8"),
                                                   usedforsecurity=False).hexdigest()
        self.spec = config.frame_spec
        self.doc_len, span_ptr, span_p, span_q = dataset.document_layout(self.spec)
        self._layout = (span_ptr, span_p, span_q)
        # Where samples may not be cut: inside speech spans, or anywhere inside a conversation.
        self._cut_layout = whole_document_spans(self.doc_len) if dataset.whole_documents else self._layout
        self.document_index, self.sample_index, self.shuffle_index = self._build_or_load_indices()
        del self._layout, self._cut_layout

    # --- megatron-core hooks -------------------------------------------------------------------------
    @staticmethod
    def numel_low_level_dataset(low_level_dataset: InterleavedLowLevelDataset) -> int:
        return low_level_dataset.num_documents  # splits are by document

    @staticmethod
    def build_low_level_dataset(dataset_path: str, config: InterleavedDatasetConfig) -> InterleavedLowLevelDataset:
        return InterleavedLowLevelDataset(dataset_path, config.tokenizer, mmap=config.mmap_bin_files,
                                          cache_dir=config.path_to_cache)

    @staticmethod
    def _key_config_attributes() -> list[str]:
        return MegatronDataset._key_config_attributes() + ["frame_spec_key", "index_version",
                                                            "drop_last_partial_validation_sequence"]

    # --- indices -----------------------------------------------------------------------------------
    def _usable_documents(self) -> np.ndarray:
        """The split's documents minus those holding a span longer than a sample or a span with no encoder
        frame (each counted, logged)."""
        docs = np.asarray(self.indices, dtype=np.int64)
        span_ptr, span_p, span_q = self._layout
        span_len = span_q - span_p + 1  # bos + frames + eos
        self._dropped = None
        self.num_dropped_documents = self._drop(docs, span_ptr, span_len > self.config.sequence_length,
                                                f"a speech span longer than the sequence length "
                                                f"({self.config.sequence_length})")
        self.num_documents_without_audio_frames = self._drop(docs, span_ptr, span_len <= 2,
                                                             "a speech span too short for one encoder frame")
        self.num_dropped_conversations = 0
        if self.dataset.whole_documents:
            whole_ptr = self._cut_layout[0]
            self.num_dropped_conversations = self._drop(docs, whole_ptr, self.doc_len > self.config.sequence_length,
                                                        f"a conversation longer than the sequence length "
                                                        f"({self.config.sequence_length})")
        return docs[~self._dropped] if self._dropped is not None else docs

    def _drop(self, docs: np.ndarray, span_ptr: np.ndarray, bad_span: np.ndarray, why: str) -> int:
        if not bad_span.any():
            return 0
        owner = np.searchsorted(span_ptr, np.flatnonzero(bad_span), side="right") - 1
        bad = np.isin(docs, owner)
        if bad.any():
            logger.warning("%s (%s): %d documents hold %s and are left out", self.dataset_path,
                           self.index_split.name, int(bad.sum()), why)
            self._dropped = bad if self._dropped is None else (self._dropped | bad)
        return int(bad.sum())

    def _build_or_load_indices(self):
        cache = self.config.path_to_cache or os.path.join(
            os.path.dirname(os.path.abspath(self.dataset.path_prefix)), "cache", f"{type(self).__name__}_indices")
        base = os.path.join(cache, f"{self.unique_description_hash}-{type(self).__name__}-{self.index_split.name}")
        paths = {k: f"{base}-{k}.npy" for k in ("document_index", "sample_index", "shuffle_index")}
        description = f"{base}-description.txt"
        hit = os.path.isfile(description) and all(map(os.path.isfile, paths.values()))
        rank0 = not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0
        if not hit and rank0:
            t0 = time.time()
            drop_last = True
            if self.index_split == Split.valid:
                drop_last = self.config.drop_last_partial_validation_sequence
            usable = self._usable_documents()
            if self.num_samples and not len(usable):
                given = len(self.indices)
                detail = f"{given} of its {self.dataset.num_documents} documents fall in it" + (
                    ", none of them usable" if given else "")
                raise DataError(f"{self.dataset_path}: --split {self.config.split} leaves its {self.index_split.name} "
                                f"split without a usable document ({detail}): give that split a larger share or "
                                f"use more data")
            arrays = build_indices(usable, self.doc_len, *self._cut_layout,
                                   self.config.sequence_length, self.num_samples, self.config.random_seed, drop_last)
            os.makedirs(cache, exist_ok=True)
            for key, arr in zip(paths, arrays):
                _save_npy(paths[key], arr)
            _write_text(description, self.unique_description)  # last: the marker of a complete cache
            logger.info("built %s %s indices: %d samples in %.2fs", type(self).__name__, self.index_split.name,
                        len(arrays[1]) - 1, time.time() - t0)
            return arrays
        if not hit:
            raise FileNotFoundError(f"sample index cache {base}-* is missing on this rank: path_to_cache must be "
                                    f"a directory every rank can read")
        return tuple(np.load(paths[k], mmap_mode="r") for k in paths)

    # --- samples -----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.shuffle_index.shape[0])

    def __getitem__(self, idx: int) -> dict:
        j = int(self.shuffle_index[idx])
        k0, o0 = (int(v) for v in self.sample_index[j])
        k1, o1 = (int(v) for v in self.sample_index[j + 1])
        tokens, text_mask, clips = [], [], []
        for k in range(k0, k1 + 1):
            doc = int(self.document_index[k])
            start = o0 if k == k0 else 0
            stop = o1 + 1 if k == k1 else int(self.doc_len[doc])
            t, m, c = self.dataset.read_expanded(doc, start, stop, self.spec)
            tokens += t
            text_mask += m
            clips += c
        seq = self.config.sequence_length
        x = np.concatenate(tokens) if tokens else np.zeros(0, dtype=np.int64)
        is_text = np.concatenate(text_mask) if text_mask else np.zeros(0, dtype=bool)
        num_padding = seq + 1 - len(x)
        if num_padding < 0:
            raise RuntimeError(f"sample {idx} of {self.dataset_path!r} is {len(x)} tokens long (> {seq + 1})")
        if num_padding:
            x = np.concatenate([x, np.full(num_padding, self.dataset.pad_id, dtype=np.int64)])
            is_text = np.concatenate([is_text, np.zeros(num_padding, dtype=bool)])
        x = torch.from_numpy(x)
        tokens = x[:-1].clone()
        if num_padding:
            # The sample's last real token is only a target (the next sample starts with it); as an input
            # it would be an <|audio_bos|> with no span after it, so that position is padding too.
            tokens[seq - num_padding] = self.dataset.pad_id
        return {
            "tokens": tokens,
            "labels": x[1:].contiguous(),
            "loss_mask": torch.from_numpy(is_text[1:].astype(np.float32)),
            "position_ids": torch.arange(seq, dtype=torch.int64),
            "audio": clips,
            "num_padding": num_padding,
        }


def whole_document_spans(doc_len: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(span_ptr, span_p, span_q)`` with one span per document covering all of it: ``sample_index.cut_samples``
    then never cuts inside a document (a sample ends before one that does not fit)."""
    n = len(doc_len)
    return (np.arange(n + 1, dtype=np.int64), np.zeros(n, dtype=np.int64),
            np.asarray(doc_len, dtype=np.int64) - 1)


def document_positions(tokens: torch.Tensor, eod_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For packing without cross-document attention: the document of every position of a packed sample
    (0, 1, ... within the sample) and the position inside it, for tokens ``[..., s]``.

    A document ends with its end-of-document token and includes it, as in Megatron's
    ``get_ltor_masks_and_position_ids``: the token after an EOD starts the next document at position 0.
    Padding after the last document continues that document (it carries no loss).
    """
    ends = (tokens == eod_id).long()
    document = torch.cumsum(ends, dim=-1) - ends  # EOD tokens strictly before each position
    pos = torch.arange(tokens.shape[-1], device=tokens.device).expand_as(tokens)
    last_end = torch.where(ends.bool(), pos, torch.full_like(pos, -1)).cummax(dim=-1).values
    start = torch.nn.functional.pad(last_end[..., :-1], (1, 0), value=-1) + 1  # after the last EOD before
    return document, pos - start


def separate_documents(batch: dict, eod_id: int, reset_position_ids: bool, eod_mask_loss: bool) -> dict:
    """Megatron's ``--reset-position-ids`` and ``--eod-mask-loss`` on a sample or a collated batch: positions
    restart at every document, and no loss is taken where the input is an EOD (its target starts another
    document). A copy; the attention side (``--reset-attention-mask``) is the model's."""
    out = dict(batch)
    if reset_position_ids:
        out["position_ids"] = document_positions(batch["tokens"], eod_id)[1]
    if eod_mask_loss:
        out["loss_mask"] = batch["loss_mask"] * (batch["tokens"] != eod_id).to(batch["loss_mask"].dtype)
    return out


def _save_npy(path: str, arr: np.ndarray) -> None:
    with atomic_write(path, "wb") as f:
        np.save(f, arr, allow_pickle=False)


def _write_text(path: str, text: str) -> None:
    write_text_atomic(path, text)
