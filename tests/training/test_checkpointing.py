"""Checkpoints are published atomically: a save killed at any point never becomes the latest."""

import os

import pytest

from megatron_inserter.training import checkpointing as ckpt
from tests.harness import run_distributed
from tests.training.runs import common_flags


def _complete(path):
    os.makedirs(path)
    with open(os.path.join(path, "metadata.json"), "w") as f:
        f.write("{}")


def test_only_the_published_iteration_is_loaded(tmp_path):
    root = str(tmp_path)
    assert ckpt.resolve_load_dir(root) is None  # nothing published yet
    _complete(ckpt.iteration_dir(root, 2))
    ckpt._write_tracker(root, 2)
    os.makedirs(ckpt.iteration_dir(root, 4) + ".tmp")  # killed while writing
    _complete(ckpt.iteration_dir(root, 6))  # killed after the rename, before publishing
    assert ckpt.resolve_load_dir(root) == ckpt.iteration_dir(root, 2)
    with pytest.raises(ckpt.CheckpointError, match="unfinished"):
        ckpt.resolve_load_dir(ckpt.iteration_dir(root, 4) + ".tmp")
    ckpt._write_tracker(root, 8)  # a tracker naming a missing directory is an error, not a silent restart
    with pytest.raises(ckpt.CheckpointError, match="iter_0000008"):
        ckpt.resolve_load_dir(root)


class Killed(BaseException):
    pass


def _interrupted_saves(rank, world_size, tok, prefix, root):
    import torch
    from megatron.core import dist_checkpointing

    from megatron_inserter.training.arguments import parse_args
    from megatron_inserter.training.checkpointing import unwrap
    from megatron_inserter.training.setup import build_run

    run = build_run(parse_args(common_flags(tok, prefix, save=root)))
    first_param = lambda: next(unwrap(run.chunks[0]).parameters())
    state = ckpt.TrainState(iteration=1, consumed_train_samples=4, layout=run.parallel_layout())
    ckpt.save_checkpoint(root, state, run.chunks, run.optimizer, run.scheduler, {})
    saved = first_param().detach().clone()
    with torch.no_grad():
        first_param().add_(1.0)
    state.iteration = 2
    seen = {}

    real_save = dist_checkpointing.save

    def dies_mid_write(sharded, directory, **kw):
        with open(os.path.join(directory, "__0_0.distcp"), "wb") as f:
            f.write(b"half a shard")
        raise Killed()

    dist_checkpointing.save = dies_mid_write
    try:
        ckpt.save_checkpoint(root, state, run.chunks, run.optimizer, run.scheduler, {})
    except Killed:
        pass
    finally:
        dist_checkpointing.save = real_save
    seen["after_mid_write"] = (ckpt.read_tracker(root), sorted(os.listdir(root)))

    real_publish = ckpt._write_tracker
    ckpt._write_tracker = lambda *a: (_ for _ in ()).throw(Killed())
    try:
        ckpt.save_checkpoint(root, state, run.chunks, run.optimizer, run.scheduler, {})
    except Killed:
        pass
    finally:
        ckpt._write_tracker = real_publish
    seen["after_rename"] = (ckpt.read_tracker(root), sorted(os.listdir(root)))

    loaded = ckpt.load_checkpoint(root, run.chunks, run.optimizer, run.scheduler,
                                  ckpt.TrainState(layout=run.parallel_layout()))
    seen["loaded_iteration"] = loaded.iteration
    seen["weights_restored"] = bool(torch.equal(first_param(), saved))
    ckpt.save_checkpoint(root, state, run.chunks, run.optimizer, run.scheduler, {})  # a later save succeeds
    seen["final"] = (ckpt.read_tracker(root), sorted(os.listdir(root)))
    return seen


def test_a_killed_save_is_never_taken_as_the_latest(tmp_path, corpus):
    tok, prefix = corpus
    root = str(tmp_path / "ckpt")
    seen = run_distributed(_interrupted_saves, 1, tok, prefix, root)[0]
    tracker = ckpt.TRACKER
    assert seen["after_mid_write"] == (1, ["iter_0000001", "iter_0000002.tmp", tracker])
    assert seen["after_rename"] == (1, ["iter_0000001", "iter_0000002", tracker])
    assert seen["loaded_iteration"] == 1 and seen["weights_restored"]
    assert seen["final"] == (2, ["iter_0000001", "iter_0000002", tracker])
