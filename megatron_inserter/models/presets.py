"""Named model presets: ``InserterModelConfig.from_name(name)``.

  tiny                        CPU demo: Whisper-shaped encoder (2 layers, d 64, 80 mels) + 4-layer, 128-wide
                              Qwen2-shaped LLM; vocabulary from the demo tokenizer (``with_tokenizer``).
  qwen2.5-1.5b-whisper-small  mid-size runs: Whisper-small encoder + Qwen2.5-1.5B-shaped LLM.
  qwen2-audio-7b              Qwen2-Audio-7B: Whisper-large-v3 encoder (32 layers, d 1280, 20 heads, 128 mels),
                              average pooling 2 + linear projector, Qwen2-7B LLM (public config.json:
                              hidden 4096, 32 layers, 32 heads, 32 KV heads, FFN 11008, vocab 156032,
                              rope theta 10000, RMSNorm eps 1e-5, QKV bias, untied embeddings, 8192 positions;
                              audio token 151646). Packed input mode: Qwen2-Audio's frames at each clip's own
                              cost (``input_mode="window"`` pads every clip to 30 s, as Qwen2-Audio does).
"""

from __future__ import annotations

import copy
from collections.abc import Callable

from megatron_inserter.models.config import AdapterConfig, EncoderConfig, InserterModelConfig
from megatron_inserter.models.llm import LLMConfig


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


PRESETS: dict[str, Callable[[], InserterModelConfig]] = {
    "tiny": _tiny,
    "qwen2.5-1.5b-whisper-small": _qwen25_15b_whisper_small,
    "qwen2-audio-7b": _qwen2_audio_7b,
}


def register_preset(name: str, factory: Callable[[], InserterModelConfig]) -> None:
    if name in PRESETS:
        raise ValueError(f"model preset {name!r} is already registered")
    PRESETS[name] = factory


def get_preset(name: str) -> InserterModelConfig:
    """A named preset, or the ``model_config.json`` at a path (a converted checkpoint's shapes)."""
    from megatron_inserter.models.config_file import is_config_path, read_model_config

    if name not in PRESETS and is_config_path(name):
        return read_model_config(name)
    try:
        factory = PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown model preset {name!r}; known: {', '.join(sorted(PRESETS))}") from None
    return copy.deepcopy(factory())
