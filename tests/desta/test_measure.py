"""Measurements against signals whose answer is known: sines, silence, espeak at set pitches and rates, noise at
set SNRs."""

import numpy as np
import pytest

from megatron_inserter.desta.measure import count_syllables, measure, yin_f0
from tests.desta.shards import PAUSED_TEXTS, coloured_noise, mix_at_snr, synthesize

SR = 16_000


@pytest.mark.parametrize("f0", [80.0, 150.0, 310.0])
def test_yin_finds_the_frequency_of_a_harmonic_tone(f0):
    t = np.arange(SR) / SR
    tone = sum(0.3 / k * np.sin(2 * np.pi * k * f0 * t) for k in (1, 2, 3))
    found = yin_f0(tone)
    assert np.nanmedian(found) == pytest.approx(f0, rel=0.01)
    assert np.isnan(yin_f0(np.random.default_rng(0).standard_normal(SR) * 0.1)).mean() > 0.9  # noise: unvoiced


@pytest.mark.parametrize("text,syllables,words", [
    ("The cat sat.", 3, 3), ("Tomorrow, perhaps, we will walk home.", 9, 6), ("beautiful table", 5, 2),
    ("今天天气很好", 6, 6), ("Call 911 now", 5, 3), ("", 0, 0),
])
def test_syllables_and_words_of_a_transcript(text, syllables, words):
    assert count_syllables(text) == (syllables, words)


def test_a_clip_with_digital_silence_is_noise_free_and_the_same_clip_with_noise_is_not():
    clean = synthesize(PAUSED_TEXTS[0], "espeak:en-us+m3:p50:r175")
    m = measure(clean, PAUSED_TEXTS[0])
    assert m.noise_free and m.snr_db is None and m.pause_s > 0.2
    noisy = mix_at_snr(clean, coloured_noise("white", len(clean), np.random.default_rng(0)), 40.0)
    m = measure(noisy, PAUSED_TEXTS[0])
    assert not m.noise_free and m.snr_db is not None


def test_higher_espeak_pitch_measures_higher_and_faster_rate_measures_faster():
    text = PAUSED_TEXTS[1]
    for voice in ("en-us+m3", "en-gb-scotland+f2"):
        low, high = (measure(synthesize(text, f"espeak:{voice}:p{p}:r175"), text).f0_hz for p in (20, 80))
        assert high > 1.2 * low
        slow, normal, fast = (measure(synthesize(text, f"espeak:{voice}:p50:r{r}"), text).syllables_per_s
                              for r in (100, 175, 300))
        assert slow < normal < fast and fast > 2 * slow


@pytest.mark.parametrize("snr_db", [5.0, 10.0, 20.0])
def test_snr_of_white_noise_mixed_by_synthesis_is_measured_within_one_db(snr_db):
    from megatron_inserter.data.synth import noise

    rng = np.random.default_rng(int(snr_db))
    for text, voice in zip(PAUSED_TEXTS, ("en-us+m3", "en-gb-scotland+f2", "en+m1")):
        clean = synthesize(text, f"espeak:{voice}:p50:r175")
        mix, _ = noise.mix_at_snr(clean, noise.coloured_noise("white", len(clean), rng), snr_db)
        assert abs(measure(mix, text).snr_db - snr_db) < 1.0


def test_silence_and_tiny_clips_measure_as_unknown_not_as_numbers():
    m = measure(np.zeros(SR), "hello there")
    assert (m.f0_hz, m.loudness_dbfs, m.snr_db, m.syllables_per_s) == (None, None, None, None)
    assert m.noise_free
    m = measure(np.full(100, 0.1), "hi")
    assert m.f0_hz is None and m.duration_s == pytest.approx(100 / SR)
    with pytest.raises(ValueError):
        measure(np.zeros(0))
