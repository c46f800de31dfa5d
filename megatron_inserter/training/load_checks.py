"""Checks of a ``--load`` checkpoint made before any model is built: one clear line instead of a failure
deep inside the distributed load. The shard checks run again in every load (``safe_load.verify``, called by
``checkpointing.load_checkpoint`` and the converter's reader), so ``eval`` and ``convert`` fail the same way.

    ckpt = check_load(args.load, model_type=args.model_type)   # None: nothing published there yet

- its formats are ours and every shard file the checkpoint index (``.metadata``, read without running code:
  ``safe_load``) names is there, inside the checkpoint, and long enough for the items stored in it (a save
  cut short, a copy truncated);
- the checkpoint holds the model type the run builds (``--model-type``).
"""

from __future__ import annotations

from megatron_inserter.training import safe_load
from megatron_inserter.training.safe_load import CheckpointError


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
    safe_load.verify(ckpt)  # formats, index, every shard there and whole
    saved = saved_model_type(ckpt) if model_type is not None else None
    if saved is not None and saved != model_type:
        raise CheckpointError(f"--load {load} holds a --model-type {saved} checkpoint but this run builds "
                              f"--model-type {model_type}: pass --model-type {saved}, or --load a checkpoint trained "
                              f"with --model-type {model_type}")
    return ckpt
