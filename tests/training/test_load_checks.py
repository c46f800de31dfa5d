"""A run that must start from a checkpoint refuses to start without one, naming the directory and what it
holds; a run that resumes itself (--load = --save) starts from scratch on its first start."""

import os

import pytest

from megatron_inserter.errors import InserterError
from megatron_inserter.training import checkpointing as ckpt
from megatron_inserter.training.arguments import parse_args
from megatron_inserter.training.trainer import check_load_dir, train
from tests.training.runs import common_flags


def _args(tmp_path, **flags):
    return parse_args(common_flags(str(tmp_path / "tok.model"), str(tmp_path / "data"), **flags))


def test_finetune_from_an_empty_directory_is_refused_before_anything_is_built(tmp_path, corpus):
    empty = tmp_path / "base"
    empty.mkdir()
    args = parse_args(common_flags(*corpus, load=str(empty), finetune=""))
    # train() itself refuses, before any process group or model exists (this test process has none).
    with pytest.raises(InserterError) as e:
        train(args)
    message = str(e.value)
    assert str(empty) in message and "it is empty" in message and "--finetune" in message
    assert "\n" not in message


def test_the_error_says_what_the_directory_holds(tmp_path):
    base = tmp_path / "base"
    (base / "iter_0000004.tmp").mkdir(parents=True)  # a save that never finished
    (base / "notes.txt").write_text("x")
    with pytest.raises(ckpt.CheckpointError, match=r"it holds iter_0000004\.tmp, notes\.txt, but no "
                                                   r"latest_checkpointed_iteration\.txt"):
        check_load_dir(_args(tmp_path, load=str(base), finetune=""))
    missing = str(tmp_path / "nowhere")
    with pytest.raises(ckpt.CheckpointError, match="it does not exist.*not the --save directory"):
        check_load_dir(_args(tmp_path, load=missing, save=str(tmp_path / "out")))


def test_a_run_that_resumes_itself_may_start_from_nothing(tmp_path):
    own = str(tmp_path / "run")
    os.makedirs(own)
    check_load_dir(_args(tmp_path, load=own, save=own))  # first start of a resumable job: no error
    check_load_dir(_args(tmp_path))  # no --load at all
    ckpt._write_tracker(own, 2)
    os.makedirs(os.path.join(own, "iter_0000002"))
    with open(os.path.join(own, "iter_0000002", "metadata.json"), "w") as f:
        f.write("{}")
    check_load_dir(_args(tmp_path, load=own, finetune=""))  # a published checkpoint is there
