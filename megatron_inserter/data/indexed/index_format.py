"""megatron-core's ``.idx`` format, read and written with numpy alone (no torch, no megatron-core import).

    header  b"MMIDIDX\\x00\\x00", <Q version (1), <B dtype code, <Q sequence count, <Q document count
    then    int32 sequence lengths, int64 byte pointers, int64 document indices, [int8 modes if multimodal]

Preprocessing writes through these functions so that ``inserter preprocess`` starts without importing
torch and megatron-core (seconds of start-up); the bytes are exactly those megatron-core's
``IndexedDatasetBuilder`` writes, and training reads them with megatron-core's ``IndexedDataset``.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

import numpy as np

from megatron_inserter.errors import DataError

INDEX_HEADER = b"MMIDIDX\x00\x00"
HEADER_BYTES = 9 + 8 + 1 + 8 + 8
# megatron.core.datasets.indexed_dataset.DType
DTYPE_CODES = {np.dtype(np.uint8): 1, np.dtype(np.int8): 2, np.dtype(np.int16): 3, np.dtype(np.int32): 4,
               np.dtype(np.int64): 5, np.dtype(np.float64): 6, np.dtype(np.float32): 7, np.dtype(np.uint16): 8}
CODE_DTYPES = {code: dtype for dtype, code in DTYPE_CODES.items()}
_REBUILD = "it was not written completely; rebuild the dataset (inserter preprocess)"


class CorruptDatasetError(DataError):
    pass


def optimal_token_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id fits (as megatron-core's ``DType.optimal_dtype``), else int32."""
    return np.dtype(np.uint16 if vocab_size < 65500 else np.int32)


def bin_path(prefix: str) -> str:
    return prefix + ".bin"


def idx_path(prefix: str) -> str:
    return prefix + ".idx"


@dataclass(frozen=True)
class IndexHeader:
    path: str
    dtype: np.dtype
    num_sequences: int
    num_document_indices: int  # documents + 1
    size: int  # bytes of the .idx file

    def expected_size(self, multimodal: bool) -> int:
        n, d = self.num_sequences, self.num_document_indices
        return HEADER_BYTES + n * (4 + 8) + d * 8 + (n if multimodal else 0)

    @property
    def has_modes(self) -> bool:
        """The file is exactly as long as a multimodal index (one mode byte per sequence)."""
        return self.num_sequences > 0 and self.size == self.expected_size(True)


def read_header(path: str) -> IndexHeader:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"dataset file {path!r} does not exist (is the prefix right?)")
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(HEADER_BYTES)
    if len(head) < HEADER_BYTES:
        raise CorruptDatasetError(f"index file {path!r} is truncated ({size} bytes, header needs {HEADER_BYTES}): "
                                  f"{_REBUILD}")
    if head[:9] != INDEX_HEADER:
        raise CorruptDatasetError(f"{path!r} is not a megatron-core index file (bad magic bytes)")
    (code,) = struct.unpack("<B", head[17:18])
    if code not in CODE_DTYPES:
        raise CorruptDatasetError(f"index file {path!r} names an unknown dtype code {code}: {_REBUILD}")
    n_seq, n_doc = struct.unpack("<QQ", head[18:34])
    return IndexHeader(path, CODE_DTYPES[code], n_seq, n_doc, size)


@dataclass
class IndexArrays:
    """The arrays of one ``.idx`` file, memory-mapped."""

    header: IndexHeader
    sequence_lengths: np.ndarray  # int32
    sequence_pointers: np.ndarray  # int64, byte offsets into the .bin
    document_indices: np.ndarray  # int64, documents + 1
    sequence_modes: np.ndarray | None  # int8


def read_index(path: str, multimodal: bool) -> IndexArrays:
    header = read_header(path)
    if header.size < header.expected_size(multimodal):
        raise CorruptDatasetError(f"index file {path!r} is truncated: {_REBUILD}")
    n, d = header.num_sequences, header.num_document_indices
    mm = np.memmap(path, dtype=np.uint8, mode="r")
    off = HEADER_BYTES
    lengths = mm[off:off + 4 * n].view(np.int32)
    off += 4 * n
    pointers = mm[off:off + 8 * n].view(np.int64)
    off += 8 * n
    docs = mm[off:off + 8 * d].view(np.int64)
    off += 8 * d
    modes = mm[off:off + n].view(np.int8) if multimodal else None
    return IndexArrays(header, lengths, pointers, docs, modes)


def sequence_pointers(lengths: np.ndarray, dtype) -> np.ndarray:
    lengths = np.asarray(lengths, dtype=np.int64)
    pointers = np.zeros(len(lengths), dtype=np.int64)
    np.cumsum(lengths[:-1] * np.dtype(dtype).itemsize, out=pointers[1:])
    return pointers


def write_index(path: str, dtype, lengths: np.ndarray, modes: np.ndarray | None, document_indices: np.ndarray) -> None:
    """Write ``path`` byte for byte as megatron-core's ``_IndexWriter`` does."""
    lengths = np.ascontiguousarray(lengths, dtype=np.int32)
    document_indices = np.ascontiguousarray(document_indices, dtype=np.int64)
    with open(path, "wb") as f:
        f.write(INDEX_HEADER)
        f.write(struct.pack("<Q", 1))
        f.write(struct.pack("<B", DTYPE_CODES[np.dtype(dtype)]))
        f.write(struct.pack("<Q", len(lengths)))
        f.write(struct.pack("<Q", len(document_indices)))
        f.write(lengths.tobytes(order="C"))
        f.write(sequence_pointers(lengths, dtype).tobytes(order="C"))
        f.write(document_indices.tobytes(order="C"))
        if modes is not None:
            f.write(np.ascontiguousarray(modes, dtype=np.int8).tobytes(order="C"))
