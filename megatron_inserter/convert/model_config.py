"""``model_config.json``: the model a converted checkpoint holds, so nobody retypes its shapes.

    {"model_type": "inserter", "name": ..., "encoder": {...}, "adapter": {...}, "llm": {...},
     "audio_placeholder_id": ..., ..., "padded_vocab_size": N, "hf": {source Hugging Face configs}}
    {"model_type": "gpt", "llm": {...}, "padded_vocab_size": N, "hf": {"llm": {...}}}

The format is defined (and read) in ``models.config_file``; ``--model-preset DIR`` takes it.
"""

from __future__ import annotations

import dataclasses

from megatron_inserter.convert.errors import ConversionError
from megatron_inserter.models.config import InserterModelConfig
from megatron_inserter.models.config_file import config_from_dict
from megatron_inserter.models.llm import LLMConfig


def inserter_to_dict(cfg: InserterModelConfig, padded_vocab_size: int, hf: dict) -> dict:
    return {"model_type": "inserter", **dataclasses.asdict(cfg), "padded_vocab_size": padded_vocab_size, "hf": hf}


def gpt_to_dict(cfg: LLMConfig, padded_vocab_size: int, hf: dict) -> dict:
    return {"model_type": "gpt", "llm": dataclasses.asdict(cfg), "padded_vocab_size": padded_vocab_size, "hf": hf}


def from_dict(data: dict, where: str = "model_config.json"):
    """(model_type, InserterModelConfig or LLMConfig) from a ``model_config.json`` mapping."""
    try:
        return config_from_dict(data, where)
    except ValueError as e:
        raise ConversionError(str(e)) from None
