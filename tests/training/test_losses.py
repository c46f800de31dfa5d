"""The modality-gap split of the loss is taken over exactly the right targets (hand-built batch)."""

import torch

from megatron_inserter.training.losses import (
    AFTER_SPEECH,
    AFTER_TEXT,
    LM_LOSS,
    LossFunction,
    after_speech_mask,
)

EOD, BOS, EOS, AUD, PAD = 2, 5, 6, 7, 0


def _batch():
    tokens = torch.tensor([
        # text text [bos aud aud eos] t   t   t  eod  t  [bos aud eos] t
        [10, 11, BOS, AUD, AUD, EOS, 12, 13, 14, EOD, 15, BOS, AUD, EOS, 16],
        # a sample that starts at a span's end; a new span starts inside the window
        [EOS, 20, BOS, AUD, EOS, 21, 22, 23, 24, 25, 26, 27, 28, 29, PAD],
        # text only
        [30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44],
    ])
    labels = torch.cat([tokens[:, 1:], torch.full((3, 1), PAD)], dim=1)
    labels[1, -2] = PAD  # row 1 is padded at the end: its last target is padding
    is_text = ~torch.isin(labels, torch.tensor([BOS, EOS, AUD, PAD]))
    return tokens, labels, is_text.float()


def test_after_speech_targets_are_the_first_k_text_targets_after_each_span():
    tokens, _, loss_mask = _batch()
    mask = after_speech_mask(tokens, loss_mask, audio_eos_id=EOS, eod_id=EOD, window=2)
    got = [torch.nonzero(row).flatten().tolist() for row in mask]
    # row 0: the span ending at 5 -> targets 5, 6 (not 7: window 2); the eod at 9 starts a new document,
    #        so 9 follows text; the span ending at 13 -> target 13.
    # row 1: the span ending at 0 -> target 0 (target 1 is <|audio_bos|>, no text); the span ending at 4 ->
    #        targets 4, 5.
    assert got == [[5, 6, 13], [0, 4, 5], []]
    assert not (mask & (loss_mask == 0)).any()  # only text targets


def test_window_counts_text_targets_not_positions():
    tokens, _, loss_mask = _batch()
    mask = after_speech_mask(tokens, loss_mask, audio_eos_id=EOS, eod_id=EOD, window=4)
    assert torch.nonzero(mask[0]).flatten().tolist() == [5, 6, 7, 8, 13]  # 8's target is the eod: still text


def test_loss_function_splits_the_text_loss_into_two_disjoint_parts():
    tokens, _, loss_mask = _batch()
    mask = after_speech_mask(tokens, loss_mask, audio_eos_id=EOS, eod_id=EOD, window=2)
    per_token = torch.arange(tokens.numel(), dtype=torch.float32).view_as(tokens) / 10
    total, count, report = LossFunction(loss_mask, mask)(per_token)
    assert count.item() == int(loss_mask.sum()) and report[LM_LOSS][1] == loss_mask.sum()
    assert torch.isclose(total, (per_token * loss_mask).sum())
    speech_sum, speech_n = report[AFTER_SPEECH]
    text_sum, text_n = report[AFTER_TEXT]
    assert speech_n.item() == 6 and speech_n + text_n == loss_mask.sum()
    expected = sum(per_token[r, c] for r, c in [(0, 5), (0, 6), (0, 13), (1, 0), (1, 4), (1, 5)])
    assert torch.isclose(speech_sum, expected)
    assert torch.isclose(speech_sum + text_sum, total)
