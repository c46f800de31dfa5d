"""The questions the backbone LLM answers about a seed, and the text it is given.

DeSTA2 asks every seed "What can you hear from the audio?"; later work samples from a pool of instructions.
Each seed gets one prompt from the pool, chosen by a hash of (``prompt_seed``, seed id): the same seed gets
the same prompt on every run and on every machine, whatever the order of the rows.

The user turn the LLM sees is the seed transcript followed by the prompt (:func:`user_text`); in the
conversation written for training, the user turn holds the audio and the prompt only.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from megatron_inserter.errors import UsageError

MAIN_PROMPT = "What can you hear from the audio?"
DEFAULT_POOL = (
    MAIN_PROMPT,
    "Describe what you hear in this audio clip.",
    "What can you tell about the speaker and what they said?",
    "Listen to the recording and describe it in detail.",
    "Who is speaking, how do they sound, and what do they say?",
    "Summarize the audio, including the speaker's voice and the recording conditions.",
    "Describe the speaker's voice and speaking style in this clip.",
    "What is said in this audio, and how is it said?",
)
DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant."


def load_pool(path: str | None) -> tuple[str, ...]:
    """The default pool, or one prompt per non-empty line of ``path`` (UTF-8)."""
    if path is None:
        return DEFAULT_POOL
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise UsageError(f"--prompts {path}: not UTF-8 text (byte {err.start}); one prompt per line") from None
    pool = tuple(line.strip() for line in text.splitlines() if line.strip())
    if not pool:
        raise UsageError(f"--prompts {path} holds no prompt; write one prompt per line")
    return pool


def choose_prompt(pool: tuple[str, ...], seed_id: str, prompt_seed: int = 0) -> str:
    digest = hashlib.sha256(f"{prompt_seed}\0{seed_id}".encode()).digest()
    return pool[int.from_bytes(digest[:8], "big") % len(pool)]


def user_text(seed: str, prompt: str) -> str:
    return f"{seed}\n\n{prompt}"
