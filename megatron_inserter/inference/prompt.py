"""Turning (system prompt, audio, text prompt) into token ids with audio placeholders.

Templates:
- ``plain``: the pre-training layout, ``<|audio_bos|> <|AUDIO|> x N <|audio_eos|> text`` — the model
  continues the text after the speech (what the demo uses).
- ``chatml``: Qwen2 / Qwen2-Audio chat turns, the audio first in the user turn:
  ``<|im_start|>system\\n{system}<|im_end|>\\n<|im_start|>user\\nAudio 1: <audio>\\n{text}<|im_end|>\\n
  <|im_start|>assistant\\n``.
N comes from the model's FrameSpec through the shared frame-count function, one run of placeholders per
encoder window, exactly as the training data lays speech out.

Both templates begin with the tokenizer's BOS when it has one (SentencePiece ``<s>``, Llama 3's
``<|begin_of_text|>``; Qwen2's tokenizers have none), as every training document does
(``data.indexed.writer``), so a prompt starts where the model's documents start.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from megatron_inserter.data.frames import FrameSpec, split_windows, window_frames

TEMPLATES = ("plain", "chatml")
DEFAULT_SYSTEM_PROMPT = "You are a helpful AI assistant. Please answer the question based on the provided audio."


@dataclass
class Prompt:
    text: str = ""
    audio: np.ndarray | None = None  # float32 mono PCM at 16 kHz
    system: str | None = None


@dataclass
class EncodedPrompt:
    ids: list[int]
    clips: list[np.ndarray]  # one per encoder window, in placeholder order


def single_token_id(tokenizer, piece: str) -> int:
    ids = tokenizer.tokenize(piece)
    if len(ids) != 1:
        raise ValueError(f"the tokenizer {tokenizer.tokenizer_model!r} has no single token for {piece!r} "
                         f"(got {ids}); use --prompt-template plain with this tokenizer")
    return ids[0]


def has_chat_tokens(tokenizer) -> bool:
    """Whether the tokenizer has one token each for ``<|im_start|>`` and ``<|im_end|>`` (``chatml`` needs them)."""
    return all(len(tokenizer.tokenize(piece)) == 1 for piece in ("<|im_start|>", "<|im_end|>"))


def document_start(tokenizer) -> list[int]:
    """``[BOS]`` when the tokenizer has one, else ``[]``: how every training document begins."""
    bos = getattr(tokenizer, "bos_id", None)
    return [] if bos is None else [int(bos)]


def audio_tokens(tokenizer, audio: np.ndarray, spec: FrameSpec) -> EncodedPrompt:
    """``<|audio_bos|> <|AUDIO|> x N <|audio_eos|>`` and the clips (windows) that fill the placeholders."""
    audio = np.asarray(audio, dtype=np.float32).reshape(-1)
    # Whole 10 ms hops only: Hugging Face's Whisper/Qwen2-Audio processors count ceil(n / hop) mel frames
    # where frames.py counts n // hop; on whole hops they agree, so a converted model sees what it saw there.
    audio = audio[: len(audio) - len(audio) % spec.hop_length]
    clips, n = [], 0
    start = 0
    for length, frames in zip(split_windows(len(audio), spec), window_frames(len(audio), spec)):
        if frames > 0:
            clips.append(audio[start:start + length])
            n += frames
        start += length
    if n == 0:
        raise ValueError(f"audio of {len(audio)} samples is too short for one encoder frame "
                         f"(at least {spec.min_samples} samples are needed)")
    ids = [tokenizer.audio_bos_id] + [tokenizer.audio_placeholder_id] * n + [tokenizer.audio_eos_id]
    return EncodedPrompt(ids, clips)


def encode_prompt(prompt: Prompt, tokenizer, spec: FrameSpec, template: str = "plain") -> EncodedPrompt:
    if template not in TEMPLATES:
        raise ValueError(f"unknown prompt template {template!r}; choose one of {TEMPLATES}")
    audio = audio_tokens(tokenizer, prompt.audio, spec) if prompt.audio is not None else EncodedPrompt([], [])
    start = document_start(tokenizer)
    if template == "plain":
        text = tokenizer.tokenize(prompt.text) if prompt.text else []
        return EncodedPrompt(start + audio.ids + text, audio.clips)
    system = prompt.system if prompt.system is not None else DEFAULT_SYSTEM_PROMPT
    im_start = single_token_id(tokenizer, "<|im_start|>")
    im_end = single_token_id(tokenizer, "<|im_end|>")
    nl = tokenizer.tokenize("\n")
    ids = start + [im_start] + tokenizer.tokenize(f"system\n{system}") + [im_end] + nl
    ids += [im_start] + tokenizer.tokenize("user\n")
    if audio.ids:
        ids += tokenizer.tokenize("Audio 1: ") + audio.ids + nl
    ids += (tokenizer.tokenize(prompt.text) if prompt.text else []) + [im_end] + nl
    ids += [im_start] + tokenizer.tokenize("assistant\n")
    return EncodedPrompt(ids, audio.clips)


def stop_ids(tokenizer, template: str) -> set[int]:
    stops = {tokenizer.eod_id}
    if template == "chatml":
        stops.add(single_token_id(tokenizer, "<|im_end|>"))
    return stops
