"""What a generation backend is asked: one prompt (audio and/or text) with its sampling settings.

Defined here, below evaluation, so the model-backed responder (``inference.model_responder``) and every
evaluation (``eval``) share it without inference importing evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class SamplingParams:
    """Decoding settings for one request. ``temperature == 0`` means greedy decoding."""

    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0  # 0 = no top-k filtering
    max_new_tokens: int = 1024
    seed: int | None = None  # per-request seed for sampled decoding; None = the responder's own


@dataclass
class EvalRequest:
    """One prompt for the model.

    Audio is given either as ``audio_path`` (a file soundfile can read; resampled to 16 kHz mono by the
    responder if needed) or as ``audio`` (float32 mono PCM in [-1, 1] at ``sample_rate``); both None means
    a text-only request. In the chat turn the audio comes first, then ``text_prompt`` ("" = audio only).
    """

    text_prompt: str = ""
    audio_path: str | None = None
    audio: Any = None  # numpy.ndarray [num_samples] float32, or None
    sample_rate: int = 16000
    system_prompt: str | None = None
    sampling: SamplingParams = field(default_factory=SamplingParams)
    request_id: str = ""  # opaque id for logs; never interpreted by the responder

    @property
    def has_audio(self) -> bool:
        return self.audio_path is not None or self.audio is not None
