"""Hugging Face -> megatron-inserter: converted checkpoints give the Hugging Face logits at TP=1, TP=2, PP=2."""

from __future__ import annotations

import json
import os

import pytest
import torch

from tests.convert import hf_models
from tests.convert import parity_worker as pw
from tests.harness import run_distributed

ATOL = 1e-4


@pytest.fixture(scope="session")
def parity(qwen2, llama3, qwen2_audio, composed):
    """Every converted model's logits at every layout, from one pair of gloo processes."""
    g = torch.Generator().manual_seed(0)
    text = {"tokens": torch.randint(0, hf_models.VOCAB, (2, 12), generator=g)}
    speech = hf_models.speech_batch()
    all_layouts = list(pw.LAYOUTS)
    jobs = [
        {"name": "qwen2", "checkpoint": qwen2["mcore"], "layouts": all_layouts, "batch": text},
        {"name": "llama3", "checkpoint": llama3["mcore"], "layouts": all_layouts, "batch": text},
        {"name": "qwen2-audio", "checkpoint": qwen2_audio["mcore"], "layouts": all_layouts, "batch": speech},
        # Tied embeddings: PP=2 is left out (megatron-core moves the tied copy with .cuda() on CPU).
        {"name": "composed", "checkpoint": composed["mcore"], "layouts": ["tp1", "tp2"],
         "batch": {**text, "audio": torch.zeros(0, 0), "audio_lengths": torch.zeros(0, dtype=torch.long)}},
    ]
    results = {}
    for per_rank in run_distributed(pw.logits, 2, jobs, timeout=600):
        results.update(per_rank)
    return {"results": results, "text": text, "speech": speech}


def _read_json(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _max_diff(parity, name, layout, reference):
    got = parity["results"][(name, layout)]
    assert got.shape == reference.shape
    return (got - reference.float()).abs().max().item()


@pytest.mark.parametrize("layout", list(pw.LAYOUTS))
def test_qwen2_logits_match_hf(parity, qwen2, layout):
    with torch.no_grad():
        ref = qwen2["model"](parity["text"]["tokens"]).logits
    assert _max_diff(parity, "qwen2", layout, ref) <= ATOL


@pytest.mark.parametrize("layout", list(pw.LAYOUTS))
def test_llama3_logits_match_hf(parity, llama3, layout):
    with torch.no_grad():
        ref = llama3["model"](parity["text"]["tokens"]).logits
    assert _max_diff(parity, "llama3", layout, ref) <= ATOL


@pytest.mark.parametrize("layout", list(pw.LAYOUTS))
def test_qwen2_audio_logits_match_hf_with_audio(parity, qwen2_audio, layout):
    ref = hf_models.qwen2_audio_logits(qwen2_audio["model"], parity["speech"])
    assert _max_diff(parity, "qwen2-audio", layout, ref) <= ATOL
    # The audio reaches the logits: other audio gives clearly different ones.
    silent = hf_models.qwen2_audio_logits(qwen2_audio["model"], parity["speech"], audio_scale=0.0)
    assert (silent - ref).abs().max().item() > 100 * ATOL


@pytest.mark.parametrize("layout", ["tp1", "tp2"])
def test_composed_model_keeps_the_llm_logits(parity, composed, layout):
    with torch.no_grad():
        ref = composed["llm"](parity["text"]["tokens"]).logits
    assert _max_diff(parity, "composed", layout, ref) <= ATOL


def test_checkpoint_layout_and_model_config(qwen2_audio):
    root = qwen2_audio["mcore"]
    with open(os.path.join(root, "latest_checkpointed_iteration.txt")) as f:
        assert f.read().strip() == "0"
    assert os.path.isfile(os.path.join(root, "iter_0000000", "metadata.json"))
    meta = _read_json(os.path.join(root, "model_config.json"))
    assert meta["model_type"] == "inserter"
    assert meta["encoder"]["input_mode"] == "packed" and meta["encoder"]["window_key_padding_mask"]
    assert meta["audio_placeholder_id"] == hf_models.AUDIO_TOKEN
    assert meta["llm"]["vocab_size"] == hf_models.VOCAB and meta["padded_vocab_size"] == 256
    assert meta["llm"]["num_query_groups"] == 2 and meta["llm"]["rotary_base"] == 1_000_000.0


def test_composition_takes_the_placeholder_from_the_tokenizer(composed):
    meta = _read_json(os.path.join(composed["mcore"], "model_config.json"))
    # 20 words + <|audio_bos|>, <|audio_eos|>, <|AUDIO|> appended by the tokenizer interface.
    assert meta["audio_placeholder_id"] == 22
    assert meta["encoder"]["input_mode"] == "masked" and meta["llm"]["tie_embeddings"]
    assert os.path.isfile(os.path.join(composed["mcore"], "hf_assets", "tokenizer.json"))
