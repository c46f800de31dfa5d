"""Round-trip ASR of synthesized spans (``--asr-url`` / ``--asr-model``, ``--max-span-wer``).

  base.py     the ``Transcriber`` interface, scoring with ``eval.text_norm`` (WER / CER), WAV encoding
  openai.py   servers of the OpenAI transcription API
  whisper.py  a local Hugging Face Whisper directory
  nemo.py     a NeMo ASR ``.nemo`` file
"""

from __future__ import annotations

import os

from megatron_inserter.data.synth.asr.base import Transcriber, round_trip_error
from megatron_inserter.errors import UsageError

__all__ = ["Transcriber", "asr_kind", "build_transcriber", "round_trip_error"]


def asr_kind(urls, model: str | None) -> str:
    """``"openai"`` (servers), ``"whisper"`` (a directory) or ``"nemo"`` (a .nemo file); ``UsageError`` for a
    local model that is neither."""
    if urls:
        return "openai"
    if model and os.path.isdir(model):
        if not os.path.isfile(os.path.join(model, "config.json")):
            raise UsageError(f"--asr-model {model}: the directory has no config.json (give a Hugging Face Whisper "
                             "directory)")
        return "whisper"
    if model and os.path.isfile(model) and model.endswith(".nemo"):
        return "nemo"
    raise UsageError(f"--asr-model {model!r} is neither a Hugging Face Whisper directory nor a .nemo file (give "
                     "--asr-url for ASR servers)")


def build_transcriber(urls, model: str | None, *, api_key: str | None = None, api_key_env: str | None = None,
                      concurrency: int = 4, timeout: float = 120.0, retries: int = 4, device: str | None = None,
                      batch_size: int = 8) -> Transcriber:
    kind = asr_kind(urls, model)
    if kind == "openai":
        from megatron_inserter.data.synth.asr.openai import OpenAITranscriber

        return OpenAITranscriber(urls, model, api_key=api_key, api_key_env=api_key_env, concurrency=concurrency,
                                 timeout=timeout, retries=retries)
    if kind == "whisper":
        from megatron_inserter.data.synth.asr.whisper import WhisperTranscriber

        return WhisperTranscriber(model, device=device, batch_size=batch_size)
    from megatron_inserter.data.synth.asr.nemo import NemoTranscriber

    return NemoTranscriber(model, device=device, batch_size=batch_size)


def transcriber_for(cfg, api_key: str | None = None) -> Transcriber | None:
    """The transcriber ``AsrFlags`` ask for (``None`` without ASR); ``api_key``: the servers' key, else read
    from the variable ``--asr-api-key-env`` names."""
    if not (cfg.asr_url or cfg.asr_model):
        return None
    return build_transcriber(cfg.asr_url, cfg.asr_model, api_key=api_key, api_key_env=cfg.asr_api_key_env,
                             concurrency=cfg.asr_concurrency, timeout=cfg.asr_timeout, retries=cfg.http_retries,
                             device=cfg.asr_device, batch_size=cfg.asr_batch_size)
