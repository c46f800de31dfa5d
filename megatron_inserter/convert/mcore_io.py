"""megatron-core dist checkpoints without a materialised model.

The model is built once on the ``meta`` device at TP=PP=1: it costs no memory and its
``sharded_state_dict()`` names every tensor exactly as training saves and loads it (keys, layer axis,
SwiGLU halves, extra-state objects). Converted tensors are slotted into that structure and saved with
``dist_checkpointing.save``; the result loads at any TP/PP because dist checkpoints are stored as global
tensors. Export goes the other way: the same structure with empty buffers, loaded a few tensors at a
time, so memory stays bounded by the largest group.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager

import torch

from megatron_inserter.convert.errors import ConversionError
from megatron_inserter.training import safe_load

# A converted tensor, or the pieces of one that megatron-core saves as separate shards (SwiGLU gate, up).
Source = torch.Tensor | tuple


@contextmanager
def single_process_parallel():
    """A one-process gloo group with TP=PP=1 megatron state: what dist_checkpointing needs to run."""
    import torch.distributed as dist
    from megatron.core import parallel_state

    from megatron_inserter.runtime import ParallelConfig, initialize_parallel
    from megatron_inserter.runtime.env import DistEnv

    if dist.is_initialized():
        if dist.get_world_size() != 1:
            raise ConversionError("conversion runs as one process; start it without torchrun/srun")
        initialize_parallel(ParallelConfig(), DistEnv(0, 1, 0, "127.0.0.1", 0, "single"))
        yield
        return
    with tempfile.TemporaryDirectory(prefix="inserter-convert-pg-") as tmp:
        dist.init_process_group("gloo", init_method=f"file://{os.path.join(tmp, 'store')}", rank=0, world_size=1)
        try:
            initialize_parallel(ParallelConfig(), DistEnv(0, 1, 0, "127.0.0.1", 0, "single"))
            yield
        finally:
            if parallel_state.model_parallel_is_initialized():
                parallel_state.destroy_model_parallel()
            dist.destroy_process_group()


def build_on_meta(builder: Callable[[], torch.nn.Module]) -> torch.nn.Module:
    with torch.device("meta"):
        return builder()


def fill_sharded_state(sharded: dict, sources: Mapping[str, Source], dtype: torch.dtype | None) -> dict:
    """Put converted tensors into a meta model's sharded state dict (in place; returns it).

    ``sources`` is keyed by the model's TP=1 state-dict names (the keys of its flat sharded state dict).
    Every tensor must get a source of its exact shape and every source must be used: a mismatch is a
    converter bug, reported by name. A tuple source gives the pieces megatron-core saves separately.
    """
    from megatron.core.dist_checkpointing.mapping import ShardedTensor, ShardedTensorFactory

    def cast(t: torch.Tensor) -> torch.Tensor:
        t = t if dtype is None or t.dtype == dtype else t.to(dtype)
        return t if t.is_contiguous() else t.contiguous()

    def put(st, t: torch.Tensor, name: str):
        if tuple(t.shape) != tuple(st.local_shape):
            raise ConversionError(f"{name}: converted shape {tuple(t.shape)} but the model expects "
                                  f"{tuple(st.local_shape)}")
        t = cast(t)
        return dataclasses.replace(st, data=t, dtype=t.dtype)

    tensors = {k: v for k, v in sharded.items() if isinstance(v, (ShardedTensor, ShardedTensorFactory))}
    missing = [name for name in tensors if name not in sources]
    if missing:
        raise ConversionError(f"the converter produced no value for {len(missing)} model tensors, e.g. "
                              f"{', '.join(missing[:5])}")
    extra = sorted(set(sources) - set(tensors))
    if extra:
        raise ConversionError(f"converted tensors the model does not have: {', '.join(extra[:5])}")
    for name, value in tensors.items():
        src = sources[name]
        if isinstance(value, ShardedTensor):
            sharded[name] = put(value, src, name)
        elif isinstance(src, tuple):
            built = value.build()
            built = built if isinstance(built, list) else [built]
            if len(built) != len(src):
                raise ConversionError(f"{name}: the model saves {len(built)} pieces, the converter gives {len(src)}")
            sharded[name] = [put(st, t, f"{name}[{i}]") for i, (st, t) in enumerate(zip(built, src))]
        else:
            value.data = cast(src)
    return sharded


def save(sharded: dict, directory: str) -> None:
    from megatron.core import dist_checkpointing

    os.makedirs(directory, exist_ok=True)
    dist_checkpointing.save(sharded, directory)


def tensor_groups(sharded: dict, group_of: Callable[[str], str]) -> dict[str, list[str]]:
    """State-dict names of the model's tensors, grouped by ``group_of(name)`` (order kept)."""
    from megatron.core.dist_checkpointing.mapping import ShardedTensor, ShardedTensorFactory

    groups: dict[str, list[str]] = {}
    for name, value in sharded.items():
        if isinstance(value, (ShardedTensor, ShardedTensorFactory)):
            groups.setdefault(group_of(name), []).append(name)
    return groups


def _reading_request(st, dtype: torch.dtype):
    """A buffer-backed copy of a ShardedTensor that can be read on its own.

    megatron-core describes a stacked-layer tensor as a regular grid of per-layer shards and, in a
    one-process group, then expects this process to read every layer of it. The same slice described as an
    irregular shard (layer axis folded into the local shape, no grid) is read alone.
    """
    from megatron.core.dist_checkpointing.mapping import ShardedTensor

    shape = (1,) * st.prepend_axis_num + tuple(st.local_shape)
    return ShardedTensor(key=st.key, data=torch.empty(shape, dtype=dtype), dtype=dtype, local_shape=shape,
                         global_shape=tuple(st.global_shape), global_offset=tuple(st.global_offset),
                         axis_fragmentations=None, replica_id=0, prepend_axis_num=0)


def load_groups(sharded: dict, directory: str, groups: Iterable[list[str]]) -> Iterator[dict[str, torch.Tensor]]:
    """Load the named tensors of a meta model's sharded state dict, one group at a time.

    Each tensor comes back in the dtype it was saved in, at its TP=1 shape (SwiGLU halves merged). The
    checkpoint's files are read through ``training.safe_load`` (nothing in them runs).
    """
    from megatron.core import dist_checkpointing
    from megatron.core.dist_checkpointing.mapping import ShardedTensor, ShardedTensorFactory
    from torch.distributed.checkpoint.api import CheckpointException

    safe_load.install()
    safe_load.verify(directory)
    saved = dist_checkpointing.load_tensors_metadata(directory)
    for names in groups:
        request, plan = {}, {}
        for name in names:
            value = sharded[name]
            pieces = value.build() if isinstance(value, ShardedTensorFactory) else value
            pieces = pieces if isinstance(pieces, list) else [pieces]
            if not all(isinstance(p, ShardedTensor) for p in pieces):
                raise ConversionError(f"model tensor {name} is saved in a form the converter cannot read")
            keys = []
            for j, piece in enumerate(pieces):
                meta = saved.get(piece.key)
                if meta is None:
                    raise ConversionError(f"{directory} holds no tensor {piece.key} (model tensor {name}); "
                                          "is it a checkpoint of this model?")
                if tuple(meta.global_shape) != tuple(piece.global_shape):
                    raise ConversionError(f"{directory}: tensor {piece.key} has shape {tuple(meta.global_shape)} "
                                          f"but the model config implies {tuple(piece.global_shape)}")
                request[f"{name}#{j}"] = _reading_request(piece, meta.dtype)
                keys.append((f"{name}#{j}", tuple(piece.local_shape)))
            plan[name] = (value, keys)
        try:
            # Each request is a slice of a stacked tensor, so the whole-tensor coverage check is off.
            loaded = dist_checkpointing.load(request, directory, common_strategy=safe_load.common_strategy(),
                                             validate_access_integrity=False)
        except (Exception, CheckpointException) as e:
            refused = safe_load.refused_in(e)
            if refused is not None:
                raise safe_load.CheckpointError(f"{directory}: {refused}") from None
            raise ConversionError(f"reading {', '.join(names[:3])} from {directory} failed: {e}") from e
        out = {}
        for name, (value, keys) in plan.items():
            parts = [loaded[k].reshape(shape) for k, shape in keys]
            out[name] = value.merge_fn(parts) if isinstance(value, ShardedTensorFactory) else parts[0]
        yield out
