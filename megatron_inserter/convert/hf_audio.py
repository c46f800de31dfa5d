"""Whisper / Qwen2-Audio speech encoders and the Qwen2-Audio projector <-> SpeechEncoder / SpeechAdapter.

    HF encoder (``WhisperEncoder`` / ``Qwen2AudioEncoder``)     megatron-inserter (prefix ``encoder.``)
    conv1.{weight,bias}, conv2.{weight,bias}                    conv1.*, conv2.*
    embed_positions.weight                                      position_embeddings
    layers.i.self_attn_layer_norm.{weight,bias}                 transformer.layers.i.input_layernorm.*
    layers.i.self_attn.{q,k,v}_proj.{weight,bias}               transformer.layers.i.self_attention.linear_qkv.*
                                                                (per head [q_h; k_h; v_h]; k has no bias in
                                                                HF: zeros in, dropped out, exact since a key
                                                                bias cancels in the softmax)
    layers.i.self_attn.out_proj.{weight,bias}                   transformer.layers.i.self_attention.linear_proj.*
    layers.i.final_layer_norm.{weight,bias}                     transformer.layers.i.pre_mlp_layernorm.*
    layers.i.fc1.*, layers.i.fc2.*                              transformer.layers.i.mlp.linear_fc1.*, linear_fc2.*
    layer_norm.{weight,bias}                                    final_layernorm.*
    multi_modal_projector.linear.{weight,bias} (Qwen2-Audio)    adapter.linear.*
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import torch

from megatron_inserter.convert import qkv
from megatron_inserter.convert.errors import ConversionError
from megatron_inserter.convert.hf_io import HFCheckpoint
from megatron_inserter.models.config import AdapterConfig, EncoderConfig

ENCODER_TYPES = ("whisper", "qwen2_audio_encoder")
PROJECTOR = "multi_modal_projector.linear"


def encoder_config_from_hf(cfg: dict, where: str, **fields) -> EncoderConfig:
    """EncoderConfig from a Whisper ``config.json`` or a Qwen2-Audio ``audio_config``; ``fields`` (input
    mode, ...) are passed through."""
    kind = cfg.get("model_type")
    if kind not in ENCODER_TYPES:
        raise ConversionError(f"{where}: model_type {kind!r} is not a supported speech encoder "
                              f"(supported: {', '.join(ENCODER_TYPES)})")
    if cfg.get("activation_function", "gelu") != "gelu":
        raise ConversionError(f"{where}: activation_function={cfg['activation_function']!r} is not supported "
                              "(gelu only)")
    if cfg.get("scale_embedding"):
        raise ConversionError(f"{where}: scale_embedding=true is not supported")
    defaults = {"whisper": (384, 4, 6, 1536, 80), "qwen2_audio_encoder": (1280, 32, 20, 5120, 128)}[kind]
    try:
        return EncoderConfig(
            num_layers=int(cfg.get("encoder_layers", defaults[1])),
            hidden_size=int(cfg.get("d_model", defaults[0])),
            num_attention_heads=int(cfg.get("encoder_attention_heads", defaults[2])),
            ffn_hidden_size=int(cfg.get("encoder_ffn_dim", defaults[3])),
            num_mel_bins=int(cfg.get("num_mel_bins", defaults[4])),
            max_source_positions=int(cfg.get("max_source_positions", 1500)),
            **fields,
        )
    except ValueError as e:  # EncoderConfig's own checks name the field
        raise ConversionError(f"{where}: {e}") from None


def encoder_prefix(ckpt: HFCheckpoint, candidates: tuple[str, ...]) -> str:
    for prefix in candidates:
        if f"{prefix}conv1.weight" in ckpt:
            return prefix
    raise ConversionError(f"{ckpt.directory}: no speech encoder tensors found (looked for "
                          f"{', '.join(p + 'conv1.weight' for p in candidates)})")


def expected_encoder_shapes(cfg: EncoderConfig, hf: str, where: str) -> dict[str, tuple[tuple, str]]:
    d, f, m = cfg.hidden_size, cfg.ffn_hidden_size, cfg.num_mel_bins
    dd = f"d_model={d}"
    shapes = {
        f"{hf}conv1.weight": ((d, m, 3), f"d_model={d}, num_mel_bins={m}"), f"{hf}conv1.bias": ((d,), dd),
        f"{hf}conv2.weight": ((d, d, 3), dd), f"{hf}conv2.bias": ((d,), dd),
        f"{hf}embed_positions.weight": ((cfg.max_source_positions, d),
                                        f"max_source_positions={cfg.max_source_positions}, d_model={d}"),
        f"{hf}layer_norm.weight": ((d,), dd), f"{hf}layer_norm.bias": ((d,), dd),
    }
    for i in range(cfg.num_layers):
        p = f"{hf}layers.{i}."
        for norm in ("self_attn_layer_norm", "final_layer_norm"):
            shapes[f"{p}{norm}.weight"] = ((d,), dd)
            shapes[f"{p}{norm}.bias"] = ((d,), dd)
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            shapes[f"{p}self_attn.{proj}.weight"] = ((d, d), dd)
            if proj != "k_proj":
                shapes[f"{p}self_attn.{proj}.bias"] = ((d,), dd)
        shapes[f"{p}fc1.weight"] = ((f, d), f"encoder_ffn_dim={f}, d_model={d}")
        shapes[f"{p}fc1.bias"] = ((f,), f"encoder_ffn_dim={f}")
        shapes[f"{p}fc2.weight"] = ((d, f), f"d_model={d}, encoder_ffn_dim={f}")
        shapes[f"{p}fc2.bias"] = ((d,), dd)
    return shapes


def check_shapes(ckpt: HFCheckpoint, shapes: dict[str, tuple[tuple, str]], where: str) -> None:
    for name, (shape, fields) in shapes.items():
        if name not in ckpt:
            raise ConversionError(f"tensor {name} is missing from {ckpt.directory} (implied by {where})")
        got = ckpt.shape(name)
        if got != shape:
            raise ConversionError(f"tensor {name} has shape {got} but {where} ({fields}) implies {shape}")


def check_encoder_tensors(ckpt: HFCheckpoint, cfg: EncoderConfig, hf: str, where: str) -> None:
    layer_re = re.compile(re.escape(hf) + r"layers\.(\d+)\.")
    found = {int(m.group(1)) for k in ckpt.names() if (m := layer_re.match(k))}
    if found and max(found) + 1 != cfg.num_layers:
        raise ConversionError(f"{where}: encoder_layers={cfg.num_layers} but the weights hold "
                              f"{max(found) + 1} encoder layers ({hf}layers.0-{max(found)})")
    check_shapes(ckpt, expected_encoder_shapes(cfg, hf, where), where)
    bias = f"{hf}layers.0.self_attn.k_proj.bias"
    if bias in ckpt:
        raise ConversionError(f"tensor {bias}: a key-projection bias is not part of Whisper; the checkpoint "
                              "does not match its config")


def _heads(cfg: EncoderConfig) -> tuple[int, int, int]:
    return cfg.num_attention_heads, cfg.num_attention_heads, cfg.hidden_size // cfg.num_attention_heads


def encoder_to_mcore(ckpt: HFCheckpoint, cfg: EncoderConfig, hf: str, prefix: str = "encoder."
                     ) -> Iterator[tuple[str, torch.Tensor]]:
    for name in ("conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias"):
        yield prefix + name, ckpt.get(hf + name)
    yield prefix + "position_embeddings", ckpt.get(f"{hf}embed_positions.weight")
    for i in range(cfg.num_layers):
        p, m = f"{hf}layers.{i}.", f"{prefix}transformer.layers.{i}."
        for x in ("weight", "bias"):
            yield f"{m}input_layernorm.{x}", ckpt.get(f"{p}self_attn_layer_norm.{x}")
            yield f"{m}pre_mlp_layernorm.{x}", ckpt.get(f"{p}final_layer_norm.{x}")
            yield f"{m}self_attention.linear_proj.{x}", ckpt.get(f"{p}self_attn.out_proj.{x}")
            yield f"{m}mlp.linear_fc1.{x}", ckpt.get(f"{p}fc1.{x}")
            yield f"{m}mlp.linear_fc2.{x}", ckpt.get(f"{p}fc2.{x}")
        w = [ckpt.get(f"{p}self_attn.{x}_proj.weight") for x in "qkv"]
        yield f"{m}self_attention.linear_qkv.weight", qkv.fuse(*w, *_heads(cfg))
        q_bias, v_bias = ckpt.get(f"{p}self_attn.q_proj.bias"), ckpt.get(f"{p}self_attn.v_proj.bias")
        yield f"{m}self_attention.linear_qkv.bias", qkv.fuse(q_bias, torch.zeros_like(q_bias), v_bias, *_heads(cfg))
    yield prefix + "final_layernorm.weight", ckpt.get(f"{hf}layer_norm.weight")
    yield prefix + "final_layernorm.bias", ckpt.get(f"{hf}layer_norm.bias")


def encoder_group(name: str, prefix: str = "encoder.") -> str | None:
    if not name.startswith(prefix):
        return None
    m = re.match(re.escape(prefix) + r"transformer\.layers\.(\d+)\.", name)
    return f"encoder.layer.{int(m.group(1)):06d}" if m else "encoder.other"


def encoder_to_hf(get: Callable[[str], torch.Tensor], cfg: EncoderConfig, hf: str, layers: list[int],
                  include_other: bool, prefix: str = "encoder.") -> Iterator[tuple[str, torch.Tensor]]:
    if include_other:
        for name in ("conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias"):
            yield hf + name, get(prefix + name)
        yield f"{hf}embed_positions.weight", get(prefix + "position_embeddings")
        yield f"{hf}layer_norm.weight", get(prefix + "final_layernorm.weight")
        yield f"{hf}layer_norm.bias", get(prefix + "final_layernorm.bias")
    for i in layers:
        p, m = f"{hf}layers.{i}.", f"{prefix}transformer.layers.{i}."
        for x in ("weight", "bias"):
            yield f"{p}self_attn_layer_norm.{x}", get(f"{m}input_layernorm.{x}")
            yield f"{p}final_layer_norm.{x}", get(f"{m}pre_mlp_layernorm.{x}")
            yield f"{p}self_attn.out_proj.{x}", get(f"{m}self_attention.linear_proj.{x}")
            yield f"{p}fc1.{x}", get(f"{m}mlp.linear_fc1.{x}")
            yield f"{p}fc2.{x}", get(f"{m}mlp.linear_fc2.{x}")
        q, k, v = qkv.split(get(f"{m}self_attention.linear_qkv.weight"), *_heads(cfg))
        yield from ((f"{p}self_attn.q_proj.weight", q), (f"{p}self_attn.k_proj.weight", k),
                    (f"{p}self_attn.v_proj.weight", v))
        q, _, v = qkv.split(get(f"{m}self_attention.linear_qkv.bias"), *_heads(cfg))
        yield from ((f"{p}self_attn.q_proj.bias", q), (f"{p}self_attn.v_proj.bias", v))


def encoder_config_to_hf(cfg: EncoderConfig, base: dict | None) -> dict:
    """A Qwen2-Audio ``audio_config`` for ``cfg`` (the source's fields kept, shapes rewritten)."""
    if cfg.conv_stride != 2 or cfg.n_fft != 400 or cfg.hop_length != 160 or cfg.window_seconds != 30.0:
        raise ConversionError("the encoder's front end (conv_stride, n_fft, hop_length, window_seconds) differs "
                              "from Whisper's; Qwen2-Audio cannot express it")
    out = dict(base or {"model_type": "qwen2_audio_encoder", "activation_function": "gelu",
                        "scale_embedding": False})
    out["model_type"] = "qwen2_audio_encoder"
    out.update(d_model=cfg.hidden_size, encoder_layers=cfg.num_layers,
               encoder_attention_heads=cfg.num_attention_heads, encoder_ffn_dim=cfg.ffn_hidden_size,
               num_mel_bins=cfg.num_mel_bins, max_source_positions=cfg.max_source_positions)
    return out


def projector_to_mcore(ckpt: HFCheckpoint, hf: str, encoder_width: int, llm_width: int, where: str
                       ) -> Iterator[tuple[str, torch.Tensor]]:
    fields = f"text_config.hidden_size={llm_width}, audio_config.d_model={encoder_width}"
    shapes = {f"{hf}.weight": ((llm_width, encoder_width), fields),
              f"{hf}.bias": ((llm_width,), f"text_config.hidden_size={llm_width}")}
    check_shapes(ckpt, shapes, where)
    yield "adapter.linear.weight", ckpt.get(f"{hf}.weight")
    yield "adapter.linear.bias", ckpt.get(f"{hf}.bias")


def fresh_adapter(cfg: AdapterConfig, encoder_width: int, llm_width: int, seed: int, std: float = 0.02
                  ) -> dict[str, torch.Tensor]:
    """A newly initialised adapter (normal(0, std) weights, zero biases), reproducible from ``seed``."""
    g = torch.Generator().manual_seed(seed)
    k = cfg.downsample
    if cfg.kind == "pool-linear":
        shapes = {"adapter.linear": (llm_width, encoder_width)}
    else:
        ffn = cfg.ffn_hidden_size or llm_width
        shapes = {"adapter.linear_fc1": (ffn, k * encoder_width), "adapter.linear_fc2": (llm_width, ffn)}
    out = {}
    for name, shape in shapes.items():
        out[f"{name}.weight"] = torch.randn(shape, generator=g) * std
        out[f"{name}.bias"] = torch.zeros(shape[0])
    return out


def adapter_config_for_qwen2_audio() -> AdapterConfig:
    return AdapterConfig(kind="pool-linear", downsample=2)
