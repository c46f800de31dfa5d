"""A tiny interleaved corpus for the training tests: a SentencePiece tokenizer and a preprocessed dataset
(text with short speech spans, the ASR view next to it), written through the data package's own writer."""

from __future__ import annotations

import os
import random

import numpy as np

WORDS = ["the", "cat", "sat", "on", "a", "warm", "mat", "while", "speech", "and", "text", "models", "learn", "to", "read", "and", "listen", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]


def _pcm(num_samples: int, seed: int) -> np.ndarray:
    t = np.arange(num_samples) / 16000.0
    wave = 0.3 * np.sin(2 * np.pi * (180 + 7 * (seed % 40)) * t)
    return np.round(wave * 32767).astype(np.int16)


def documents(n: int, seed: int = 0):
    from megatron_inserter.data.indexed.sources import Document, Segment

    rng = random.Random(seed)
    docs = []
    for d in range(n):
        segments = []
        for s in range(rng.randint(2, 5)):
            text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 14))) + " "
            audio = _pcm(rng.randint(3200, 9600), d * 10 + s) if s % 2 == 1 else None
            segments.append(Segment(text, audio))
        docs.append(Document(f"doc-{seed}-{d}", segments))
    return docs


def build_corpus(root: str, n_docs: int = 64) -> tuple[str, str]:
    """(tokenizer model path, dataset prefix) under ``root``; reused when already there."""
    from megatron_inserter.data.indexed.preprocess import write_dataset
    from megatron_inserter.data.tokenizers import build_tokenizer, train_sentencepiece

    tok_path = os.path.join(root, "tok.model")
    prefix = os.path.join(root, "data", "tiny")
    if os.path.exists(prefix + ".idx"):
        return tok_path, prefix
    docs = documents(n_docs)
    train_sentencepiece(("".join(s.text for s in d.segments) for d in docs), tok_path, vocab_size=300)
    write_dataset(prefix, docs, build_tokenizer("sentencepiece", tok_path), with_audio=True)
    return tok_path, prefix
