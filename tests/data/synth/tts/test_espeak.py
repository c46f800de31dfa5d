"""espeak-ng backend: in-process ctypes engine, command-line fallback, distinct speakers."""

import shutil
import struct

import numpy as np
import pytest

from megatron_inserter.data.synth.speakers import EspeakSpeaker
from megatron_inserter.data.synth.tts.base import SAMPLE_RATE, TTSRequest
from megatron_inserter.data.synth.tts.espeak import EspeakBackend, _parse_wav

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")

EN = "The old stone bridge has been rebuilt three times."
ZH = "今天天气很好，我们去公园散步吧。"


@pytest.fixture(scope="module")
def backend():
    return EspeakBackend("library")


def _duration(a):
    return len(a) / SAMPLE_RATE


def test_english_and_mandarin_give_16k_float_audio(backend):
    en, zh = backend.synthesize([
        TTSRequest(EN, "en", backend.speakers("en")[0]), TTSRequest(ZH, "zh", backend.speakers("zh")[0]),
    ])
    for a in (en, zh):
        assert a.dtype == np.float32 and a.ndim == 1
        assert 0.0 < np.abs(a).max() <= 1.0
    assert 1.5 < _duration(en) < 8.0
    assert 1.5 < _duration(zh) < 8.0  # 15 characters read as Mandarin syllables, not spelled pinyin


def test_speakers_sound_different(backend):
    ids = [
        EspeakSpeaker("en-us", "m1", 45, 175).id, EspeakSpeaker("en-us", "f3", 45, 175).id,
        EspeakSpeaker("en-gb-x-rp", "m1", 45, 175).id, EspeakSpeaker("en-us", "m1", 75, 175).id,
    ]
    audio = backend.synthesize([TTSRequest(EN, "en", i) for i in ids])
    for i in range(len(audio)):
        for j in range(i + 1, len(audio)):
            n = min(len(audio[i]), len(audio[j]))
            assert not np.allclose(audio[i][:n], audio[j][:n], atol=1e-3)
    slow, fast = backend.synthesize([
        TTSRequest(EN, "en", EspeakSpeaker("en-us", "m1", 45, 155).id),
        TTSRequest(EN, "en", EspeakSpeaker("en-us", "m1", 45, 195).id),
    ])
    assert _duration(fast) < 0.9 * _duration(slow)


def test_command_fallback_matches_library_duration(backend):
    spk = backend.speakers("en")[5]
    lib = backend.synthesize([TTSRequest(EN, "en", spk)])[0]
    cmd = EspeakBackend("command").synthesize([TTSRequest(EN, "en", spk)])[0]
    assert abs(_duration(cmd) - _duration(lib)) < 0.25 * _duration(lib)


def test_streamed_wav_with_unset_sizes_parses():
    pcm = (np.arange(100, dtype=np.int16) * 7).tobytes()
    header = b"RIFF" + struct.pack("<I", 0xFFFFFFFF) + b"WAVE"
    fmt = b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, 22050, 44100, 2, 16)
    data = b"data" + struct.pack("<I", 0xFFFFFFFF) + pcm
    samples, rate = _parse_wav(header + fmt + data)
    assert rate == 22050 and np.array_equal(samples, np.arange(100, dtype=np.int16) * 7)
