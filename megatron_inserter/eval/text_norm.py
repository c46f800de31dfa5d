"""Transcript normalization and error rates for ASR scoring.

English (:func:`normalize_english`), a compact take on Whisper's English normalizer:
  1. Unicode NFKC, lower case;
  2. drop annotations in brackets: ``[noise]``, ``<unk>``, ``(laughs)``;
  3. spell out contractions: ``won't`` -> ``will not``, ``can't`` -> ``can not``,
     ``shan't`` -> ``shall not``, ``let's`` -> ``let us``, ``n't`` -> `` not``, ``'re`` -> `` are``,
     ``'ll`` -> `` will``, ``'ve`` -> `` have``, ``'m`` -> `` am`` (``'s`` and ``'d`` are ambiguous and stay);
  4. drop thousands separators (``1,000`` -> ``1000``) and diacritics (``café`` -> ``cafe``);
  5. every character that is not a letter, digit or apostrophe becomes a space, except a decimal point
     between digits (``3.5``); apostrophes are then removed (``it's`` -> ``its``);
  6. collapse whitespace.
  Numbers are not spelled out or normalized further (``twenty`` and ``20`` differ).

Chinese (:func:`normalize_chinese`): NFKC (full-width to half-width), lower case, drop bracketed
annotations, then remove all punctuation, symbols and whitespace; error rates are counted on characters.

Error rates are corpus level: total edit distance (substitutions + deletions + insertions) over the total
reference length, in percent.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

_BRACKETS_RE = re.compile(r"\[[^\]]*\]|<[^>]*>|\([^)]*\)")
_CONTRACTIONS = (
    (re.compile(r"\bwon't\b"), "will not"),
    (re.compile(r"\bcan't\b"), "can not"),
    (re.compile(r"\bshan't\b"), "shall not"),
    (re.compile(r"\blet's\b"), "let us"),
    (re.compile(r"n't\b"), " not"),
    (re.compile(r"'re\b"), " are"),
    (re.compile(r"'ll\b"), " will"),
    (re.compile(r"'ve\b"), " have"),
    (re.compile(r"'m\b"), " am"),
)
_THOUSANDS_RE = re.compile(r"(?<=\d),(?=\d{3}\b)")
_DECIMAL_POINT = "\u0000"


def _strip_diacritics(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def normalize_english(text: str) -> str:
    s = unicodedata.normalize("NFKC", text).lower()
    s = _BRACKETS_RE.sub(" ", s)
    s = s.replace("\u2019", "'").replace("\u2018", "'")
    for pattern, replacement in _CONTRACTIONS:
        s = pattern.sub(replacement, s)
    s = _THOUSANDS_RE.sub("", s)
    s = _strip_diacritics(s)
    s = re.sub(r"(?<=\d)\.(?=\d)", _DECIMAL_POINT, s)
    s = "".join(c if c.isalnum() or c in "'" + _DECIMAL_POINT or c.isspace() else " " for c in s)
    s = s.replace("'", "").replace(_DECIMAL_POINT, ".")
    return " ".join(s.split())


def normalize_chinese(text: str) -> str:
    s = unicodedata.normalize("NFKC", text).lower()
    s = _BRACKETS_RE.sub("", s)
    return "".join(c for c in s if not (c.isspace() or unicodedata.category(c)[0] in "PSZ"))


def edit_distance(reference: Sequence, hypothesis: Sequence) -> int:
    """Levenshtein distance (unit cost substitutions, deletions, insertions)."""
    if len(reference) < len(hypothesis):
        reference, hypothesis = hypothesis, reference
    previous = list(range(len(hypothesis) + 1))
    for i, ref_unit in enumerate(reference, start=1):
        current = [i]
        for j, hyp_unit in enumerate(hypothesis, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref_unit != hyp_unit)))
        previous = current
    return previous[-1]


def units(text: str, unit: str) -> list[str]:
    if unit == "word":
        return text.split()
    if unit == "char":
        return list(text.replace(" ", ""))
    raise ValueError(f"unit must be 'word' or 'char', got {unit!r}")


def error_counts(references: Sequence[str], hypotheses: Sequence[str], unit: str) -> tuple[int, int]:
    """(total edits, total reference units) over already normalized texts."""
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    edits = total = 0
    for ref, hyp in zip(references, hypotheses):
        ref_units = units(ref, unit)
        edits += edit_distance(ref_units, units(hyp, unit))
        total += len(ref_units)
    return edits, total


def error_rate(references: Sequence[str], hypotheses: Sequence[str], unit: str) -> float:
    """Corpus error rate in percent (inf when the references are empty)."""
    edits, total = error_counts(references, hypotheses, unit)
    return 100.0 * edits / total if total else float("inf")
