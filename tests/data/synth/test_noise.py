"""Coloured noise: the spectra have their colour, the SNR measured on the stored (FLAC) audio equals the
recorded one, a share of spans gets noise, and the same span always gets the same noise."""

import io

import numpy as np
import pytest
import soundfile as sf

from megatron_inserter.data.synth.config import SynthConfig
from megatron_inserter.data.synth.noise import NOISE_TYPES, coloured_noise, measured_snr_db, mix_at_snr
from megatron_inserter.data.synth.schedule import build_sample
from tests.data.synth.test_interleave import TEXT, FakeBackend, _doc
from tests.data.synth.test_placement import WordsBackend


def _slope(noise: np.ndarray) -> float:
    """Power spectral slope in dB per decade between 100 Hz and 4 kHz (16 kHz audio)."""
    power = np.abs(np.fft.rfft(noise)) ** 2
    freqs = np.fft.rfftfreq(len(noise), 1 / 16000)
    band = (freqs > 100) & (freqs < 4000)
    return float(np.polyfit(np.log10(freqs[band]), 10 * np.log10(power[band]), 1)[0])


@pytest.mark.parametrize("kind,slope", [("white", 0.0), ("pink", -10.0), ("brown", -20.0)])
def test_noise_colours(kind, slope):
    noise = coloured_noise(kind, 16000 * 4, np.random.default_rng(0))
    assert abs(np.mean(noise**2) - 1.0) < 1e-9 and abs(noise.mean()) < 1e-9
    assert abs(_slope(noise) - slope) < 1.5


def test_mixing_keeps_the_snr_when_the_mix_must_be_scaled_down():
    speech = (0.9 * np.sin(np.arange(16000) / 16000 * 2 * np.pi * 300)).astype(np.float32)
    mix, gain = mix_at_snr(speech, coloured_noise("brown", 16000, np.random.default_rng(1)), 3.0)
    assert gain < 1 and np.max(np.abs(mix)) <= 0.99 + 1e-6
    assert abs(measured_snr_db(speech * gain, mix) - 3.0) < 1e-3


def test_stored_audio_has_the_recorded_snr():
    cfg = SynthConfig(input=("x",), output_dir="o", noise_snr_db="0,30", noise_share=0.5, seed=3)
    sample, _, stats = build_sample(_doc(), cfg, WordsBackend(seconds_per_word=0.3))
    clean, _, _ = build_sample(_doc(), SynthConfig(input=("x",), output_dir="o", seed=3), WordsBackend(0.3))
    noisy = [s for s in sample.document.speech if s.controls.noise]
    assert 0 < len(noisy) < len(sample.document.speech) and stats.spans_noisy == len(noisy)
    assert {s.controls.noise for s in noisy} <= set(NOISE_TYPES)
    assert sum(stats.noise_types.values()) == len(noisy)
    for seg, ref in zip(sample.document.speech, clean.document.speech):
        assert seg.text == ref.text  # noise never moves spans
        audio, _ = sf.read(io.BytesIO(sample.audio[seg.audio]), dtype="float64")
        ref_audio, _ = sf.read(io.BytesIO(clean.audio[ref.audio]), dtype="float64")
        if not seg.controls.noise:
            np.testing.assert_array_equal(audio, ref_audio)
            continue
        assert 0 <= seg.controls.snr_db <= 30
        gain = 1.0 if seg.controls.volume is None else seg.controls.volume
        assert abs(measured_snr_db(ref_audio * gain, audio) - seg.controls.snr_db) < 0.1
    again, _, _ = build_sample(_doc(), cfg, WordsBackend(seconds_per_word=0.3))
    assert again.audio == sample.audio  # seeded per span


def test_noise_share_over_many_spans():
    cfg = SynthConfig(input=("x",), output_dir="o", noise_snr_db="10,10", noise_share=0.3)
    total = noisy = 0
    for i in range(12):
        doc = _doc(TEXT.replace("Sentence", f"Item{i}"))
        sample, _, _ = build_sample(doc, cfg, FakeBackend())
        total += len(sample.document.speech)
        noisy += sum(1 for s in sample.document.speech if s.controls.noise)
        assert all(s.controls.snr_db == 10.0 for s in sample.document.speech if s.controls.noise)
    assert total > 100 and abs(noisy / total - 0.3) < 0.1
