"""megatron-inserter -> Hugging Face: the whole model as Qwen2-Audio, or the LLM alone as Qwen2 / Llama.

Tensors are read from the dist checkpoint one layer at a time and streamed into safetensors shards, so
memory stays bounded by a layer plus one output shard. Vocabulary padding is removed; fields of the
source Hugging Face configs the model does not represent (token ids, ...) are carried through from
``model_config.json``.
"""

from __future__ import annotations

import os
import sys

import torch

from megatron_inserter.convert import hf_audio, hf_llm, layout, mcore_checkpoint, mcore_io
from megatron_inserter.convert.builders import inserter_builder, llm_builder
from megatron_inserter.convert.errors import ConversionError
from megatron_inserter.convert.hf_io import DEFAULT_MAX_SHARD_BYTES, write_safetensors
from megatron_inserter.convert.hf_to_mcore import DTYPES
from megatron_inserter.files import write_json_atomic
from megatron_inserter.models import config_file
from megatron_inserter.models.config import InserterModelConfig, LLMConfig
from megatron_inserter.models.config_file import ModelConfigFile
from megatron_inserter.training import checkpointing

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


def export_llm(load: str, output: str, meta: ModelConfigFile, dtype: str, max_shard_bytes: int) -> str:
    if meta.model_type == "gpt":
        cfg, prefix = meta.config, ""
        builder = llm_builder(cfg, _tp_for_padding(cfg, meta.padded_vocab_size or cfg.padded_vocab_size(1)))
        base = meta.hf.get("llm")
    else:
        cfg, prefix, builder = meta.llm, LLM_PREFIX, inserter_builder(meta.config)
        base = meta.hf.get("llm") or (meta.hf.get("qwen2_audio") or {}).get("text_config")
        if base is not None and "architectures" not in base:
            base = {"architectures": [f"{'Qwen2' if cfg.add_qkv_bias else 'Llama'}ForCausalLM"], **base}
    recorder = _DtypeRecorder(None if dtype == "auto" else DTYPES[dtype])
    with layout.staged_directory(output) as tmp:
        with mcore_io.single_process_parallel():
            groups = mcore_checkpoint.read_groups(load, builder, lambda n: hf_llm.llm_group(n, prefix))
            write_safetensors(tmp, recorder(_llm_tensors(groups, cfg, hf_llm.TextModelNames(), prefix)),
                              max_shard_bytes)
        write_json_atomic(os.path.join(tmp, "config.json"), hf_llm.llm_config_to_hf(cfg, base, recorder.seen))
        _restore_assets(load, tmp)
    return os.path.abspath(output)


def qwen2_audio_mismatches(cfg: InserterModelConfig) -> list[str]:
    """What keeps ``cfg`` from being a Qwen2-Audio model (empty: it is one).

    Qwen2-Audio is a Whisper encoder over one 30 s window (10 ms hops, stride-2 convolution, as many
    positions as the window gives), average pooling by 2 and a linear projector, and a Qwen2 LLM.
    """
    out = []
    enc, llm = cfg.encoder, cfg.llm
    if cfg.adapter.kind != "pool-linear" or cfg.adapter.downsample != 2:
        out.append(f"adapter {cfg.adapter.kind} with downsample {cfg.adapter.downsample} (Qwen2-Audio: average "
                   "pooling by 2 + linear)")
    if (enc.conv_stride, enc.n_fft, enc.hop_length, enc.window_seconds) != (2, 400, 160, 30.0):
        out.append(f"encoder front end conv_stride={enc.conv_stride}, n_fft={enc.n_fft}, hop_length="
                   f"{enc.hop_length}, window_seconds={enc.window_seconds} (Whisper: 2, 400, 160, 30)")
    elif enc.max_source_positions != enc.positions_per_window:
        out.append(f"encoder max_source_positions={enc.max_source_positions} (a 30 s window has "
                   f"{enc.positions_per_window})")
    if not llm.add_qkv_bias:
        out.append("a language model without QKV bias (Qwen2-Audio's is Qwen2)")
    if llm.rope_scaling_factor is not None:
        out.append(f"RoPE scaling factor {llm.rope_scaling_factor} (Qwen2 has none)")
    return out


def encoder_input_note(cfg: InserterModelConfig) -> str | None:
    """How Qwen2-Audio's encoder input differs from the mode the model ran in (None: it does not).

    The weights are the same in every mode; Qwen2-Audio pads each clip to 30 s and masks the padded keys,
    which ``packed`` and ``window`` with the key padding mask reproduce exactly."""
    enc = cfg.encoder
    if enc.input_mode == "masked":
        return (f"{cfg.name} ran its encoder in masked mode, which zeroes the mel frames past a clip's end; "
                "Qwen2-Audio reads its log-mel floor there, so frames next to a clip's end may differ slightly")
    if enc.input_mode == "window" and not enc.window_key_padding_mask:
        return (f"{cfg.name} attended to the 30 s window's padding (Whisper); Qwen2-Audio masks it, so its "
                "frames differ")
    return None


def qwen2_audio_config(cfg: InserterModelConfig, base: dict | None, dtype: torch.dtype) -> dict:
    mismatches = qwen2_audio_mismatches(cfg)
    if mismatches:
        raise ConversionError(f"model {cfg.name!r} cannot be written as Qwen2-Audio: {'; '.join(mismatches)}; "
                              "export the language model alone with --llm-only")
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


def export_qwen2_audio(load: str, output: str, meta: ModelConfigFile, dtype: str, max_shard_bytes: int) -> str:
    cfg = meta.config
    base = meta.hf.get("qwen2_audio")
    qwen2_audio_config(cfg, base, torch.float32)  # refuse before reading anything
    recorder = _DtypeRecorder(None if dtype == "auto" else DTYPES[dtype])
    with layout.staged_directory(output) as tmp:
        with mcore_io.single_process_parallel():
            groups = mcore_checkpoint.read_groups(load, inserter_builder(cfg), _inserter_group)
            write_safetensors(tmp, recorder(_qwen2_audio_tensors(groups, cfg)), max_shard_bytes)
        write_json_atomic(os.path.join(tmp, "config.json"), qwen2_audio_config(cfg, base, recorder.seen))
        _restore_assets(load, tmp)
    note = encoder_input_note(cfg)  # about the model exported: said once it is there
    if note:
        print(f"note: {note}", file=sys.stderr)
    return os.path.abspath(output)


def _restore_assets(load: str, out_dir: str) -> None:
    root = os.path.abspath(load)
    for candidate in (root, os.path.dirname(root)):
        assets = os.path.join(candidate, layout.ASSETS)
        if os.path.isdir(assets):
            layout.copy_assets(assets, out_dir)
            return


def read_model_config(load: str, model_config: str | None = None) -> ModelConfigFile:
    """The model ``--load`` holds: ``--model-config FILE`` or the ``model_config.json`` the checkpoint
    carries (its iteration directory's, else its root's)."""
    if model_config:
        if not os.path.isfile(model_config):
            raise ConversionError(f"--model-config {model_config} is not a file")
        return config_file.read(model_config)
    found = checkpointing.model_config_path(load)
    if found is None:
        raise ConversionError(f"{load} has no {config_file.FILE_NAME}; pass --model-config FILE (the "
                              f"{config_file.FILE_NAME} written with the checkpoint or its conversion)")
    return config_file.read(found)


def export(load: str, output: str, llm_only: bool = False, dtype: str = "auto",
           max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES, model_config_path: str | None = None) -> str:
    """``--load`` checkpoint -> a Hugging Face directory at ``output``."""
    meta = read_model_config(load, model_config_path)
    if meta.model_type == "gpt" or llm_only:
        return export_llm(load, output, meta, dtype, max_shard_bytes)
    return export_qwen2_audio(load, output, meta, dtype, max_shard_bytes)
