"""Bytes per GPU of a training run, stage by stage, from the model's shapes and the run's layout.

    shapes = ModelShapes.of(cfg, model_type="inserter")
    layout = Layout(tp=4, pp=2, dp=8, seq_length=8192, micro_batch_size=1, num_microbatches=128, bf16=True,
                    sequence_parallel=True, distributed_optimizer=True)
    stages = stage_memory(shapes, layout, speech)     # one StageMemory per pipeline rank

What is counted, per GPU of a pipeline stage (every tensor-parallel rank of a stage holds the same):
  weights     every parameter of the stage's model chunks, in the compute dtype (bf16 under --bf16; frozen
              parts too). Column/row-parallel matrices and the vocabulary are split over TP, norms, the
              encoder's convolutions and row-parallel biases are replicated.
  grads       mcore DDP's gradient buffer: fp32 for every trainable parameter (grad_reduce_in_fp32).
  optimizer   Adam's two moments (fp32) plus, under --bf16, the fp32 master copy: 12 bytes per trainable
              parameter (8 in fp32), divided by DP x CP with the distributed optimizer.
  activations what autograd keeps for the backward pass, per micro-batch of each model chunk, times the
              micro-batches in flight at the 1F1B / interleaved schedule's peak (simulated per rank). The
              first chunk adds the encoder, adapter and embedding; the last the final norm, the output
              layer's input and the logits (fp32 softmax, plus the bf16 logits while the loss is computed).
  audio       the micro-batch's audio and its log-mel working set on the first stage.
  runtime     CUDA context, NCCL and cuBLAS workspaces and allocator slack (a fixed allowance).

Activations follow Korthikanti et al. 2022 (arXiv 2205.05198), tensor by tensor, for the two kernel sets
megatron-core runs: ``te`` (Transformer Engine: fused norm+linear, flash attention, fused SwiGLU and RoPE)
and ``local`` (megatron-core's local spec: torch norms, unfused attention that keeps the s x s scores,
SwiGLU as separate ops). The local counts are checked against autograd's saved tensors on CPU
(``tests/training/test_plan.py``). Dropout is off in this project (no masks are kept); a config that turns
``hidden_dropout`` on adds its masks. Recompute: ``selective`` drops the attention scores, ``full`` keeps
only each layer's input plus one layer's working set.

Pure arithmetic on the config dataclasses (no torch), so planning runs anywhere.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

GIB = 2**30
RUNTIME_BYTES = 2.0 * GIB  # CUDA context, NCCL communicators, cuBLAS workspaces
ALLOCATOR_SLACK = 0.05  # fragmentation of the caching allocator, a share of activations and audio
RECOMPUTE = ("none", "selective", "full")


# --- shapes ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LLMShapes:
    num_layers: int
    hidden: int
    ffn: int
    heads: int
    groups: int
    head_dim: int
    vocab: int  # unpadded; padded per TP with ``padded_vocab``
    divisible_by: int = 128
    tie_embeddings: bool = False
    qkv_bias: bool = True
    linear_bias: bool = False
    gated: bool = True
    layernorm: bool = False  # RMSNorm otherwise
    hidden_dropout: float = 0.0

    @property
    def q_width(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_width(self) -> int:
        return self.groups * self.head_dim

    def padded_vocab(self, tp: int) -> int:
        multiple = math.lcm(self.divisible_by, tp)
        return -(-self.vocab // multiple) * multiple


@dataclass(frozen=True)
class EncoderShapes:
    num_layers: int
    hidden: int
    ffn: int
    heads: int
    mel_bins: int
    window_positions: int  # encoder positions of one 30 s window (1500)
    adapter_kind: str
    downsample: int
    adapter_ffn: int  # stack-mlp hidden width
    llm_hidden: int
    input_mode: str


@dataclass(frozen=True)
class ModelShapes:
    llm: LLMShapes
    encoder: EncoderShapes | None  # None: ``--model-type gpt``
    freeze_encoder: bool = False
    freeze_adapter: bool = False
    freeze_llm: bool = False

    @classmethod
    def of(cls, cfg, model_type: str = "inserter", input_mode: str | None = None) -> ModelShapes:
        """From an ``InserterModelConfig`` (``input_mode`` overrides the encoder's)."""
        llm = cfg.llm
        extra = dict(getattr(llm, "extra", {}) or {})
        shapes = LLMShapes(
            num_layers=llm.num_layers, hidden=llm.hidden_size, ffn=llm.ffn_hidden_size,
            heads=llm.num_attention_heads, groups=llm.num_query_groups,
            head_dim=llm.kv_channels or llm.hidden_size // llm.num_attention_heads, vocab=llm.vocab_size,
            divisible_by=llm.make_vocab_size_divisible_by, tie_embeddings=llm.tie_embeddings,
            qkv_bias=extra.get("add_qkv_bias", llm.add_qkv_bias), linear_bias=extra.get("add_bias_linear", False),
            gated=extra.get("gated_linear_unit", True), layernorm=extra.get("normalization") == "LayerNorm",
            hidden_dropout=float(extra.get("hidden_dropout", 0.0)))
        if model_type == "gpt":
            return cls(shapes, None)
        enc, ad = cfg.encoder, cfg.adapter
        encoder = EncoderShapes(
            num_layers=enc.num_layers, hidden=enc.hidden_size, ffn=enc.ffn_hidden_size,
            heads=enc.num_attention_heads, mel_bins=enc.num_mel_bins, window_positions=enc.positions_per_window,
            adapter_kind=ad.kind, downsample=ad.downsample, adapter_ffn=ad.ffn_hidden_size or llm.hidden_size,
            llm_hidden=llm.hidden_size, input_mode=input_mode or enc.input_mode)
        return cls(shapes, encoder, cfg.freeze_encoder, cfg.freeze_adapter, cfg.freeze_llm)


@dataclass(frozen=True)
class Layout:
    """How a run spreads the model and the batch (per GPU values are derived from it)."""

    seq_length: int
    micro_batch_size: int
    num_microbatches: int  # per data-parallel rank and step
    tp: int = 1
    pp: int = 1
    vp: int | None = None  # model chunks per pipeline rank (interleaved schedule), None: one
    cp: int = 1
    dp: int = 1
    sequence_parallel: bool = False
    distributed_optimizer: bool = False
    bf16: bool = False
    kernels: str = "te"  # "te" or "local"
    recompute: str = "none"

    @property
    def chunks(self) -> int:
        return self.vp or 1

    @property
    def dtype_bytes(self) -> int:
        return 2 if self.bf16 else 4

    @property
    def sp_div(self) -> int:
        """Divisor of the tensors sequence parallelism splits (norm inputs, linear inputs)."""
        return self.tp if self.sequence_parallel else 1

    @property
    def tokens(self) -> int:
        """Positions of one micro-batch on one context-parallel rank."""
        return self.seq_length // self.cp * self.micro_batch_size


@dataclass(frozen=True)
class SpeechLoad:
    """What one micro-batch asks of the encoder (expected values; see ``clip_stats.speech_load``)."""

    clips: float  # encoder windows
    frames: float  # placeholder positions (adapter outputs)
    mel_frames: float  # mel frames through the convolutions, padding included
    positions: float  # encoder positions through the transformer, padding included
    rows: float  # attention rows (windows, padded clips or packed windows)
    row_length: float  # positions per attention row
    pooled: float  # positions after the adapter's downsampling, padding included
    audio_samples: float  # samples of the micro-batch's audio tensors (padded)

    @classmethod
    def none(cls) -> SpeechLoad:
        return cls(0, 0, 0, 0, 0, 0, 0, 0)


# --- parameters -----------------------------------------------------------------------------------------


def llm_layer_params(m: LLMShapes, tp: int) -> float:
    norms = 2 * m.hidden * (2 if m.layernorm else 1)
    qkv = m.hidden * (m.q_width + 2 * m.kv_width) / tp + (m.q_width + 2 * m.kv_width) / tp * m.qkv_bias
    proj = m.q_width * m.hidden / tp + m.hidden * m.linear_bias
    fc1_out = m.ffn * (2 if m.gated else 1)
    mlp = m.hidden * fc1_out / tp + m.ffn * m.hidden / tp + (fc1_out / tp + m.hidden) * m.linear_bias
    return norms + qkv + proj + mlp


def embedding_params(m: LLMShapes, tp: int) -> float:
    return m.padded_vocab(tp) * m.hidden / tp


def encoder_params(e: EncoderShapes, tp: int) -> float:
    d, f = e.hidden, e.ffn
    conv = e.mel_bins * d * 3 + d + d * d * 3 + d
    layer = 4 * d + (3 * d * d + 3 * d) / tp + d * d / tp + d + (d * f + f) / tp + f * d / tp + d
    return conv + e.num_layers * layer + 2 * d


def adapter_params(e: EncoderShapes, tp: int) -> float:
    if e.adapter_kind == "pool-linear":
        return (e.hidden * e.llm_hidden + e.llm_hidden) / tp
    k, a = e.downsample, e.adapter_ffn
    return (k * e.hidden * a + a) / tp + a * e.llm_hidden / tp + e.llm_hidden


@dataclass
class ChunkParams:
    total: float = 0.0
    trainable: float = 0.0

    def add(self, n: float, trains: bool) -> None:
        self.total += n
        self.trainable += n if trains else 0.0


def chunk_params(shapes: ModelShapes, layout: Layout, rank: int, chunk: int) -> ChunkParams:
    """Parameters of model chunk ``chunk`` on pipeline rank ``rank`` (one GPU)."""
    m, tp = shapes.llm, layout.tp
    first, last = is_first_chunk(layout, rank, chunk), is_last_chunk(layout, rank, chunk)
    out = ChunkParams()
    llm_trains = not shapes.freeze_llm
    out.add(layers_per_chunk(m, layout) * llm_layer_params(m, tp), llm_trains)
    if first:
        out.add(embedding_params(m, tp), llm_trains)
        if shapes.encoder is not None:
            out.add(encoder_params(shapes.encoder, tp), not shapes.freeze_encoder)
            out.add(adapter_params(shapes.encoder, tp), not shapes.freeze_adapter)
    if last:
        out.add(m.hidden * (2 if m.layernorm else 1), llm_trains)  # final norm
        if not m.tie_embeddings or not first:  # tied across stages: the last stage holds its own copy
            out.add(embedding_params(m, tp), llm_trains)
    return out


def layers_per_chunk(m: LLMShapes, layout: Layout) -> int:
    return m.num_layers // (layout.pp * layout.chunks)


def is_first_chunk(layout: Layout, rank: int, chunk: int) -> bool:
    return rank == 0 and chunk == 0


def is_last_chunk(layout: Layout, rank: int, chunk: int) -> bool:
    return rank == layout.pp - 1 and chunk == layout.chunks - 1


# --- activations ----------------------------------------------------------------------------------------


def llm_layer_activation_bytes(m: LLMShapes, layout: Layout, recompute: str | None = None) -> float:
    """Bytes one decoder layer keeps for backward per micro-batch (one GPU)."""
    recompute = recompute or layout.recompute
    tp, sp, dt = layout.tp, layout.sp_div, layout.dtype_bytes
    tok = layout.tokens
    h, q, kv, f = m.hidden, m.q_width, m.kv_width, m.ffn
    if recompute == "full":  # the layer's input only
        return tok * h * dt / sp
    stats = 4 * (2 if m.layernorm else 1)  # fp32 rsigma (and mean) per position
    local = layout.kernels == "local"
    # Two norms with their following linear: input, normalized output (+ the weighted copy the local torch
    # RMSNorm makes before the linear keeps its input).
    norm_copies = 3 if local and not m.layernorm else 2
    per_token = 2 * (norm_copies * h * dt + stats) / sp
    if local:
        rope = 4 * m.head_dim * dt / layout.micro_batch_size  # cos/sin for q and k, shared by the batch
        if m.groups < m.heads:  # keys and values repeated to every head
            attn = 3 * q / tp * dt
        else:  # rotated q, k, and the fused qkv output that the value view keeps
            attn = (q + kv + q + 2 * kv) / tp * dt
        attn += q / tp * dt + rope  # output projection input
    else:
        attn = (q + 2 * kv + q) / tp * dt + 4 * m.heads / tp  # q, k, v, output, fp32 softmax statistics
    if m.gated:
        mlp = (5 if local else 3) * f / tp * dt  # fc1 output (2f), [silu out, linear half], fc2 input
    else:
        mlp = 2 * f / tp * dt  # activation input, fc2 input
    per_token += attn + mlp
    if m.hidden_dropout > 0:
        per_token += 2 * h / sp  # bool masks of the two residual dropouts
    total = tok * per_token
    if local and recompute != "selective":
        s_q, s_k = layout.seq_length // layout.cp, layout.seq_length
        total += layout.micro_batch_size * m.heads / tp * s_q * s_k * dt + s_q * s_k  # scores + causal mask
    return total


def encoder_activation_bytes(e: EncoderShapes, layout: Layout, load: SpeechLoad, freeze_encoder: bool,
                             freeze_adapter: bool) -> dict[str, float]:
    """Bytes the encoder and the adapter keep per micro-batch: {"encoder", "adapter"} (first stage)."""
    dt, tp, d, f = layout.dtype_bytes, layout.tp, e.hidden, e.ffn
    out = {"encoder": 0.0, "adapter": 0.0}
    if not freeze_encoder and load.clips:
        # conv1 input (log-mel), conv1 output (GELU input), conv2 input, conv2 output (GELU input)
        front = load.mel_frames * (e.mel_bins + 2 * d) * dt + load.positions * d * dt
        if e.input_mode != "window":
            front += load.mel_frames * dt  # the valid-frame mask between the convolutions
        per_position = (4 * d + 4 * d / tp + 2 * f / tp) * dt + 2 * 8  # + LayerNorm mean/rstd (fp32)
        layers = load.positions * per_position
        if layout.kernels == "local":
            layers += load.rows * (e.heads / tp * load.row_length ** 2 * dt + load.row_length)
        # The final LayerNorm runs after the pooling (pool-linear) or before the stacking (stack-mlp).
        normed = load.pooled if e.adapter_kind == "pool-linear" else load.positions
        final = normed * (d * dt + 8 + 1)  # input, mean/rstd, the valid-frame mask
        out["encoder"] = front + e.num_layers * layers + final
    if not freeze_adapter and load.frames:
        if e.adapter_kind == "pool-linear":
            out["adapter"] = load.frames * d * dt
        else:
            out["adapter"] = load.frames * (e.downsample * d + 2 * e.adapter_ffn / tp) * dt
    return out


def first_chunk_extra_bytes(layout: Layout, load: SpeechLoad) -> float:
    """Embedding lookup indices, the placeholder mask and the audio lengths (first chunk)."""
    return layout.seq_length * layout.micro_batch_size * (8 + 1)


def last_chunk_bytes(m: LLMShapes, layout: Layout) -> dict[str, float]:
    """Final norm + output-layer input, and the logits with the loss's bookkeeping (last chunk)."""
    dt, sp = layout.dtype_bytes, layout.sp_div
    tok = layout.tokens
    stats = 4 * (2 if m.layernorm else 1)
    copies = 3 if layout.kernels == "local" and not m.layernorm else 2
    head = tok * (copies * m.hidden * dt + stats) / sp
    logit_bytes = 4 + (2 if layout.bf16 else 0)  # fp32 softmax kept for backward (+ bf16 logits at the loss)
    logits = tok * m.padded_vocab(layout.tp) / layout.tp * logit_bytes + tok * (8 + 1)  # + target masks
    return {"head": head, "logits": logits}


def pipeline_output_bytes(m: LLMShapes, layout: Layout) -> float:
    """The output a non-last chunk sends on, kept until its backward (megatron-core keeps its data)."""
    return layout.tokens * m.hidden * layout.dtype_bytes / layout.sp_div


@dataclass
class ChunkActivations:
    """Bytes one micro-batch leaves on one chunk until its backward, by part."""

    llm: float = 0.0
    encoder: float = 0.0
    logits: float = 0.0

    @property
    def total(self) -> float:
        return self.llm + self.encoder + self.logits


def chunk_activations(shapes: ModelShapes, layout: Layout, rank: int, chunk: int, load: SpeechLoad,
                      recompute: str | None = None) -> ChunkActivations:
    m = shapes.llm
    recompute = recompute or layout.recompute
    out = ChunkActivations()
    layers = layers_per_chunk(m, layout)
    out.llm = layers * llm_layer_activation_bytes(m, layout, recompute)
    if recompute == "full" and layers:  # one layer rebuilt at a time during backward
        out.llm += llm_layer_activation_bytes(m, layout, "none") - llm_layer_activation_bytes(m, layout, "full")
    if is_first_chunk(layout, rank, chunk):
        out.llm += first_chunk_extra_bytes(layout, load)
        if shapes.encoder is not None:
            parts = encoder_activation_bytes(shapes.encoder, layout, load, shapes.freeze_encoder,
                                             shapes.freeze_adapter)
            out.encoder = parts["encoder"] + parts["adapter"]
    if is_last_chunk(layout, rank, chunk):
        parts = last_chunk_bytes(m, layout)
        out.llm += parts["head"]
        out.logits = parts["logits"]
    else:
        out.llm += pipeline_output_bytes(m, layout)
    return out


# --- the pipeline schedule ------------------------------------------------------------------------------


def warmup_microbatches(layout: Layout, rank: int) -> int:
    """Forward passes before the first backward on pipeline rank ``rank`` (megatron-core's schedules)."""
    pp, m, vp = layout.pp, layout.num_microbatches, layout.chunks
    if vp == 1:
        return min(pp - rank - 1, m)
    return min((pp - rank - 1) * 2 + (vp - 1) * pp, m * vp)  # groups of pp micro-batches per chunk


def forward_chunk(layout: Layout, k: int) -> int:
    return (k // layout.pp) % layout.chunks if layout.chunks > 1 else 0


def backward_chunk(layout: Layout, k: int) -> int:
    return layout.chunks - 1 - forward_chunk(layout, k)


def peak_in_flight(layout: Layout, rank: int, bytes_per_chunk: list[float]) -> list[int]:
    """Micro-batches held per chunk at the rank's activation peak (1F1B / interleaved, simulated)."""
    total = layout.num_microbatches * layout.chunks
    warmup = warmup_microbatches(layout, rank)
    live = [0] * layout.chunks
    best, best_live = -1.0, list(live)

    def forward(k: int) -> None:
        nonlocal best, best_live
        live[forward_chunk(layout, k)] += 1
        held = sum(n * b for n, b in zip(live, bytes_per_chunk))
        if held > best:
            best, best_live = held, list(live)

    for k in range(warmup):
        forward(k)
    for i in range(total - warmup):
        forward(warmup + i)
        live[backward_chunk(layout, i)] -= 1
    return best_live


# --- per stage ------------------------------------------------------------------------------------------


@dataclass
class StageMemory:
    """One GPU of pipeline stage ``rank``; bytes unless named otherwise."""

    rank: int
    params: float
    trainable: float
    weights: float
    grads: float
    optimizer: float
    optimizer_other: float  # with the distributed optimizer switched the other way
    activations_per_microbatch: float  # all chunks of the rank, one micro-batch each
    activations_full_recompute: float
    in_flight: list[int]  # per chunk at the peak
    llm_activations: float
    encoder_activations: float
    logits: float
    audio: float
    runtime: float
    parts: dict = field(default_factory=dict)

    @property
    def activations(self) -> float:
        return self.llm_activations + self.encoder_activations + self.logits

    @property
    def total(self) -> float:
        return self.weights + self.grads + self.optimizer + self.activations + self.audio + self.runtime


def optimizer_bytes(trainable: float, layout: Layout, distributed: bool) -> float:
    per_param = 12 if layout.bf16 else 8  # fp32 master (bf16 only) + exp_avg + exp_avg_sq
    return trainable * per_param / (layout.dp * layout.cp if distributed else 1)


def audio_bytes(shapes: ModelShapes, layout: Layout, load: SpeechLoad) -> float:
    """The micro-batch's audio (float32) and its log-mel working set while it is computed (first stage)."""
    if shapes.encoder is None or not load.clips:
        return 0.0
    n_fft_bins = 201  # Whisper's 400-point STFT
    stft = load.mel_frames * n_fft_bins * (8 + 4)  # complex64 spectrum + power
    mel = load.mel_frames * shapes.encoder.mel_bins * 4
    return load.audio_samples * 4 * 2 + stft + mel  # batch copy + padded copy


def stage_memory(shapes: ModelShapes, layout: Layout, load: SpeechLoad, runtime: float = RUNTIME_BYTES,
                 ) -> list[StageMemory]:
    if shapes.llm.num_layers % (layout.pp * layout.chunks):
        raise ValueError(f"{shapes.llm.num_layers} layers do not split into {layout.pp} pipeline stages x "
                         f"{layout.chunks} chunks")
    stages = []
    for rank in range(layout.pp):
        params = [chunk_params(shapes, layout, rank, c) for c in range(layout.chunks)]
        total = sum(p.total for p in params)
        trainable = sum(p.trainable for p in params)
        acts = [chunk_activations(shapes, layout, rank, c, load) for c in range(layout.chunks)]
        full = [chunk_activations(shapes, layout, rank, c, load, "full") for c in range(layout.chunks)]
        live = peak_in_flight(layout, rank, [a.total for a in acts])
        audio = audio_bytes(shapes, layout, load) if rank == 0 else 0.0
        stage = StageMemory(
            rank=rank, params=total, trainable=trainable, weights=total * layout.dtype_bytes,
            grads=trainable * 4,
            optimizer=optimizer_bytes(trainable, layout, layout.distributed_optimizer),
            optimizer_other=optimizer_bytes(trainable, layout, not layout.distributed_optimizer),
            activations_per_microbatch=sum(a.total for a in acts),
            activations_full_recompute=sum(a.total for a in full),
            in_flight=live,
            llm_activations=sum(n * a.llm for n, a in zip(live, acts)),
            encoder_activations=sum(n * a.encoder for n, a in zip(live, acts)),
            logits=sum(n * a.logits for n, a in zip(live, acts)),
            audio=audio, runtime=0.0)
        stage.runtime = runtime + ALLOCATOR_SLACK * (stage.activations + stage.audio)
        stages.append(stage)
    return stages
