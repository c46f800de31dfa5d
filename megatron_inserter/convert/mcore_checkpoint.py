"""Write and read converted dist checkpoints in the trainer's layout (see ``layout``)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable, Iterator, Mapping

import torch

from megatron_inserter.convert import layout, mcore_io
from megatron_inserter.convert.errors import ConversionError
from megatron_inserter.files import write_text_atomic
from megatron_inserter.models import config_file
from megatron_inserter.training.checkpointing import (
    FORMAT_VERSION,
    TRACKER,
    CheckpointError,
    TrainState,
    iteration_dir,
    resolve_load_dir,
)


def write(output: str, builder: Callable[[], torch.nn.Module], sources: Mapping[str, mcore_io.Source],
          model_config: dict, dtype: torch.dtype | None, asset_dirs: Iterable[str] = ()) -> str:
    """Publish a converted checkpoint at ``output``: nothing appears there unless every step succeeds.

    ``model_config`` is the ``config_file.to_dict`` mapping of the model ``builder`` builds."""
    with layout.staged_directory(output) as tmp:
        with mcore_io.single_process_parallel():
            model = mcore_io.build_on_meta(builder)
            sharded = mcore_io.fill_sharded_state(model.sharded_state_dict(), sources, dtype)
            state = {
                "model": sharded,
                "train_state": dataclasses.asdict(TrainState(iteration=layout.CONVERTED_ITERATION)),
                "args": {"model_type": model_config["model_type"], "converted": True},
                "format_version": FORMAT_VERSION,
            }
            mcore_io.save(state, iteration_dir(tmp, layout.CONVERTED_ITERATION))
        write_text_atomic(os.path.join(tmp, TRACKER), f"{layout.CONVERTED_ITERATION}\n")
        config_file.write(tmp, model_config)
        for src in asset_dirs:
            layout.copy_assets(src, os.path.join(tmp, layout.ASSETS))
    return os.path.abspath(output)


def resolve(checkpoint: str) -> str:
    """The dist checkpoint directory of ``--load``: a root with a tracker file, or an iter_ directory."""
    try:
        ckpt = resolve_load_dir(checkpoint)
    except CheckpointError as e:
        raise ConversionError(str(e)) from None
    if ckpt is None:
        raise ConversionError(f"--load {checkpoint} holds no published checkpoint ({TRACKER} missing)")
    return ckpt


def read_groups(checkpoint: str, builder: Callable[[], torch.nn.Module], group_of: Callable[[str], str | None]
                ) -> Iterator[tuple[str, dict[str, torch.Tensor]]]:
    """(group, {TP=1 state-dict name: tensor}) for every group of the model's tensors, loaded lazily.

    Must run inside ``mcore_io.single_process_parallel()``. Tensors whose group is None are skipped.
    """
    ckpt = resolve(checkpoint)
    model = mcore_io.build_on_meta(builder)
    sharded = model.sharded_state_dict()
    groups = {g: names for g, names in mcore_io.tensor_groups(sharded, lambda n: group_of(n) or "").items() if g}
    loaded = mcore_io.load_groups(sharded, ckpt, groups.values())
    yield from zip(groups, loaded)
