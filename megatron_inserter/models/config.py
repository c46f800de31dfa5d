"""Configuration of the speech-text model: encoder, adapter, LLM, and how they are tied together.

Pure data (imports nothing above ``data/frames.py``: no torch, no megatron-core), so the data pipeline and
every ``--help`` can use it:

    cfg = presets.resolve("tiny").with_tokenizer(tokenizer)
    spec = cfg.frame_spec()          # placeholders per clip: frames.num_audio_frames(n, spec)

``presets.py`` names configurations; ``config_file.py`` reads and writes them as ``model_config.json``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from megatron_inserter.data.frames import SAMPLE_RATE, FrameSpec


@dataclass
class LLMConfig:
    """The GPTModel language model in Qwen2 / Llama shapes (built by ``llm.py``)."""

    num_layers: int
    hidden_size: int
    ffn_hidden_size: int
    num_attention_heads: int
    num_query_groups: int
    vocab_size: int
    max_position_embeddings: int = 32768
    rotary_base: float = 1_000_000.0
    add_qkv_bias: bool = True  # Qwen2: True; Llama: False
    tie_embeddings: bool = False
    norm_epsilon: float = 1e-6
    kv_channels: int | None = None
    make_vocab_size_divisible_by: int = 128
    # Llama 3.1+ "llama3" RoPE scaling (factor; megatron-core's low/high frequency factors 1 and 4 and
    # original context 8192 are Llama 3.1's). None = no scaling (Qwen2, Llama 3.0).
    rope_scaling_factor: float | None = None
    extra: dict = field(default_factory=dict)  # passed through to TransformerConfig

    def padded_vocab_size(self, tensor_model_parallel_size: int) -> int:
        return pad_vocab_size(self.vocab_size, self.make_vocab_size_divisible_by, tensor_model_parallel_size)


def pad_vocab_size(vocab_size: int, divisible_by: int, tensor_model_parallel_size: int) -> int:
    """Pad the vocabulary so every tensor-parallel shard is equal.

    Unlike Megatron-LM's ``divisible_by x TP`` the multiple is ``lcm(divisible_by, TP)``: with the usual
    128 and TP in 1..8 the padded size does not depend on TP, so a checkpoint's output layer keeps its
    shape (and its logits) when it is loaded at another tensor-parallel size.
    """
    multiple = math.lcm(divisible_by, tensor_model_parallel_size)
    return ((vocab_size + multiple - 1) // multiple) * multiple


INPUT_MODES = ("packed", "masked", "window")
ADAPTER_KINDS = ("pool-linear", "stack-mlp", "qformer")


@dataclass
class EncoderConfig:
    """Whisper encoder shapes and input handling (see ``encoder.py`` for the two input modes)."""

    num_layers: int
    hidden_size: int  # Whisper's d_model
    num_attention_heads: int
    ffn_hidden_size: int
    num_mel_bins: int = 128
    max_source_positions: int = 1500
    layernorm_epsilon: float = 1e-5
    conv_stride: int = 2
    n_fft: int = 400
    hop_length: int = 160
    window_seconds: float = 30.0
    input_mode: str = "masked"
    window_key_padding_mask: bool = True  # window mode: Qwen2-Audio (True) or plain Whisper (False)

    def __post_init__(self):
        if self.input_mode not in INPUT_MODES:
            raise ValueError(f"encoder input_mode must be one of {INPUT_MODES}, got {self.input_mode!r}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"encoder hidden_size {self.hidden_size} is not divisible by "
                             f"num_attention_heads {self.num_attention_heads}")
        if self.num_mel_bins not in (80, 128):
            raise ValueError(f"num_mel_bins must be 80 (Whisper <= v2) or 128 (large-v3), got {self.num_mel_bins}")
        if self.positions_per_window > self.max_source_positions:
            raise ValueError(f"a {self.window_seconds} s window gives {self.positions_per_window} encoder "
                             f"positions but max_source_positions is {self.max_source_positions}")

    @property
    def positions_per_window(self) -> int:
        mel = round(self.window_seconds * SAMPLE_RATE) // self.hop_length
        return (mel - 1) // self.conv_stride + 1


def default_encoder_layers(num_encoder_layers: int) -> list[int]:
    """DeSTA2's Q-Former taps: the outputs after each quarter of the encoder but the last layer (whisper-small's
    12 layers: 2, 5, 8, 11; whisper-medium: 5, 11, 17, 23; large-v3: 7, 15, 23, 31)."""
    return sorted({max(0, num_encoder_layers * k // 4 - 1) for k in range(1, 5)})


@dataclass
class AdapterConfig:
    """``pool-linear`` (Qwen2-Audio), ``stack-mlp``, or ``qformer`` (DeSTA2 / SALMONN, see ``qformer.py``).

    ``downsample`` is FrameSpec.adapter_downsample (pool-linear, stack-mlp); ``queries`` is
    FrameSpec.queries_per_window (qformer: its output frames per encoder window, whatever the clip's length).
    """

    kind: str = "pool-linear"
    downsample: int = 2
    ffn_hidden_size: int | None = None  # stack-mlp: default the LLM width; qformer: default 4 x encoder width
    # qformer only. encoder_layers: the hidden states after that many encoder layers, as indices of Hugging
    # Face's ``hidden_states`` (0: the transformer's input, the encoder's num_layers: the final LayerNorm's
    # output); empty: ``default_encoder_layers``.
    queries: int = 64
    encoder_layers: list[int] = field(default_factory=list)
    qformer_layers: int = 2
    qformer_heads: int | None = None  # default: the encoder's

    def __post_init__(self):
        if self.kind not in ADAPTER_KINDS:
            raise ValueError(f"adapter kind must be one of {ADAPTER_KINDS}, got {self.kind!r}")
        if self.downsample < 1:
            raise ValueError(f"adapter downsample must be >= 1, got {self.downsample}")
        self.encoder_layers = list(self.encoder_layers)
        if self.kind == "qformer":
            for name in ("queries", "qformer_layers"):
                if getattr(self, name) < 1:
                    raise ValueError(f"adapter {name} must be >= 1, got {getattr(self, name)}")
            if any(not isinstance(i, int) or i < 0 for i in self.encoder_layers) or \
                    len(set(self.encoder_layers)) != len(self.encoder_layers):
                raise ValueError(f"adapter encoder_layers must be distinct layer counts >= 0, got "
                                 f"{self.encoder_layers}")

    def tapped_layers(self, num_encoder_layers: int) -> list[int]:
        """The encoder layers a Q-Former reads (``encoder_layers`` or the default), checked against the depth."""
        layers = self.encoder_layers or default_encoder_layers(num_encoder_layers)
        if max(layers) > num_encoder_layers:
            raise ValueError(f"adapter encoder_layers {layers} reach past the encoder's {num_encoder_layers} "
                             "layers")
        return layers

    @property
    def pools_before_encoder_norm(self) -> bool:
        return self.kind == "pool-linear"


@dataclass
class InserterModelConfig:
    name: str
    encoder: EncoderConfig
    adapter: AdapterConfig
    llm: LLMConfig
    audio_placeholder_id: int = 151646  # Qwen2-Audio's <|AUDIO|>
    freeze_encoder: bool = False
    freeze_adapter: bool = False
    freeze_llm: bool = False
    notes: dict = field(default_factory=dict)

    def frame_spec(self) -> FrameSpec:
        """The FrameSpec this model's encoder + adapter realise (placeholders per clip)."""
        return FrameSpec(
            sample_rate=SAMPLE_RATE,
            hop_length=self.encoder.hop_length,
            conv_stride=self.encoder.conv_stride,
            adapter_downsample=self.adapter.downsample,
            max_window_seconds=self.encoder.window_seconds,
            queries_per_window=self.adapter.queries if self.adapter.kind == "qformer" else None,
        )

    def replace(self, *, vocab_size: int | None = None, audio_placeholder_id: int | None = None,
                **fields) -> InserterModelConfig:
        """A copy with top-level fields replaced; ``vocab_size`` goes to the LLM."""
        new = dataclasses.replace(self, **fields)
        if vocab_size is not None:
            new.llm = dataclasses.replace(new.llm, vocab_size=int(vocab_size))
        if audio_placeholder_id is not None:
            new.audio_placeholder_id = int(audio_placeholder_id)
        return new

    def with_tokenizer(self, tokenizer) -> InserterModelConfig:
        """Vocabulary size and placeholder id from a tokenizer (``data.tokenizers`` interface).

        A config read from a checkpoint's ``model_config.json`` (``notes["fixed_vocab"]``) keeps its
        vocabulary size, which matches the checkpoint's embedding rows (e.g. Qwen2-Audio-7B's 156032 for a
        tokenizer of about 151.6k); the tokenizer must fit inside it.
        """
        if tokenizer.audio_placeholder_id >= tokenizer.vocab_size:
            raise ValueError(f"tokenizer placeholder id {tokenizer.audio_placeholder_id} is outside its "
                             f"vocabulary of {tokenizer.vocab_size}")
        vocab = tokenizer.vocab_size
        if self.notes.get("fixed_vocab"):
            if tokenizer.vocab_size > self.llm.vocab_size:
                raise ValueError(f"the tokenizer has {tokenizer.vocab_size} tokens but the model's embedding "
                                 f"has {self.llm.vocab_size} rows ({self.notes.get('source', self.name)})")
            vocab = self.llm.vocab_size
        return self.replace(vocab_size=vocab, audio_placeholder_id=tokenizer.audio_placeholder_id)
