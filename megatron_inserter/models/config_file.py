"""``model_config.json``: which model a checkpoint holds, as a file. The one module that reads and writes it.

    {"model_type": "inserter", "name": ..., "encoder": {...}, "adapter": {...}, "llm": {...},
     "audio_placeholder_id": ..., "padded_vocab_size": N, "hf": {source Hugging Face configs}}
    {"model_type": "gpt", "llm": {...}, "padded_vocab_size": N, "hf": {"llm": {...}}}

Apart from ``model_type``, ``padded_vocab_size`` (the embedding rows saved) and ``hf`` (configs of the
Hugging Face models it was converted from, empty for a model trained from a preset) the keys are the
fields of ``InserterModelConfig`` (for ``gpt``, just ``llm``): the file is a preset in JSON form.
``llm.vocab_size`` is the vocabulary the model was built with, so a model trained with its own tokenizer
is fully described.

Every checkpoint carries one: ``inserter train`` writes it into each iteration directory and the
checkpoint root, ``inserter convert hf-to-mcore`` into the root. ``generate``, ``eval`` and ``convert
mcore-to-hf`` build the model from it; ``--model-preset PATH`` takes it (``presets.resolve``).
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field

from megatron_inserter.errors import DataError
from megatron_inserter.files import write_json_atomic
from megatron_inserter.models.config import AdapterConfig, EncoderConfig, InserterModelConfig, LLMConfig

FILE_NAME = "model_config.json"
MODEL_TYPES = ("inserter", "gpt")
EXTRA_KEYS = ("model_type", "padded_vocab_size", "hf")
# Notes set when a file is read (where it came from); never written back.
READ_NOTES = ("fixed_vocab", "model_type", "source")
_PARTS = {"encoder": EncoderConfig, "adapter": AdapterConfig, "llm": LLMConfig}
_MAX_BYTES = 16 * 1024**2


class ModelConfigError(DataError):
    """A missing, unreadable or inconsistent ``model_config.json`` (the message names the file)."""


@dataclass
class ModelConfigFile:
    """A parsed ``model_config.json``."""

    model_type: str  # "inserter" or "gpt"
    config: InserterModelConfig | LLMConfig  # LLMConfig for "gpt"
    padded_vocab_size: int | None = None
    hf: dict = field(default_factory=dict)
    path: str | None = None

    @property
    def llm(self) -> LLMConfig:
        return self.config if isinstance(self.config, LLMConfig) else self.config.llm


def to_dict(config: InserterModelConfig | LLMConfig, padded_vocab_size: int | None = None,
            hf: dict | None = None, model_type: str | None = None) -> dict:
    """The ``model_config.json`` mapping of a model config (``LLMConfig`` alone: ``gpt``)."""
    if isinstance(config, LLMConfig):
        body = {"llm": dataclasses.asdict(config)}
        model_type = model_type or "gpt"
    else:
        body = dataclasses.asdict(config)
        body["notes"] = {k: v for k, v in config.notes.items() if k not in READ_NOTES}
        model_type = model_type or "inserter"
        if model_type == "gpt":
            body = {"llm": body["llm"]}
    if model_type not in MODEL_TYPES:
        raise ValueError(f"model_type must be one of {MODEL_TYPES}, got {model_type!r}")
    llm = config if isinstance(config, LLMConfig) else config.llm
    padded = llm.padded_vocab_size(1) if padded_vocab_size is None else int(padded_vocab_size)
    return {"model_type": model_type, **body, "padded_vocab_size": padded, "hf": hf or {}}


def _build(cls, data, where: str):
    if not isinstance(data, dict):
        raise ModelConfigError(f"{where} must be a mapping")
    unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
        raise ModelConfigError(f"{where}: unknown fields {unknown} for {cls.__name__}")
    try:
        return cls(**data)
    except (TypeError, ValueError) as e:
        raise ModelConfigError(f"{where}: {e}") from None


def from_dict(data, where: str = FILE_NAME, path: str | None = None) -> ModelConfigFile:
    """A ``model_config.json`` mapping, checked field by field (errors name ``where``)."""
    if not isinstance(data, dict):
        raise ModelConfigError(f"{where} must hold a JSON object")
    kind = data.get("model_type")
    if kind not in MODEL_TYPES:
        raise ModelConfigError(f"{where}: model_type must be 'inserter' or 'gpt', got {kind!r}")
    hf = data.get("hf") or {}
    if not isinstance(hf, dict):
        raise ModelConfigError(f"{where}: hf must be a mapping of source configs")
    if kind == "gpt":
        if "llm" not in data:
            raise ModelConfigError(f"{where}: llm is missing")
        config = _build(LLMConfig, data["llm"], f"{where}: llm")
    else:
        fields = {k: v for k, v in data.items() if k not in EXTRA_KEYS}
        for part, cls in _PARTS.items():
            if part not in fields:
                raise ModelConfigError(f"{where}: {part} is missing")
            fields[part] = _build(cls, fields[part], f"{where}: {part}")
        config = _build(InserterModelConfig, fields, where)
    out = ModelConfigFile(kind, config, data.get("padded_vocab_size"), hf, path)
    padded = out.padded_vocab_size
    if padded is not None and (isinstance(padded, bool) or not isinstance(padded, int) or padded < out.llm.vocab_size):
        raise ModelConfigError(f"{where}: padded_vocab_size {padded!r} must be an integer >= llm.vocab_size "
                               f"{out.llm.vocab_size}")
    return out


def find(path: str) -> str | None:
    """The ``model_config.json`` of ``path``: the file itself, in the directory, or in its parent (a
    checkpoint root above an ``iter_XXXXXXX`` directory). None when there is none."""
    if os.path.isfile(path):
        return path
    if not os.path.isdir(path):
        return None
    for directory in (path, os.path.dirname(os.path.abspath(path))):
        candidate = os.path.join(directory, FILE_NAME)
        if os.path.isfile(candidate):
            return candidate
    return None


def read(path: str, hint: str = "give a checkpoint directory that holds one, or the file") -> ModelConfigFile:
    """The parsed ``model_config.json`` at or above ``path`` (see ``find``); ``hint`` ends the
    message when there is none."""
    file = find(path)
    if file is None:
        raise ModelConfigError(f"{path} has no {FILE_NAME} ({hint})")
    size = os.path.getsize(file)
    if size > _MAX_BYTES:
        raise ModelConfigError(f"{file} is {size} bytes: too large for a {FILE_NAME}")
    try:
        with open(file, encoding="utf-8") as f:
            data = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise ModelConfigError(f"{file} is not valid JSON: {e}") from None
    return from_dict(data, file, file)


def write(directory: str, data: dict) -> str:
    """Write ``data`` (a ``to_dict`` mapping) as ``directory/model_config.json``, atomically."""
    from_dict(data, f"the {FILE_NAME} to write into {directory}")  # never write a file nobody can read
    path = os.path.join(directory, FILE_NAME)
    write_json_atomic(path, data)
    return path
