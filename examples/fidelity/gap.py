"""The modality gap on held-out documents: the loss on text that continues a spoken prefix minus the loss on
the same text continuing the same prefix written.

For every speech span of a held-out synthesized document that is followed by text, two sequences are built:

    spoken:  [BOS] tokens(text before) <|audio_bos|> <|AUDIO|> x N <|audio_eos|> tokens(text after)[:K]
    written: [BOS] tokens(text before) tokens(span transcript)                    tokens(text after)[:K]

"text before" is the whole document up to the span with every earlier span written, so the two sequences
differ only in how the span is given; the targets are the same K tokens of "text after" (tokenized on their
own in both, as the indexed writer tokenizes the text between speech spans). The gap is the mean per-token
loss over all targets of the spoken sequences minus the same mean over the written ones: positive when
hearing a prefix helps the model less than reading it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass
class Sequence:
    ids: list[int]
    clips: list[np.ndarray] = field(default_factory=list)  # float32 16 kHz, in placeholder order
    num_targets: int = 0  # the last num_targets tokens are the scored targets


@dataclass
class GapResult:
    spoken_loss: float
    written_loss: float
    targets: int
    pairs: int

    @property
    def gap(self) -> float:
        return self.spoken_loss - self.written_loss


def pair(tokenizer, spec, before: str, span_text: str, span_audio: np.ndarray, after: str,
         max_targets: int) -> tuple[Sequence, Sequence] | None:
    """(spoken, written) sequences for one span, or None when no text target follows it."""
    from megatron_inserter.inference.prompt import audio_tokens

    targets = list(tokenizer.tokenize(after))[:max_targets]
    if not targets:
        return None
    head = ([tokenizer.bos_id] if tokenizer.bos_id is not None else []) + (
        list(tokenizer.tokenize(before)) if before else [])
    speech = audio_tokens(tokenizer, span_audio, spec)
    spoken = Sequence(head + speech.ids + targets, speech.clips, len(targets))
    written = Sequence(head + list(tokenizer.tokenize(span_text)) + targets, [], len(targets))
    return spoken, written


def pairs_from_documents(documents, tokenizer, spec, max_targets: int) -> list[tuple[Sequence, Sequence]]:
    """All (spoken, written) pairs of ``data.document.Document``s with int16 or float speech."""
    from megatron_inserter.data.indexed.audio_store import int16_to_float

    out = []
    for doc in documents:
        segs = doc.segments
        for i, seg in enumerate(segs[:-1]):
            if not seg.is_speech or segs[i + 1].is_speech:
                continue
            before = "".join(s.text for s in segs[:i])
            audio = seg.audio if seg.audio.dtype != np.int16 else int16_to_float(seg.audio)
            made = pair(tokenizer, spec, before, seg.text, audio, segs[i + 1].text, max_targets)
            if made is not None:
                out.append(made)
    return out


@torch.no_grad()
def target_losses(model, sequences: list[Sequence], pad_id: int, batch_size: int = 8) -> list[tuple[float, int]]:
    """(sum of per-token losses, number of targets) of each sequence's last ``num_targets`` tokens.

    ``model`` is an InserterModel at TP=PP=1 (``model(tokens, positions, None, labels=..., audio=...,
    audio_lengths=...)`` returns per-token losses); sequences are right-padded, which a causal model's
    earlier positions never see.
    """
    from megatron_inserter.inference.generate import pad_clips

    device = next(model.parameters()).device
    model.eval()
    out: list[tuple[float, int]] = []
    for start in range(0, len(sequences), batch_size):
        batch = sequences[start:start + batch_size]
        width = max(len(s.ids) for s in batch) - 1
        tokens = torch.full((len(batch), width), pad_id, dtype=torch.long)
        labels = torch.full((len(batch), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width))
        for row, s in enumerate(batch):
            ids = torch.tensor(s.ids, dtype=torch.long)
            tokens[row, : len(ids) - 1] = ids[:-1]
            labels[row, : len(ids) - 1] = ids[1:]
            mask[row, len(ids) - 1 - s.num_targets: len(ids) - 1] = 1.0
        audio, lengths = pad_clips([c for s in batch for c in s.clips], device)
        positions = torch.arange(width, dtype=torch.long)[None, :].expand(len(batch), width)
        losses = model(tokens.to(device), positions.to(device), None, labels=labels.to(device),
                       audio=audio if len(lengths) else None, audio_lengths=lengths if len(lengths) else None)
        losses = losses.float().cpu() * mask
        out.extend((float(losses[row].sum()), int(mask[row].sum())) for row in range(len(batch)))
    return out


def mean_loss(losses: list[tuple[float, int]]) -> float:
    total, count = sum(s for s, _ in losses), sum(n for _, n in losses)
    return total / count if count else float("nan")


def modality_gap(model, pairs: list[tuple[Sequence, Sequence]], pad_id: int, batch_size: int = 8) -> GapResult:
    spoken = target_losses(model, [s for s, _ in pairs], pad_id, batch_size)
    written = target_losses(model, [w for _, w in pairs], pad_id, batch_size)
    return GapResult(mean_loss(spoken), mean_loss(written), sum(n for _, n in spoken), len(pairs))
