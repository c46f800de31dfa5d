"""Model FLOPs: the formulas against torch's FLOP counter on the real modules, and the encoder's cost per
input mode at the Qwen2-Audio-7B shape."""

from __future__ import annotations

import dataclasses

import pytest

from megatron_inserter.models.flops import encoder_forward_flops, llm_forward_flops, training_flops
from megatron_inserter.models.presets import resolve
from tests.harness import run_distributed

CLIP = 24000  # 1.5 s: 150 mel frames, 75 positions, 37 adapter frames
SEQ = 96


def count_flops(rank, world_size):
    """{mode: (counted encoder+adapter FLOPs, counted log-mel FLOPs)} and the LLM's counted forward FLOPs."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from megatron_inserter.models.builder import build_model_chunks
    from megatron_inserter.runtime import ParallelConfig, initialize_parallel

    initialize_parallel(ParallelConfig(seed=4))
    out = {}
    audio = 0.1 * torch.randn(3, CLIP, generator=torch.Generator().manual_seed(0))
    lengths = torch.full((3,), CLIP)
    for mode in ("window", "masked"):
        cfg = resolve("tiny")
        cfg = cfg.replace(encoder=dataclasses.replace(cfg.encoder, input_mode=mode))
        (model,) = build_model_chunks(cfg)
        with torch.no_grad(), FlopCounterMode(display=False) as total:
            model.encode_audio(audio, lengths)
        log_mel = model.encoder.log_mel
        with torch.no_grad(), FlopCounterMode(display=False) as mel:
            if mode == "window":
                log_mel.window_mode(audio, lengths)
            else:
                log_mel.masked_mode(audio, lengths)
        out[mode] = (total.get_total_flops(), mel.get_total_flops())
    tokens = torch.randint(10, 3000, (2, SEQ))
    with torch.no_grad(), FlopCounterMode(display=False) as llm:
        model.language_model(tokens, torch.arange(SEQ)[None].expand(2, SEQ), None)
    out["llm"] = llm.get_total_flops()
    return out


@pytest.fixture(scope="module")
def counted():
    return run_distributed(count_flops, 1, timeout=600)[0]


@pytest.mark.parametrize("mode", ["window", "masked"])
def test_encoder_flops_equal_torch_flop_counter(counted, mode):
    cfg = resolve("tiny")
    cfg = cfg.replace(encoder=dataclasses.replace(cfg.encoder, input_mode=mode))
    total, log_mel = counted[mode]
    assert total - log_mel == encoder_forward_flops(cfg, [CLIP] * 3)


def test_llm_flops_equal_torch_flop_counter_up_to_the_causal_half(counted):
    llm = resolve("tiny").llm
    llm_padded = dataclasses.replace(llm, vocab_size=llm.padded_vocab_size(1))
    formula = llm_forward_flops(llm_padded, SEQ, 2)
    # megatron-core's local attention computes every score of the causal square; model FLOPs count half.
    q_width = llm.hidden_size // llm.num_attention_heads * llm.num_attention_heads
    skipped_half = 2 * SEQ * llm.num_layers * (2 * 2 * q_width * SEQ / 2)
    assert counted["llm"] == formula + skipped_half


def test_encoder_cost_per_input_mode_at_the_7b_shape():
    cfg = resolve("qwen2-audio-7b")
    clips = [56000] * 66  # 3.5 s clips filling 70% of an 8192-position sample
    ratios = {}
    for mode in ("window", "masked", "packed"):
        c = cfg.replace(encoder=dataclasses.replace(cfg.encoder, input_mode=mode))
        flops = training_flops(c, 8192, 1, clips)
        ratios[mode] = flops["encoder"] / flops["llm"]
    assert 1.05 < ratios["window"] < 1.2  # a 3.5 s clip padded to 30 s costs as much as a 30 s one
    assert ratios["masked"] == ratios["packed"] < 0.15


def test_frozen_parts_cost_fewer_passes():
    cfg = resolve("qwen2-audio-7b")
    trained = training_flops(cfg, 1024, 1, [56000])
    frozen_llm = training_flops(cfg.replace(freeze_llm=True), 1024, 1, [56000])
    frozen_all_speech = training_flops(cfg.replace(freeze_encoder=True, freeze_adapter=True), 1024, 1, [56000])
    assert frozen_llm["llm"] == pytest.approx(trained["llm"] * 2 / 3)  # input gradients still flow
    assert frozen_all_speech["encoder"] == pytest.approx(trained["encoder"] / 3)
    assert encoder_forward_flops(cfg, [30 * 16000 + 16000]) == pytest.approx(
        encoder_forward_flops(cfg, [30 * 16000, 16000]))  # clips past 30 s are encoded window by window
