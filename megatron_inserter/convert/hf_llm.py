"""Qwen2 / Qwen2.5 / Llama 3.x language models: Hugging Face config and tensors <-> the GPTModel.

Tensor names on the megatron side are the GPTModel's TP=1 state-dict names (local layer spec):

    HF (prefix ``model.``)                       GPTModel
    embed_tokens.weight                          embedding.word_embeddings.weight   (vocab rows padded)
    layers.i.input_layernorm.weight              decoder.layers.i.input_layernorm.weight
    layers.i.self_attn.{q,k,v}_proj.{weight,bias} decoder.layers.i.self_attention.linear_qkv.{weight,bias}
                                                 (fused per query group: [q heads of group g, k_g, v_g])
    layers.i.self_attn.o_proj.weight             decoder.layers.i.self_attention.linear_proj.weight
    layers.i.post_attention_layernorm.weight     decoder.layers.i.pre_mlp_layernorm.weight
    layers.i.mlp.{gate,up}_proj.weight           decoder.layers.i.mlp.linear_fc1.weight   ([gate; up])
    layers.i.mlp.down_proj.weight                decoder.layers.i.mlp.linear_fc2.weight
    norm.weight                                  decoder.final_layernorm.weight
    lm_head.weight (absent when tied)            output_layer.weight                (vocab rows padded)
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterator

import torch

from megatron_inserter.convert import qkv
from megatron_inserter.convert.errors import ConversionError
from megatron_inserter.convert.hf_io import HFCheckpoint
from megatron_inserter.models.config import LLMConfig

SUPPORTED = ("qwen2", "llama")
# Buffers some older checkpoints carry; recomputed from the config, never converted.
_IGNORED = re.compile(r".*\.rotary_emb\.inv_freq$")


@dataclasses.dataclass
class TextModelNames:
    """Where an LLM's tensors live inside a Hugging Face checkpoint."""

    body: str = "model."  # prefix of embed_tokens / layers / norm
    lm_head: str = "lm_head.weight"


def _get(cfg: dict, name: str, default=None, where: str = "config.json"):
    value = cfg.get(name, default)
    if value is None and default is None:
        raise ConversionError(f"{where}: field {name} is missing")
    return value


def rope_theta(cfg: dict) -> float:
    if cfg.get("rope_theta") is not None:
        return float(cfg["rope_theta"])
    params = cfg.get("rope_parameters") or {}
    return float(params.get("rope_theta", 10000.0))


def _rope_scaling(cfg: dict, where: str) -> float | None:
    """The Llama 3.1 rope scaling factor, or None when the model uses plain rotary positions."""
    scaling = cfg.get("rope_scaling") or {}
    params = cfg.get("rope_parameters") or {}
    kind = scaling.get("rope_type", scaling.get("type")) or params.get("rope_type", "default")
    spec = scaling or params
    if kind in (None, "default"):
        return None
    if kind != "llama3":
        raise ConversionError(f"{where}: rope type {kind!r} is not supported (supported: default, llama3)")
    fixed = {"low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
    for key, want in fixed.items():
        if float(spec.get(key, want)) != float(want):
            raise ConversionError(f"{where}: rope {key}={spec.get(key)} is not supported (megatron-core's "
                                  f"llama3 scaling uses {want})")
    return float(spec.get("factor", 8.0))


def llm_config_from_hf(cfg: dict, where: str = "config.json") -> LLMConfig:
    """LLMConfig from a Qwen2 or Llama ``config.json`` (a plain dict, as written by transformers)."""
    kind = cfg.get("model_type")
    if kind not in SUPPORTED:
        raise ConversionError(f"{where}: model_type {kind!r} is not a supported language model "
                              f"(supported: {', '.join(SUPPORTED)})")
    act = cfg.get("hidden_act", "silu")
    if act != "silu":
        raise ConversionError(f"{where}: hidden_act={act!r} is not supported (SwiGLU with silu only)")
    if kind == "qwen2" and cfg.get("use_sliding_window"):
        raise ConversionError(f"{where}: use_sliding_window=true is not supported (full attention only)")
    if kind == "llama":
        for flag in ("attention_bias", "mlp_bias"):
            if cfg.get(flag):
                raise ConversionError(f"{where}: {flag}=true is not supported (Llama without biases only)")
    hidden = int(_get(cfg, "hidden_size", where=where))
    heads = int(_get(cfg, "num_attention_heads", where=where))
    groups = int(cfg.get("num_key_value_heads") or heads)
    if hidden <= 0 or heads <= 0 or groups <= 0 or heads % groups:
        raise ConversionError(f"{where}: num_attention_heads={heads} is not a multiple of "
                              f"num_key_value_heads={groups}")
    head_dim = cfg.get("head_dim")
    if head_dim is None and hidden % heads:
        raise ConversionError(f"{where}: hidden_size={hidden} is not divisible by num_attention_heads={heads} "
                              "and head_dim is not given")
    kv_channels = None if head_dim is None or int(head_dim) * heads == hidden else int(head_dim)
    out = LLMConfig(
        num_layers=int(_get(cfg, "num_hidden_layers", where=where)),
        hidden_size=hidden,
        ffn_hidden_size=int(_get(cfg, "intermediate_size", where=where)),
        num_attention_heads=heads,
        num_query_groups=groups,
        vocab_size=int(_get(cfg, "vocab_size", where=where)),
        max_position_embeddings=int(cfg.get("max_position_embeddings") or (32768 if kind == "qwen2" else 2048)),
        rotary_base=rope_theta(cfg),
        add_qkv_bias=kind == "qwen2",
        tie_embeddings=bool(cfg.get("tie_word_embeddings", False)),
        norm_epsilon=float(cfg.get("rms_norm_eps", 1e-6)),
        kv_channels=kv_channels,
    )
    factor = _rope_scaling(cfg, where)
    if factor is not None:
        out = dataclasses.replace(out, rope_scaling_factor=factor)
    return out


def head_dim(cfg: LLMConfig) -> int:
    return cfg.kv_channels or cfg.hidden_size // cfg.num_attention_heads


def fuse_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cfg: LLMConfig) -> torch.Tensor:
    return qkv.fuse(q, k, v, cfg.num_attention_heads, cfg.num_query_groups, head_dim(cfg))


def split_qkv(fused: torch.Tensor, cfg: LLMConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return qkv.split(fused, cfg.num_attention_heads, cfg.num_query_groups, head_dim(cfg))


def pad_rows(t: torch.Tensor, rows: int) -> torch.Tensor:
    if t.shape[0] == rows:
        return t
    out = torch.zeros((rows, *t.shape[1:]), dtype=t.dtype)
    out[: t.shape[0]] = t
    return out


def expected_shapes(cfg: LLMConfig, names: TextModelNames, where: str) -> dict[str, tuple[tuple, str]]:
    """HF tensor name -> (shape implied by the config, the config fields it follows from)."""
    h, f, v, d = cfg.hidden_size, cfg.ffn_hidden_size, cfg.vocab_size, head_dim(cfg)
    q_out, kv_out = cfg.num_attention_heads * d, cfg.num_query_groups * d
    attn = f"num_attention_heads={cfg.num_attention_heads}, head_dim={d}, hidden_size={h}"
    kv = f"num_key_value_heads={cfg.num_query_groups}, head_dim={d}, hidden_size={h}"
    b = names.body
    shapes = {f"{b}embed_tokens.weight": ((v, h), f"vocab_size={v}, hidden_size={h}"),
              f"{b}norm.weight": ((h,), f"hidden_size={h}")}
    if not cfg.tie_embeddings:
        shapes[names.lm_head] = ((v, h), f"vocab_size={v}, hidden_size={h}")
    for i in range(cfg.num_layers):
        p = f"{b}layers.{i}."
        shapes.update({
            p + "input_layernorm.weight": ((h,), f"hidden_size={h}"),
            p + "post_attention_layernorm.weight": ((h,), f"hidden_size={h}"),
            p + "self_attn.q_proj.weight": ((q_out, h), attn),
            p + "self_attn.k_proj.weight": ((kv_out, h), kv),
            p + "self_attn.v_proj.weight": ((kv_out, h), kv),
            p + "self_attn.o_proj.weight": ((h, q_out), attn),
            p + "mlp.gate_proj.weight": ((f, h), f"intermediate_size={f}, hidden_size={h}"),
            p + "mlp.up_proj.weight": ((f, h), f"intermediate_size={f}, hidden_size={h}"),
            p + "mlp.down_proj.weight": ((h, f), f"hidden_size={h}, intermediate_size={f}"),
        })
        if cfg.add_qkv_bias:
            shapes[p + "self_attn.q_proj.bias"] = ((q_out,), attn)
            shapes[p + "self_attn.k_proj.bias"] = ((kv_out,), kv)
            shapes[p + "self_attn.v_proj.bias"] = ((kv_out,), kv)
    return shapes


def check_llm_tensors(ckpt: HFCheckpoint, cfg: LLMConfig, names: TextModelNames, where: str) -> None:
    """Every tensor the config implies is present with the implied shape; the layer count matches."""
    layer_re = re.compile(re.escape(names.body) + r"layers\.(\d+)\.")
    found = {int(m.group(1)) for k in ckpt.names() if (m := layer_re.match(k))}
    if found and max(found) + 1 != cfg.num_layers:
        raise ConversionError(f"{where}: num_hidden_layers={cfg.num_layers} but the weights hold "
                              f"{max(found) + 1} layers ({names.body}layers.0-{max(found)})")
    for name, (shape, fields) in expected_shapes(cfg, names, where).items():
        if name not in ckpt:
            raise ConversionError(f"tensor {name} is missing from {ckpt.directory} (implied by {where})")
        got = ckpt.shape(name)
        if got != shape:
            raise ConversionError(f"tensor {name} has shape {got} but {where} ({fields}) implies {shape}")
    if cfg.tie_embeddings and names.lm_head in ckpt and not torch.equal(
            ckpt.get(names.lm_head), ckpt.get(f"{names.body}embed_tokens.weight")):
        raise ConversionError(f"{where}: tie_word_embeddings=true but {names.lm_head} differs from "
                              f"{names.body}embed_tokens.weight")
    for key in ckpt.names():
        if key.startswith(names.body) and _IGNORED.match(key):
            ckpt.mark_ignored(key)


def llm_to_mcore(ckpt: HFCheckpoint, cfg: LLMConfig, names: TextModelNames, padded_vocab: int,
                 prefix: str = "") -> Iterator[tuple[str, object]]:
    """(GPTModel state-dict name, tensor or (gate, up) pieces) for every LLM tensor."""
    b = names.body
    yield prefix + "embedding.word_embeddings.weight", pad_rows(ckpt.get(f"{b}embed_tokens.weight"), padded_vocab)
    for i in range(cfg.num_layers):
        p, m = f"{b}layers.{i}.", f"{prefix}decoder.layers.{i}."
        yield m + "input_layernorm.weight", ckpt.get(p + "input_layernorm.weight")
        parts = [ckpt.get(p + f"self_attn.{x}_proj.weight") for x in "qkv"]
        yield m + "self_attention.linear_qkv.weight", fuse_qkv(*parts, cfg)
        if cfg.add_qkv_bias:
            parts = [ckpt.get(p + f"self_attn.{x}_proj.bias") for x in "qkv"]
            yield m + "self_attention.linear_qkv.bias", fuse_qkv(*parts, cfg)
        yield m + "self_attention.linear_proj.weight", ckpt.get(p + "self_attn.o_proj.weight")
        yield m + "pre_mlp_layernorm.weight", ckpt.get(p + "post_attention_layernorm.weight")
        yield m + "mlp.linear_fc1.weight", (ckpt.get(p + "mlp.gate_proj.weight"), ckpt.get(p + "mlp.up_proj.weight"))
        yield m + "mlp.linear_fc2.weight", ckpt.get(p + "mlp.down_proj.weight")
    yield prefix + "decoder.final_layernorm.weight", ckpt.get(f"{b}norm.weight")
    if not cfg.tie_embeddings:
        yield prefix + "output_layer.weight", pad_rows(ckpt.get(names.lm_head), padded_vocab)
    elif names.lm_head in ckpt:
        ckpt.mark_ignored(names.lm_head)


def llm_group(name: str, prefix: str = "") -> str | None:
    """Export group of a GPTModel tensor name: one group per decoder layer, one for the rest."""
    if not name.startswith(prefix):
        return None
    m = re.match(re.escape(prefix) + r"decoder\.layers\.(\d+)\.", name)
    return f"llm.layer.{int(m.group(1)):06d}" if m else "llm.other"


def llm_to_hf(get: Callable[[str], torch.Tensor], cfg: LLMConfig, names: TextModelNames, layers: list[int] | None,
              prefix: str = "", include_embeddings: bool = True, tied_head: bool = False
              ) -> Iterator[tuple[str, torch.Tensor]]:
    """HF tensors of the given decoder layers (and, with include_embeddings, embeddings/norm/head).

    ``tied_head`` writes the head of a tied model as a copy of the embeddings (for wrappers such as
    Qwen2-Audio whose own head is not tied to the inner model's embeddings).
    """
    b, v = names.body, cfg.vocab_size
    if include_embeddings:
        embed = get(prefix + "embedding.word_embeddings.weight")[:v].contiguous()
        yield f"{b}embed_tokens.weight", embed
        yield f"{b}norm.weight", get(prefix + "decoder.final_layernorm.weight")
        if not cfg.tie_embeddings:
            yield names.lm_head, get(prefix + "output_layer.weight")[:v].contiguous()
        elif tied_head:
            yield names.lm_head, embed.clone()
    for i in layers or []:
        p, m = f"{b}layers.{i}.", f"{prefix}decoder.layers.{i}."
        yield p + "input_layernorm.weight", get(m + "input_layernorm.weight")
        q, k, vv = split_qkv(get(m + "self_attention.linear_qkv.weight"), cfg)
        yield from ((p + "self_attn.q_proj.weight", q), (p + "self_attn.k_proj.weight", k),
                    (p + "self_attn.v_proj.weight", vv))
        if cfg.add_qkv_bias:
            q, k, vv = split_qkv(get(m + "self_attention.linear_qkv.bias"), cfg)
            yield from ((p + "self_attn.q_proj.bias", q), (p + "self_attn.k_proj.bias", k),
                        (p + "self_attn.v_proj.bias", vv))
        yield p + "self_attn.o_proj.weight", get(m + "self_attention.linear_proj.weight")
        yield p + "post_attention_layernorm.weight", get(m + "pre_mlp_layernorm.weight")
        gate, up = torch.chunk(get(m + "mlp.linear_fc1.weight"), 2, dim=0)
        yield p + "mlp.gate_proj.weight", gate.contiguous()
        yield p + "mlp.up_proj.weight", up.contiguous()
        yield p + "mlp.down_proj.weight", get(m + "mlp.linear_fc2.weight")


_DTYPE_NAMES = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}


def set_dtype_field(cfg: dict, dtype: torch.dtype) -> None:
    """Record the weights' dtype the way the source config did (``dtype`` in transformers 5, else
    ``torch_dtype``)."""
    key = "dtype" if "dtype" in cfg else "torch_dtype"
    cfg[key] = _DTYPE_NAMES.get(dtype, str(dtype).replace("torch.", ""))


def llm_config_to_hf(cfg: LLMConfig, base: dict | None, dtype: torch.dtype | None) -> dict:
    """A Qwen2 / Llama ``config.json`` for ``cfg``: the source config (fields the model does not represent,
    such as token ids, are kept) with every shape field rewritten from ``cfg``."""
    kind = (base or {}).get("model_type") or ("qwen2" if cfg.add_qkv_bias else "llama")
    if kind not in SUPPORTED:
        raise ConversionError(f"cannot write a {kind!r} language model config (supported: {', '.join(SUPPORTED)})")
    if (kind == "qwen2") != cfg.add_qkv_bias:
        raise ConversionError(f"the model has add_qkv_bias={cfg.add_qkv_bias}, which a {kind} config cannot express")
    out = dict(base or {"architectures": ["Qwen2ForCausalLM" if kind == "qwen2" else "LlamaForCausalLM"],
                        "model_type": kind, "hidden_act": "silu"})
    out.update(
        hidden_size=cfg.hidden_size, intermediate_size=cfg.ffn_hidden_size, num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_attention_heads, num_key_value_heads=cfg.num_query_groups,
        vocab_size=cfg.vocab_size, max_position_embeddings=cfg.max_position_embeddings,
        rms_norm_eps=cfg.norm_epsilon, tie_word_embeddings=cfg.tie_embeddings,
    )
    if cfg.kv_channels is not None or "head_dim" in out:
        out["head_dim"] = head_dim(cfg)
    theta = int(cfg.rotary_base) if float(cfg.rotary_base).is_integer() else cfg.rotary_base
    if isinstance(out.get("rope_parameters"), dict) and "rope_theta" not in out:
        out["rope_parameters"] = {**out["rope_parameters"], "rope_theta": _same_type(
            out["rope_parameters"].get("rope_theta"), theta)}
    else:
        out["rope_theta"] = _same_type(out.get("rope_theta"), theta)
    factor = getattr(cfg, "rope_scaling_factor", None)
    if factor is not None:
        spec_key = "rope_parameters" if isinstance(out.get("rope_parameters"), dict) else "rope_scaling"
        out[spec_key] = {**(out.get(spec_key) or {}), "rope_type": "llama3", "factor": factor,
                         "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
    if dtype is not None:
        set_dtype_field(out, dtype)
    return out


def _same_type(previous, value):
    """Keep 1000000.0 a float and 10000 an int when the source wrote it that way."""
    if isinstance(previous, float):
        return float(value)
    return value
