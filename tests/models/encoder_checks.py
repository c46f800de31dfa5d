"""Encoder checks that need megatron's parallel state; run in one spawned process by test_encoder.py."""

from __future__ import annotations

import torch

from megatron_inserter.data.frames import num_audio_frames
from megatron_inserter.models.clip_packing import WindowPlan
from megatron_inserter.models.config import AdapterConfig, EncoderConfig
from megatron_inserter.runtime import ParallelConfig, initialize_parallel
from tests.models.inserter_parallel import small_config


def _model(**fields):
    from megatron_inserter.models.builder import build_model_chunks

    [model] = build_model_chunks(small_config(**fields))
    return model.eval()


WINDOW_SECONDS = 5.0  # a short encoder window (250 positions) keeps the packed checks fast


def _packed_encoder(**fields) -> EncoderConfig:
    return EncoderConfig(**{**dict(num_layers=2, hidden_size=32, num_attention_heads=4, ffn_hidden_size=64,
                                   num_mel_bins=80, input_mode="packed", window_seconds=WINDOW_SECONDS,
                                   max_source_positions=250), **fields})


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
        "packed/pool-linear": _model(encoder=_packed_encoder()),
        "packed/stack-mlp-3": _model(encoder=_packed_encoder(),
                                     adapter=AdapterConfig(kind="stack-mlp", downsample=3)),
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


def _split_frames(frames: torch.Tensor, counts: list[int]) -> list[torch.Tensor]:
    return list(torch.split(frames, counts))


def packed_invariance(rank, world_size):
    """Packed mode: each clip's frames are the same alone and packed with many others (several attention
    windows), and changing one clip's audio changes no other clip's frames."""
    initialize_parallel(ParallelConfig(seed=8))
    out = {}
    # 12 clips of 1.1 to 5 s, about 1500 encoder positions, one clip without frames and one that fills the
    # window: several attention windows (as long as the longest clip, 250 positions).
    lengths = [1600 * s + 160 * k for s, k in zip([11, 30, 20, 40, 25, 12, 17, 22, 33, 44, 14, 49],
                                                  [0, 13, 7, 1, 90, 44, 3, 0, 21, 8, 60, 2])]
    lengths += [100, int(16000 * WINDOW_SECONDS)]
    for name, fields in {"pool-linear": {}, "stack-mlp": dict(adapter=AdapterConfig(kind="stack-mlp",
                                                                                      downsample=2))}.items():
        model = _model(encoder=_packed_encoder(), **fields)
        spec = model.cfg.frame_spec()
        counts = [num_audio_frames(n, spec) for n in lengths]
        positions = [(n // 160 - 1) // 2 + 1 if n >= 160 else 0 for n in lengths]
        audio, lens = _speech(lengths, seed=4)
        with torch.no_grad():
            packed = _split_frames(model.encode_audio(audio, lens), counts)
            alone = [model.encode_audio(audio[i:i + 1, :n], lens[i:i + 1]) for i, n in enumerate(lengths)]
            loud = audio.clone()
            loud[3] = 5.0 * torch.randn(loud.shape[1])  # a different clip 3 (of the same length)
            changed = _split_frames(model.encode_audio(loud, lens), counts)
        out[name] = dict(
            diffs=[float((a - p).abs().max()) if c else 0.0 for a, p, c in zip(alone, packed, counts)],
            scale=float(torch.cat(packed).abs().max()),
            others=max(float((c - p).abs().max()) for i, (c, p) in enumerate(zip(changed, packed))
                       if i != 3 and counts[i]),
            target=float((changed[3] - packed[3]).abs().max()),
            windows=WindowPlan.first_fit(positions, max(positions)).num_windows,
        )
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


def _hf_qwen2_audio(model, lengths: list[int], audio, lens) -> torch.Tensor:
    """Hugging Face's Qwen2AudioEncoder + projector with ``model``'s weights on the padded windows (30 s in
    Qwen2-Audio, shorter here) with its attention mask: [clips, positions / 2, llm hidden]."""
    from transformers import Qwen2AudioEncoderConfig
    from transformers.models.qwen2_audio.modeling_qwen2_audio import Qwen2AudioEncoder

    enc = model.cfg.encoder
    positions = enc.positions_per_window
    hf = Qwen2AudioEncoder(Qwen2AudioEncoderConfig(
        num_mel_bins=enc.num_mel_bins, encoder_layers=enc.num_layers, encoder_attention_heads=enc.num_attention_heads,
        encoder_ffn_dim=enc.ffn_hidden_size, d_model=enc.hidden_size, max_source_positions=positions,
        attn_implementation="eager")).eval()
    projector = torch.nn.Linear(enc.hidden_size, model.cfg.llm.hidden_size)
    _load_hf_encoder(model.encoder, hf, heads=enc.num_attention_heads)
    model.adapter.linear.weight.data.copy_(projector.weight.data)
    model.adapter.linear.bias.data.copy_(projector.bias.data)
    mel = model.encoder.log_mel.window_mode(audio, lens)
    hf_mel_len = (lens + 159) // 160  # the feature extractor's attention-mask length
    valid_keys = (hf_mel_len - 1) // 2 + 1
    padded_key = torch.arange(positions)[None, :] >= valid_keys[:, None]
    additive = torch.zeros(len(lengths), 1, 1, positions).masked_fill(padded_key[:, None, None, :],
                                                                      torch.finfo(torch.float32).min)
    return projector(hf(mel, attention_mask=additive.expand(-1, 1, positions, -1)).last_hidden_state)


def qwen2_audio_modes_parity(rank, world_size):
    """Masked and packed frames against Hugging Face's Qwen2AudioEncoder on the padded window: the largest
    difference over all frames, over each clip's last two frames (whose convolutions read past the clip's end)
    and over the rest."""
    initialize_parallel(ParallelConfig(seed=10))
    torch.manual_seed(1)
    # Whole 10 ms hops (the feature extractor then counts the same frames), odd and even mel counts, a clip
    # ending one frame before the window's end and one filling it.
    window = int(16000 * WINDOW_SECONDS)
    lengths = [16000 * 2, 160 * 201, 160 * 112, window - 160, window]
    audio, lens = _speech(lengths, seed=12)
    results = {}
    for mode in ("packed", "masked"):
        model = _model(encoder=_packed_encoder(input_mode=mode))
        spec = model.cfg.frame_spec()
        counts = [num_audio_frames(n, spec) for n in lengths]
        with torch.no_grad():
            theirs = _hf_qwen2_audio(model, lengths, audio, lens)
            ours = _split_frames(model.encode_audio(audio, lens), counts)
        end, rest = [], []
        for i, c in enumerate(counts):
            diff = (ours[i] - theirs[i, :c]).abs().amax(dim=1)
            end.append(float(diff[-2:].max()))
            rest.append(float(diff[:-2].max()))
        results[mode] = dict(end=max(end), rest=max(rest), scale=float(theirs.abs().max()))
    return results


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
        "packed_invariance": packed_invariance(rank, world_size),
        "qwen2_audio_modes": qwen2_audio_modes_parity(rank, world_size),
    }
