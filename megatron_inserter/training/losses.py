"""The training loss (per-token sums over text targets) and the modality-gap split of it.

InSerter's point is the text that follows speech: the model must continue from what it heard. So besides
the loss over every text target, these parts of it are reported:

* ``loss after speech``: text targets among the first K text targets after a speech span. The span ends
  with ``<|audio_eos|>`` at input position j; the target there (``labels[j]``) is the first text token
  after the span, the targets at the following positions are the next ones. Counting stops after K text
  targets, at the next speech span, and at an end-of-document input token (a new document does not follow
  the old document's speech).
* ``loss after text``: every other text target.
* ``loss after random text``: the matched control of ``loss after speech``. For every speech span of a
  document, one text target of the same document is drawn at random (outside the after-speech windows)
  and the first K text targets from it are taken, with the same stopping rules. The same documents, the
  same window length, but text before the window instead of speech: the gap between the two is the cost
  of hearing instead of reading, net of where in a document the window falls.

Targets are the positions where ``loss_mask`` is 1 (the batch contract: text, never placeholders, audio
markers or padding), so ``after_speech | after_text == loss_mask`` and the two are disjoint; the control
lies inside ``after_text``.

With a blend of several datasets, the after-speech and control losses are also reported per blend
component (``loss after speech [name]``): the blend's sample-to-dataset ids ride along in the batch, so an
ASR view's transcripts never mix with the interleaved documents' continuations.
"""

from __future__ import annotations

import torch

LM_LOSS = "lm loss"
AFTER_SPEECH = "loss after speech"
AFTER_TEXT = "loss after text"
AFTER_RANDOM_TEXT = "loss after random text"
GAP_LOSSES = (AFTER_SPEECH, AFTER_RANDOM_TEXT)


def component_loss_name(loss: str, component: str) -> str:
    """``loss after speech [interleaved]``: a gap loss restricted to the samples of one blend component."""
    return f"{loss} [{component}]"


def _last_at_or_before(flags: torch.Tensor) -> torch.Tensor:
    """[b, s] position of the latest True at or before each position (-1 when none)."""
    b, s = flags.shape
    pos = torch.arange(s, device=flags.device).expand(b, s)
    return torch.where(flags, pos, torch.full_like(pos, -1)).cummax(dim=1).values


def _window_from(anchor: torch.Tensor, text: torch.Tensor, window: int) -> torch.Tensor:
    """[b, s] bool: text targets among the first ``window`` text targets counted from ``anchor`` (the latest
    anchor position at or before each position, -1 for none), the anchor's own target included."""
    count = text.long().cumsum(dim=1)
    before = torch.where(anchor > 0, count.gather(1, (anchor - 1).clamp(min=0)), torch.zeros_like(count))
    return text & (anchor >= 0) & (count - before <= window)


def after_speech_mask(tokens: torch.Tensor, loss_mask: torch.Tensor, audio_eos_id: int, eod_id: int,
                      window: int) -> torch.Tensor:
    """[b, s] bool: text targets within the first ``window`` text targets after a speech span."""
    if tokens.shape != loss_mask.shape:
        raise ValueError(f"tokens {tuple(tokens.shape)} and loss_mask {tuple(loss_mask.shape)} differ in shape")
    text = loss_mask > 0
    last_eos = _last_at_or_before(tokens == audio_eos_id)
    last_eod = _last_at_or_before(tokens == eod_id)
    return _window_from(last_eos, text, window) & (last_eod < last_eos)


def random_text_mask(tokens: torch.Tensor, loss_mask: torch.Tensor, after_speech: torch.Tensor, audio_eos_id: int,
                     eod_id: int, window: int, seeds: list[int]) -> torch.Tensor:
    """[b, s] bool: the matched control of ``after_speech`` (see the module docstring).

    Row ``i``'s anchors are drawn from a generator seeded with ``seeds[i]`` (the sample's index, so the draw
    does not depend on the batch layout, and never from the training RNGs, so reporting the control does not
    change what the run computes); windows stop at the next speech span and at the end of the document, as
    after-speech windows do.
    """
    if len(seeds) != tokens.shape[0]:
        raise ValueError(f"{len(seeds)} seeds for {tokens.shape[0]} rows")
    text = loss_mask > 0
    eos, eod = tokens == audio_eos_id, tokens == eod_id
    anchors = torch.zeros_like(text)
    for row, seed in enumerate(seeds):
        doc = eod[row].long().cumsum(0)  # an <|eod|> input starts the next document
        cand_pos = torch.nonzero(text[row] & ~after_speech[row] & ~eod[row]).flatten()
        n_cand = torch.bincount(doc[cand_pos], minlength=int(doc[-1]) + 1 if len(doc) else 1)
        span_doc = doc[eos[row]]
        span_doc = span_doc[n_cand[span_doc] > 0]
        if not len(span_doc):
            continue
        gen = torch.Generator().manual_seed(int(seed) % (2**63))
        u = torch.rand(len(span_doc), generator=gen, dtype=torch.float64).to(tokens.device)
        n = n_cand[span_doc]
        pick = (n_cand.cumsum(0) - n_cand)[span_doc] + torch.minimum((u * n).long(), n - 1)
        anchors[row, cand_pos[pick]] = True
    last_anchor = _last_at_or_before(anchors)
    return (_window_from(last_anchor, text, window) & (_last_at_or_before(eos) < last_anchor)
            & (_last_at_or_before(eod) < last_anchor))


class LossFunction:
    """Megatron loss function for one micro-batch: ``(sum, num_tokens, {name: tensor([sum, count])})``.

    Built per micro-batch by the forward step with that micro-batch's masks; called by the pipeline
    schedule with the model's per-token losses ``[b, s]``. ``components`` names the blend components and
    ``dataset_id`` ([b]) says which one each sample comes from; every name is reported for every
    micro-batch (a zero count where a component is absent), so all ranks reduce the same keys.
    """

    def __init__(self, loss_mask: torch.Tensor, after_speech: torch.Tensor | None,
                 random_text: torch.Tensor | None = None, dataset_id: torch.Tensor | None = None,
                 components: list[str] | None = None):
        self.loss_mask = loss_mask.float()
        self.after_speech = after_speech
        self.random_text = random_text
        self.dataset_id = dataset_id
        self.components = components or []
        if self.components and dataset_id is None:
            raise ValueError("per-component losses need the batch's dataset_id")

    def __call__(self, per_token_loss: torch.Tensor):
        losses = per_token_loss.float()
        mask = self.loss_mask.to(losses.device)
        total = (losses * mask).sum()
        count = mask.sum()
        report = {LM_LOSS: torch.stack([total.detach(), count])}
        if self.after_speech is None:
            return total, count.int(), report
        detached = losses.detach()

        def part(m):
            return torch.stack([(detached * m).sum(), m.sum()])

        speech = self.after_speech.to(losses.device).float() * mask
        report[AFTER_SPEECH] = part(speech)
        report[AFTER_TEXT] = part(mask - speech)
        control = None
        if self.random_text is not None:
            control = self.random_text.to(losses.device).float() * mask
            report[AFTER_RANDOM_TEXT] = part(control)
        for i, name in enumerate(self.components):
            rows = (self.dataset_id.to(losses.device) == i).float()[:, None]
            report[component_loss_name(AFTER_SPEECH, name)] = part(speech * rows)
            if control is not None:
                report[component_loss_name(AFTER_RANDOM_TEXT, name)] = part(control * rows)
        return total, count.int(), report
