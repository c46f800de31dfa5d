"""Model FLOPs (matrix products only; 2 FLOPs per multiply-add) for throughput, MFU and ``inserter plan``.

Training costs three forward passes (forward, input gradients, weight gradients) for every part that
trains; a frozen encoder costs one forward pass, a frozen LLM two while the speech side trains (input
gradients still flow through it).
The log-mel STFT, norms, activations and the softmax are left out (well under 1% at these sizes).

What the encoder costs depends on its input mode: ``window`` pads every clip to the 30 s window (Whisper /
Qwen2-Audio), so a 3.5 s clip costs as much as a 30 s one; ``masked`` and ``packed`` encode the clip's own
frames only. These are model FLOPs: a step's encoder FLOPs are counted once however many context-parallel
ranks repeat the encoder on the same clips.

Pure arithmetic on the config dataclasses: no torch import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from megatron_inserter.data.frames import FrameSpec, num_audio_frames, split_windows

if TYPE_CHECKING:
    from megatron_inserter.models.config import InserterModelConfig, LLMConfig

# Input modes that encode only a clip's own frames (the rest pad every clip to the window).
REAL_FRAME_MODES = ("masked", "packed")


def llm_forward_flops(llm: LLMConfig, seq_length: int, num_sequences: int, vocab_size: int | None = None) -> float:
    """Forward FLOPs of the decoder on ``num_sequences`` causal sequences of ``seq_length`` tokens."""
    h, ffn = llm.hidden_size, llm.ffn_hidden_size
    head_dim = llm.kv_channels or h // llm.num_attention_heads
    q_width = head_dim * llm.num_attention_heads
    kv_width = head_dim * llm.num_query_groups
    per_token_layer = 2 * h * (q_width + 2 * kv_width) + 2 * q_width * h + 2 * 3 * h * ffn
    # Causal attention: on average half of the keys; scores and weighted values, 2 FLOPs each.
    per_token_attention = 2 * 2 * q_width * seq_length / 2
    logits = 2 * h * (vocab_size or llm.vocab_size)
    tokens = seq_length * num_sequences
    return float(tokens * (llm.num_layers * (per_token_layer + per_token_attention) + logits))


def encoder_window_forward_flops(cfg: InserterModelConfig, num_samples: int) -> float:
    """Forward FLOPs of encoder + adapter for one encoder window of ``num_samples`` (at most 30 s)."""
    enc = cfg.encoder
    d, ffn = enc.hidden_size, enc.ffn_hidden_size
    spec: FrameSpec = cfg.frame_spec()
    real_frames_only = enc.input_mode in REAL_FRAME_MODES
    mel = (num_samples if real_frames_only else spec.max_window_samples) // enc.hop_length
    positions = (mel - 1) // enc.conv_stride + 1 if mel else 0
    conv = 2 * 3 * enc.num_mel_bins * d * mel + 2 * 3 * d * d * positions
    layer = positions * (2 * 4 * d * d + 2 * 2 * d * ffn + 2 * 2 * d * positions)  # bidirectional
    frames = num_audio_frames(num_samples, spec)
    k = cfg.adapter.downsample
    if cfg.adapter.kind == "pool-linear":
        adapter = 2 * d * cfg.llm.hidden_size * frames
    else:
        hidden = cfg.adapter.ffn_hidden_size or cfg.llm.hidden_size
        adapter = 2 * (k * d * hidden + hidden * cfg.llm.hidden_size) * frames
    return float(conv + enc.num_layers * layer + adapter)


def encoder_forward_flops(cfg: InserterModelConfig, clip_samples: list[int]) -> float:
    """Forward FLOPs of encoder + adapter for clips of the given lengths (clips longer than the window are
    encoded window by window, as the data pipeline cuts them)."""
    spec = cfg.frame_spec()
    return float(sum(encoder_window_forward_flops(cfg, w) for n in clip_samples for w in split_windows(n, spec)))


def training_factors(cfg: InserterModelConfig) -> dict[str, int]:
    """Forward passes a training step costs per part (``{"llm", "encoder"}``), freeze switches honoured."""
    speech_trains = not (cfg.freeze_encoder and cfg.freeze_adapter)
    # A frozen LLM still passes input gradients back to a training adapter/encoder.
    llm_factor = 3 if not cfg.freeze_llm else (2 if speech_trains else 1)
    return {"llm": llm_factor, "encoder": 1 if cfg.freeze_encoder else 3}


def training_flops(cfg: InserterModelConfig, seq_length: int, num_sequences: int, clip_samples: list[int],
                   vocab_size: int | None = None) -> dict[str, float]:
    """{"llm", "encoder"}: FLOPs of one training step over that batch, freeze switches honoured."""
    factors = training_factors(cfg)
    llm = llm_forward_flops(cfg.llm, seq_length, num_sequences, vocab_size) * factors["llm"]
    enc = encoder_forward_flops(cfg, clip_samples) * factors["encoder"]
    return {"llm": llm, "encoder": enc}
