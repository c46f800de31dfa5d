"""Log-mel features match Hugging Face's WhisperFeatureExtractor (the Whisper reference)."""

import numpy as np
import pytest
import torch

from megatron_inserter.models.melspec import LogMel, mel_filters

LENGTHS = [16000 * 3 + 77, 16000 * 7, 4000, 161]


def _audio(lengths, seed=0):
    g = torch.Generator().manual_seed(seed)
    audio = torch.zeros(len(lengths), max(lengths))
    for i, n in enumerate(lengths):
        t = torch.arange(n) / 16000
        audio[i, :n] = 0.3 * torch.sin(2 * np.pi * (200 + 100 * i) * t) + 0.05 * torch.randn(n, generator=g)
    return audio, torch.tensor(lengths)


@pytest.mark.parametrize("bins", [80, 128])
def test_slaney_filters_match_hugging_face(bins):
    from transformers.audio_utils import mel_filter_bank

    ref = mel_filter_bank(201, bins, 0.0, 8000.0, 16000, norm="slaney", mel_scale="slaney")
    np.testing.assert_allclose(mel_filters(bins).numpy().T, ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("bins", [80, 128])
def test_window_mode_matches_whisper_feature_extractor(bins):
    from transformers import WhisperFeatureExtractor

    audio, lens = _audio(LENGTHS)
    ref = WhisperFeatureExtractor(feature_size=bins)(
        [audio[i, :n].numpy() for i, n in enumerate(LENGTHS)], sampling_rate=16000, return_tensors="pt"
    ).input_features
    ours = LogMel(bins).window_mode(audio, lens)
    assert ours.shape == ref.shape == (len(LENGTHS), bins, 3000)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-4)


def test_masked_mode_valid_frames_match_and_padding_is_zero():
    from transformers import WhisperFeatureExtractor

    audio, lens = _audio(LENGTHS, seed=1)
    ref = WhisperFeatureExtractor(feature_size=80)(
        [audio[i, :n].numpy() for i, n in enumerate(LENGTHS)], sampling_rate=16000, return_tensors="pt"
    ).input_features
    feats, frames = LogMel(80).masked_mode(audio, lens)
    assert frames.tolist() == [n // 160 for n in LENGTHS]
    assert feats.shape[2] == max(frames)
    for i, k in enumerate(frames.tolist()):
        torch.testing.assert_close(feats[i, :, :k], ref[i, :, :k], rtol=0, atol=1e-4)
        assert torch.count_nonzero(feats[i, :, k:]) == 0


def test_masked_mode_does_not_depend_on_the_batch():
    audio, lens = _audio(LENGTHS, seed=2)
    batched, frames = LogMel(80).masked_mode(audio, lens)
    for i, n in enumerate(LENGTHS):
        alone, _ = LogMel(80).masked_mode(audio[i:i + 1, :n], lens[i:i + 1])
        k = int(frames[i])
        torch.testing.assert_close(alone[0, :, :k], batched[i, :, :k], rtol=0, atol=1e-5)


def test_lengths_beyond_the_audio_are_refused():
    audio, lens = _audio([1600])
    with pytest.raises(ValueError, match="exceeds the padded audio width"):
        LogMel(80).masked_mode(audio, lens + 1)


def test_casting_the_module_to_bf16_keeps_float32_features():
    """Float16Module casts every buffer of a bf16 model; the features must not change with it."""
    audio, lens = _audio(LENGTHS[:2], seed=3)
    ref = LogMel(80).window_mode(audio, lens)
    cast = LogMel(80).to(torch.bfloat16).window_mode(audio, lens)
    assert cast.dtype == torch.float32
    torch.testing.assert_close(cast, ref, rtol=0, atol=0)


# Whole hops, one ending one frame before the 30 s window and one filling it: the tail is cut at the window.
PACKED_LENGTHS = [16000 * 3, 16000 * 7 + 77, 4000, 161, 160 * 2999, 480_000]


def test_packed_mode_is_window_mode_cut_after_two_tail_frames():
    audio, lens = _audio(PACKED_LENGTHS, seed=4)
    window = LogMel(80).window_mode(audio, lens)
    feats, frames, kept = LogMel(80).packed_mode(audio, lens)
    assert frames.tolist() == [n // 160 for n in PACKED_LENGTHS]
    assert kept.tolist() == [min(n // 160 + 2, 3000) for n in PACKED_LENGTHS]
    assert feats.shape[2] == 3000
    for i, k in enumerate(kept.tolist()):
        torch.testing.assert_close(feats[i, :, :k], window[i, :, :k], rtol=0, atol=1e-5)
        assert torch.count_nonzero(feats[i, :, k:]) == 0


def test_packed_mode_does_not_depend_on_the_batch():
    audio, lens = _audio(PACKED_LENGTHS[:4], seed=5)
    batched, _, kept = LogMel(80).packed_mode(audio, lens)
    for i, n in enumerate(PACKED_LENGTHS[:4]):
        alone, _, _ = LogMel(80).packed_mode(audio[i:i + 1, :n], lens[i:i + 1])
        k = int(kept[i])
        assert alone.shape[2] == k
        torch.testing.assert_close(alone[0], batched[i, :, :k], rtol=0, atol=1e-5)
