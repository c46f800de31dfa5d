"""Named model presets and ``resolve(name_or_path)``, the one way to turn ``--model-preset`` into a config.

    cfg = resolve("tiny")                      # a named preset (a fresh copy)
    cfg = resolve("runs/demo/train")           # a checkpoint's model_config.json (vocabulary kept)

  tiny                        CPU demo: Whisper-shaped encoder (2 layers, d 64, 80 mels) + 4-layer, 128-wide
                              Qwen2-shaped LLM; vocabulary from the demo tokenizer (``with_tokenizer``).
  qwen2.5-1.5b-whisper-small  mid-size runs: Whisper-small encoder + Qwen2.5-1.5B-shaped LLM.
  qwen2-audio-7b              Qwen2-Audio-7B: Whisper-large-v3 encoder (32 layers, d 1280, 20 heads, 128 mels),
                              average pooling 2 + linear projector, Qwen2-7B LLM (public config.json:
                              hidden 4096, 32 layers, 32 heads, 32 KV heads, FFN 11008, vocab 156032,
                              rope theta 10000, RMSNorm eps 1e-5, QKV bias, untied embeddings, 8192 positions;
                              audio token 151646). Packed input mode: Qwen2-Audio's frames at each clip's own
                              cost (``input_mode="window"`` pads every clip to 30 s, as Qwen2-Audio does).
  desta2-llama3-8b-whisper-small
                              DeSTA2: Whisper-small encoder (12 layers, d 768, 12 heads, 80 mels), a Q-Former of 2
                              blocks whose 64 queries per tapped layer read encoder layers 2, 5, 8 and 11 (64 frames
                              per 30 s window), Llama-3-8B LLM (hidden 4096, 32 layers, 32 heads, 8 KV heads, FFN
                              14336, vocab 128256, rope theta 500000, RMSNorm eps 1e-5, no QKV bias, untied, 8192
                              positions). Window input mode without key masking: the queries read the whole padded
                              30 s window, as DeSTA2 runs Whisper (``--encoder-input-mode packed`` reads each clip's
                              own frames, at its own cost). Trained adapter-only: --freeze-encoder --freeze-llm.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from collections.abc import Callable

from megatron_inserter.errors import UsageError
from megatron_inserter.models import config_file
from megatron_inserter.models.config import AdapterConfig, EncoderConfig, InserterModelConfig, LLMConfig


def _tiny() -> InserterModelConfig:
    return InserterModelConfig(
        name="tiny",
        encoder=EncoderConfig(num_layers=2, hidden_size=64, num_attention_heads=4, ffn_hidden_size=256,
                              num_mel_bins=80, input_mode="packed"),
        adapter=AdapterConfig(kind="pool-linear", downsample=2),
        llm=LLMConfig(num_layers=4, hidden_size=128, ffn_hidden_size=384, num_attention_heads=4,
                      num_query_groups=2, vocab_size=4000, max_position_embeddings=4096,
                      rotary_base=10_000.0, add_qkv_bias=True, tie_embeddings=True),
        audio_placeholder_id=3,  # replaced by with_tokenizer(...)
    )


def _qwen25_15b_whisper_small() -> InserterModelConfig:
    return InserterModelConfig(
        name="qwen2.5-1.5b-whisper-small",
        encoder=EncoderConfig(num_layers=12, hidden_size=768, num_attention_heads=12, ffn_hidden_size=3072,
                              num_mel_bins=80, input_mode="packed"),
        adapter=AdapterConfig(kind="pool-linear", downsample=2),
        llm=LLMConfig(num_layers=28, hidden_size=1536, ffn_hidden_size=8960, num_attention_heads=12,
                      num_query_groups=2, vocab_size=151936, max_position_embeddings=32768,
                      rotary_base=1_000_000.0, add_qkv_bias=True, tie_embeddings=True, norm_epsilon=1e-6),
        audio_placeholder_id=151646,
    )


def _qwen2_audio_7b() -> InserterModelConfig:
    return InserterModelConfig(
        name="qwen2-audio-7b",
        encoder=EncoderConfig(num_layers=32, hidden_size=1280, num_attention_heads=20, ffn_hidden_size=5120,
                              num_mel_bins=128, max_source_positions=1500, input_mode="packed",
                              window_key_padding_mask=True),
        adapter=AdapterConfig(kind="pool-linear", downsample=2),
        llm=LLMConfig(num_layers=32, hidden_size=4096, ffn_hidden_size=11008, num_attention_heads=32,
                      num_query_groups=32, vocab_size=156032, max_position_embeddings=8192,
                      rotary_base=10_000.0, add_qkv_bias=True, tie_embeddings=False, norm_epsilon=1e-5),
        audio_placeholder_id=151646,
    )


def _desta2_llama3_8b_whisper_small() -> InserterModelConfig:
    return InserterModelConfig(
        name="desta2-llama3-8b-whisper-small",
        encoder=EncoderConfig(num_layers=12, hidden_size=768, num_attention_heads=12, ffn_hidden_size=3072,
                              num_mel_bins=80, input_mode="window", window_key_padding_mask=False),
        adapter=AdapterConfig(kind="qformer", queries=64, encoder_layers=[2, 5, 8, 11], qformer_layers=2),
        llm=LLMConfig(num_layers=32, hidden_size=4096, ffn_hidden_size=14336, num_attention_heads=32,
                      num_query_groups=8, vocab_size=128256, max_position_embeddings=8192,
                      rotary_base=500_000.0, add_qkv_bias=False, tie_embeddings=False, norm_epsilon=1e-5),
        audio_placeholder_id=128092,  # <|reserved_special_token_87|>, DeSTA2's; with_tokenizer sets the run's
    )


PRESETS: dict[str, Callable[[], InserterModelConfig]] = {
    "tiny": _tiny,
    "qwen2.5-1.5b-whisper-small": _qwen25_15b_whisper_small,
    "qwen2-audio-7b": _qwen2_audio_7b,
    "desta2-llama3-8b-whisper-small": _desta2_llama3_8b_whisper_small,
}


def register_preset(name: str, factory: Callable[[], InserterModelConfig]) -> None:
    if name in PRESETS:
        raise ValueError(f"model preset {name!r} is already registered")
    PRESETS[name] = factory


def is_config_path(name: str) -> bool:
    """Whether ``--model-preset NAME`` names a file or directory rather than a preset."""
    return name not in PRESETS and (name.endswith(".json") or os.path.sep in name or os.path.isdir(name))


def resolve(name_or_path: str) -> InserterModelConfig:
    """A named preset, or the model a ``model_config.json`` describes (a file, or a checkpoint directory).

    A file's vocabulary size is kept (``notes["fixed_vocab"]``: it is the checkpoint's embedding). A
    ``gpt`` file becomes an InserterModelConfig around its LLM; its encoder and adapter are the ``tiny``
    preset's, which a ``--model-type gpt`` run never builds.
    """
    if is_config_path(name_or_path):
        return from_file(config_file.read(name_or_path))
    try:
        factory = PRESETS[name_or_path]
    except KeyError:
        raise UsageError(f"unknown model preset {name_or_path!r}; known: {', '.join(sorted(PRESETS))}, or the "
                         f"path of a checkpoint or {config_file.FILE_NAME}") from None
    return copy.deepcopy(factory())


def from_file(parsed: config_file.ModelConfigFile) -> InserterModelConfig:
    """The InserterModelConfig of a parsed ``model_config.json`` (see ``resolve``)."""
    cfg = parsed.config
    if parsed.model_type == "gpt":
        name = os.path.basename(os.path.dirname(os.path.abspath(parsed.path))) if parsed.path else "gpt"
        cfg = dataclasses.replace(_tiny(), name=name or "gpt", llm=cfg)
    cfg.notes = {**cfg.notes, "fixed_vocab": True, "model_type": parsed.model_type,
                 "source": parsed.path or config_file.FILE_NAME}
    return cfg
