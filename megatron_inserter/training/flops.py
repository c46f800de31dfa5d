"""Model FLOPs of a training step, for TFLOP/s per device and MFU.

Counting convention (as PaLM / Megatron-LM): matrix multiplications only, 2 FLOPs per multiply-add,
attention scores and values over the full ``s x s`` square (no causal discount), backward = 2x forward.
A frozen component costs only its forward, plus one backward pass for activation gradients when a
trainable component sits before it (e.g. a frozen LLM under a trainable adapter).
"""

from __future__ import annotations

from dataclasses import dataclass

# Dense bf16 peak TFLOP/s per device, by substring of torch.cuda.get_device_name().
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "H800": 989.0, "B200": 2250.0, "GB200": 2500.0,
                    "A100": 312.0, "A800": 312.0, "L40S": 362.0, "A10": 125.0, "L4": 121.0}


def peak_tflops_per_device(override: float | None = None) -> float | None:
    if override:
        return override
    import torch

    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    for key in sorted(PEAK_BF16_TFLOPS, key=len, reverse=True):
        if key in name:
            return PEAK_BF16_TFLOPS[key]
    return None


@dataclass(frozen=True)
class TransformerShape:
    num_layers: int
    hidden_size: int
    ffn_hidden_size: int
    num_attention_heads: int
    num_query_groups: int
    kv_channels: int
    gated_mlp: bool = True

    @classmethod
    def of_llm(cls, cfg) -> "TransformerShape":
        """From a ``models.llm.LLMConfig``."""
        kv = cfg.kv_channels or cfg.hidden_size // cfg.num_attention_heads
        return cls(cfg.num_layers, cfg.hidden_size, cfg.ffn_hidden_size, cfg.num_attention_heads,
                   cfg.num_query_groups, kv, gated_mlp=True)

    def forward_flops_per_token(self, seq_length: int) -> float:
        h, q = self.hidden_size, self.num_attention_heads * self.kv_channels
        kv = self.num_query_groups * self.kv_channels
        qkv = 2 * h * (q + 2 * kv)
        attention = 2 * 2 * seq_length * q
        proj = 2 * q * h
        mlp = 2 * (3 if self.gated_mlp else 2) * h * self.ffn_hidden_size
        return self.num_layers * (qkv + attention + proj + mlp)


def llm_forward_flops(shape: TransformerShape, vocab_size: int, seq_length: int, num_sequences: int) -> float:
    per_token = shape.forward_flops_per_token(seq_length) + 2 * shape.hidden_size * vocab_size
    return float(per_token) * seq_length * num_sequences


@dataclass(frozen=True)
class EncoderShape:
    """A Whisper-style encoder: two 1-D convolutions over log-mel frames, then a transformer."""

    transformer: TransformerShape
    num_mel_bins: int
    hop_length: int = 160
    conv_stride: int = 2
    adapter_in: int = 0  # adapter input width (encoder width x frames stacked) ...
    adapter_out: int = 0  # ... and output width (the LLM width)
    adapter_downsample: int = 2

    def forward_flops(self, num_samples: int) -> float:
        mel = num_samples // self.hop_length
        if mel == 0:
            return 0.0
        t = (mel - 1) // self.conv_stride + 1
        d = self.transformer.hidden_size
        conv = 2 * 3 * self.num_mel_bins * d * mel + 2 * 3 * d * d * t
        layers = self.transformer.forward_flops_per_token(t) * t
        adapter = 2 * self.adapter_in * self.adapter_out * (t // max(self.adapter_downsample, 1))
        return float(conv + layers + adapter)


def pass_factor(trainable: bool, upstream_trainable: bool) -> int:
    """Forward (1) + activation-gradient backward (1, if anything before or inside trains) + weight
    gradients (1, if it trains)."""
    return 1 + int(trainable or upstream_trainable) + int(trainable)


def step_flops(llm: TransformerShape, vocab_size: int, seq_length: int, num_sequences: int,
               clip_lengths: list[int] | tuple = (), encoder: EncoderShape | None = None,
               train_llm: bool = True, train_encoder: bool = True, train_adapter: bool = True) -> float:
    """Model FLOPs of one optimizer step over ``num_sequences`` samples and their speech clips."""
    speech_trainable = encoder is not None and (train_encoder or train_adapter)
    total = llm_forward_flops(llm, vocab_size, seq_length, num_sequences) * pass_factor(train_llm,
                                                                                      speech_trainable)
    if encoder is not None and len(clip_lengths):
        enc_only = EncoderShape(encoder.transformer, encoder.num_mel_bins, encoder.hop_length,
                                encoder.conv_stride, 0, 0, encoder.adapter_downsample)
        enc = sum(enc_only.forward_flops(n) for n in clip_lengths)
        adapter = sum(encoder.forward_flops(n) for n in clip_lengths) - enc
        total += enc * pass_factor(train_encoder, False) + adapter * pass_factor(train_adapter, train_encoder)
    return total
