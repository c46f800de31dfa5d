"""Voice pools of TTS servers (``--tts-voices FILE``).

One voice per line, tab-separated: ``NAME`` and optionally ``LANGUAGE`` and ``GENDER``::

    af_heart	en	female
    zf_xiaobei	zh	female
    speaker_0042	en-GB	male
    any_voice

Blank lines and lines starting with ``#`` are ignored. A voice without a language may speak any language
the pipeline speaks (a multilingual voice); a voice of a language the pipeline does not speak is counted
and not used. Genders ``m``/``male`` and ``f``/``female`` are written ``male``/``female``; any other value is
kept (lower case). The file may hold any number of voices: the pool keeps names only, and a span's voice
is an index drawn from its own generator (``speakers``), so a pool of a million voices costs nothing per
span. A malformed line is a ``UsageError`` naming the file and line.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from megatron_inserter.data.synth.language import SUPPORTED, normalize_language
from megatron_inserter.errors import UsageError

MAX_NAME_CHARS = 256
_GENDERS = {"m": "male", "male": "male", "man": "male", "f": "female", "female": "female", "woman": "female"}


@dataclass
class VoicePool:
    path: str
    by_language: dict[str, list[str]] = field(default_factory=dict)  # language -> voice names, file order
    gender_of: dict[str, str] = field(default_factory=dict)
    unused: int = 0  # voices of languages the pipeline does not speak

    @property
    def languages(self) -> tuple[str, ...]:
        return tuple(lang for lang in SUPPORTED if self.by_language.get(lang))

    def voices(self, language: str) -> list[str]:
        return self.by_language.get(language, [])


def _check_name(name: str, where: str) -> None:
    if not name:
        raise UsageError(f"{where}: the voice name (first column) is empty")
    if len(name) > MAX_NAME_CHARS:
        raise UsageError(f"{where}: the voice name is longer than {MAX_NAME_CHARS} characters")
    if any(ch < " " or "\x7f" <= ch <= "\x9f" for ch in name):
        raise UsageError(f"{where}: the voice name holds a control character")


def parse_voice_lines(lines, path: str) -> VoicePool:
    """A ``VoicePool`` from the lines (bytes) of a voice file named ``path``."""
    pool = VoicePool(path)
    first_line: dict[str, int] = {}
    for number, raw in enumerate(lines, start=1):
        where = f"{path}:{number}"
        try:
            line = raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError:
            raise UsageError(f"{where}: not valid UTF-8; save the voice file as UTF-8") from None
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        columns = [c.strip() for c in line.split("\t")]
        if len(columns) > 3:
            raise UsageError(f"{where}: {len(columns)} tab-separated columns; expected NAME[<tab>LANGUAGE"
                             "[<tab>GENDER]]")
        name = columns[0]
        _check_name(name, where)
        if name in first_line:
            raise UsageError(f"{where}: voice {name!r} is already listed on line {first_line[name]}; list each "
                             "voice once")
        first_line[name] = number
        language_field = columns[1] if len(columns) > 1 else ""
        gender = columns[2].lower() if len(columns) > 2 and columns[2] else None
        if gender is not None:
            if len(gender) > 32 or any(ch < " " for ch in gender):
                raise UsageError(f"{where}: gender {columns[2][:40]!r} is not a short word")
            pool.gender_of[name] = _GENDERS.get(gender, gender)
        if not language_field:
            for lang in SUPPORTED:
                pool.by_language.setdefault(lang, []).append(name)
            continue
        language = normalize_language(language_field)
        if language is None:
            pool.unused += 1
            continue
        pool.by_language.setdefault(language, []).append(name)
    if not pool.languages:
        raise UsageError(f"{path}: holds no voice of a language the pipeline speaks ({', '.join(SUPPORTED)}); "
                         "give one voice per line: NAME<tab>LANGUAGE<tab>GENDER")
    return pool


def read_voice_pool(path: str) -> VoicePool:
    """The voice pool of ``path`` (read line by line; any size)."""
    try:
        with open(path, "rb") as f:
            return parse_voice_lines(f, path)
    except FileNotFoundError:
        raise UsageError(f"--tts-voices {path!r} does not exist") from None
    except IsADirectoryError:
        raise UsageError(f"--tts-voices {path!r} is a directory; give the voice file") from None
