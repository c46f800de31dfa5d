"""megatron-inserter -> Hugging Face: round trips are bitwise, configs equal, outputs load in transformers."""

from __future__ import annotations

import json
import os

import pytest
import torch

from megatron_inserter.convert.hf_audio import fresh_adapter
from megatron_inserter.convert.hf_io import HFCheckpoint
from megatron_inserter.models.config import AdapterConfig
from tests.convert.conftest import convert


def _tensors(path: str) -> dict[str, torch.Tensor]:
    ckpt = HFCheckpoint(path)
    return {k: ckpt.get(k) for k in ckpt.names()}


def _config(path: str) -> dict:
    with open(os.path.join(path, "config.json"), encoding="utf-8") as f:
        return json.load(f)


def _assert_bitwise_equal(a: dict, b: dict):
    assert sorted(a) == sorted(b)
    for name, value in a.items():
        assert value.dtype == b[name].dtype and torch.equal(value, b[name]), name


@pytest.mark.parametrize("source", ["qwen2", "llama3", "qwen2_audio"])
def test_round_trip_is_bitwise(request, tmp_path, source):
    model = request.getfixturevalue(source)
    out = str(tmp_path / "hf")
    convert("mcore-to-hf", "--load", model["mcore"], "--output", out, "--max-shard-size", "40K")
    _assert_bitwise_equal(_tensors(model["hf"]), _tensors(out))
    assert _config(out) == _config(model["hf"])
    assert os.path.isfile(os.path.join(out, "model.safetensors.index.json"))  # sharded above 40 KiB
    assert os.path.isfile(os.path.join(out, "generation_config.json"))


def test_qwen2_audio_export_loads_in_transformers(qwen2_audio, tmp_path):
    from transformers import Qwen2AudioForConditionalGeneration

    out = str(tmp_path / "hf")
    convert("mcore-to-hf", "--load", os.path.join(qwen2_audio["mcore"], "iter_0000000"), "--output", out)
    model, info = Qwen2AudioForConditionalGeneration.from_pretrained(out, output_loading_info=True)
    assert not any(info.values()), info
    ref = qwen2_audio["model"].state_dict()
    for name, value in model.state_dict().items():
        assert torch.equal(value, ref[name]), name


def test_llm_only_export_of_qwen2_audio(qwen2_audio, tmp_path):
    from transformers import Qwen2ForCausalLM

    out = str(tmp_path / "llm")
    convert("mcore-to-hf", "--load", qwen2_audio["mcore"], "--output", out, "--llm-only")
    llm, info = Qwen2ForCausalLM.from_pretrained(out, output_loading_info=True)
    assert not any(info.values()), info
    source = qwen2_audio["model"]
    tokens = torch.randint(0, 140, (1, 9))
    with torch.no_grad():
        want = source.lm_head(source.model.language_model(input_ids=tokens).last_hidden_state)
        assert torch.equal(llm(tokens).logits, want)
    assert _config(out)["architectures"] == ["Qwen2ForCausalLM"]


def test_composed_export_holds_the_sources_and_the_seeded_adapter(composed, tmp_path):
    from transformers import Qwen2AudioForConditionalGeneration

    out = str(tmp_path / "qwen2-audio")
    convert("mcore-to-hf", "--load", composed["mcore"], "--output", out, "--dtype", "fp32")
    _, info = Qwen2AudioForConditionalGeneration.from_pretrained(out, output_loading_info=True)
    assert not any(info.values()), info
    got = _tensors(out)
    whisper = _tensors(composed["whisper_hf"])
    encoder = {k[len("model.encoder."):]: v for k, v in whisper.items() if k.startswith("model.encoder.")}
    for name, value in encoder.items():
        assert torch.equal(got[f"audio_tower.{name}"], value), name
    llm = _tensors(composed["llm_hf"])
    for name, value in llm.items():
        assert torch.equal(got[f"language_model.{name}"], value), name
    # Qwen2-Audio's head is its own tensor: a tied LLM's head is written as a copy of the embeddings.
    assert torch.equal(got["language_model.lm_head.weight"], llm["model.embed_tokens.weight"])
    adapter = fresh_adapter(AdapterConfig(), 32, 32, seed=7)
    assert torch.equal(got["multi_modal_projector.linear.weight"], adapter["adapter.linear.weight"])
    assert _config(out)["audio_token_index"] == 22
    assert os.path.isfile(os.path.join(out, "tokenizer.json"))
