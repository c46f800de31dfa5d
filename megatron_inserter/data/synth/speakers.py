"""Synthetic speakers: the espeak-ng pool (voice x variant x pitch x speed) and how spans pick from a pool.

Every pool is a fixed, ordered list, so a speaker index drawn from a document's generator always names
the same voice (pools of TTS servers come from a voice file: ``voices.py``). Speaker ids are plain strings stored in the shard metadata, e.g. ``espeak:en-us+f3:p45:r175``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Base voices that load in-process (the voice name "en-gb" does not; "en" is British English).
ESPEAK_VOICES = {
    "en": ("en-us", "en", "en-gb-x-rp", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029",
           "en-us-nyc"),
    # "cmn" reads Chinese characters badly in espeak-ng 1.51; the pinyin voice reads them correctly.
    "zh": ("cmn-latn-pinyin",),
}
ESPEAK_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5")
ESPEAK_PITCHES = (30, 45, 60, 75)  # espeakPITCH, 0-100 (50 = normal)
ESPEAK_RATES = (155, 175, 195)  # espeakRATE, words per minute


@dataclass(frozen=True)
class EspeakSpeaker:
    voice: str
    variant: str
    pitch: int
    rate: int

    @property
    def voice_name(self) -> str:
        return f"{self.voice}+{self.variant}"

    @property
    def id(self) -> str:
        return f"espeak:{self.voice_name}:p{self.pitch}:r{self.rate}"

    @classmethod
    def from_id(cls, speaker_id: str) -> EspeakSpeaker:
        try:
            tag, name, pitch, rate = speaker_id.split(":")
            voice, variant = name.split("+")
            assert tag == "espeak" and pitch[0] == "p" and rate[0] == "r"
            return cls(voice, variant, int(pitch[1:]), int(rate[1:]))
        except (ValueError, AssertionError, IndexError):
            raise ValueError(f"not an espeak speaker id: {speaker_id!r}") from None


def espeak_speaker_pool(language: str) -> list[EspeakSpeaker]:
    if language not in ESPEAK_VOICES:
        raise ValueError(f"no espeak voices for language {language!r} (supported: {sorted(ESPEAK_VOICES)})")
    return [
        EspeakSpeaker(voice, variant, pitch, rate)
        for voice in ESPEAK_VOICES[language]
        for variant in ESPEAK_VARIANTS
        for pitch in ESPEAK_PITCHES
        for rate in ESPEAK_RATES
    ]


def choose_speakers(pool: list[str], num_spans: int, policy: str, rng: np.random.Generator) -> list[str]:
    """One speaker per span (``policy="span"``) or one for the whole document (``"document"``)."""
    if not pool:
        raise ValueError("empty speaker pool")
    if policy == "document":
        return [pool[int(rng.integers(len(pool)))]] * num_spans
    if policy == "span":
        return [pool[int(i)] for i in rng.integers(len(pool), size=num_spans)]
    raise ValueError(f"unknown speaker policy {policy!r}")


def choose_speakers_by_language(pools: dict[str, list[str]], languages: list[str | None], main: str, policy: str,
                                rng: np.random.Generator) -> list[str | None]:
    """A speaker per span from the pool of the span's language (``None`` for a span that stays text).

    The draws for the document's ``main`` language come first and are exactly those of ``choose_speakers``
    over all spans; spans of another language then draw from their own pool (per span, or once per
    language with ``policy="document"``), so a single-language document gets the same voices as ever.
    """
    out: list[str | None] = list(choose_speakers(pools[main], len(languages), policy, rng))
    per_language: dict[str, str] = {}
    for i, lang in enumerate(languages):
        if lang is None:
            out[i] = None
        elif lang != main:
            if policy == "document":
                if lang not in per_language:
                    per_language[lang] = choose_speakers(pools[lang], 1, policy, rng)[0]
                out[i] = per_language[lang]
            else:
                out[i] = choose_speakers(pools[lang], 1, policy, rng)[0]
    return out


def other_voice(pool: list[str], tried: list[str], rng: np.random.Generator) -> str:
    """A voice of ``pool`` not in ``tried`` (any voice when all were tried), drawn from ``rng``: the voice a
    span is spoken by again after a failed synthesis or a failed ASR check. Constant time in the pool size."""
    if not pool:
        raise ValueError("empty speaker pool")
    excluded = set(tried)
    if len(excluded) >= len(pool):
        return pool[int(rng.integers(len(pool)))]
    for _ in range(32):
        voice = pool[int(rng.integers(len(pool)))]
        if voice not in excluded:
            return voice
    start = int(rng.integers(len(pool)))  # nearly every voice was tried: walk on from a random place
    return next(pool[(start + i) % len(pool)] for i in range(len(pool)) if pool[(start + i) % len(pool)] not in excluded)


def espeak_gender(speaker_id: str) -> str | None:
    """``male``/``female`` from an espeak speaker's variant (``m1``..``m7``, ``f1``..``f5``)."""
    try:
        variant = EspeakSpeaker.from_id(speaker_id).variant
    except ValueError:
        return None
    return {"m": "male", "f": "female"}.get(variant[:1])
