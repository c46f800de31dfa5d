"""``model_config.json``: a model's shapes as a file, written next to converted checkpoints.

    {"model_type": "inserter", "name": ..., "encoder": {...}, "adapter": {...}, "llm": {...},
     "audio_placeholder_id": ..., "padded_vocab_size": N, "hf": {source configs}}
    {"model_type": "gpt", "llm": {...}, "padded_vocab_size": N, "hf": {...}}

Apart from ``model_type``, ``padded_vocab_size`` and ``hf`` the keys are the fields of
``InserterModelConfig`` (for ``gpt``, just ``llm``), so the file is a preset in JSON form and
``--model-preset PATH`` accepts it (a file, or a checkpoint directory holding one). The vocabulary size in
the file matches the checkpoint's embedding rows and is kept as it is (``fixed_vocab``).
"""

from __future__ import annotations

import dataclasses
import json
import os

from megatron_inserter.data.frames import FrameSpec
from megatron_inserter.models.config import AdapterConfig, EncoderConfig, InserterModelConfig
from megatron_inserter.models.llm import LLMConfig

FILE_NAME = "model_config.json"
EXTRA_KEYS = ("model_type", "padded_vocab_size", "hf")
_PARTS = {"encoder": EncoderConfig, "adapter": AdapterConfig, "llm": LLMConfig}


def _build(cls, data, where: str):
    if not isinstance(data, dict):
        raise ValueError(f"{where} must be a mapping")
    unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
        raise ValueError(f"{where}: unknown fields {unknown} for {cls.__name__}")
    try:
        return cls(**data)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: {e}") from None


def config_from_dict(data: dict, where: str = FILE_NAME):
    """(model_type, InserterModelConfig or LLMConfig) from a ``model_config.json`` mapping."""
    kind = data.get("model_type")
    if kind == "gpt":
        return kind, _build(LLMConfig, data.get("llm"), f"{where}: llm")
    if kind != "inserter":
        raise ValueError(f"{where}: model_type must be 'inserter' or 'gpt', got {kind!r}")
    fields = {k: v for k, v in data.items() if k not in EXTRA_KEYS}
    for part, cls in _PARTS.items():
        if part not in fields:
            raise ValueError(f"{where}: {part} is missing")
        fields[part] = _build(cls, fields[part], f"{where}: {part}")
    return kind, _build(InserterModelConfig, fields, where)


def is_config_path(name: str) -> bool:
    return name.endswith(".json") or os.path.sep in name or os.path.isdir(name)


def read_model_config(path: str) -> InserterModelConfig:
    """An InserterModelConfig from a file or a directory holding ``model_config.json``.

    A ``gpt`` file becomes an InserterModelConfig around its LLM (encoder/adapter of the ``tiny`` preset
    are placeholders that a ``--model-type gpt`` run never builds).
    """
    file = os.path.join(path, FILE_NAME) if os.path.isdir(path) else path
    if not os.path.isfile(file):
        raise ValueError(f"{path}: no {FILE_NAME} there (give a converted checkpoint directory or the file)")
    with open(file, encoding="utf-8") as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{file} is not valid JSON: {e}") from None
    kind, cfg = config_from_dict(data, file)
    if kind == "gpt":
        from megatron_inserter.models.presets import get_preset

        cfg = dataclasses.replace(get_preset("tiny"), name=os.path.basename(os.path.dirname(file)) or "gpt",
                                  llm=cfg)
    cfg.notes = {**cfg.notes, "fixed_vocab": True, "model_type": kind, "source": file}
    assert cfg.frame_spec() == FrameSpec(hop_length=cfg.encoder.hop_length, conv_stride=cfg.encoder.conv_stride,
                                         adapter_downsample=cfg.adapter.downsample,
                                         max_window_seconds=cfg.encoder.window_seconds)
    return cfg
