"""``model_config.json``: the model a converted checkpoint holds, so nobody retypes its shapes.

    {"model_type": "inserter", "name": ..., "encoder": {...}, "adapter": {...}, "llm": {...},
     "audio_placeholder_id": ..., ..., "padded_vocab_size": N, "hf": {source Hugging Face configs}}
    {"model_type": "gpt", "llm": {...}, "padded_vocab_size": N, "hf": {"llm": {...}}}

Apart from ``model_type``, ``padded_vocab_size`` and ``hf`` the keys are the fields of
``InserterModelConfig`` (or, for ``gpt``, just ``llm``), so the file is a preset in JSON form.
"""

from __future__ import annotations

import dataclasses

from megatron_inserter.convert.errors import ConversionError
from megatron_inserter.models.config import AdapterConfig, EncoderConfig, InserterModelConfig
from megatron_inserter.models.llm import LLMConfig

EXTRA_KEYS = ("model_type", "padded_vocab_size", "hf")
_PARTS = {"encoder": EncoderConfig, "adapter": AdapterConfig, "llm": LLMConfig}


def _build(cls, data: dict, where: str):
    if not isinstance(data, dict):
        raise ConversionError(f"{where} must be a mapping")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConversionError(f"{where}: unknown fields {unknown} for {cls.__name__}")
    try:
        return cls(**data)
    except (TypeError, ValueError) as e:
        raise ConversionError(f"{where}: {e}") from None


def inserter_to_dict(cfg: InserterModelConfig, padded_vocab_size: int, hf: dict) -> dict:
    return {"model_type": "inserter", **dataclasses.asdict(cfg), "padded_vocab_size": padded_vocab_size, "hf": hf}


def gpt_to_dict(cfg: LLMConfig, padded_vocab_size: int, hf: dict) -> dict:
    return {"model_type": "gpt", "llm": dataclasses.asdict(cfg), "padded_vocab_size": padded_vocab_size, "hf": hf}


def from_dict(data: dict, where: str = "model_config.json"):
    """(model_type, InserterModelConfig or LLMConfig) from a ``model_config.json`` mapping."""
    kind = data.get("model_type")
    if kind == "gpt":
        return kind, _build(LLMConfig, data.get("llm"), f"{where}: llm")
    if kind != "inserter":
        raise ConversionError(f"{where}: model_type must be 'inserter' or 'gpt', got {kind!r}")
    fields = {k: v for k, v in data.items() if k not in EXTRA_KEYS}
    for part, cls in _PARTS.items():
        if part not in fields:
            raise ConversionError(f"{where}: {part} is missing")
        fields[part] = _build(cls, fields[part], f"{where}: {part}")
    return kind, _build(InserterModelConfig, fields, where)
