"""Hugging Face -> megatron-inserter: pick the converter for a model directory and write the checkpoint."""

from __future__ import annotations

import dataclasses
import functools

import torch

from megatron_inserter.convert import hf_llm, mcore_checkpoint
from megatron_inserter.convert.errors import ConversionError
from megatron_inserter.convert.hf_io import HFCheckpoint
from megatron_inserter.models.llm import LLMConfig

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def resolve_dtype(name: str, ckpt: HFCheckpoint) -> torch.dtype:
    return ckpt.dtype() if name == "auto" else DTYPES[name]


def check_tensor_parallel(cfg: LLMConfig, tp: int, what: str = "the language model") -> None:
    if tp < 1:
        raise ConversionError(f"--target-tensor-parallel-size must be >= 1, got {tp}")
    for field, value in (("num_attention_heads", cfg.num_attention_heads),
                         ("num_key_value_heads", cfg.num_query_groups)):
        if value % tp:
            raise ConversionError(f"--target-tensor-parallel-size {tp} does not divide {what}'s {field}={value}")


def reject_unused(ckpt: HFCheckpoint) -> None:
    unused = ckpt.unused()
    if unused:
        more = f" and {len(unused) - 5} more" if len(unused) > 5 else ""
        raise ConversionError(f"{ckpt.directory} holds tensors this converter does not map: "
                              f"{', '.join(unused[:5])}{more} (does config.json describe these weights?)")


def llm_builder(cfg: LLMConfig, tp: int):
    """Builds the GPTModel the trainer's ``--model-type gpt`` builds (TP=PP=1, local spec, no init)."""
    from megatron_inserter.models.llm import build_gpt, gpt_layer_spec, transformer_config

    def build():
        return build_gpt(cfg, transformer_config(cfg, perform_initialization=False), tensor_model_parallel_size=tp,
                         layer_spec=gpt_layer_spec(use_te=False))
    return build


def llm_model_config(cfg: LLMConfig, tp: int, hf_config: dict) -> dict:
    return {"model_type": "gpt", "llm": dataclasses.asdict(cfg),
            "padded_vocab_size": cfg.padded_vocab_size(tp), "hf": {"llm": hf_config}}


def convert_llm(hf_dir: str, output: str, tp: int = 1, dtype: str = "auto") -> str:
    """A Qwen2 / Llama directory -> a ``--model-type gpt`` checkpoint."""
    ckpt = HFCheckpoint(hf_dir)
    where = f"{hf_dir}/config.json"
    cfg = hf_llm.llm_config_from_hf(ckpt.config, where)
    check_tensor_parallel(cfg, tp)
    names = hf_llm.TextModelNames()
    hf_llm.check_llm_tensors(ckpt, cfg, names, where)
    sources = dict(hf_llm.llm_to_mcore(ckpt, cfg, names, cfg.padded_vocab_size(tp)))
    reject_unused(ckpt)
    return mcore_checkpoint.write(output, llm_builder(cfg, tp), sources, llm_model_config(cfg, tp, ckpt.config),
                                  resolve_dtype(dtype, ckpt), asset_dirs=[hf_dir])


def detect(config: dict, where: str) -> str:
    kind = config.get("model_type")
    if kind in hf_llm.SUPPORTED:
        return "llm"
    if kind == "qwen2_audio":
        return "qwen2_audio"
    if kind == "whisper":
        return "whisper"
    archs = ", ".join(config.get("architectures") or []) or "none listed"
    raise ConversionError(f"{where}: unsupported architecture model_type={kind!r} ({archs}); supported: "
                          "qwen2 / llama language models, qwen2_audio, and whisper encoders via --encoder")


def convert(hf_dir: str, output: str, tp: int = 1, dtype: str = "auto") -> str:
    from megatron_inserter.convert.hf_io import read_json
    import os

    kind = detect(read_json(os.path.join(hf_dir, "config.json")), f"{hf_dir}/config.json")
    if kind == "llm":
        return convert_llm(hf_dir, output, tp, dtype)
    raise ConversionError(f"{hf_dir}: {kind} conversion is not available")


_ = functools
