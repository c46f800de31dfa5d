"""Bad input: an error naming the tensor, field or file, exit status 1, and nothing at the output path."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from megatron_inserter.convert.cli import main


def _copy(src: str, dst) -> str:
    dst = str(dst)
    shutil.copytree(src, dst)
    return dst


def _edit_config(path: str, **changes) -> None:
    cfg_path = os.path.join(path, "config.json")
    with open(cfg_path) as f:
        cfg = json.load(f)
    cfg.update(changes)
    with open(cfg_path, "w") as f:
        json.dump(cfg, f)


def _edit_tensors(path: str, edit) -> None:
    file = os.path.join(path, "model.safetensors")
    tensors = load_file(file)
    edit(tensors)
    save_file(tensors, file, metadata={"format": "pt"})


def _fails(capsys, tmp_path, argv: list[str], *needles: str) -> None:
    out = tmp_path / "out"
    before = set(os.listdir(tmp_path))
    assert main(argv + ["--output", str(out)]) == 1
    err = capsys.readouterr().err
    for needle in needles:
        assert needle in err, err
    assert not out.exists()
    assert set(os.listdir(tmp_path)) == before  # no staging directory left behind


def _drop(name):
    return lambda t: t.pop(name)


def _add(name):
    return lambda t: t.__setitem__(name, torch.zeros(3))


def _reshape(name):
    return lambda t: t.__setitem__(name, torch.zeros(32, 32))


@pytest.mark.parametrize("edit,needles", [
    (_drop("model.layers.1.mlp.up_proj.weight"), ["model.layers.1.mlp.up_proj.weight", "missing"]),
    (_add("model.layers.0.self_attn.extra_scale"), ["model.layers.0.self_attn.extra_scale", "does not map"]),
    (_reshape("model.layers.0.self_attn.k_proj.weight"),
     ["model.layers.0.self_attn.k_proj.weight", "(32, 32)", "num_key_value_heads=2", "(16, 32)"]),
], ids=["missing-tensor", "unexpected-tensor", "shape-mismatch"])
def test_bad_tensors(qwen2, tmp_path, capsys, edit, needles):
    src = _copy(qwen2["hf"], tmp_path / "src")
    _edit_tensors(src, edit)
    _fails(capsys, tmp_path, ["hf-to-mcore", "--hf-dir", src], *needles)


@pytest.mark.parametrize("changes,needles", [
    ({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}, ["model_type='gpt2'", "GPT2LMHeadModel"]),
    ({"num_hidden_layers": 1}, ["num_hidden_layers=1", "2 layers"]),
    ({"vocab_size": 300}, ["model.embed_tokens.weight", "vocab_size=300"]),
    ({"tie_word_embeddings": True}, ["tie_word_embeddings=true", "lm_head.weight"]),
    ({"hidden_act": "gelu"}, ["hidden_act='gelu'"]),
], ids=["unsupported-architecture", "layer-count", "vocab-size", "tied-but-different", "activation"])
def test_config_contradicting_the_weights(qwen2, tmp_path, capsys, changes, needles):
    src = _copy(qwen2["hf"], tmp_path / "src")
    _edit_config(src, **changes)
    _fails(capsys, tmp_path, ["hf-to-mcore", "--hf-dir", src], *needles)


def test_pickled_weights_are_not_read(tmp_path, capsys, qwen2):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(os.path.join(qwen2["hf"], "config.json"), src)
    (src / "pytorch_model.bin").write_bytes(b"not read")
    _fails(capsys, tmp_path, ["hf-to-mcore", "--hf-dir", str(src)], "pytorch_model.bin", "safetensors")


def test_tensor_parallel_size_must_divide_the_heads(qwen2, tmp_path, capsys):
    _fails(capsys, tmp_path, ["hf-to-mcore", "--hf-dir", qwen2["hf"], "--target-tensor-parallel-size", "4"],
           "num_key_value_heads=2")


def test_whisper_alone_asks_for_an_llm(composed, tmp_path, capsys):
    _fails(capsys, tmp_path, ["hf-to-mcore", "--hf-dir", composed["whisper_hf"]], "--llm", "--encoder")


def test_existing_output_is_not_overwritten(qwen2, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    assert main(["hf-to-mcore", "--hf-dir", qwen2["hf"], "--output", str(out)]) == 1
    assert "already exists" in capsys.readouterr().err
    assert os.listdir(out) == ["keep.txt"]


def test_export_without_a_published_checkpoint(qwen2, tmp_path, capsys):
    unpublished = tmp_path / "ckpt"
    unpublished.mkdir()
    shutil.copy(os.path.join(qwen2["mcore"], "model_config.json"), unpublished)
    _fails(capsys, tmp_path, ["mcore-to-hf", "--load", str(unpublished)], "latest_checkpointed_iteration.txt")


def test_export_of_a_directory_without_model_config(tmp_path, capsys):
    (tmp_path / "ckpt").mkdir()
    _fails(capsys, tmp_path, ["mcore-to-hf", "--load", str(tmp_path / "ckpt")], "model_config.json",
           "--model-config")


def test_export_with_a_model_config_that_does_not_match(qwen2, tmp_path, capsys):
    with open(os.path.join(qwen2["mcore"], "model_config.json")) as f:
        meta = json.load(f)
    meta["llm"]["ffn_hidden_size"] = 96
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps(meta))
    _fails(capsys, tmp_path, ["mcore-to-hf", "--load", qwen2["mcore"], "--model-config", str(wrong)],
           "decoder.layers.mlp.linear_fc1.weight", "(2, 192, 32)", "(2, 128, 32)")


def _truncated_copy(src: str, dst) -> str:
    """A copy of checkpoint ``src`` whose shard file lost two thirds of its bytes (a copy cut short)."""
    damaged = _copy(src, dst)
    shard = os.path.join(damaged, "iter_0000000", "__0_0.distcp")
    os.truncate(shard, os.path.getsize(shard) // 3)
    return damaged


def test_export_of_a_truncated_shard_is_one_line(composed, tmp_path, capsys):
    damaged = _truncated_copy(composed["mcore"], tmp_path / "damaged")
    out = tmp_path / "hf"
    assert main(["mcore-to-hf", "--load", damaged, "--output", str(out)]) == 1
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("inserter convert mcore-to-hf: error: "), lines
    assert os.path.join(damaged, "iter_0000000", "__0_0.distcp") in lines[0] and "truncated" in lines[0]
    assert not out.exists()


def test_evaluating_a_truncated_shard_is_one_line(composed, tmp_path):
    import subprocess
    import sys
    import wave

    from tests.harness import free_port

    damaged = _truncated_copy(composed["mcore"], tmp_path / "damaged")
    with wave.open(str(tmp_path / "a.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(b"\x00\x01" * 16000)
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text(json.dumps({"audio_filepath": str(tmp_path / "a.wav"), "text": "w1 w2"}) + "\n")
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "CUDA_VISIBLE_DEVICES": "",
           "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "megatron_inserter.cli", "eval", "asr", "--manifest",
                             str(manifest), "--load", damaged, "--output", str(tmp_path / "asr")],
                            check=False, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if ": error: " in line]
    assert len(errors) == 1 and errors[0].startswith("inserter eval asr: error: "), result.stderr[-3000:]
    assert os.path.join(damaged, "iter_0000000", "__0_0.distcp") in errors[0] and "truncated" in errors[0]
