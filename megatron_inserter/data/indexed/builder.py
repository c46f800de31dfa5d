"""megatron-core's IndexedDatasetBuilder with a compact index: the per-sequence lists are typed arrays
(5 bytes per sequence instead of ~80 for Python/numpy scalars) and ``add_index``/``finalize`` are
vectorised, so merging partitions of a billion sequences takes seconds, not hours. The files are the
same, byte for byte, as the stock builder writes.
"""

from __future__ import annotations

from array import array

import numpy as np
from megatron.core.datasets.indexed_dataset import (
    DType,
    IndexedDatasetBuilder,
    _IndexReader,
    _IndexWriter,
    get_bin_path,
    get_idx_path,
)


class _VectorIndexWriter(_IndexWriter):
    def _sequence_pointers(self, sequence_lengths) -> np.ndarray:
        lengths = np.asarray(sequence_lengths, dtype=np.int64)
        pointers = np.zeros(len(lengths), dtype=np.int64)
        np.cumsum(lengths[:-1] * DType.size(self.dtype), out=pointers[1:])
        return pointers


class CompactIndexedDatasetBuilder(IndexedDatasetBuilder):
    def __init__(self, bin_path: str, dtype=np.int32, multimodal: bool = False) -> None:
        super().__init__(bin_path, dtype=dtype, multimodal=multimodal)
        self.sequence_lengths = array("i")
        self.document_indices = array("q", [0])
        self.sequence_modes = array("b") if multimodal else None

    def add_index(self, path_prefix: str) -> None:
        index = _IndexReader(get_idx_path(path_prefix), multimodal=self.multimodal)
        if index.dtype != self.dtype:
            raise ValueError(f"{path_prefix}: dtype {index.dtype} differs from {self.dtype}")
        offset = len(self.sequence_lengths)
        self.sequence_lengths.frombytes(np.asarray(index.sequence_lengths, dtype=np.int32).tobytes())
        self.document_indices.frombytes((offset + np.asarray(index.document_indices[1:], dtype=np.int64)).tobytes())
        if self.multimodal:
            self.sequence_modes.frombytes(np.asarray(index.sequence_modes, dtype=np.int8).tobytes())
        del index
        with self._open(get_bin_path(path_prefix), "rb") as f:
            import shutil

            shutil.copyfileobj(f, self.data_file, 16 << 20)

    def finalize(self, idx_path: str) -> None:
        self.data_file.close()
        lengths = np.frombuffer(self.sequence_lengths, dtype=np.int32) if self.sequence_lengths else np.zeros(
            0, dtype=np.int32)
        modes = None
        if self.multimodal:
            modes = np.frombuffer(self.sequence_modes, dtype=np.int8) if self.sequence_modes else np.zeros(
                0, dtype=np.int8)
        with _VectorIndexWriter(idx_path, self.dtype) as writer:
            writer.write(lengths, modes, np.frombuffer(self.document_indices, dtype=np.int64))
