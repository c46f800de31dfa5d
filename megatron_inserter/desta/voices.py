"""Who spoke a segment, from what the shard recorded: gender, accent and language.

espeak-ng speaker ids (``espeak:en-gb-scotland+f3:p45:r175``, see ``data.synth.speakers``) name a voice
and a variant: the variant's letter is the gender (``m1``..``m7`` male, ``f1``..``f5`` female) and the
voice is a real accent of English (``en-gb-scotland`` Scottish, ``en-us`` American, ...). A segment's own
``gender`` (what a voice pool says of its voice) wins, and an ``accent`` field is used when synthesis
records one. Anything not recorded is unknown (None), never guessed.
"""

from __future__ import annotations

from dataclasses import dataclass

# espeak-ng 1.51 voice -> accent, named as espeak-ng's own voice list does.
ESPEAK_ACCENTS = {
    "en-us": "American",
    "en-us-nyc": "New York",
    "en": "British",
    "en-gb": "British",
    "en-gb-x-rp": "British",
    "en-gb-scotland": "Scottish",
    "en-gb-x-gbclan": "Lancastrian",
    "en-gb-x-gbcwmd": "West Midlands",
    "en-029": "Caribbean",
    "cmn": "Mandarin",
    "cmn-latn-pinyin": "Mandarin",
    "yue": "Cantonese",
}
LANGUAGES = {"en": "English", "zh": "Chinese", "cmn": "Chinese", "yue": "Chinese"}
GENDERS = {"m": "Male", "f": "Female", "male": "Male", "female": "Female", "man": "Male", "woman": "Female"}


@dataclass(frozen=True)
class Voice:
    gender: str | None = None  # "Male" / "Female"
    accent: str | None = None
    language: str | None = None  # "English" / "Chinese"
    voice: str | None = None  # the backend's voice name


def _espeak(speaker: str) -> tuple[str | None, str | None, str | None]:
    """(voice, variant, gender) of an espeak speaker id, or Nones."""
    parts = speaker.split(":")
    if len(parts) < 2 or parts[0] != "espeak":
        return None, None, None
    voice, _, variant = parts[1].partition("+")
    gender = GENDERS.get(variant[:1]) if variant[1:].isdigit() else None
    return voice, variant or None, gender


def language_name(code: str | None) -> str | None:
    if not code:
        return None
    return LANGUAGES.get(code.lower()) or LANGUAGES.get(code.lower().split("-")[0])


def voice_of(segment, document_lang: str | None = None) -> Voice:
    """The voice attributes of a ``data.document.SpeechSegment`` (and its document's language)."""
    speaker = segment.speaker or ""
    voice, _, gender = _espeak(speaker)
    recorded_gender = getattr(segment, "gender", None)
    if isinstance(recorded_gender, str):
        gender = GENDERS.get(recorded_gender.strip().lower(), gender)
    accent = getattr(segment, "accent", None)
    if not isinstance(accent, str) or not accent:
        accent = ESPEAK_ACCENTS.get(voice) if voice else None
    return Voice(gender=gender, accent=accent,
                 language=language_name(segment.language) or language_name(document_lang),
                 voice=voice or (speaker or None))
