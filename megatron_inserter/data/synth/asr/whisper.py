"""Round-trip ASR with a local Hugging Face Whisper directory (``config.json`` of ``model_type`` whisper, its
processor files and weights), batched, on CUDA when available. The language is passed to ``generate`` when
the model is multilingual (its generation config maps languages to tokens)."""

from __future__ import annotations

import numpy as np

from megatron_inserter.data.synth.asr.base import Transcriber
from megatron_inserter.errors import UsageError

MAX_NEW_TOKENS = 128


class WhisperTranscriber(Transcriber):
    name = "whisper"

    def __init__(self, path: str, *, device: str | None = None, batch_size: int = 8):
        try:
            import torch
            from transformers import WhisperForConditionalGeneration, WhisperProcessor
        except ImportError as e:
            raise UsageError(f"--asr-model {path}: a Whisper directory needs torch and transformers ({e})") from None
        self._torch = torch
        self.model = path
        self.batch_size = batch_size
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        self.processor = WhisperProcessor.from_pretrained(path)
        self.net = WhisperForConditionalGeneration.from_pretrained(path, dtype=dtype).to(self.device).eval()
        gen = self.net.generation_config
        self.languages = {k.strip("<|>") for k in (getattr(gen, "lang_to_id", None) or {})}
        limit = int(getattr(self.net.config, "max_target_positions", 448) or 448)
        self.max_new_tokens = max(1, min(MAX_NEW_TOKENS, limit - 8))

    def _generate(self, audio: list[np.ndarray], language: str | None) -> list[str]:
        torch = self._torch
        features = self.processor.feature_extractor(audio, sampling_rate=16000, return_tensors="pt")
        inputs = features.input_features.to(self.device, dtype=self.net.dtype)
        kwargs = {"language": language, "task": "transcribe"} if language in self.languages else {}
        with torch.inference_mode():
            tokens = self.net.generate(inputs, max_new_tokens=self.max_new_tokens, **kwargs)
        return [t.strip() for t in self.processor.tokenizer.batch_decode(tokens, skip_special_tokens=True)]

    def transcribe(self, clips):
        out: list[str | None] = [None] * len(clips)
        for language in sorted({lang for _, lang in clips}):
            idx = [i for i, (_, lang) in enumerate(clips) if lang == language]
            for start in range(0, len(idx), self.batch_size):
                part = idx[start:start + self.batch_size]
                for i, text in zip(part, self._generate([clips[i][0] for i in part], language)):
                    out[i] = text
        return out
