"""megatron-inserter -> Hugging Face: the whole model as Qwen2-Audio, or the LLM alone as Qwen2 / Llama.

Tensors are read from the dist checkpoint one layer at a time and streamed into safetensors shards, so
memory stays bounded by a layer plus one output shard. Vocabulary padding is removed; fields of the
source Hugging Face configs the model does not represent (token ids, ...) are carried through from
``model_config.json``.
"""

from __future__ import annotations

import json
import os

import torch

from megatron_inserter.convert import hf_audio, hf_llm, layout, mcore_checkpoint, mcore_io, model_config
from megatron_inserter.convert.builders import inserter_builder, llm_builder
from megatron_inserter.convert.errors import ConversionError
from megatron_inserter.convert.hf_io import DEFAULT_MAX_SHARD_BYTES, write_safetensors
from megatron_inserter.convert.hf_to_mcore import DTYPES
from megatron_inserter.models.config import InserterModelConfig
from megatron_inserter.models.llm import LLMConfig

LLM_PREFIX = "language_model."
QWEN2_AUDIO_TEXT = hf_llm.TextModelNames("language_model.model.", "language_model.lm_head.weight")
QWEN2_AUDIO_TOWER = "audio_tower."


def _tp_for_padding(cfg: LLMConfig, padded: int) -> int:
    """A tensor-parallel size whose vocabulary padding gives the checkpoint's embedding rows."""
    for tp in range(1, 65):
        if cfg.padded_vocab_size(tp) == padded:
            return tp
    raise ConversionError(f"no tensor-parallel size pads vocab_size={cfg.vocab_size} to {padded} rows; "
                          "model_config.json does not match the checkpoint")


def _layer(group: str, kind: str) -> list[int]:
    return [int(group.rsplit(".", 1)[1])] if group.startswith(f"{kind}.layer.") else []


class _DtypeRecorder:
    """Casts a tensor stream (``None``: keep each dtype) and remembers the dtype written (for config.json)."""

    def __init__(self, dtype: torch.dtype | None):
        self.dtype = dtype
        self.seen: torch.dtype | None = None

    def __call__(self, tensors):
        for name, t in tensors:
            if self.dtype is not None and t.dtype != self.dtype:
                t = t.to(self.dtype)
            if t.is_floating_point() and self.seen is None:
                self.seen = t.dtype
            yield name, t


def _llm_tensors(groups, cfg: LLMConfig, names: hf_llm.TextModelNames, prefix: str):
    for group, loaded in groups:
        yield from hf_llm.llm_to_hf(loaded.__getitem__, cfg, names, _layer(group, "llm"), prefix=prefix,
                                    include_embeddings=group == "llm.other")


def export_llm(load: str, output: str, meta: dict, dtype: str, max_shard_bytes: int) -> str:
    kind, parsed = model_config.from_dict(meta)
    if kind == "gpt":
        cfg, prefix = parsed, ""
        builder = llm_builder(cfg, _tp_for_padding(cfg, meta.get("padded_vocab_size") or cfg.padded_vocab_size(1)))
        base = (meta.get("hf") or {}).get("llm")
    else:
        cfg, prefix, builder = parsed.llm, LLM_PREFIX, inserter_builder(parsed)
        hf = meta.get("hf") or {}
        base = hf.get("llm") or (hf.get("qwen2_audio") or {}).get("text_config")
        if base is not None and "architectures" not in base:
            base = {"architectures": [f"{'Qwen2' if cfg.add_qkv_bias else 'Llama'}ForCausalLM"], **base}
    recorder = _DtypeRecorder(None if dtype == "auto" else DTYPES[dtype])
    with layout.staged_directory(output) as tmp:
        with mcore_io.single_process_parallel():
            groups = mcore_checkpoint.read_groups(load, builder, lambda n: hf_llm.llm_group(n, prefix))
            write_safetensors(tmp, recorder(_llm_tensors(groups, cfg, hf_llm.TextModelNames(), prefix)),
                              max_shard_bytes)
        layout.write_json(os.path.join(tmp, "config.json"), hf_llm.llm_config_to_hf(cfg, base, recorder.seen))
        _restore_assets(load, tmp)
    return os.path.abspath(output)


def qwen2_audio_config(cfg: InserterModelConfig, base: dict | None, dtype: torch.dtype) -> dict:
    if cfg.adapter.kind != "pool-linear" or cfg.adapter.downsample != 2:
        raise ConversionError(f"adapter {cfg.adapter.kind} with downsample {cfg.adapter.downsample} has no "
                              "Qwen2-Audio equivalent (average pooling by 2 + linear); export the LLM alone with "
                              "--llm-only")
    out = dict(base or {"architectures": ["Qwen2AudioForConditionalGeneration"], "model_type": "qwen2_audio"})
    text = out.get("text_config")
    # A nested text_config records a dtype only if the source's did.
    text_dtype = dtype if text is None or "dtype" in text or "torch_dtype" in text else None
    out["text_config"] = hf_llm.llm_config_to_hf(cfg.llm, text, text_dtype)
    out["audio_config"] = hf_audio.encoder_config_to_hf(cfg.encoder, out.get("audio_config"))
    key = "audio_token_id" if "audio_token_id" in out and "audio_token_index" not in out else "audio_token_index"
    out[key] = cfg.audio_placeholder_id
    hf_llm.set_dtype_field(out, dtype)
    return out


def _qwen2_audio_tensors(groups, cfg: InserterModelConfig):
    for group, loaded in groups:
        get = loaded.__getitem__
        if group.startswith("llm."):
            yield from hf_llm.llm_to_hf(get, cfg.llm, QWEN2_AUDIO_TEXT, _layer(group, "llm"), prefix=LLM_PREFIX,
                                        include_embeddings=group == "llm.other", tied_head=True)
        elif group.startswith("encoder."):
            yield from hf_audio.encoder_to_hf(get, cfg.encoder, QWEN2_AUDIO_TOWER, _layer(group, "encoder"),
                                              include_other=group == "encoder.other")
        else:
            yield f"{hf_audio.PROJECTOR}.weight", get("adapter.linear.weight")
            yield f"{hf_audio.PROJECTOR}.bias", get("adapter.linear.bias")


def _inserter_group(name: str) -> str | None:
    if name.startswith("adapter."):
        return "adapter"
    return hf_audio.encoder_group(name) or hf_llm.llm_group(name, LLM_PREFIX)


def export_qwen2_audio(load: str, output: str, meta: dict, dtype: str, max_shard_bytes: int) -> str:
    _, cfg = model_config.from_dict(meta)
    base = (meta.get("hf") or {}).get("qwen2_audio")
    qwen2_audio_config(cfg, base, torch.float32)  # refuse before reading anything
    recorder = _DtypeRecorder(None if dtype == "auto" else DTYPES[dtype])
    with layout.staged_directory(output) as tmp:
        with mcore_io.single_process_parallel():
            groups = mcore_checkpoint.read_groups(load, inserter_builder(cfg), _inserter_group)
            write_safetensors(tmp, recorder(_qwen2_audio_tensors(groups, cfg)), max_shard_bytes)
        layout.write_json(os.path.join(tmp, "config.json"), qwen2_audio_config(cfg, base, recorder.seen))
        _restore_assets(load, tmp)
    return os.path.abspath(output)


def _restore_assets(load: str, out_dir: str) -> None:
    root = os.path.abspath(load)
    for candidate in (root, os.path.dirname(root)):
        assets = os.path.join(candidate, layout.ASSETS)
        if os.path.isdir(assets):
            layout.copy_assets(assets, out_dir)
            return


def export(load: str, output: str, llm_only: bool = False, dtype: str = "auto",
           max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES, model_config_path: str | None = None) -> str:
    """``--load`` checkpoint -> a Hugging Face directory at ``output``."""
    if model_config_path:
        try:
            with open(model_config_path, encoding="utf-8") as f:
                meta = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            raise ConversionError(f"--model-config {model_config_path}: {e}") from None
    else:
        meta = layout.read_model_config(load)
    kind = meta.get("model_type")
    if kind == "gpt" or llm_only:
        return export_llm(load, output, meta, dtype, max_shard_bytes)
    if kind == "inserter":
        return export_qwen2_audio(load, output, meta, dtype, max_shard_bytes)
    raise ConversionError(f"model_config.json: model_type {kind!r} is neither 'inserter' nor 'gpt'")
