"""The model-backed ``Responder`` that evaluation asks for answers (see ``eval.responder``)."""

from __future__ import annotations

import numpy as np
import soundfile as sf

from megatron_inserter.data.frames import SAMPLE_RATE
from megatron_inserter.inference.generate import GenerationConfig, generate
from megatron_inserter.inference.loading import LoadedModel, load_for_inference
from megatron_inserter.inference.prompt import Prompt, encode_prompt, stop_ids
from megatron_inserter.inference.requests import EvalRequest


def read_audio(path: str | None, audio=None, sample_rate: int = SAMPLE_RATE) -> np.ndarray | None:
    """16 kHz mono float32 from a file or an array at any rate."""
    if path is None and audio is None:
        return None
    if path is not None:
        audio, sample_rate = sf.read(path, dtype="float32", always_2d=True)
        audio = audio.mean(axis=1)
    audio = np.asarray(audio, dtype=np.float32).reshape(-1)
    if sample_rate != SAMPLE_RATE:
        import soxr

        audio = soxr.resample(audio, sample_rate, SAMPLE_RATE).astype(np.float32)
    return audio


class ModelResponder:
    def __init__(self, loaded: LoadedModel, template: str = "chatml", batch_size: int = 8):
        self.loaded = loaded
        self.template = template
        self.batch_size = batch_size
        self.stops = stop_ids(loaded.tokenizer, template)

    def respond(self, requests: list[EvalRequest]) -> list[str]:
        out: list[str] = []
        # Requests in one generate() call share sampling settings: group consecutive equal ones.
        start = 0
        while start < len(requests):
            end = start + 1
            while (end < len(requests) and end - start < self.batch_size
                   and requests[end].sampling == requests[start].sampling):
                end += 1
            out.extend(self._respond_batch(requests[start:end]))
            start = end
        return out

    def _respond_batch(self, requests: list[EvalRequest]) -> list[str]:
        tok, spec = self.loaded.tokenizer, self.loaded.config.frame_spec()
        prompts = [encode_prompt(Prompt(text=r.text_prompt,
                                        audio=read_audio(r.audio_path, r.audio, r.sample_rate),
                                        system=r.system_prompt), tok, spec, self.template)
                   for r in requests]
        s = requests[0].sampling
        cfg = GenerationConfig(max_new_tokens=s.max_new_tokens, temperature=s.temperature, top_k=s.top_k,
                               top_p=s.top_p, seed=s.seed)
        ids = generate(self.loaded.model, prompts, cfg, self.stops, pad_id=tok.pad_id)
        return [tok.detokenize(x) for x in ids]


def build_responder(load_dir: str, template: str = "chatml", batch_size: int = 8,
                    tokenizer_model: str | None = None, **_ignored) -> ModelResponder:
    return ModelResponder(load_for_inference(load_dir, tokenizer_model=tokenizer_model),
                          template=template, batch_size=int(batch_size))
