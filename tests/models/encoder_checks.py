"""Encoder checks that need megatron's parallel state; run in one spawned process by test_encoder.py."""

from __future__ import annotations

import torch

from megatron_inserter.data.frames import num_audio_frames
from megatron_inserter.models.config import AdapterConfig, EncoderConfig
from megatron_inserter.runtime import ParallelConfig, initialize_parallel
from tests.models.inserter_parallel import small_config


def _model(**fields):
    from megatron_inserter.models.builder import build_model_chunks

    [model] = build_model_chunks(small_config(**fields))
    return model.eval()


def _speech(lengths: list[int], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    audio = torch.zeros(len(lengths), max(lengths + [1]))
    for i, n in enumerate(lengths):
        t = torch.arange(n) / 16000
        audio[i, :n] = 0.2 * torch.sin(2 * torch.pi * (120 + 40 * i) * t) + 0.05 * torch.randn(n, generator=g)
    return audio, torch.tensor(lengths, dtype=torch.long)


def _clip_frames(model, audio, lengths) -> tuple[list[int], int]:
    """Per-clip frame counts as the encoder + adapter produce them, and the rows encode_audio returns."""
    pre = model.adapter.downsample if model.cfg.adapter.pools_before_encoder_norm else None
    _, per_clip = model.encoder(audio, lengths, before_final_norm=pre)
    if pre is None:
        per_clip = torch.div(per_clip, model.cfg.adapter.downsample, rounding_mode="floor")
    return per_clip.tolist(), int(model.encode_audio(audio, lengths).shape[0])


def _check_frame_counts(name, model, examples: int) -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    spec = model.cfg.frame_spec()

    @settings(max_examples=examples, deadline=None, database=None, derandomize=True)
    @given(st.lists(st.integers(min_value=0, max_value=spec.max_window_samples), min_size=1, max_size=3))
    def check(lengths):
        audio, lens = _speech(lengths, seed=sum(lengths))
        with torch.no_grad():
            per_clip, rows = _clip_frames(model, audio, lens)
        expected = [num_audio_frames(n, spec) for n in lengths]
        assert per_clip == expected, (name, lengths, per_clip, expected)
        assert rows == sum(expected), (name, lengths, rows, expected)

    check()


def frame_counts(rank, world_size):
    """Hypothesis: for random clip lengths (0..30 s) the encoder emits num_audio_frames(n) frames per clip."""
    initialize_parallel(ParallelConfig(seed=5))
    variants = {
        "masked/pool-linear": _model(),
        "masked/stack-mlp-3": _model(adapter=AdapterConfig(kind="stack-mlp", downsample=3)),
        "window/pool-linear": _model(encoder=EncoderConfig(num_layers=1, hidden_size=32, num_attention_heads=4,
                                                           ffn_hidden_size=64, num_mel_bins=80,
                                                           input_mode="window")),
    }
    checked = {}
    for name, model in variants.items():
        _check_frame_counts(name, model, examples=8 if name.startswith("window") else 20)
        checked[name] = model.cfg.frame_spec().adapter_downsample
    return checked


def padding_invariance(rank, world_size):
    """Masked mode: a clip's frames are the same alone and padded in a batch with longer clips."""
    initialize_parallel(ParallelConfig(seed=6))
    out = {}
    for name, fields in {"pool-linear": {}, "stack-mlp": dict(adapter=AdapterConfig(kind="stack-mlp",
                                                                                      downsample=2))}.items():
        model = _model(**fields)
        spec = model.cfg.frame_spec()
        lengths = [3 * 16000 + 17, 20_000, 8_000 + 90]
        audio, lens = _speech(lengths, seed=3)
        with torch.no_grad():
            batched = model.encode_audio(audio, lens)
            starts = [0]
            for n in lengths:
                starts.append(starts[-1] + num_audio_frames(n, spec))
            diffs = []
            for i, n in enumerate(lengths):
                alone = model.encode_audio(audio[i:i + 1, :n], lens[i:i + 1])
                diffs.append(float((alone - batched[starts[i]:starts[i + 1]]).abs().max()))
            scale = float(batched.abs().max())
        out[name] = (diffs, scale)
    return out


def _qkv_from_hf(attn, heads: int):
    """Megatron's fused QKV (per head: q, k, v rows) from separate q/k/v projections; Whisper's k has no bias."""
    d = attn.q_proj.weight.shape[0]
    hd = d // heads
    weight = torch.stack([attn.q_proj.weight.view(heads, hd, d), attn.k_proj.weight.view(heads, hd, d),
                          attn.v_proj.weight.view(heads, hd, d)], dim=1).reshape(3 * d, d)
    bias = torch.stack([attn.q_proj.bias.view(heads, hd), torch.zeros(heads, hd),
                        attn.v_proj.bias.view(heads, hd)], dim=1).reshape(3 * d)
    return weight, bias


def _load_hf_encoder(encoder, hf, heads: int) -> None:
    """The 1:1 name mapping documented at the top of encoder.py."""
    sd = {
        "conv1.weight": hf.conv1.weight, "conv1.bias": hf.conv1.bias,
        "conv2.weight": hf.conv2.weight, "conv2.bias": hf.conv2.bias,
        "position_embeddings": hf.embed_positions.weight,
        "final_layernorm.weight": hf.layer_norm.weight, "final_layernorm.bias": hf.layer_norm.bias,
    }
    for i, layer in enumerate(hf.layers):
        p = f"transformer.layers.{i}."
        qkv_w, qkv_b = _qkv_from_hf(layer.self_attn, heads)
        sd.update({
            p + "input_layernorm.weight": layer.self_attn_layer_norm.weight,
            p + "input_layernorm.bias": layer.self_attn_layer_norm.bias,
            p + "self_attention.linear_qkv.weight": qkv_w, p + "self_attention.linear_qkv.bias": qkv_b,
            p + "self_attention.linear_proj.weight": layer.self_attn.out_proj.weight,
            p + "self_attention.linear_proj.bias": layer.self_attn.out_proj.bias,
            p + "pre_mlp_layernorm.weight": layer.final_layer_norm.weight,
            p + "pre_mlp_layernorm.bias": layer.final_layer_norm.bias,
            p + "mlp.linear_fc1.weight": layer.fc1.weight, p + "mlp.linear_fc1.bias": layer.fc1.bias,
            p + "mlp.linear_fc2.weight": layer.fc2.weight, p + "mlp.linear_fc2.bias": layer.fc2.bias,
        })
    missing, unexpected = encoder.load_state_dict({k: v.detach().clone() for k, v in sd.items()}, strict=False)
    assert not unexpected, unexpected
    assert all(k.endswith("_extra_state") for k in missing), missing


def hugging_face_parity(rank, world_size):
    """Window mode with HF weights: Qwen2AudioEncoder + projector, and WhisperEncoder, give our numbers."""
    from transformers import Qwen2AudioEncoderConfig, WhisperConfig
    from transformers.models.qwen2_audio.modeling_qwen2_audio import Qwen2AudioEncoder
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    initialize_parallel(ParallelConfig(seed=7))
    torch.manual_seed(0)
    enc = dict(num_layers=2, hidden_size=32, num_attention_heads=4, ffn_hidden_size=64, num_mel_bins=80,
               input_mode="window")
    hf_kwargs = dict(num_mel_bins=80, encoder_layers=2, encoder_attention_heads=4, encoder_ffn_dim=64,
                     d_model=32, max_source_positions=1500)
    lengths = [16000 * 2, 16000 * 5 + 80, 7 * 1600]  # the middle one is not a multiple of the hop
    audio, lens = _speech(lengths, seed=9)
    results = {}

    # Qwen2-Audio: masked keys, average pooling before the final LayerNorm, linear projector.
    model = _model(encoder=EncoderConfig(window_key_padding_mask=True, **enc))
    hf = Qwen2AudioEncoder(Qwen2AudioEncoderConfig(**hf_kwargs, attn_implementation="eager")).eval()
    projector = torch.nn.Linear(32, model.cfg.llm.hidden_size)
    _load_hf_encoder(model.encoder, hf, heads=4)
    model.adapter.linear.weight.data.copy_(projector.weight.data)
    model.adapter.linear.bias.data.copy_(projector.bias.data)
    with torch.no_grad():
        ours = model.encode_audio(audio, lens)
        mel = model.encoder.log_mel.window_mode(audio, lens)
        hf_mel_len = (lens + 159) // 160  # the feature extractor's attention-mask length
        valid_keys = (hf_mel_len - 1) // 2 + 1
        padded_key = torch.arange(1500)[None, :] >= valid_keys[:, None]
        additive = torch.zeros(len(lengths), 1, 1, 1500).masked_fill(padded_key[:, None, None, :],
                                                                     torch.finfo(torch.float32).min)
        theirs = projector(hf(mel, attention_mask=additive.expand(-1, 1, 1500, -1)).last_hidden_state)
    hf_counts = (((hf_mel_len - 1) // 2 + 1 - 2) // 2 + 1).tolist()
    spec = model.cfg.frame_spec()
    ours_counts = [num_audio_frames(n, spec) for n in lengths]
    diffs, start = [], 0
    for i, n in enumerate(ours_counts):
        diffs.append(float((ours[start:start + n] - theirs[i, :n]).abs().max()))
        start += n
    results["qwen2-audio"] = dict(diffs=diffs, scale=float(theirs.abs().max()), ours_counts=ours_counts,
                                  hf_counts=hf_counts)

    # Whisper: every position attends to all 1500; the encoder output is the final LayerNorm.
    model = _model(encoder=EncoderConfig(window_key_padding_mask=False, **enc))
    hf = WhisperEncoder(WhisperConfig(**hf_kwargs, attn_implementation="eager")).eval()
    _load_hf_encoder(model.encoder, hf, heads=4)
    with torch.no_grad():
        ours, _ = model.encoder(audio, lens)
        theirs = hf(model.encoder.log_mel.window_mode(audio, lens)).last_hidden_state
    results["whisper"] = dict(diffs=[float((ours - theirs).abs().max())], scale=float(theirs.abs().max()))
    return results


def encoder_suite(rank, world_size):
    return {
        "frame_counts": frame_counts(rank, world_size),
        "padding_invariance": padding_invariance(rank, world_size),
        "hugging_face": hugging_face_parity(rank, world_size),
    }
