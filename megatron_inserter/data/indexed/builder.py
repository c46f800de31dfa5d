"""An indexed-dataset builder with megatron-core's interface and files, in numpy alone.

The per-sequence lists are typed arrays (5 bytes per sequence instead of ~80 for Python/numpy scalars),
whole batches of documents are appended with one call (``add_documents``), and ``add_index``/``finalize``
are vectorised, so merging partitions of a billion sequences takes seconds, not hours. The files are the
same, byte for byte, as megatron-core's ``IndexedDatasetBuilder`` writes; nothing here imports torch or
megatron-core, so a preprocessing run starts in a fraction of a second.
"""

from __future__ import annotations

import shutil
from array import array

import numpy as np

from megatron_inserter.data.indexed.index_format import bin_path, idx_path, read_index, write_index
from megatron_inserter.errors import DataError


class CompactIndexedDatasetBuilder:
    def __init__(self, bin_path: str, dtype=np.int32, multimodal: bool = False) -> None:
        self.data_file = open(bin_path, "wb")  # noqa: SIM115 (open until finalize)
        self.dtype = np.dtype(dtype)
        self.multimodal = multimodal
        self.sequence_lengths = array("i")
        self.document_indices = array("q", [0])
        self.sequence_modes = array("b") if multimodal else None

    def _write(self, data) -> int:
        arr = np.asarray(data.numpy() if hasattr(data, "numpy") else data)
        if arr.dtype != self.dtype:
            arr = arr.astype(self.dtype)
        self.data_file.write(np.ascontiguousarray(arr).tobytes(order="C"))
        return arr.size

    def add_item(self, tensor, mode: int = 0) -> None:
        """One sequence (a numpy array or a CPU tensor)."""
        self.sequence_lengths.append(self._write(tensor))
        if self.multimodal:
            self.sequence_modes.append(mode)

    def add_document(self, tensor, lengths, modes=None) -> None:
        """One document: its tokens and the length (and mode) of each of its sequences."""
        self._write(tensor)
        self.sequence_lengths.extend(int(n) for n in lengths)
        self.document_indices.append(len(self.sequence_lengths))
        if self.multimodal:
            self.sequence_modes.extend(int(m) for m in (modes if modes is not None else [0] * len(lengths)))

    def add_documents(self, data: np.ndarray, lengths: np.ndarray, sequences_per_document: np.ndarray,
                      modes: np.ndarray | None = None) -> None:
        """Many documents in one call: the concatenated tokens, every sequence's length and the number of
        sequences of each document (vectorised; no per-token or per-document Python work)."""
        self._write(data)
        start = len(self.sequence_lengths)
        self.sequence_lengths.frombytes(np.ascontiguousarray(lengths, dtype=np.int32).tobytes())
        ends = start + np.cumsum(sequences_per_document, dtype=np.int64)
        self.document_indices.frombytes(ends.tobytes())
        if self.multimodal:
            if modes is None:
                modes = np.zeros(len(lengths), dtype=np.int8)
            self.sequence_modes.frombytes(np.ascontiguousarray(modes, dtype=np.int8).tobytes())

    def end_document(self) -> None:
        self.document_indices.append(len(self.sequence_lengths))

    def add_index(self, path_prefix: str) -> None:
        """Append a finished dataset of the same dtype (its index, then its data)."""
        index = read_index(idx_path(path_prefix), self.multimodal)
        if index.header.dtype != self.dtype:
            raise DataError(f"{path_prefix}: dtype {index.header.dtype} differs from {self.dtype}; "
                            f"merge only datasets made with the same tokenizer")
        offset = len(self.sequence_lengths)
        self.sequence_lengths.frombytes(np.asarray(index.sequence_lengths, dtype=np.int32).tobytes())
        self.document_indices.frombytes((offset + np.asarray(index.document_indices[1:], dtype=np.int64)).tobytes())
        if self.multimodal:
            self.sequence_modes.frombytes(np.asarray(index.sequence_modes, dtype=np.int8).tobytes())
        del index
        with open(bin_path(path_prefix), "rb") as f:
            shutil.copyfileobj(f, self.data_file, 16 << 20)

    def finalize(self, idx_path: str) -> None:
        self.data_file.close()
        lengths = np.frombuffer(self.sequence_lengths, dtype=np.int32) if self.sequence_lengths else np.zeros(
            0, dtype=np.int32)
        modes = None
        if self.multimodal:
            modes = np.frombuffer(self.sequence_modes, dtype=np.int8) if self.sequence_modes else np.zeros(
                0, dtype=np.int8)
        write_index(idx_path, self.dtype, lengths, modes, np.frombuffer(self.document_indices, dtype=np.int64))
