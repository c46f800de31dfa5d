"""The training loss (per-token sums over text targets) and the modality-gap split of it.

InSerter's point is the text that follows speech: the model must continue from what it heard. So besides
the loss over every text target, two disjoint parts of it are reported:

* ``loss after speech``: text targets among the first K text targets after a speech span. The span ends
  with ``<|audio_eos|>`` at input position j; the target there (``labels[j]``) is the first text token
  after the span, the targets at the following positions are the next ones. Counting stops after K text
  targets, at the next speech span, and at an end-of-document input token (a new document does not follow
  the old document's speech).
* ``loss after text``: every other text target.

Targets are the positions where ``loss_mask`` is 1 (the batch contract: text, never placeholders, audio
markers or padding), so ``after_speech | after_text == loss_mask`` and the two are disjoint.
"""

from __future__ import annotations

import torch

LM_LOSS = "lm loss"
AFTER_SPEECH = "loss after speech"
AFTER_TEXT = "loss after text"


def after_speech_mask(tokens: torch.Tensor, loss_mask: torch.Tensor, audio_eos_id: int, eod_id: int,
                      window: int) -> torch.Tensor:
    """[b, s] bool: text targets within the first ``window`` text targets after a speech span."""
    if tokens.shape != loss_mask.shape:
        raise ValueError(f"tokens {tuple(tokens.shape)} and loss_mask {tuple(loss_mask.shape)} differ in shape")
    text = loss_mask > 0
    b, s = tokens.shape
    pos = torch.arange(s, device=tokens.device).expand(b, s)
    none = torch.full_like(pos, -1)
    # Latest speech end and latest document end at or before each position.
    last_eos = torch.where(tokens == audio_eos_id, pos, none).cummax(dim=1).values
    last_eod = torch.where(tokens == eod_id, pos, none).cummax(dim=1).values
    # Text targets counted from the latest speech end: inclusive cumulative count minus the count before it.
    count = text.long().cumsum(dim=1)
    before = torch.where(last_eos > 0, count.gather(1, (last_eos - 1).clamp(min=0)), torch.zeros_like(count))
    rank_after_eos = count - before  # 1 for the first text target at/after the speech end
    return text & (last_eos >= 0) & (last_eod < last_eos) & (rank_after_eos <= window)


class LossFunction:
    """Megatron loss function for one micro-batch: ``(sum, num_tokens, {name: tensor([sum, count])})``.

    Built per micro-batch by the forward step with that micro-batch's masks; called by the pipeline
    schedule with the model's per-token losses ``[b, s]``.
    """

    def __init__(self, loss_mask: torch.Tensor, after_speech: torch.Tensor | None):
        self.loss_mask = loss_mask.float()
        self.after_speech = after_speech

    def __call__(self, per_token_loss: torch.Tensor):
        losses = per_token_loss.float()
        mask = self.loss_mask.to(losses.device)
        total = (losses * mask).sum()
        count = mask.sum()
        report = {LM_LOSS: torch.stack([total.detach(), count])}
        if self.after_speech is not None:
            speech = self.after_speech.to(losses.device).float() * mask
            text = mask - speech
            for name, m in ((AFTER_SPEECH, speech), (AFTER_TEXT, text)):
                report[name] = torch.stack([(losses.detach() * m).sum(), m.sum()])
        return total, count.int(), report
