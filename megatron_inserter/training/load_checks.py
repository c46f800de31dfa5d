"""Checks of a ``--load`` checkpoint made before any model is built: one clear line instead of a failure
deep inside the distributed load.

    ckpt = check_load(args.load, model_type=args.model_type)   # None: nothing published there yet

- every shard file the checkpoint index (``.metadata``, read without running code: ``safe_load``) names is
  there, inside the checkpoint, and long enough for the items stored in it (a save cut short, a copy
  truncated);
- the checkpoint holds the model type the run builds (``--model-type``).
"""

from __future__ import annotations

import os

from megatron_inserter.training import safe_load
from megatron_inserter.training.safe_load import CheckpointError


def check_shards(ckpt: str) -> None:
    """Every file ``ckpt``'s index stores items in exists and holds them whole."""
    index = os.path.join(ckpt, safe_load.METADATA_FILE)
    if not os.path.isfile(index):
        raise CheckpointError(f"{index} is missing; the checkpoint is incomplete: load another iteration")
    with open(index, "rb") as f:
        metadata = safe_load.read_metadata_file(f, index)
    needed: dict[str, int] = {}
    for info in (getattr(metadata, "storage_data", None) or {}).values():
        name = os.path.normpath(str(info.relative_path))
        if os.path.isabs(name) or name.startswith(".."):
            raise CheckpointError(f"{index} names a shard outside the checkpoint ({info.relative_path!r}); the "
                                  f"index is damaged or was tampered with")
        needed[name] = max(needed.get(name, 0), int(info.offset) + int(info.length))
    for name, end in sorted(needed.items()):
        path = os.path.join(ckpt, name)
        if not os.path.isfile(path):
            raise CheckpointError(f"{path} is missing; the checkpoint is incomplete: copy it again or load "
                                  f"another iteration")
        size = os.path.getsize(path)
        if size < end:
            raise CheckpointError(f"{path} is truncated ({size} bytes; its index {safe_load.METADATA_FILE} needs "
                                  f"{end}): the save was cut short or the copy damaged; load another iteration")


def saved_model_type(ckpt: str) -> str | None:
    """The ``--model-type`` a checkpoint was trained with (None when it records no training arguments)."""
    args = safe_load.load_common(ckpt).get("args")
    return args.get("model_type") if isinstance(args, dict) else None


def check_load(load: str, model_type: str | None = None) -> str | None:
    """The checkpoint directory ``--load`` resolves to, checked; None when nothing is published there."""
    from megatron_inserter.training.checkpointing import resolve_load_dir

    ckpt = resolve_load_dir(load)
    if ckpt is None:
        return None
    check_shards(ckpt)
    saved = saved_model_type(ckpt) if model_type is not None else None
    if saved is not None and saved != model_type:
        raise CheckpointError(f"--load {load} holds a --model-type {saved} checkpoint but this run builds "
                              f"--model-type {model_type}: pass --model-type {saved}, or --load a checkpoint trained "
                              f"with --model-type {model_type}")
    return ckpt
