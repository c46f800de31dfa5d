"""NeMo backend on tiny random-weight FastPitch + HiFi-GAN built from the project's YAML configs.

The models are saved with ``save_to`` and restored through the backend, as real ``.nemo`` files would be.
"""

import importlib.util
from pathlib import Path

import pytest

from megatron_inserter.data.synth.tts.base import SAMPLE_RATE, TTSRequest, resampled_length

pytestmark = pytest.mark.skipif(importlib.util.find_spec("nemo") is None, reason="NeMo is not installed")

ASSETS = Path(__file__).resolve().parents[4] / "megatron_inserter" / "assets" / "tts"


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    import torch
    from nemo.collections.tts.models import FastPitchModel, HifiGanModel
    from omegaconf import OmegaConf

    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("nemo_models")
    paths = {}
    for name, cls in (("fastpitch_tiny", FastPitchModel), ("hifigan_tiny", HifiGanModel)):
        cfg = OmegaConf.load(ASSETS / f"{name}.yaml")
        OmegaConf.resolve(cfg)
        paths[name] = str(d / f"{name}.nemo")
        cls(cfg=cfg.model).save_to(paths[name])
    return paths["fastpitch_tiny"], paths["hifigan_tiny"]


@pytest.fixture(scope="module")
def backend(model_files):
    from megatron_inserter.data.synth.tts.nemo import NemoBackend, NemoConfig

    return NemoBackend(NemoConfig(*model_files, device="cpu", normalize=False))


def test_batched_audio_lengths_equal_what_the_model_reports(backend):
    assert backend.speakers("en") == ["nemo:0", "nemo:1", "nemo:2", "nemo:3"]
    requests = [
        TTSRequest("Hello there.", "en", "nemo:1"),
        TTSRequest("A much longer sentence about the river, the valley and the old stone bridge.", "en", "nemo:3"),
        TTSRequest("Hi!", "en", "nemo:0"),
    ]
    raw, mel_lengths = backend.synthesize_raw(requests)
    assert all(n > 0 for n in mel_lengths) and len(set(mel_lengths)) == 3
    assert [len(a) for a in raw] == [n * backend.hop_length for n in mel_lengths]
    audio = backend.synthesize(requests)
    assert [len(a) for a in audio] == [resampled_length(n * backend.hop_length, backend.model_sample_rate)
                                       for n in mel_lengths]
    assert all(abs(len(a) / SAMPLE_RATE - n * backend.hop_length / backend.model_sample_rate) < 0.01
               for a, n in zip(audio, mel_lengths))
    # Padding with the vocabulary's pad id keeps every item's length what it is alone.
    assert [backend.synthesize_raw([r])[1][0] for r in requests] == mel_lengths

