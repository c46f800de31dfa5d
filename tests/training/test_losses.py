"""The modality-gap split of the loss is taken over exactly the right targets (hand-built batches): after
speech, after text, the random-text control, per blend component, and split over context-parallel ranks."""

import pytest
import torch

from megatron_inserter.models.context_parallel import slice_for_cp
from megatron_inserter.training.losses import (
    AFTER_RANDOM_TEXT,
    AFTER_SPEECH,
    AFTER_TEXT,
    LM_LOSS,
    LossFunction,
    after_speech_mask,
    component_loss_name,
    random_text_mask,
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


def _speech_docs():
    """Two rows; row 0 has two documents (one with a speech span, one text only), row 1 two spans."""
    tokens = torch.tensor([
        # 0   1   2    3    4    5   6   7   8   9  10   11  12  13  14  15
        [10, 11, 12, BOS, AUD, EOS, 13, 14, 15, 16, EOD, 17, 18, 19, 20, 21],
        [30, 31, BOS, AUD, EOS, 32, 33, 34, 35, BOS, AUD, AUD, EOS, 36, 37, 38],
    ])
    labels = torch.cat([tokens[:, 1:], torch.full((2, 1), PAD)], dim=1)
    loss_mask = (~torch.isin(labels, torch.tensor([BOS, EOS, AUD, PAD]))).float()
    return tokens, loss_mask


def test_random_text_control_draws_one_window_per_span_inside_the_same_document():
    tokens, loss_mask = _speech_docs()
    after = after_speech_mask(tokens, loss_mask, audio_eos_id=EOS, eod_id=EOD, window=2)
    for seed in range(20):
        control = random_text_mask(tokens, loss_mask, after, EOS, EOD, window=2, seeds=[seed, seed + 100])
        assert not (control & after).any() and not (control & (loss_mask == 0)).any()
        # Row 0: only the first document (positions 0..9) holds speech; the text-only one never gets a window.
        assert not control[0, 10:].any() and 1 <= int(control[0].sum()) <= 2
        # Row 0's candidates are the text targets 0, 1 and 7, 8, 9 (5, 6 follow the span; 2's target is
        # <|audio_bos|>): a window from 0 covers 0, 1; from 1 covers 1 (the span stops it); from 7: 7, 8; from
        # 8: 8, 9 (9's target is the <|eod|>, still text); from 9: 9 (10 starts the next document).
        assert torch.nonzero(control[0]).flatten().tolist() in ([0, 1], [1], [7, 8], [8, 9], [9])
        # Row 1: two spans, so two anchors; windows never cross a speech span.
        assert 1 <= int(control[1].sum()) <= 4
    again = random_text_mask(tokens, loss_mask, after, EOS, EOD, window=2, seeds=[3, 103])
    alone = random_text_mask(tokens[1:], loss_mask[1:], after[1:], EOS, EOD, window=2, seeds=[103])
    assert torch.equal(again, random_text_mask(tokens, loss_mask, after, EOS, EOD, window=2, seeds=[3, 103]))
    assert torch.equal(again[1:], alone)  # a sample's draw depends on its own seed, not on its batch


def test_random_text_control_is_drawn_uniformly_over_the_candidates():
    tokens, loss_mask = _speech_docs()
    after = after_speech_mask(tokens, loss_mask, audio_eos_id=EOS, eod_id=EOD, window=1)
    starts = {}
    for seed in range(400):
        control = random_text_mask(tokens[:1], loss_mask[:1], after[:1], EOS, EOD, window=1, seeds=[seed])
        (pos,) = torch.nonzero(control[0]).flatten().tolist()
        starts[pos] = starts.get(pos, 0) + 1
    # Row 0's candidates: 0, 1, 6, 7, 8, 9 (window 1: only 5 follows the span).
    assert sorted(starts) == [0, 1, 6, 7, 8, 9]
    assert min(starts.values()) > 400 / 6 / 2


def test_gap_losses_are_reported_per_blend_component():
    tokens, loss_mask = _speech_docs()
    tokens = torch.cat([tokens, tokens[1:]])  # row 2: row 1 again, from the other blend component
    loss_mask = torch.cat([loss_mask, loss_mask[1:]])
    after = after_speech_mask(tokens, loss_mask, audio_eos_id=EOS, eod_id=EOD, window=2)
    control = torch.zeros_like(after)
    control[0, [0, 1]] = control[1, [6, 7]] = control[2, [0]] = True  # a hand-picked control
    per_token = torch.arange(tokens.numel(), dtype=torch.float32).view_as(tokens)
    dataset_id = torch.tensor([0, 0, 1])
    _, _, report = LossFunction(loss_mask, after, control, dataset_id, ["inter", "asr"])(per_token)
    # after speech: row 0 -> targets 5, 6; row 1 -> 4, 5 and 12, 13; row 2 (component 1) -> the same as row 1.
    expected = {
        component_loss_name(AFTER_SPEECH, "inter"): (5 + 6 + (16 + 4) + (16 + 5) + (16 + 12) + (16 + 13), 6),
        component_loss_name(AFTER_SPEECH, "asr"): ((32 + 4) + (32 + 5) + (32 + 12) + (32 + 13), 4),
        component_loss_name(AFTER_RANDOM_TEXT, "inter"): (0 + 1 + (16 + 6) + (16 + 7), 4),
        component_loss_name(AFTER_RANDOM_TEXT, "asr"): (32 + 0, 1),
        AFTER_RANDOM_TEXT: (0 + 1 + (16 + 6) + (16 + 7) + 32, 5),
    }
    for name, (total, count) in expected.items():
        assert report[name].tolist() == [float(total), float(count)], name
    assert report[AFTER_SPEECH].tolist() == [float(sum(v[0] for k, v in expected.items() if k.startswith(
        AFTER_SPEECH))), 10.0]
    with pytest.raises(ValueError, match="dataset_id"):
        LossFunction(loss_mask, after, control, None, ["inter", "asr"])


def test_context_parallel_halves_add_up_to_the_whole_report():
    tokens, loss_mask = _speech_docs()
    after = after_speech_mask(tokens, loss_mask, audio_eos_id=EOS, eod_id=EOD, window=2)
    control = random_text_mask(tokens, loss_mask, after, EOS, EOD, window=2, seeds=[1, 2])
    per_token = torch.rand(tokens.shape, generator=torch.Generator().manual_seed(0))
    dataset_id = torch.tensor([0, 1])
    whole = LossFunction(loss_mask, after, control, dataset_id, ["a", "b"])(per_token)[2]
    halves = [LossFunction(*(slice_for_cp(t, 1, 2, r) for t in (loss_mask, after, control)), dataset_id, ["a", "b"])(
        slice_for_cp(per_token, 1, 2, r))[2] for r in range(2)]
    assert sorted(whole) == sorted(halves[0])
    for name in whole:
        assert torch.allclose(halves[0][name] + halves[1][name], whole[name]), name
