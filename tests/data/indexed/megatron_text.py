"""A text-only dataset written the way Megatron-LM's tools/preprocess_data.py writes one."""

from __future__ import annotations

import torch
from megatron.core.datasets.indexed_dataset import DType, IndexedDatasetBuilder


def write_megatron_text_dataset(prefix: str, texts: list[str], tok, sentences_per_doc: int = 1,
                                append_eod: bool = True) -> None:
    """One sequence per sentence (split on '.' when ``sentences_per_doc`` > 1), eod appended to the last
    (``--append-eod``), the smallest dtype for the vocabulary (uint16 here), no sidecar, no modes."""
    builder = IndexedDatasetBuilder(prefix + ".bin", dtype=DType.optimal_dtype(tok.vocab_size))
    for text in texts:
        parts = [text] if sentences_per_doc == 1 else [p + "." for p in text.split(".") if p]
        ids = [tok.tokenize(p) for p in parts]
        if append_eod:
            ids[-1] = ids[-1] + [tok.eod_id]
        builder.add_document(torch.tensor([i for s in ids for i in s]), [len(s) for s in ids])
    builder.finalize(prefix + ".idx")


def text_of(doc: dict) -> str:
    return "".join(s["text"] for s in doc["segments"])

