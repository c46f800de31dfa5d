"""Loading a checkpoint never runs code from it; a normal checkpoint still loads exactly.

Each crafted file would create a marker file when unpickled (``os.system`` / ``builtins.exec`` reduces):
``common.pt``, the torch distributed checkpoint's ``.metadata``, and an object stored in a ``.distcp``.
"""

from __future__ import annotations

import builtins
import dataclasses
import io
import os
import pickle
import re
import shutil

import pytest
import torch

from megatron_inserter.convert.cli import main as convert_main
from megatron_inserter.training import checkpointing as ckpt
from megatron_inserter.training import safe_load
from tests.harness import run_distributed


class _Shell:
    """Unpickling runs a shell command that creates ``path``."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return os.system, (f"touch {self.path}",)


class _Exec:
    """Unpickling runs Python code that creates ``path``."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return builtins.exec, (f"open({self.path!r}, 'w').close()",)


class _Chunk(torch.nn.Module):
    """A one-tensor model with the sharded state dict a megatron-core chunk has."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.arange(6, dtype=torch.float32))

    def sharded_state_dict(self):
        from megatron.core.dist_checkpointing.mapping import ShardedTensor

        return {"w": ShardedTensor.from_rank_offsets("w", self.w.data)}


class _NoOptimizer:
    def sharded_state_dict(self, model, **kwargs):
        return {}


class _NoScheduler:
    def state_dict(self):
        return {}


def _draws():
    import random

    import numpy as np

    return random.random(), float(np.random.rand()), float(torch.rand(1))


def _save(root: str, chunk) -> None:
    from megatron_inserter.models import config_file
    from megatron_inserter.models.presets import resolve

    ckpt.save_checkpoint(root, ckpt.TrainState(iteration=1, consumed_train_samples=4), [chunk], _NoOptimizer(),
                         _NoScheduler(), {"model_type": "inserter"}, config_file.to_dict(resolve("tiny")))


def _load(root: str, chunk):
    try:
        state = ckpt.load_checkpoint(root, [chunk], None, None, ckpt.TrainState())
        return state.iteration
    except ckpt.CheckpointError as e:
        return f"CheckpointError: {e}"


def _save_and_load(rank, world_size, root: str, markers: dict) -> dict:
    from megatron_inserter.runtime import ParallelConfig, initialize_parallel
    from megatron_inserter.training import rng_state

    initialize_parallel(ParallelConfig())  # gloo, megatron state and the CPU bridges
    out = {}
    chunk = _Chunk()
    good = os.path.join(root, "good")
    _save(good, chunk)
    saved_w, expected = chunk.w.detach().clone(), _draws()
    with torch.no_grad():
        chunk.w.add_(1.0)
    _draws(), _draws()
    out["good"] = _load(good, chunk)
    out["weights_restored"] = bool(torch.equal(chunk.w, saved_w))
    out["rng_restored"] = _draws() == expected

    real_capture = rng_state.capture
    rng_state.capture = lambda: {"state": _Shell(markers["object"])}
    try:
        _save(os.path.join(root, "evil_object"), chunk)
    finally:
        rng_state.capture = real_capture

    for name in ("evil_metadata", "evil_common"):
        shutil.copytree(good, os.path.join(root, name))
    iteration = ckpt.iteration_dir(os.path.join(root, "evil_metadata"), 1)
    with open(os.path.join(iteration, ".metadata"), "rb") as f:
        metadata = safe_load.read_metadata_file(f, "metadata")
    metadata.planner_data = _Exec(markers["metadata"])
    with open(os.path.join(iteration, ".metadata"), "wb") as f:
        pickle.dump(metadata, f)
    common_path = os.path.join(ckpt.iteration_dir(os.path.join(root, "evil_common"), 1), "common.pt")
    common = torch.load(common_path, weights_only=True)
    torch.save({**common, "args": {"model_type": _Shell(markers["common"])}}, common_path)

    for name in ("evil_object", "evil_metadata", "evil_common"):
        out[name] = _load(os.path.join(root, name), chunk)
    return out


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    root = tmp_path_factory.mktemp("safe_load")
    markers = {k: str(root / f"PWNED-{k}") for k in ("object", "metadata", "common")}
    out = run_distributed(_save_and_load, 1, str(root / "ckpts"), markers)[0]
    return {"root": root / "ckpts", "markers": markers, "out": out}


def test_a_normal_checkpoint_loads_weights_and_rng_exactly(loaded):
    out = loaded["out"]
    assert out["good"] == 1 and out["weights_restored"] and out["rng_restored"]
    good = loaded["root"] / "good"
    # The model's identity travels with every save: in the iteration directory and at the root.
    assert (good / "iter_0000001" / "model_config.json").is_file() and (good / "model_config.json").is_file()
    assert ckpt.model_config_path(str(good)) == str(good / "iter_0000001" / "model_config.json")


@pytest.mark.parametrize("name,file,what", [
    ("evil_common", "common.pt", "posix.system"),
    ("evil_metadata", ".metadata", "builtins.exec"),
    ("evil_object", "__0_", "posix.system"),
])
def test_a_crafted_file_is_refused_and_runs_nothing(loaded, name, file, what):
    message = loaded["out"][name]
    assert message.startswith("CheckpointError: ") and "\n" not in message
    assert file in message and what in message and "refused" in message
    assert not any(os.path.exists(m) for m in loaded["markers"].values())


def test_training_arguments_of_a_crafted_common_file_are_refused(loaded):
    with pytest.raises(ckpt.CheckpointError, match=r"common\.pt asks to load posix\.system"):
        ckpt.checkpoint_args(str(loaded["root"] / "evil_common"))
    assert not os.path.exists(loaded["markers"]["common"])


def test_convert_refuses_a_crafted_index(loaded, tmp_path, capsys):
    out = tmp_path / "hf"
    assert convert_main(["mcore-to-hf", "--load", str(loaded["root"] / "evil_metadata"), "--output", str(out)]) == 1
    err = capsys.readouterr().err
    assert ".metadata asks to load builtins.exec" in err and len(err.strip().splitlines()) <= 2
    assert not out.exists() and not os.path.exists(loaded["markers"]["metadata"])


def test_the_allowlist_is_exact_and_other_registrations_survive():
    buf = io.BytesIO()
    torch.save({"path": io.BytesIO(b"x")}, buf)
    with torch.serialization.safe_globals([io.BytesIO]):  # as megatron-core registers it, process-wide
        before = set(torch.serialization.get_safe_globals())
        torch.load(io.BytesIO(buf.getvalue()), weights_only=True)  # admitted by torch here...
        with pytest.raises(safe_load.CheckpointError, match="_io.BytesIO"):  # ...never by the checkpoint reader
            safe_load.torch_load(io.BytesIO(buf.getvalue()), "object")
        assert set(torch.serialization.get_safe_globals()) == before
    import numpy as np

    buf = io.BytesIO()
    torch.save({"numpy": np.random.get_state(), "t": torch.ones(2)}, buf)
    state = safe_load.torch_load(io.BytesIO(buf.getvalue()), "rng")
    assert state["numpy"][0] == "MT19937" and torch.equal(state["t"], torch.ones(2))


def test_a_checkpoint_of_another_format_is_refused(tmp_path):
    (tmp_path / "metadata.json").write_text('{"sharded_backend": "zarr", "common_backend": "torch"}')
    with pytest.raises(safe_load.CheckpointError, match="zarr"):
        safe_load.check_format(str(tmp_path))


def _damaged_copy(loaded, tmp_path, name: str) -> tuple[str, str]:
    """A copy of the good checkpoint and the path of its first shard file."""
    root = shutil.copytree(loaded["root"] / "good", tmp_path / name)
    shards = sorted((root / "iter_0000001").glob("*.distcp"))
    assert shards
    return str(root), str(shards[0])


def test_every_load_checks_the_shard_files_first(loaded, tmp_path):
    # No process group and no model: the shard files are checked before anything is read or built.
    truncated, shard = _damaged_copy(loaded, tmp_path, "truncated")
    os.truncate(shard, os.path.getsize(shard) // 3)
    with pytest.raises(ckpt.CheckpointError, match=rf"{re.escape(shard)} is truncated \(\d+ bytes; .*needs \d+\)"):
        ckpt.load_checkpoint(truncated, None, None, None, ckpt.TrainState())

    missing, shard = _damaged_copy(loaded, tmp_path, "missing")
    os.remove(shard)
    with pytest.raises(ckpt.CheckpointError, match=rf"{re.escape(shard)} is missing"):
        ckpt.load_checkpoint(missing, None, None, None, ckpt.TrainState())

    outside, _ = _damaged_copy(loaded, tmp_path, "outside")
    index = os.path.join(ckpt.iteration_dir(outside, 1), safe_load.METADATA_FILE)
    with open(index, "rb") as f:
        metadata = safe_load.read_metadata_file(f, index)
    key = next(iter(metadata.storage_data))
    metadata.storage_data[key] = dataclasses.replace(metadata.storage_data[key], relative_path="../../victim")
    with open(index, "wb") as f:
        pickle.dump(metadata, f)
    with pytest.raises(ckpt.CheckpointError, match=r"names a shard outside the checkpoint \('\.\./\.\./victim'\)"):
        ckpt.load_checkpoint(outside, None, None, None, ckpt.TrainState())
