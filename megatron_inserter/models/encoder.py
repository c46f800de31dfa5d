"""Whisper speech encoder on megatron-core: log-mel, two 1-D convolutions, sinusoidal positions, a
bidirectional pre-LayerNorm TransformerBlock (tensor parallel), a final LayerNorm.

Parameter names (local spec; ``<-`` is the Hugging Face ``WhisperEncoder`` / ``Qwen2AudioEncoder`` name,
``audio_tower.`` prefix in Qwen2-Audio):

  encoder.conv1.weight / .bias                               <- conv1.weight / .bias  [d, mels, 3]
  encoder.conv2.weight / .bias                               <- conv2.weight / .bias  [d, d, 3], stride 2
  encoder.position_embeddings   (buffer, [1500, d])          <- embed_positions.weight
  encoder.transformer.layers.{i}.input_layernorm.weight/.bias         <- layers.{i}.self_attn_layer_norm
  encoder.transformer.layers.{i}.self_attention.linear_qkv.weight/.bias
                                                             <- layers.{i}.self_attn.{q,k,v}_proj, see below
  encoder.transformer.layers.{i}.self_attention.linear_proj.weight/.bias <- layers.{i}.self_attn.out_proj
  encoder.transformer.layers.{i}.pre_mlp_layernorm.weight/.bias       <- layers.{i}.final_layer_norm
  encoder.transformer.layers.{i}.mlp.linear_fc1.weight/.bias          <- layers.{i}.fc1
  encoder.transformer.layers.{i}.mlp.linear_fc2.weight/.bias          <- layers.{i}.fc2
  encoder.final_layernorm.weight / .bias                     <- layer_norm

  With the Transformer Engine spec the two per-layer norms are fused into the next linear:
  ``input_layernorm.{weight,bias}`` -> ``self_attention.linear_qkv.layer_norm_{weight,bias}`` and
  ``pre_mlp_layernorm.{weight,bias}`` -> ``mlp.linear_fc1.layer_norm_{weight,bias}``; dist checkpoints use
  the TE names for both specs.

  linear_qkv (megatron-core's fused layout, heads = query groups for Whisper): the output rows are grouped
  per head h as [q_h (head_dim rows); k_h (head_dim); v_h (head_dim)], i.e. weight.view(heads, 3, head_dim,
  d) holds q/k/v of head h at [h, 0], [h, 1], [h, 2]; the bias likewise. Whisper's k_proj has no bias:
  write zeros. A key bias is a no-op under softmax (it adds q.b_k to every score of a query, a constant per
  row), so its gradient is zero up to rounding and it stays near zero in training.

Three input modes:
  packed: several clips share the encoder, each seeing only itself, at the cost of its own frames. The front
    end reads each clip's mel frames plus the two after its end, as Qwen2-Audio's padded 30 s window holds
    them (``LogMel.packed_mode``); the clips lie end to end on one time axis with zero gaps
    (``clip_packing.ClipLayout``), so no convolution reads a neighbour; attention is block-diagonal: one THD
    sequence with ``cu_seqlens`` under Transformer Engine on CUDA, windows as long as the longest clip with an
    explicit mask otherwise. Positions 0..t-1 per clip. A clip's frames equal Qwen2-Audio's on its padded
    window with the padding masked (whole 10 ms hops), alone or packed with others.
  masked (the dataclass default): each clip's ``n // 160`` mel frames, the clips of a call padded to the
    longest; mel frames and the first convolution's output past a clip's end are zeroed (the zero padding a
    lone clip would see), padded keys are masked in attention, so a clip's output does not depend on what it
    is batched with. Positions 0..t-1. Qwen2-Audio's front end sees the log-mel floor past a clip's end
    instead of zeros, so the last frames differ from Qwen2-Audio's.
  window: Whisper / Qwen2-Audio semantics. Every clip zero-padded to 30 s (3000 mel frames, 1500 positions).
    Whisper attends to all 1500 positions (``window_key_padding_mask=False``); Qwen2-Audio masks keys at and
    past ``(L - 1) // 2 + 1`` with ``L = ceil(n / 160)``, the mel length its feature extractor reports
    (``window_key_padding_mask=True``). Nothing else is masked: the padded mel frames go through the
    convolutions as in Hugging Face.

Frame counts follow ``frames.py`` (``n // 160`` mel frames). Qwen2-Audio's processor counts ``ceil(n / 160)``,
which for clips that are not whole hops sometimes gives one frame more (e.g. n = 961: 1 here, 2 there); the
encoder outputs themselves agree, so a clip of whole hops converts with identical frames.

Where the pooling sits: Qwen2-Audio average-pools (kernel 2, stride 2) *before* the final LayerNorm
(``avg_pooler`` then ``layer_norm``). ``forward(before_final_norm=...)`` takes the adapter's downsampling for
that; see ``adapter.py``. Output lengths (frames per clip) follow ``frames.py``.

Intermediate layers: ``forward_layers(audio, lengths, layers)`` returns the hidden states after each of
``layers`` encoder layers, numbered as Hugging Face's ``output_hidden_states`` (0: the transformer's input,
``num_layers``: the final LayerNorm's output), in every input mode; the Q-Former adapter reads them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from megatron.core.transformer.module import MegatronModule
from megatron.core.transformer.spec_utils import build_module
from megatron.core.transformer.transformer_block import TransformerBlock

from megatron_inserter.models.clip_packing import (
    ClipLayout,
    WindowPlan,
    conv_out,
    cu_seqlens,
    position_ids,
)
from megatron_inserter.models.config import EncoderConfig
from megatron_inserter.models.melspec import LogMel

__all__ = ["EncoderConfig", "SpeechEncoder", "sinusoids"]

def sinusoids(length: int, channels: int, max_timescale: float = 10000.0) -> torch.Tensor:
    """Whisper's position table: [sin | cos] halves, geometric timescales from 1 to ``max_timescale``."""
    if channels % 2:
        raise ValueError(f"sinusoidal positions need an even width, got {channels}")
    increment = math.log(max_timescale) / (channels // 2 - 1)
    inv_timescales = torch.exp(-increment * torch.arange(channels // 2, dtype=torch.float32))
    scaled = torch.arange(length, dtype=torch.float32)[:, None] * inv_timescales[None, :]
    return torch.cat([torch.sin(scaled), torch.cos(scaled)], dim=1)


_conv_out = conv_out


class SpeechEncoder(MegatronModule):
    """Audio [n, samples] + lengths -> frames [n, t, d] and per-clip frame counts."""

    def __init__(self, cfg: EncoderConfig, config, layer_spec, norm_module, packed_thd: bool = False):
        """``packed_thd``: packed mode runs its attention as one THD sequence (Transformer Engine layer spec
        on CUDA); otherwise as windows with an explicit block-diagonal mask (megatron-core's local spec)."""
        super().__init__(config=config)
        self.cfg = cfg
        self.packed_thd = packed_thd
        d = cfg.hidden_size
        dtype = config.params_dtype
        self.log_mel = LogMel(cfg.num_mel_bins, cfg.n_fft, cfg.hop_length, window_seconds=cfg.window_seconds)
        self.conv1 = torch.nn.Conv1d(cfg.num_mel_bins, d, kernel_size=3, padding=1, dtype=dtype)
        self.conv2 = torch.nn.Conv1d(d, d, kernel_size=3, stride=cfg.conv_stride, padding=1, dtype=dtype)
        with torch.no_grad():
            for conv in (self.conv1, self.conv2):
                config.init_method(conv.weight)
                conv.bias.zero_()
        self.register_buffer("position_embeddings", sinusoids(cfg.max_source_positions, d), persistent=True)
        self.transformer = TransformerBlock(config=config, spec=layer_spec, pre_process=True, post_process=False)
        self.final_layernorm = build_module(norm_module, config=config, hidden_size=d,
                                            eps=cfg.layernorm_epsilon)

    def set_input_tensor(self, input_tensor) -> None:
        # The encoder always starts from audio on the first pipeline stage.
        pass

    def _convolve(self, mel: torch.Tensor, mel_frames: torch.Tensor | None) -> torch.Tensor:
        dtype = self.conv1.weight.dtype
        x = F.gelu(self.conv1(mel.to(dtype)))
        if mel_frames is not None:  # masked mode: what conv2's zero padding would see for a lone clip
            valid = torch.arange(x.shape[-1], device=x.device)[None, :] < mel_frames[:, None]
            x = x * valid[:, None, :].to(x.dtype)
        return F.gelu(self.conv2(x))

    def _check_window(self, lengths: torch.Tensor) -> None:
        if lengths.numel() and int(lengths.max()) > self.log_mel.window_samples:
            raise ValueError(f"a clip of {int(lengths.max())} samples is longer than the encoder window "
                             f"({self.log_mel.window_samples}); split clips with frames.split_windows")

    def packed_front_end(self, mel: torch.Tensor, mel_frames: torch.Tensor,
                         kept: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Both convolutions over all clips laid end to end (``ClipLayout``) -> ([sum t_i, d] clip by clip,
        t_i encoder positions per clip)."""
        stride = self.cfg.conv_stride
        positions = conv_out(mel_frames, stride)
        # conv1 outputs that conv2 reads for a clip alone in its window: up to one past the valid frames
        # (a kept tail frame), never past the window.
        conv1_valid = torch.minimum(torch.where(mel_frames > 0, mel_frames + 1, mel_frames), kept)
        layout = ClipLayout.build(kept, conv1_valid, positions, stride)
        valid = torch.arange(mel.shape[-1], device=mel.device)[None, :] < kept[:, None]  # [n, F]
        axis = mel.new_zeros(mel.shape[1], max(layout.length, 1))
        axis[:, layout.mel_index()] = mel.permute(1, 0, 2)[:, valid]
        dtype = self.conv1.weight.dtype
        x = F.gelu(self.conv1(axis.to(dtype)[None]))
        x = x * layout.conv1_mask()[None, None, :x.shape[-1]].to(x.dtype)
        x = F.gelu(self.conv2(x))[0]  # [d, axis / stride]
        return x[:, layout.position_index()].t(), positions

    def _transformer(self, hidden_states: torch.Tensor, taps: Sequence[int], **kwargs) -> list[torch.Tensor]:
        """The block on ``hidden_states`` [s, b, d]: the hidden states after each layer count in ``taps`` (0: the
        block's input), then the block's output, all [s, b, d] as the block lays them out."""
        kept = {0: hidden_states}

        def keep(count: int):
            def hook(_module, _args, output):
                kept[count] = output[0] if isinstance(output, tuple) else output
            return hook

        handles = [self.transformer.layers[c - 1].register_forward_hook(keep(c)) for c in set(taps) if c > 0]
        try:
            out = self.transformer(hidden_states=hidden_states, **kwargs)
        finally:
            for handle in handles:
                handle.remove()
        return [kept[c] for c in taps] + [out]

    def _packed_transformer(self, h: torch.Tensor, positions: torch.Tensor,
                            taps: Sequence[int] = ()) -> list[torch.Tensor]:
        """Bidirectional attention within each clip over the packed positions ``h`` [sum t_i, d]; returns the
        states after the ``taps`` layer counts and the output, each [sum t_i, d]."""
        if self.packed_thd:
            from megatron.core.packed_seq_params import PackedSeqParams

            cu = cu_seqlens(positions[positions > 0]).to(h.device)  # clips without positions left out
            longest = int(positions.max())
            params = PackedSeqParams(qkv_format="thd", cu_seqlens_q=cu, cu_seqlens_kv=cu, max_seqlen_q=longest,
                                     max_seqlen_kv=longest)
            outs = self._transformer(h[:, None, :].contiguous(), taps, attention_mask=None,
                                     packed_seq_params=params)
            return [out[:, 0] for out in outs]
        counts = positions.tolist()
        # Windows as long as the longest clip: the least attention over padding and other clips' keys.
        plan = WindowPlan.first_fit(counts, max(counts))
        slots = plan.slot_index(counts, h.device)
        windows = h.new_zeros(plan.num_windows * plan.window_length, h.shape[-1])
        windows[slots] = h
        windows = windows.view(plan.num_windows, plan.window_length, -1).transpose(0, 1).contiguous()
        outs = self._transformer(windows, taps, attention_mask=plan.attention_mask(counts, h.device))
        return [out.transpose(0, 1).reshape(-1, h.shape[-1])[slots] for out in outs]

    def _forward_packed(self, audio: torch.Tensor, lengths: torch.Tensor,
                        taps: Sequence[int]) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Packed mode -> ([n, max t_i, d] zero beyond each clip's t_i positions, per tap and the output; t_i)."""
        self._check_window(lengths)  # so no clip has more than max_source_positions positions
        n, d = audio.shape[0], self.cfg.hidden_size
        mel, mel_frames, kept = self.log_mel.packed_mode(audio, lengths)
        if not int(mel_frames.sum()):
            return [self.conv1.weight.new_zeros(n, 1, d) for _ in range(len(taps) + 1)], torch.zeros_like(mel_frames)
        x, positions = self.packed_front_end(mel, mel_frames, kept)
        within = position_ids(positions)
        states = self._packed_transformer(x + self.position_embeddings.to(x.dtype)[within], positions, taps)
        t = int(positions.max())
        index = torch.repeat_interleave(torch.arange(n, device=x.device) * t, positions) + within
        outs = []
        for h in states:
            out = h.new_zeros(n * t, d)
            out[index] = h
            outs.append(out.view(n, t, d))
        return outs, positions

    def forward(self, audio: torch.Tensor, audio_lengths: torch.Tensor,
                before_final_norm: Callable | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Clips -> (final frames [n, t, d], frames per clip); ``before_final_norm(h, frames)`` runs before the
        final LayerNorm (Qwen2-Audio's pooling)."""
        [h], frames = self._encode(audio, audio_lengths, ())
        if before_final_norm is not None:
            h, frames = before_final_norm(h, frames)
        return self.final_layernorm(h), frames

    def forward_layers(self, audio: torch.Tensor, audio_lengths: torch.Tensor,
                       layers: Sequence[int]) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Clips -> ([n, t, d] hidden states after each of ``layers`` encoder layers, frames per clip).

        Numbered as Hugging Face's ``hidden_states``: 0 is the transformer's input (convolutions plus
        positions), ``num_layers`` the final LayerNorm's output. Positions past a clip's frames hold padding.
        """
        depth = self.cfg.num_layers
        bad = [c for c in layers if not 0 <= c <= depth]
        if bad:
            raise ValueError(f"encoder layers {bad} are outside 0..{depth} (the encoder has {depth} layers)")
        inner = [c for c in dict.fromkeys(layers) if c < depth]
        states, frames = self._encode(audio, audio_lengths, inner)
        by_count = dict(zip(inner, states))
        if depth in layers:
            by_count[depth] = self.final_layernorm(states[-1])
        return [by_count[c] for c in layers], frames

    def _encode(self, audio: torch.Tensor, audio_lengths: torch.Tensor,
                taps: Sequence[int]) -> tuple[list[torch.Tensor], torch.Tensor]:
        """[n, t, d] states after each of ``taps`` layers (each < num_layers), then the last layer's output (before
        the final LayerNorm); frames per clip."""
        cfg = self.cfg
        lengths = audio_lengths.to(device=audio.device, dtype=torch.long)
        if cfg.input_mode == "packed":
            return self._forward_packed(audio, lengths, taps)
        mel_frames = torch.div(lengths, cfg.hop_length, rounding_mode="floor")
        if cfg.input_mode == "window":
            self._check_window(lengths)
            x = self._convolve(self.log_mel.window_mode(audio, lengths), None)
            if cfg.window_key_padding_mask:
                hf_mel = torch.clamp(torch.div(lengths + cfg.hop_length - 1, cfg.hop_length, rounding_mode="floor"),
                                     max=self.log_mel.window_frames)
                attend = _conv_out(hf_mel, cfg.conv_stride)
            else:
                attend = torch.full_like(lengths, x.shape[-1])
        else:
            mel, mel_frames = self.log_mel.masked_mode(audio, lengths)
            x = self._convolve(mel, mel_frames)
            attend = _conv_out(mel_frames, cfg.conv_stride)
        frames = _conv_out(mel_frames, cfg.conv_stride)
        t = x.shape[-1]
        if t > cfg.max_source_positions:
            raise ValueError(f"{t} encoder positions exceed max_source_positions {cfg.max_source_positions}")
        h = x.permute(2, 0, 1) + self.position_embeddings[:t, None, :].to(x.dtype)  # [t, n, d]
        pad = torch.arange(t, device=h.device)[None, :] >= attend[:, None]
        states = self._transformer(h.contiguous(), taps, attention_mask=pad[:, None, None, :])
        return [state.transpose(0, 1) for state in states], frames  # [n, t, d]
