"""NeMo backend: FastPitch (text -> mel) + HiFi-GAN (mel -> waveform), restored from local ``.nemo`` files.

NeMo is imported only when this backend is built. Requests are batched: token sequences are padded with
the encoder's padding id (the vocabulary's pad id), FastPitch reports each item's mel length, and each
waveform is cut to ``mel_length * hop`` before resampling to 16 kHz, so padding never leaks into audio.
Multi-speaker FastPitch models (``n_speakers > 1``) get one pool entry per speaker id. Text is normalized
with nemo_text_processing when it is installed (built once per language, cached in ``cache_dir``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from megatron_inserter.data.document import TTSControls
from megatron_inserter.data.synth.tts.base import TTSBackend, TTSRequest, TTSUnavailableError, to_16k

NORMALIZER_LANGS = {"en": "en", "zh": "zh"}


@dataclass(frozen=True)
class NemoConfig:
    tts_model: str
    vocoder_model: str
    device: str | None = None  # None: cuda when available, else cpu
    batch_size: int = 16
    normalize: bool = True
    cache_dir: str | None = None
    pace: float = 1.0


def check_model_files(tts_model: str | None, vocoder_model: str | None) -> None:
    """Raise a clear error before any work when a model file is missing."""
    for flag, path in (("--tts-model", tts_model), ("--vocoder-model", vocoder_model)):
        if not path:
            raise TTSUnavailableError(
                f"--tts nemo needs {flag} pointing at a local .nemo file (FastPitch for --tts-model, "
                "HiFi-GAN for --vocoder-model)"
            )
        if not os.path.isfile(path):
            raise TTSUnavailableError(f"{flag} {path!r} does not exist; give the path of a local .nemo file")


def _import_nemo():
    try:
        import torch
        from nemo.collections.tts.models import FastPitchModel, HifiGanModel
    except ImportError as e:
        hint = " (NeMo also needs webdataset installed)" if "webdataset" in str(e) else ""
        raise TTSUnavailableError(
            f"NeMo TTS could not be imported: {e}{hint}; install it with `pip install 'megatron-inserter[tts]'`"
        ) from e
    return torch, FastPitchModel, HifiGanModel


class NemoBackend(TTSBackend):
    name = "nemo"

    def __init__(self, cfg: NemoConfig):
        check_model_files(cfg.tts_model, cfg.vocoder_model)
        torch, FastPitchModel, HifiGanModel = _import_nemo()
        self._torch = torch
        self.cfg = cfg
        self.batch_size = cfg.batch_size
        self.device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        model_cfg = FastPitchModel.restore_from(cfg.tts_model, return_config=True, map_location="cpu")
        self._normalizer_case = "cased"
        if "text_normalizer" in model_cfg:
            # The model would build its own normalizer without a cache (tens of seconds); use ours instead.
            from omegaconf import open_dict

            self._normalizer_case = model_cfg.text_normalizer.get("input_case", "cased")
            with open_dict(model_cfg):
                del model_cfg["text_normalizer"]
        self.tts = FastPitchModel.restore_from(cfg.tts_model, override_config_path=model_cfg, map_location=self.device)
        self.vocoder = HifiGanModel.restore_from(cfg.vocoder_model, map_location=self.device)
        self.tts.eval()
        self.vocoder.eval()
        self.pad_id = int(self.tts.fastpitch.encoder.padding_idx)
        self.hop_length = int(self.vocoder.cfg.preprocessor.n_window_stride)
        self.model_sample_rate = int(self.vocoder.cfg.preprocessor.sample_rate)
        n_speakers = int(self.tts.cfg.get("n_speakers", 0) or 0)
        self.n_speakers = n_speakers if self.tts.fastpitch.speaker_emb is not None else 0
        self._pool = [f"nemo:{i}" for i in range(max(self.n_speakers, 1))]
        self._normalizers: dict[str, object] = {}

    def speakers(self, language: str) -> list[str]:
        return self._pool

    def describe(self, request: TTSRequest) -> tuple[str | None, TTSControls]:
        model = f"{os.path.basename(self.cfg.tts_model)}+{os.path.basename(self.cfg.vocoder_model)}"
        return model, TTSControls(speed=self.cfg.pace)

    def _normalize(self, text: str, language: str) -> str:
        if not self.cfg.normalize or language not in NORMALIZER_LANGS:
            return text
        if language not in self._normalizers:
            try:
                from nemo_text_processing.text_normalization.normalize import Normalizer
            except ImportError:
                self._normalizers[language] = None
            else:
                cache = self.cfg.cache_dir or os.path.join(os.path.expanduser("~"), ".cache", "megatron_inserter",
                                                           "text_norm")
                os.makedirs(cache, exist_ok=True)
                self._normalizers[language] = Normalizer(
                    input_case=self._normalizer_case, lang=NORMALIZER_LANGS[language], cache_dir=cache
                )
        norm = self._normalizers[language]
        return norm.normalize(text, punct_post_process=True) if norm is not None else text

    def synthesize_raw(self, requests: list[TTSRequest]) -> tuple[list[np.ndarray], list[int]]:
        """Audio at the model's sample rate (each cut to ``mel_length * hop``) and the mel lengths."""
        torch = self._torch
        tokens = [self.tts.parse(self._normalize(r.text, r.language), normalize=False)[0] for r in requests]
        keep = [i for i, t in enumerate(tokens) if len(t) > 0]
        audio: list[np.ndarray] = [np.zeros(0, dtype=np.float32)] * len(requests)
        mel_lengths = [0] * len(requests)
        if not keep:
            return audio, mel_lengths
        longest = max(len(tokens[i]) for i in keep)
        batch = torch.full((len(keep), longest), self.pad_id, dtype=torch.long)
        for row, i in enumerate(keep):
            batch[row, : len(tokens[i])] = tokens[i]
        speaker = None
        if self.n_speakers > 1:
            speaker = torch.tensor([int(requests[i].speaker.split(":")[1]) for i in keep], dtype=torch.long)
            speaker = speaker.to(self.device)
        with torch.inference_mode():
            spect, mel_lens, *_ = self.tts(text=batch.to(self.device), durs=None, pitch=None, speaker=speaker,
                                           pace=self.cfg.pace)
            wave = self.vocoder.convert_spectrogram_to_audio(spec=spect)
        wave = wave.float().cpu().numpy()
        for row, i in enumerate(keep):
            n = int(mel_lens[row])
            mel_lengths[i] = n
            audio[i] = wave[row, : n * self.hop_length].astype(np.float32)
        return audio, mel_lengths

    def synthesize(self, requests: list[TTSRequest]) -> list[np.ndarray]:
        raw, _ = self.synthesize_raw(requests)
        return [to_16k(a, self.model_sample_rate) for a in raw]
