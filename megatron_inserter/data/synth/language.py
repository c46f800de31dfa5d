"""Which language a document is in: its ``lang`` field when present, else a character-class guess."""

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
            if ch.isascii() or "\u00c0" <= ch <= "\u024f":  # ASCII and Latin-1 / Latin Extended letters
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
