"""Tiny Hugging Face models and their converted checkpoints, built once per test session."""

from __future__ import annotations

import os

import pytest

from megatron_inserter.convert.cli import main as convert_main
from tests.convert import hf_models

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def convert(*argv: str) -> None:
    assert convert_main(list(argv)) == 0, argv


@pytest.fixture(scope="session")
def convert_root(tmp_path_factory):
    return tmp_path_factory.mktemp("convert")


@pytest.fixture(scope="session")
def qwen2(convert_root):
    path = str(convert_root / "qwen2-hf")
    model = hf_models.qwen2(path)
    convert("hf-to-mcore", "--hf-dir", path, "--output", str(convert_root / "qwen2-mc"),
            "--target-tensor-parallel-size", "2")
    return {"hf": path, "model": model, "mcore": str(convert_root / "qwen2-mc")}


@pytest.fixture(scope="session")
def llama3(convert_root):
    path = str(convert_root / "llama3-hf")
    model = hf_models.llama3(path, max_shard_size="20KB")  # a sharded source (index.json)
    convert("hf-to-mcore", "--hf-dir", path, "--output", str(convert_root / "llama3-mc"))
    return {"hf": path, "model": model, "mcore": str(convert_root / "llama3-mc")}


@pytest.fixture(scope="session")
def qwen2_audio(convert_root):
    path = str(convert_root / "qwen2-audio-hf")
    model = hf_models.qwen2_audio(path)
    convert("hf-to-mcore", "--hf-dir", path, "--output", str(convert_root / "qwen2-audio-mc"))
    return {"hf": path, "model": model, "mcore": str(convert_root / "qwen2-audio-mc")}


@pytest.fixture(scope="session")
def composed(convert_root):
    """A tied-embedding Qwen2 with a tokenizer + a Whisper model -> one InSerter checkpoint."""
    llm_path, whisper_path = str(convert_root / "qwen2-tied-hf"), str(convert_root / "whisper-hf")
    llm = hf_models.qwen2(llm_path, tie_word_embeddings=True)
    hf_models.add_tokenizer(llm_path)
    whisper = hf_models.whisper(whisper_path)
    out = str(convert_root / "composed-mc")
    convert("hf-to-mcore", "--llm", llm_path, "--encoder", whisper_path, "--output", out, "--seed", "7")
    return {"llm_hf": llm_path, "llm": llm, "whisper_hf": whisper_path, "whisper": whisper, "mcore": out}
