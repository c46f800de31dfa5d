"""The names a SpeechInstructBench run is configured with, in one place.

Standard library only: the command line shows these choices in ``--help`` without loading the checkers
(lm-eval, NLTK, langdetect).
"""

from __future__ import annotations

TASKS = ("closed", "open", "adjustment")
TASK_ALIASES = {"adjust": "adjustment"}
VARIANTS = ("standard", "background", "accent", "paralinguistics", "disfluency")
LANGUAGES = ("en", "zh")
LANGUAGE_ALIASES = {"en": "en", "zh": "zh", "cn": "zh"}
RULE_SETS = ("speechinstructbench", "ifeval")
PUNKT_TAB = "punkt_tab"
PUNKT_OFFLINE = "punkt-offline"
SPLITTER_CHOICES = ("auto", PUNKT_TAB, PUNKT_OFFLINE)
MODALITIES = ("speech", "text")


def parse_list(text: str, choices: tuple[str, ...], flag: str, aliases: dict[str, str] | None = None
               ) -> tuple[str, ...]:
    """``"closed,open"`` -> ``("closed", "open")``; a ``ValueError`` naming ``flag`` for anything else."""
    items = [(aliases or {}).get(t, t) for t in (s.strip().lower() for s in str(text).split(",")) if t]
    bad = [t for t in items if t not in choices]
    if bad or not items:
        raise ValueError(f"{flag} takes a comma-separated subset of {','.join(choices)}, got {text!r}")
    return tuple(dict.fromkeys(items))
