"""TTS backends behind one interface (``TTSBackend``): ``espeak`` (default), ``nemo`` and ``openai``
(servers of the OpenAI speech API).

  base.py     the interface: batches of ``TTSRequest`` (text, language, speaker) in, 16 kHz mono audio out
  espeak.py   libespeak-ng in-process through ctypes, the ``espeak-ng`` program as fallback
  nemo.py     FastPitch + HiFi-GAN restored from local ``.nemo`` files
  openai.py   servers of the OpenAI speech API (``POST {base}/audio/speech``)

``build_backend(cfg)`` builds the backend a ``SynthConfig`` names; ``check_backend_inputs(cfg)`` checks what
it needs (model files, espeak-ng, voice pool, API key) before any work starts.
"""

from __future__ import annotations

from megatron_inserter.data.synth.tts.base import (
    SAMPLE_RATE,
    TTSBackend,
    TTSError,
    TTSRequest,
    TTSUnavailableError,
    resampled_length,
    to_16k,
)

__all__ = [
    "SAMPLE_RATE", "TTSBackend", "TTSError", "TTSRequest", "TTSUnavailableError", "build_backend",
    "check_backend_inputs", "resampled_length", "to_16k",
]


def check_backend_inputs(cfg) -> None:
    """Cheap checks that need no synthesis (model files present, espeak-ng findable)."""
    if cfg.tts == "nemo":
        from megatron_inserter.data.synth.tts.nemo import check_model_files

        check_model_files(cfg.tts_model, cfg.vocoder_model)
    elif cfg.tts == "espeak":
        import ctypes.util
        import shutil

        from megatron_inserter.data.synth.tts.espeak import INSTALL_HINT

        have_lib = bool(ctypes.util.find_library("espeak-ng"))
        if not have_lib:
            try:
                ctypes.CDLL("libespeak-ng.so.1")
                have_lib = True
            except OSError:
                pass
        if cfg.espeak_engine == "library" and not have_lib:
            raise TTSUnavailableError(f"libespeak-ng is not installed; {INSTALL_HINT}")
        if cfg.espeak_engine == "command" and not shutil.which("espeak-ng"):
            raise TTSUnavailableError(f"the espeak-ng program is not on PATH; {INSTALL_HINT}")
        if not have_lib and not shutil.which("espeak-ng"):
            raise TTSUnavailableError(f"espeak-ng is not installed; {INSTALL_HINT}")
    elif cfg.tts == "openai":
        from megatron_inserter.data.synth.servers import ServerPool, api_key_from_env
        from megatron_inserter.data.synth.voices import read_voice_pool

        read_voice_pool(cfg.tts_voices)
        api_key_from_env(cfg.tts_api_key_env, "--tts-api-key-env")
        ServerPool("TTS", cfg.tts_url, "/audio/speech")  # the URLs parse
    else:
        raise ValueError(f"unknown TTS backend {cfg.tts!r} (espeak, nemo, openai)")


def build_backend(cfg, api_key: str | None = None) -> TTSBackend:
    """The backend a ``SynthConfig`` asks for (``api_key``: the TTS servers' key, else read from the variable
    ``--tts-api-key-env`` names)."""
    if cfg.tts == "espeak":
        from megatron_inserter.data.synth.tts.espeak import EspeakBackend

        return EspeakBackend(cfg.espeak_engine)
    if cfg.tts == "nemo":
        from megatron_inserter.data.synth.tts.nemo import NemoBackend, NemoConfig

        return NemoBackend(NemoConfig(
            tts_model=cfg.tts_model, vocoder_model=cfg.vocoder_model, batch_size=cfg.tts_batch_size,
            normalize=cfg.text_normalization, cache_dir=cfg.text_norm_cache_dir,
        ))
    if cfg.tts == "openai":
        from megatron_inserter.data.synth.tts.openai import OpenAIBackend, OpenAIConfig

        return OpenAIBackend(OpenAIConfig(
            urls=cfg.tts_url, model=cfg.tts_model, voices=cfg.tts_voices, api_key_env=cfg.tts_api_key_env,
            response_format=cfg.tts_format, pcm_rate=cfg.tts_pcm_rate, concurrency=cfg.tts_concurrency,
            timeout=cfg.tts_timeout, retries=cfg.http_retries,
        ), api_key=api_key)
    raise ValueError(f"unknown TTS backend {cfg.tts!r} (espeak, nemo, openai)")
