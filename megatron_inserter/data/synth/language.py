"""Which language a document is in (its ``lang`` field when present, else a character-class guess), and
which language each span must be spoken in (from its own letters)."""

from __future__ import annotations

SUPPORTED = ("en", "zh")

_ALIASES = {
    "en": "en", "eng": "en", "english": "en",
    "zh": "zh", "zho": "zh", "chi": "zh", "cmn": "zh", "chinese": "zh", "mandarin": "zh",
}


def normalize_language(value: str) -> str | None:
    """``"en-US"`` -> ``"en"``, ``"zh-Hans"`` -> ``"zh"``; ``None`` for a language this pipeline cannot speak."""
    base = str(value).strip().lower().replace("_", "-").split("-")[0]
    return _ALIASES.get(base)


def is_cjk(ch: str) -> bool:
    o = ord(ch)
    return (
        0x4E00 <= o <= 0x9FFF  # unified ideographs
        or 0x3400 <= o <= 0x4DBF  # extension A
        or 0xF900 <= o <= 0xFAFF  # compatibility ideographs
        or 0x20000 <= o <= 0x2FA1F  # extensions B-F, compatibility supplement
    )


def guess_language(text: str, sample_chars: int = 2000) -> str | None:
    """``"zh"`` when CJK ideographs make up at least 30% of the letters, ``"en"`` when Latin letters make up
    at least 70%, ``None`` (unsupported) otherwise. Looks at the first ``sample_chars`` characters."""
    cjk = latin = other = 0
    for ch in text[:sample_chars]:
        if is_cjk(ch):
            cjk += 1
        elif ch.isalpha():
            if is_latin(ch):
                latin += 1
            else:
                other += 1
    letters = cjk + latin + other
    if letters == 0:
        return None
    if cjk / letters >= 0.3:
        return "zh"
    if latin / letters >= 0.7:
        return "en"
    return None


def is_latin(ch: str) -> bool:
    """ASCII, Latin-1 and Latin Extended-A/B letters: what the English voices read."""
    return ch.isascii() or "\u00c0" <= ch <= "\u024f"


def span_language(text: str, default: str) -> str | None:
    """The language a span must be spoken in, from its letters: ``"zh"`` when they are all CJK ideographs,
    ``"en"`` when all Latin, ``default`` when it has no letters (digits, punctuation); ``None`` when it mixes
    scripts or holds letters of another script (kana, Cyrillic, ...): such a span stays text, since no single
    voice reads it correctly (an English voice says "Chinese letter" for each ideograph)."""
    cjk = latin = False
    for ch in text:
        if is_cjk(ch):
            cjk = True
        elif ch.isalpha():
            if not is_latin(ch):
                return None
            latin = True
        if cjk and latin:
            return None
    if cjk:
        return "zh"
    if latin:
        return "en"
    return default
