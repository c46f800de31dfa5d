"""Packed samples without attention across documents: Megatron's ``--reset-attention-mask`` and
``--reset-position-ids`` in the language model.

A sample packs several documents (interleaved, ASR, text), each ending with its end-of-document token, which
belongs to the document it ends (``data.indexed.dataset.document_positions``). With the layout on, a token
attends only to earlier tokens of its own document, and RoPE positions restart at every document, so each
document gets the numbers it would get alone. Two realisations:

  per-sample mask  megatron-core's local attention (CPU): a ``[b, 1, s, s]`` mask, causal within each
                   document, and RoPE at the batch's position ids (megatron-core's RoPE otherwise uses the
                   sequence index).
  THD              Transformer Engine on CUDA: the micro-batch's samples flattened into one packed sequence
                   ``[b * s, 1, h]`` with ``cu_seqlens`` at every document start (``PackedSeqParams``); RoPE
                   restarts per sequence inside TE. Pipeline stages exchange it as an ``[s, b, h]``-shaped
                   view of the same memory (the schedule's buffers have that shape); the receiving stage
                   views it back. Without TE the same flattened path runs with a ``[1, 1, b*s, b*s]`` mask,
                   which is how the CPU tests cover it.

The audio side needs nothing: every clip is encoded on its own (masked or packed encoder modes).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class DocumentOptions:
    """The run's switches; ``layout(tokens)`` gives one micro-batch's ``DocumentLayout``."""

    eod_id: int
    reset_attention_mask: bool = True
    reset_position_ids: bool = True

    @property
    def active(self) -> bool:
        return self.reset_attention_mask or self.reset_position_ids

    def layout(self, tokens: torch.Tensor) -> DocumentLayout | None:
        if not self.active:
            return None
        from megatron_inserter.data.indexed.dataset import document_positions

        segments, positions = document_positions(tokens, self.eod_id)
        return DocumentLayout(segments, positions, self.reset_attention_mask, self.reset_position_ids)


@dataclass
class DocumentLayout:
    """Where the documents of one micro-batch lie: ``segments`` (document index within its sample) and
    ``positions`` (position within its document), both ``[b, s]`` over the full sequence."""

    segments: torch.Tensor
    positions: torch.Tensor
    reset_attention: bool = True
    reset_positions: bool = True

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.segments.shape)

    def attention_mask(self) -> torch.Tensor:
        """[b, 1, s, s] bool, True where attention is blocked: later positions and other documents."""
        s = self.segments.shape[1]
        causal = torch.ones(s, s, dtype=torch.bool, device=self.segments.device).tril()
        same = self.segments[:, :, None] == self.segments[:, None, :]
        return ~(same & causal).unsqueeze(1)

    def _flat_segments(self) -> torch.Tensor:
        b, s = self.shape
        offset = torch.arange(b, device=self.segments.device)[:, None] * (s + 1)
        return (self.segments + offset).reshape(-1)

    def cu_seqlens(self) -> torch.Tensor:
        """int32 boundaries of the documents of the flattened micro-batch (samples end documents too)."""
        flat = self._flat_segments()
        starts = torch.ones_like(flat, dtype=torch.bool)
        starts[1:] = flat[1:] != flat[:-1]
        bounds = torch.cat([torch.nonzero(starts)[:, 0], torch.tensor([flat.numel()], device=flat.device)])
        return bounds.to(torch.int32)

    def packed_seq_params(self):
        from megatron.core.packed_seq_params import PackedSeqParams

        cu = self.cu_seqlens()
        longest = int((cu[1:] - cu[:-1]).max())
        return PackedSeqParams(qkv_format="thd", cu_seqlens_q=cu, cu_seqlens_kv=cu, max_seqlen_q=longest,
                               max_seqlen_kv=longest)

    def flat_attention_mask(self) -> torch.Tensor:
        """[1, 1, b*s, b*s]: the THD layout's attention as an explicit mask (without Transformer Engine)."""
        flat = self._flat_segments()
        n = flat.numel()
        causal = torch.ones(n, n, dtype=torch.bool, device=flat.device).tril()
        return ~(causal & (flat[:, None] == flat[None, :]))[None, None]


def unwrap(model):
    """The module under DDP / Float16Module wrappers."""
    while hasattr(model, "module"):
        model = model.module
    return model


@contextmanager
def rotary_at(gpt, position_ids: torch.Tensor | None):
    """Within the block, ``gpt``'s rotary embedding gives each token the angle of its ``position_ids`` entry
    ([b, s]) instead of its sequence index: ``[s, b, 1, dim]`` frequencies, which broadcast over heads."""
    rotary = getattr(gpt, "rotary_pos_emb", None)
    if position_ids is None or rotary is None:
        yield
        return
    table = rotary.forward

    def at_positions(max_seq_len, *args, **kwargs):
        emb = table(int(position_ids.max()) + 1, *args, **kwargs)  # [p, 1, 1, dim]
        return emb[:, 0][position_ids.t().to(emb.device)]

    rotary.forward = at_positions
    try:
        yield
    finally:
        del rotary.forward


def run_language_model(model, tokens, position_ids, labels, layout: DocumentLayout | None, thd: bool,
                       use_te: bool, decoder_input=None, attention_mask=None, runtime_gather_output=None):
    """Call a GPTModel chunk (``model``, possibly wrapped) on one micro-batch with its documents kept apart.

    ``thd``: the flattened layout (``decoder_input`` already ``[b*s, 1, h]`` when given); with ``use_te`` it
    goes to Transformer Engine as PackedSeqParams, otherwise as an explicit mask. Returns what GPTModel does,
    in the un-flattened shapes: per-token losses ``[b, s]`` with labels, logits ``[b, s, v]`` without, and on
    a stage before the last the hidden states as an ``[s, b, h]``-shaped view.
    """
    if layout is None:
        return model(tokens, position_ids, attention_mask, decoder_input=decoder_input, labels=labels,
                     runtime_gather_output=runtime_gather_output)
    gpt = unwrap(model)
    if thd and not layout.reset_attention:
        raise ValueError("the THD layout keeps documents apart; positions restarting without it "
                         "(--reset-position-ids alone) need the per-sample path")
    if not thd:
        mask = layout.attention_mask() if layout.reset_attention else attention_mask
        with rotary_at(gpt, layout.positions if layout.reset_positions else None):
            return model(tokens, position_ids, mask, decoder_input=decoder_input, labels=labels,
                         runtime_gather_output=runtime_gather_output)
    b, s = layout.shape

    def flat(x):
        return None if x is None else x.reshape(1, -1)

    if not gpt.pre_process and gpt.decoder.input_tensor is not None:  # an [s, b, h] view of [b*s, 1, h]
        gpt.decoder.input_tensor = gpt.decoder.input_tensor.reshape(-1, 1, gpt.config.hidden_size)
    kwargs = {"decoder_input": decoder_input, "labels": flat(labels),
              "runtime_gather_output": runtime_gather_output}
    if use_te:
        out = model(flat(tokens), flat(position_ids), None, packed_seq_params=layout.packed_seq_params(),
                    **kwargs)
    else:
        with rotary_at(gpt, flat(layout.positions)):
            out = model(flat(tokens), flat(position_ids), layout.flat_attention_mask(), **kwargs)
    if not gpt.post_process:
        return out.reshape(-1, b, out.shape[-1])
    return out.reshape(b, s) if labels is not None else out.reshape(b, s, -1)
