from pathlib import Path

import numpy as np
import pytest
import torch
from megatron.core.datasets.indexed_dataset import IndexedDataset, IndexedDatasetBuilder

from megatron_inserter.data.indexed.builder import CompactIndexedDatasetBuilder


def _fill(builder, rng, dtype, multimodal):
    for _ in range(rng.integers(0, 6)):
        lengths = [int(n) for n in rng.integers(0, 9, rng.integers(1, 4))]
        data = rng.integers(-30000, 30000, sum(lengths)).astype(dtype)
        modes = [int(m) for m in rng.integers(0, 2, len(lengths))] if multimodal else None
        builder.add_document(data, lengths, modes)
    builder.add_item(torch.from_numpy(rng.integers(0, 99, 5).astype(dtype)), 1)
    builder.end_document()
    builder.end_document()  # an empty document


@pytest.mark.parametrize("dtype,multimodal", [(np.int32, True), (np.int16, False), (np.uint16, False)])
def test_compact_builder_writes_the_stock_builders_bytes(tmp_path, dtype, multimodal):
    for name, cls in (("stock", IndexedDatasetBuilder), ("compact", CompactIndexedDatasetBuilder)):
        rng = np.random.default_rng(0)
        for part in range(3):
            b = cls(str(tmp_path / f"{name}{part}.bin"), dtype=dtype, multimodal=multimodal)
            _fill(b, rng, dtype, multimodal)
            b.finalize(str(tmp_path / f"{name}{part}.idx"))
        merged = cls(str(tmp_path / f"{name}.bin"), dtype=dtype, multimodal=multimodal)
        for part in range(3):
            merged.add_index(str(tmp_path / f"{name}{part}"))
        merged.finalize(str(tmp_path / f"{name}.idx"))
    for part in ["0", "1", "2", ""]:
        for ext in (".bin", ".idx"):
            assert (tmp_path / f"stock{part}{ext}").read_bytes() == (tmp_path / f"compact{part}{ext}").read_bytes()
    ds = IndexedDataset(str(tmp_path / "compact"), multimodal=multimodal)
    assert len(ds.document_indices) == 1 + sum(len(IndexedDataset(str(tmp_path / f"compact{p}"), multimodal=multimodal)
                                                   .document_indices) - 1 for p in range(3))
    assert Path(tmp_path / "compact.bin").stat().st_size > 0
