"""Reading a checkpoint without running code from it.

A checkpoint holds three kinds of pickle, and unpickling calls whatever a file names:

  common.pt             torch.save of the common state (iteration, arguments, schedule, optimizer groups)
  .metadata             plain pickle: the torch distributed checkpoint's index of every shard
  objects in .distcp    torch.save of small objects (RNG states, layers' extra state)

Each is read with an allowlist. ``common.pt`` and the objects go through ``torch.load(weights_only=True)``
admitting, beyond tensors and plain containers, only the numpy types of an RNG state (``OBJECT_GLOBALS``);
the process-wide additions other libraries register (megatron-core adds paths, namespaces, BytesIO, ...)
are set aside while reading. ``.metadata`` goes through ``MetadataUnpickler``, which admits only the
checkpoint index classes (``METADATA_CLASSES``), ``torch.Size``, dtypes and layouts. ``install()`` routes
torch's own readers, which megatron-core's ``dist_checkpointing`` uses on every load
(``FileSystemReader.read_metadata``, ``DefaultLoadPlanner.load_bytes``), through these.

Anything else is a ``CheckpointError`` naming the file and what it asked for; nothing of it runs.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import threading
from contextlib import contextmanager
from typing import IO, Any

import numpy as np
import torch

from megatron_inserter.errors import InserterError

COMMON_FILE = "common.pt"
METADATA_FILE = ".metadata"
FORMAT_FILE = "metadata.json"
# What megatron-core records for the formats this project writes (torch_dist shards, torch common state).
FORMAT = {"sharded_backend": "torch_dist", "common_backend": "torch"}
# The torch distributed checkpoint index: its dataclasses and the save plans it keeps.
METADATA_CLASSES = {
    "torch.distributed.checkpoint.metadata": {
        "Metadata", "TensorStorageMetadata", "BytesStorageMetadata", "ChunkStorageMetadata", "TensorProperties",
        "StorageMeta", "MetadataIndex", "_MEM_FORMAT_ENCODING"},
    "torch.distributed.checkpoint.filesystem": {"_StorageInfo"},
    "torch.distributed.checkpoint.planner": {
        "SavePlan", "WriteItem", "WriteItemType", "TensorWriteData", "BytesIOWriteData"},
    "torch": {"Size"},
    "torch.serialization": {"_get_layout"},  # maps "torch.strided" to the layout object
    "collections": {"OrderedDict"},
}


class CheckpointError(InserterError):
    """A checkpoint that cannot be loaded: missing, incomplete, of another layout, damaged, or holding
    what this project never writes."""


def _numpy_rng_globals() -> list:
    """The types of ``numpy.random.get_state()`` as torch.save pickles them (numpy 1 and 2 names)."""
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy 1
        from numpy.core.multiarray import _reconstruct
    return [_reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]


OBJECT_GLOBALS = _numpy_rng_globals()
_ALLOWLIST_LOCK = threading.RLock()


def refusal(where: str, what: str) -> str:
    return (f"{where} asks to load {what}, which a checkpoint of this project never holds; refused, nothing "
            "from it was run (the file is damaged or was tampered with: use a checkpoint from a trusted source)")


@contextmanager
def only_allowed(extra: list):
    """torch's weights-only unpickler admits its defaults plus ``extra`` and nothing else inside the block."""
    with _ALLOWLIST_LOCK:
        saved = torch.serialization.get_safe_globals()
        torch.serialization.clear_safe_globals()
        torch.serialization.add_safe_globals(list(extra))
        try:
            yield
        finally:
            torch.serialization.clear_safe_globals()
            torch.serialization.add_safe_globals(saved)


def torch_load(source: str | IO[bytes], where: str) -> Any:
    """``torch.load(weights_only=True)`` admitting only ``OBJECT_GLOBALS``; errors name ``where``."""
    try:
        with only_allowed(OBJECT_GLOBALS):
            return torch.load(source, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        named = re.search(r"GLOBAL ([\w.]+)", str(e))
        raise CheckpointError(refusal(where, named.group(1) if named else "a disallowed construct")) from None
    except (RuntimeError, EOFError, ValueError, KeyError) as e:  # a torn or foreign zip archive
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise CheckpointError(f"{where} is not a readable torch file ({first}); the checkpoint is damaged") from None


def load_common(checkpoint: str) -> dict:
    """The common state of the dist checkpoint directory ``checkpoint`` (its ``common.pt``)."""
    path = os.path.join(checkpoint, COMMON_FILE)
    if not os.path.isfile(path):
        raise CheckpointError(f"{path} is missing; the checkpoint is incomplete")
    common = torch_load(path, path)
    if not isinstance(common, dict):
        raise CheckpointError(f"{path} holds a {type(common).__name__}, not a checkpoint's common state")
    return common


class MetadataUnpickler(pickle.Unpickler):
    """Unpickles a torch distributed checkpoint index; any class outside ``METADATA_CLASSES`` is refused."""

    def __init__(self, file: IO[bytes], where: str):
        super().__init__(file)
        self.where = where

    def find_class(self, module: str, name: str):
        if name in METADATA_CLASSES.get(module, ()):
            return super().find_class(module, name)
        if module == "torch" and isinstance(torch.__dict__.get(name), (torch.dtype, torch.layout)):
            return torch.__dict__[name]
        raise CheckpointError(refusal(self.where, f"{module}.{name}"))

    def persistent_load(self, pid):
        raise CheckpointError(refusal(self.where, "a persistent object"))


def read_metadata_file(file: IO[bytes], where: str):
    """The ``Metadata`` pickled in ``file`` (a ``.metadata``), read with ``MetadataUnpickler``."""
    from torch.distributed.checkpoint.metadata import Metadata

    try:
        metadata = MetadataUnpickler(file, where).load()
    except CheckpointError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, AttributeError, IndexError) as e:
        raise CheckpointError(f"{where} is not a readable checkpoint index ({type(e).__name__}: {e}); the "
                              "checkpoint is damaged") from None
    if not isinstance(metadata, Metadata):
        raise CheckpointError(f"{where} holds a {type(metadata).__name__}, not a checkpoint index")
    return metadata


def check_format(checkpoint: str) -> None:
    """``metadata.json`` names the formats this project writes (others load through other code paths)."""
    path = os.path.join(checkpoint, FORMAT_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            found = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path} is not valid JSON ({e}); the checkpoint is damaged") from None
    if not isinstance(found, dict) or any(found.get(k) != v for k, v in FORMAT.items()):
        raise CheckpointError(f"{path} describes a {found!r} checkpoint; this project reads only {FORMAT}")


def check_shard_files(checkpoint: str, metadata, index: str) -> None:
    """Every file the index ``metadata`` (read from ``index``) stores items in lies inside ``checkpoint``,
    exists, and is long enough for the items stored in it (a save cut short, a copy truncated)."""
    needed: dict[str, int] = {}
    for info in (getattr(metadata, "storage_data", None) or {}).values():
        name = os.path.normpath(str(info.relative_path))
        if os.path.isabs(name) or name.startswith(".."):
            raise CheckpointError(f"{index} names a shard outside the checkpoint ({info.relative_path!r}); the "
                                  f"index is damaged or was tampered with")
        needed[name] = max(needed.get(name, 0), int(info.offset) + int(info.length))
    for name, end in sorted(needed.items()):
        path = os.path.join(checkpoint, name)
        if not os.path.isfile(path):
            raise CheckpointError(f"{path} is missing; the checkpoint is incomplete: copy it again or load "
                                  f"another iteration")
        size = os.path.getsize(path)
        if size < end:
            raise CheckpointError(f"{path} is truncated ({size} bytes; its index {METADATA_FILE} needs "
                                  f"{end}): the save was cut short or the copy damaged; load another iteration")


def verify(checkpoint: str) -> None:
    """Before megatron-core reads ``checkpoint`` (every loader calls this): its formats are ours, its index
    reads through the allowlist (torch would turn a refusal met inside its own reader into a generic
    assertion), and every shard file the index names is there and whole (``check_shard_files``)."""
    check_format(checkpoint)
    path = os.path.join(checkpoint, METADATA_FILE)
    if not os.path.isfile(path):
        raise CheckpointError(f"{path} is missing; the checkpoint is incomplete: load another iteration")
    with open(path, "rb") as f:
        metadata = read_metadata_file(f, path)
    check_shard_files(checkpoint, metadata, path)


def _read_metadata(self, *args, **kwargs):
    """``FileSystemReader.read_metadata`` through ``MetadataUnpickler``."""
    from torch.distributed.checkpoint.metadata import StorageMeta

    path = self._get_metadata_path(kwargs.get("rank"))
    with self.fs.create_stream(path, "rb") as f:
        metadata = read_metadata_file(f, os.fspath(path))
    if getattr(metadata, "storage_meta", None) is None:
        metadata.storage_meta = StorageMeta()
    metadata.storage_meta.load_id = getattr(self, "load_id", None)
    return metadata


def _load_bytes(self, read_item, value) -> None:
    """``DefaultLoadPlanner.load_bytes`` through ``torch_load``."""
    from torch.distributed.checkpoint._traverse import set_element

    fqn = read_item.dest_index.fqn
    storage = getattr(getattr(self, "metadata", None), "storage_data", None) or {}
    info = storage.get(read_item.storage_index)
    where = f"{info.relative_path} (object {fqn})" if info is not None else f"object {fqn}"
    obj = torch_load(value, where)
    if self.flatten_state_dict:
        set_element(self.original_state_dict, self.mappings[fqn], obj)
    else:
        self.state_dict[fqn] = obj


def install() -> None:
    """Route torch's distributed-checkpoint readers through the allowlists (idempotent, process-wide)."""
    from torch.distributed.checkpoint import default_planner, filesystem

    filesystem.FileSystemReader.read_metadata = _read_metadata
    default_planner.DefaultLoadPlanner.load_bytes = _load_bytes


def common_strategy():
    """A megatron-core common-state load strategy that reads ``common.pt`` with ``load_common``."""
    from megatron.core.dist_checkpointing.strategies.common import TorchCommonLoadStrategy

    class SafeCommonLoadStrategy(TorchCommonLoadStrategy):
        def load_common(self, checkpoint_dir):
            return load_common(os.fspath(checkpoint_dir))

        def load_sharded_objects(self, sharded_objects_state_dict, checkpoint_dir):
            raise CheckpointError(f"{checkpoint_dir} stores objects outside its torch_dist shards, which this "
                                  "project never writes")

    return SafeCommonLoadStrategy()


def refused_in(error: BaseException) -> CheckpointError | None:
    """The ``CheckpointError`` behind ``error``: torch wraps a rank's failure in a ``CheckpointException``."""
    seen: set[int] = set()
    todo = [error]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, CheckpointError):
            return e
        for failure in (getattr(e, "failures", None) or {}).values():
            todo.append(failure[0] if isinstance(failure, tuple) else failure)
        todo += [e.__cause__, e.__context__]
    return None
