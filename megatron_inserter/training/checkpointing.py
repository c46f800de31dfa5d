"""Training checkpoints with megatron-core dist_checkpointing: parallelism-agnostic and published atomically.

Layout of ``--save DIR``::

    DIR/iter_0000100/                     one dist checkpoint (model, optimizer, RNG shards + common.pt)
    DIR/latest_checkpointed_iteration.txt the published iteration, written last

A checkpoint is written into ``iter_XXXXXXX.tmp``, renamed to ``iter_XXXXXXX`` once every rank has
finished, and only then published by atomically replacing the tracker file. Readers go through the
tracker only, so a directory left behind by a killed save (``.tmp``, or renamed but not yet published)
is never taken as the latest.

    DIR/iter_0000100/model_config.json    the model it holds (``models/config_file.py``), also at
    DIR/model_config.json                 the root for the latest save

Contents: the model chunks' sharded state, the optimizer's sharded state (plain or distributed optimizer,
fully reshardable formats), the LR scheduler, one RNG state object per rank, and in the common part the
iteration, consumed samples, the arguments and the parallel layout. Model weights load at any TP/PP/VPP;
the optimizer state reshards too, except between the plain and the distributed optimizer (a clear error
suggests ``--no-load-optim``); RNG states are restored only at the same layout. Loading never runs code from the checkpoint's files
(``safe_load``).
"""

from __future__ import annotations

import glob
import logging
import os
import re
import shutil
from dataclasses import asdict, dataclass, field

import torch.distributed as dist

from megatron_inserter.files import write_text_atomic
from megatron_inserter.models import config_file
from megatron_inserter.training import rng_state, safe_load
from megatron_inserter.training.safe_load import CheckpointError

logger = logging.getLogger(__name__)
TRACKER = "latest_checkpointed_iteration.txt"
FORMAT_VERSION = 1
_OPTIM_METADATA = {"distrib_optim_sharding_type": "fully_sharded_model_space", "chained_optim_avoid_prefix": True}


@dataclass
class TrainState:
    iteration: int = 0
    consumed_train_samples: int = 0
    layout: dict = field(default_factory=dict)  # tp, pp, vp, cp, dp, world_size
    distributed_optimizer: bool = False


def iteration_dir(root: str, iteration: int) -> str:
    return os.path.join(root, f"iter_{iteration:07d}")


def read_tracker(root: str) -> int | None:
    """The published iteration in ``root``, or None when nothing was ever published."""
    path = os.path.join(root, TRACKER)
    if not os.path.isfile(path):
        return None
    with open(path, "rb") as f:
        text = f.read(64).decode("ascii", errors="replace").strip()
    try:
        return int(text)
    except ValueError:
        raise CheckpointError(f"{path} holds {text!r}, not an iteration number") from None


def resolve_load_dir(path: str) -> str | None:
    """``--load`` target: a directory with a tracker (its published iteration) or one iteration directory."""
    name = os.path.basename(os.path.normpath(path))
    if name.endswith(".tmp"):
        raise CheckpointError(f"{path} is an unfinished save (.tmp); load a published iteration")
    if os.path.isfile(os.path.join(path, "metadata.json")):
        return path
    if re.fullmatch(r"iter_\d{7}", name):
        raise CheckpointError(f"{path} is incomplete (no metadata.json); load a published iteration")
    it = read_tracker(path)
    if it is None:
        return None
    ckpt = iteration_dir(path, it)
    if not os.path.isfile(os.path.join(ckpt, "metadata.json")):
        raise CheckpointError(f"{os.path.join(path, TRACKER)} names iteration {it} but {ckpt} is missing or "
                              f"incomplete (no metadata.json)")
    return ckpt


def model_config_path(path: str) -> str | None:
    """The ``model_config.json`` of the checkpoint at ``path`` (a root or an iteration directory): the
    published iteration's own, else the one at or above ``path`` (converted checkpoints keep it at the root)."""
    ckpt = resolve_load_dir(path) if os.path.isdir(path) else None
    if ckpt is not None and os.path.isfile(os.path.join(ckpt, config_file.FILE_NAME)):
        return os.path.join(ckpt, config_file.FILE_NAME)
    return config_file.find(path)


def _model_key(i: int, n: int) -> str:
    return "model" if n == 1 else f"model{i}"


def unwrap(chunk):
    """The model inside mcore DDP / Float16Module wrappers (their state dicts carry a ``module.`` prefix)."""
    from megatron.core.distributed import DistributedDataParallel
    from megatron.core.transformer.module import Float16Module

    while isinstance(chunk, (DistributedDataParallel, Float16Module)):
        chunk = chunk.module
    return chunk


def _model_state(chunks) -> dict:
    return {_model_key(i, len(chunks)): unwrap(c).sharded_state_dict() for i, c in enumerate(chunks)}


def _rng_object(state):
    from megatron.core.dist_checkpointing import ShardedObject

    return ShardedObject("rng_state", state, (dist.get_world_size(),), (dist.get_rank(),), replica_id=0)


def _has_state(optimizer) -> bool:
    """Whether the optimizer holds moments yet (torch optimizers create them at the first step)."""
    for opt in getattr(optimizer, "chained_optimizers", [optimizer]):
        inner = getattr(opt, "optimizer", None)
        if inner is not None and len(inner.state) > 0:
            return True
    return False


def _write_tracker(root: str, iteration: int) -> None:
    write_text_atomic(os.path.join(root, TRACKER), f"{iteration}\n")


def save_checkpoint(root: str, state: TrainState, chunks, optimizer, scheduler, args: dict,
                    model_config: dict | None = None) -> str:
    """Collective: every rank calls it. Returns the published directory.

    ``model_config`` (a ``config_file.to_dict`` mapping) is written into the iteration directory before it
    is renamed into place, and to the root before the tracker names the new iteration.
    """
    from megatron.core import dist_checkpointing

    final = iteration_dir(root, state.iteration)
    tmp = final + ".tmp"
    if dist.get_rank() == 0:
        os.makedirs(root, exist_ok=True)
        for stale in glob.glob(os.path.join(root, "iter_*.tmp")):  # left by saves that were killed
            shutil.rmtree(stale, ignore_errors=True)
        os.makedirs(tmp)
    dist.barrier()
    model = _model_state(chunks)
    sharded = dict(model)
    sharded["optimizer"] = optimizer.sharded_state_dict(model, metadata=_OPTIM_METADATA)
    sharded["rng_state"] = _rng_object(rng_state.capture())
    sharded["optimizer_has_state"] = _has_state(optimizer)
    sharded["scheduler"] = scheduler.state_dict()
    sharded["train_state"] = asdict(state)
    sharded["args"] = args
    sharded["format_version"] = FORMAT_VERSION
    dist_checkpointing.save(sharded, tmp)
    dist.barrier()
    if dist.get_rank() == 0:
        if model_config is not None:
            config_file.write(tmp, model_config)
        if os.path.exists(final):  # the same iteration saved again (e.g. a resumed run's final save)
            shutil.rmtree(final)
        os.rename(tmp, final)
        if model_config is not None:
            config_file.write(root, model_config)
        _write_tracker(root, state.iteration)
    dist.barrier()
    return final


def load_checkpoint(path: str, chunks, optimizer, scheduler, current: TrainState, load_optim: bool = True,
                    load_rng: bool = True, finetune: bool = False) -> TrainState | None:
    """Collective. Restores into the given objects; returns the saved TrainState (None: nothing to load).

    Before anything is read, ``safe_load.verify`` checks the formats, the index and every shard file (missing
    or truncated: one ``CheckpointError`` naming the file), for every caller: train, generate, eval."""
    from megatron.core import dist_checkpointing
    from torch.distributed.checkpoint.api import CheckpointException

    ckpt = resolve_load_dir(path)
    if ckpt is None:
        if not os.path.isdir(path):
            raise CheckpointError(f"--load {path} does not exist")
        logger.warning("--load %s holds no published checkpoint (%s); starting from scratch", path, TRACKER)
        return None
    safe_load.install()
    safe_load.verify(ckpt)
    common = safe_load.load_common(ckpt)
    saved = _train_state(common, ckpt)
    if finetune:
        load_optim = load_rng = False
    if load_optim and saved.distributed_optimizer != current.distributed_optimizer:
        kinds = {True: "distributed", False: "plain"}
        raise CheckpointError(
            f"{ckpt} holds {kinds[saved.distributed_optimizer]} optimizer state but this run uses the "
            f"{kinds[current.distributed_optimizer]} optimizer; megatron-core cannot convert between them: "
            f"pass --no-load-optim (weights only) or match --use-distributed-optimizer")
    same_layout = saved.layout == current.layout
    if load_rng and not same_layout:
        if dist.get_rank() == 0:
            logger.warning("checkpoint layout %s differs from this run's %s: RNG states are not restored",
                           saved.layout, current.layout)
        load_rng = False
    if load_optim and not ("optimizer" in common and common.get("optimizer_has_state", True)):
        # Saved before the first optimizer step, or converted weights: there are no moments to restore.
        logger.info("%s holds no optimizer state; the optimizer starts fresh", ckpt)
        optimizer_state = False
    else:
        optimizer_state = load_optim
    model = _model_state(chunks)
    request = dict(model)
    if optimizer_state:
        request["optimizer"] = optimizer.sharded_state_dict(model, is_loading=True, metadata=_OPTIM_METADATA)
    if load_rng:
        request["rng_state"] = _rng_object(None)
    try:
        loaded = dist_checkpointing.load(request, ckpt, common_strategy=safe_load.common_strategy())
    except (Exception, CheckpointException) as e:
        refused = safe_load.refused_in(e)
        if refused is not None:
            raise CheckpointError(f"{ckpt}: {refused}") from None
        hint = " (retry with --no-load-optim to load the weights only)" if load_optim else ""
        raise CheckpointError(f"loading {ckpt} failed: {e}{hint}") from e
    for i, chunk in enumerate(chunks):
        unwrap(chunk).load_state_dict(loaded[_model_key(i, len(chunks))], strict=True)
    if optimizer_state:
        optimizer.load_state_dict(loaded["optimizer"])
    elif optimizer is not None:
        optimizer.reload_model_params()  # fp32 master copies (bf16 runs) follow the loaded weights
    if load_optim and scheduler is not None and "scheduler" in common:
        scheduler.load_state_dict(common["scheduler"])
    if load_rng:
        rng_state.restore(loaded["rng_state"])
    if finetune:
        return TrainState(iteration=0, consumed_train_samples=0, layout=saved.layout,
                          distributed_optimizer=saved.distributed_optimizer)
    if (not load_optim or "scheduler" not in common) and scheduler is not None:
        # The schedule continues from the checkpoint's position even without the optimizer moments.
        scheduler.num_steps = saved.consumed_train_samples
        scheduler.step(0)
    return saved


def checkpoint_args(path: str) -> dict:
    """The arguments a checkpoint was trained with (from its common part; no process group needed)."""
    ckpt = resolve_load_dir(path)
    if ckpt is None:
        raise CheckpointError(f"{path} holds no published checkpoint")
    args = safe_load.load_common(ckpt).get("args")
    if not isinstance(args, dict):
        raise CheckpointError(f"{os.path.join(ckpt, safe_load.COMMON_FILE)} holds no training arguments")
    return args


def _train_state(common: dict, ckpt: str) -> TrainState:
    try:
        return TrainState(**common["train_state"])
    except (KeyError, TypeError) as e:
        raise CheckpointError(f"{os.path.join(ckpt, safe_load.COMMON_FILE)}: no valid train_state ({e})") from None
