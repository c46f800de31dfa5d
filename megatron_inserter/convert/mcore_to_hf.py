"""megatron-inserter -> Hugging Face: the LLM alone (Qwen2 / Llama) or the whole model (Qwen2-Audio)."""

from __future__ import annotations

import json
import os

import torch

from megatron_inserter.convert import hf_llm, layout, mcore_checkpoint, mcore_io
from megatron_inserter.convert.errors import ConversionError
from megatron_inserter.convert.hf_io import DEFAULT_MAX_SHARD_BYTES, write_safetensors
from megatron_inserter.convert.hf_to_mcore import DTYPES, llm_builder
from megatron_inserter.models.llm import LLMConfig


def _tp_for_padding(cfg: LLMConfig, padded: int | None) -> int:
    """A tensor-parallel size whose vocabulary padding gives the checkpoint's embedding rows."""
    if padded is None:
        return 1
    for tp in range(1, 65):
        if cfg.padded_vocab_size(tp) == padded:
            return tp
    raise ConversionError(f"no tensor-parallel size pads vocab_size={cfg.vocab_size} to {padded} rows")


def _cast(tensors, dtype: torch.dtype | None):
    for name, t in tensors:
        yield name, (t if dtype is None or t.dtype == dtype else t.to(dtype))


def _first_dtype(tensors):
    """Peek the dtype of the stream (for config.json) without losing the first element."""
    it = iter(tensors)
    first = next(it)
    holder = {"dtype": first[1].dtype}

    def chain():
        yield first
        yield from it
    return chain(), holder


def export_llm(load: str, output: str, model_config: dict, dtype: str = "auto",
               max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES) -> str:
    """Write the checkpoint's language model as a Qwen2 / Llama directory."""
    cfg = LLMConfig(**model_config["llm"])
    prefix = "" if model_config["model_type"] == "gpt" else "llm."
    tp = _tp_for_padding(cfg, model_config.get("padded_vocab_size"))
    base = (model_config.get("hf") or {}).get("llm")
    names = hf_llm.TextModelNames()
    target = None if dtype == "auto" else DTYPES[dtype]
    builder = llm_builder(cfg, tp) if not prefix else _inserter_builder(model_config)

    with layout.staged_directory(output) as tmp:
        with mcore_io.single_process_parallel():
            groups = mcore_checkpoint.read_groups(load, builder, lambda n: hf_llm.llm_group(n, prefix))

            def tensors():
                for group, loaded in groups:
                    layers = [int(group.rsplit(".", 1)[1])] if group.startswith("llm.layer.") else []
                    yield from hf_llm.llm_to_hf(loaded.__getitem__, cfg, names, layers, prefix=prefix,
                                                include_embeddings=group == "llm.other")

            stream, seen = _first_dtype(_cast(tensors(), target))
            write_safetensors(tmp, stream, max_shard_bytes)
        layout.write_json(os.path.join(tmp, "config.json"), hf_llm.llm_config_to_hf(cfg, base, seen["dtype"]))
        _restore_assets(load, tmp)
    return os.path.abspath(output)


def _restore_assets(load: str, out_dir: str) -> None:
    root = os.path.abspath(load)
    for candidate in (root, os.path.dirname(root)):
        assets = os.path.join(candidate, layout.ASSETS)
        if os.path.isdir(assets):
            layout.copy_assets(assets, out_dir)
            return


def _inserter_builder(model_config: dict):
    raise ConversionError("InSerter checkpoints are not supported yet")


def export(load: str, output: str, llm_only: bool = False, dtype: str = "auto",
           max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES, model_config_path: str | None = None) -> str:
    if model_config_path:
        with open(model_config_path, encoding="utf-8") as f:
            model_config = json.load(f)
    else:
        model_config = layout.read_model_config(load)
    kind = model_config.get("model_type")
    if kind == "gpt" or (kind == "inserter" and llm_only):
        return export_llm(load, output, model_config, dtype, max_shard_bytes)
    raise ConversionError(f"model_type {kind!r} cannot be exported")
