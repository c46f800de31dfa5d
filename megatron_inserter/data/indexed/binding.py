"""Binds a dataset's ``.bin`` to its ``.idx`` and sidecar: sizes plus a content fingerprint, recorded when
the dataset is written and checked when it is opened.

A fingerprint is the SHA-256 of the file's size and of 64 blocks of 16 KiB spread evenly over it (the
whole file when it is smaller than 1 MiB): about one MiB read per file, whatever the dataset's size, yet a
file swapped in from another dataset (a text ``.bin`` in place of an interleaved one, an ``.idx`` of a
rebuilt run) differs in nearly every block. It survives copies (no times, no paths).
"""

from __future__ import annotations

import hashlib
import os

from megatron_inserter.data.indexed.index_format import bin_path, idx_path
from megatron_inserter.errors import DataError

_BLOCKS = 64
_BLOCK = 16 << 10


class DatasetBindingError(DataError):
    pass


def file_fingerprint(path: str) -> dict:
    size = os.path.getsize(path)
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        if size <= _BLOCKS * _BLOCK:
            h.update(f.read())
        else:
            last = size - _BLOCK
            for i in range(_BLOCKS):
                f.seek(last * i // (_BLOCKS - 1))
                h.update(f.read(_BLOCK))
    return {"size": size, "sample_sha256": h.hexdigest()}


def dataset_fingerprints(prefixes: list[str]) -> dict[str, dict]:
    """Fingerprints of the ``.bin``/``.idx`` of each prefix, keyed by file name (no directory)."""
    out = {}
    for prefix in prefixes:
        for path in (bin_path(prefix), idx_path(prefix)):
            out[os.path.basename(path)] = file_fingerprint(path)
    return out


def check_fingerprints(directory: str, recorded: dict[str, dict], sidecar: str) -> None:
    """Refuse files whose size or fingerprint differs from what ``sidecar`` recorded for them."""
    for name, want in recorded.items():
        path = os.path.join(directory, name)
        if not os.path.isfile(path):
            raise DatasetBindingError(f"{path!r} is missing but {sidecar!r} lists it: restore it or re-run "
                                      f"`inserter preprocess`")
        size = os.path.getsize(path)
        if size != want.get("size"):
            raise DatasetBindingError(
                f"{path!r} is {size} bytes but {sidecar!r} was written for {want.get('size')} bytes: the file was "
                f"replaced or damaged after preprocessing; keep the .bin, .idx and .meta.json of one run together "
                f"or re-run `inserter preprocess`")
        if file_fingerprint(path)["sample_sha256"] != want.get("sample_sha256"):
            raise DatasetBindingError(
                f"{path!r} does not hold the data {sidecar!r} was written for (content fingerprint differs): the "
                f"file comes from another dataset or was modified; keep the .bin, .idx and .meta.json of one run "
                f"together or re-run `inserter preprocess`")
