"""Checks of a dataset's token ids against the tokenizer, done when the dataset is opened.

    check_token_ids(prefix, index, vocab_size, describe, cache_dir)    # every id in [0, vocab_size)
    check_document_ends(prefix, index, eod_id, describe, cache_dir)    # every document ends with the EOD

Both are vectorised over the memory-mapped ``.bin`` (about a second per GB) and their results are cached
in ``cache_dir`` keyed by the file's size and modification time, so a training run opens a dataset it
has checked before at no cost. A violation is a ``DataError`` naming the dataset and the first document at
fault, raised before the first training step instead of an ``IndexError`` somewhere in the embedding.
"""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np

from megatron_inserter.data.indexed.index_format import IndexArrays, bin_path
from megatron_inserter.errors import DataError
from megatron_inserter.files import write_json_atomic

_CHUNK = 1 << 24  # elements per vectorised step
CACHE_VERSION = 2


class TokenRangeError(DataError):
    pass


def default_cache_dir(prefix: str) -> str:
    return os.path.join(os.path.dirname(os.path.abspath(prefix)), "cache")


def _cache_path(cache_dir: str, path: str) -> str:
    key = hashlib.sha1(os.path.abspath(path).encode("utf-8", "surrogatepass")).hexdigest()[:20]
    return os.path.join(cache_dir, "token_checks", f"{key}.json")


class _Cache:
    """The cached facts of one ``.bin``; thrown away when the file's size or modification time changes."""

    def __init__(self, cache_dir: str | None, path: str) -> None:
        st = os.stat(path)
        self.stamp = {"version": CACHE_VERSION, "file": os.path.abspath(path), "size": st.st_size,
                      "mtime_ns": st.st_mtime_ns}
        self.path = _cache_path(cache_dir, path) if cache_dir else None
        self.facts: dict = {}
        if self.path:
            try:
                with open(self.path, encoding="utf-8") as f:
                    saved = json.load(f)
                if isinstance(saved, dict) and all(saved.get(k) == v for k, v in self.stamp.items()):
                    self.facts = saved.get("facts", {})
            except (OSError, ValueError):
                pass

    def save(self) -> None:
        if self.path:
            try:
                write_json_atomic(self.path, {**self.stamp, "facts": self.facts})
            except OSError:
                pass  # a read-only cache directory only costs a rescan next time


def _tokens(prefix: str, index: IndexArrays) -> np.ndarray:
    path = bin_path(prefix)
    if os.path.getsize(path) == 0:
        return np.zeros(0, dtype=index.header.dtype)
    return np.memmap(path, dtype=index.header.dtype, mode="r")


def _locate(index: IndexArrays, element: int) -> tuple[int, int]:
    """(document, token offset in it) of the ``element``-th token of the ``.bin``."""
    itemsize = index.header.dtype.itemsize
    seq = int(np.searchsorted(index.sequence_pointers, element * itemsize, side="right")) - 1
    doc = int(np.searchsorted(index.document_indices, seq, side="right")) - 1
    first = int(index.document_indices[doc])
    start = int(index.sequence_pointers[first]) // itemsize if first < len(index.sequence_pointers) else element
    return doc, element - start


def token_range(prefix: str, index: IndexArrays, cache_dir: str | None) -> tuple[int, int] | None:
    """(smallest, largest) token id of the ``.bin`` (None when it is empty), cached."""
    cache = _Cache(cache_dir, bin_path(prefix))
    if "range" not in cache.facts:
        tokens = _tokens(prefix, index)
        lo = hi = None
        for a in range(0, len(tokens), _CHUNK):
            block = tokens[a:a + _CHUNK]
            lo = int(block.min()) if lo is None else min(lo, int(block.min()))
            hi = int(block.max()) if hi is None else max(hi, int(block.max()))
        cache.facts["range"] = None if lo is None else [lo, hi]
        cache.save()
    found = cache.facts["range"]
    return None if found is None else (found[0], found[1])


def check_token_ids(prefix: str, index: IndexArrays, vocab_size: int, describe: str, cache_dir: str | None) -> None:
    """Every token id of ``prefix`` lies in ``[0, vocab_size)``; otherwise name the first document at fault."""
    found = token_range(prefix, index, cache_dir)
    if found is None or (found[0] >= 0 and found[1] < vocab_size):
        return
    tokens = _tokens(prefix, index)
    for a in range(0, len(tokens), _CHUNK):
        block = np.asarray(tokens[a:a + _CHUNK]).astype(np.int64)
        bad = np.flatnonzero((block < 0) | (block >= vocab_size))
        if len(bad):
            element = a + int(bad[0])
            doc, offset = _locate(index, element)
            raise TokenRangeError(
                f"dataset {prefix!r}: document {doc} holds token id {int(block[bad[0]])} (at token {offset}), "
                f"outside the vocabulary of {describe} ({vocab_size} ids; the dataset's ids span "
                f"{found[0]}..{found[1]}): it was made with another tokenizer or is damaged; train with the "
                f"tokenizer it was made with, or re-run preprocessing with this one")


def document_last_tokens(prefix: str, index: IndexArrays) -> tuple[np.ndarray, np.ndarray]:
    """(document numbers, last token) of every non-empty document, gathered in one vectorised read."""
    lengths = np.asarray(index.sequence_lengths, dtype=np.int64)
    docs = np.asarray(index.document_indices, dtype=np.int64)
    if len(lengths) == 0 or len(docs) < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    seq_end = np.asarray(index.sequence_pointers, dtype=np.int64) // index.header.dtype.itemsize + lengths
    cum = np.concatenate([[0], np.cumsum(lengths)])
    doc_tokens = cum[docs[1:]] - cum[docs[:-1]]
    nonempty = np.flatnonzero(doc_tokens > 0)
    last = seq_end[docs[1:][nonempty] - 1] - 1
    # the last sequence of a document may be empty: its end is then the end of the last non-empty one
    empty_tail = lengths[docs[1:][nonempty] - 1] == 0
    if empty_tail.any():
        for k in np.flatnonzero(empty_tail):
            s = int(docs[nonempty[k] + 1]) - 1
            while lengths[s] == 0:
                s -= 1
            last[k] = seq_end[s] - 1
    return nonempty, np.asarray(_tokens(prefix, index)[last]).astype(np.int64)


def check_document_ends(prefix: str, index: IndexArrays, eod_id: int, describe: str, cache_dir: str | None) -> None:
    """Every non-empty document of ``prefix`` ends with ``eod_id``: documents run together otherwise (a
    Megatron ``preprocess_data.py`` dataset made without ``--append-eod``) or the ids are another
    tokenizer's."""
    cache = _Cache(cache_dir, bin_path(prefix))
    key = f"not_ending_with_{eod_id}"
    if key not in cache.facts:
        docs, last = document_last_tokens(prefix, index)
        bad = last != eod_id
        wrong = docs[bad]
        common = int(np.bincount(last[bad]).argmax()) if bad.any() else None
        cache.facts[key] = [len(wrong), len(docs), int(wrong[0]) if len(wrong) else None, common]
        cache.save()
    wrong, total, first, common = cache.facts[key]
    if wrong:
        raise DataError(
            f"dataset {prefix!r}: {wrong} of {total} documents (the first: document {first}) do not end with the "
            f"end-of-document token of {describe} (id {eod_id}; most of them end with id {common}); documents "
            f"would run together in training samples. Make it with Megatron's preprocess_data.py --append-eod and "
            f"this tokenizer (whose end-of-document token must be id {eod_id}), or with `inserter preprocess`")
