"""Counting sentences and words in English and Chinese responses, with no downloaded data.

SpeechInstructBench decides by content: a text with any CJK ideograph (U+4E00..U+9FFF) is counted the
Chinese way, anything else the English way.

* Chinese sentences: pieces between the full-width ``！？。``, empty pieces dropped.
* Chinese words: the number of CJK ideographs (punctuation and Latin letters are not counted).
* English words: runs of ``\\w`` characters (IFEval's ``RegexpTokenizer(r"\\w+")``).
* English sentences: NLTK Punkt. IFEval loads Punkt's trained English model (the ``punkt_tab`` data
  package); when it is installed (``NLTK_DATA``) it is used as is. Without it,
  :func:`english_sentence_splitter` builds Punkt with no trained statistics plus a short list of common abbreviations and sentence starters
  (``OFFLINE_ABBREVIATIONS``, ``OFFLINE_SENT_STARTERS``). The rules are the same Punkt rules; only the learned
  word lists differ, which matters for rare abbreviations. Which splitter ran is reported in the results
  (``sentence_splitter``: ``punkt_tab`` or ``punkt-offline``).
"""

from __future__ import annotations

import functools
import re

from nltk.tokenize import RegexpTokenizer
from nltk.tokenize.destructive import NLTKWordTokenizer
from nltk.tokenize.punkt import (
    _ORTHO_BEG_UC,
    _ORTHO_MID_LC,
    PunktParameters,
    PunktSentenceTokenizer,
)

from megatron_inserter.errors import InserterError
from megatron_inserter.eval.speechinstructbench.choices import PUNKT_OFFLINE, PUNKT_TAB, SPLITTER_CHOICES


class MissingSentenceModel(InserterError, LookupError):
    """NLTK's punkt_tab data was asked for and is not installed."""


CJK_RE = re.compile(r"[\u4e00-\u9fff]")
CHINESE_SENTENCE_END_RE = re.compile(r"[！？。]")

# Lower-case, final period removed, as Punkt stores abbreviation types. Words that also end sentences as
# ordinary words ("no", "sat", "may", units such as "kg") are left out on purpose.
OFFLINE_ABBREVIATIONS = frozenset(
    """
    mr mrs ms dr prof sr jr st rev gen col lt sgt capt cmdr gov sen rep pres hon messrs mme mlle
    e.g i.e etc vs cf viz al approx ca
    a.m p.m jan feb mar apr jun jul aug sep sept oct nov dec tue tues thu thur thurs fri
    u.s u.k u.s.a u.n e.u inc ltd co corp llc dept univ assn bros ave blvd mt ft
    vol vols pp ch fig figs eq est ed eds ph.d m.d b.a m.a b.s m.s d.c l.a n.y a.k.a r.s.v.p p.s
    """.split()  # noqa: SIM905 - a word list reads better as text
)

# Capitalised, these words start a sentence even right after an abbreviation ("..., etc. The next ...").
OFFLINE_SENT_STARTERS = frozenset(
    """
    the this that these those it its we you he she they there here in on at for as if when while but and
    so however also a an my our your their his her what how why then finally first second third next
    overall additionally moreover furthermore instead each all some many most one both after before during
    although because since with by to from yes please let note remember thank thanks
    """.split()  # noqa: SIM905
)


_WORD_RE_TOKENIZER = RegexpTokenizer(r"\w+")
_TREEBANK = NLTKWordTokenizer()


def contains_cjk(text: str) -> bool:
    return CJK_RE.search(text) is not None


def count_cjk(text: str) -> int:
    return len(CJK_RE.findall(text))


def offline_punkt_parameters() -> PunktParameters:
    params = PunktParameters()
    params.abbrev_types = set(OFFLINE_ABBREVIATIONS)
    params.sent_starters = set(OFFLINE_SENT_STARTERS)
    for word in OFFLINE_SENT_STARTERS:
        # Seen capitalised at sentence starts and lower-case inside sentences: Punkt's orthographic
        # heuristic then treats a capitalised occurrence after a period as a sentence start.
        params.ortho_context[word] = _ORTHO_BEG_UC | _ORTHO_MID_LC
    return params


@functools.cache
def english_sentence_splitter(source: str = "auto") -> tuple[PunktSentenceTokenizer, str]:
    """(tokenizer, name of the source). ``source``: ``auto`` (punkt_tab when installed, else offline),
    ``punkt_tab`` (raises LookupError naming the fix when missing) or ``punkt-offline``."""
    if source not in SPLITTER_CHOICES:
        raise ValueError(f"sentence splitter must be one of {SPLITTER_CHOICES}, got {source!r}")
    if source in ("auto", PUNKT_TAB):
        from nltk.tokenize.punkt import PunktTokenizer

        try:
            return PunktTokenizer("english"), PUNKT_TAB
        except LookupError as err:
            if source == PUNKT_TAB:
                raise MissingSentenceModel(
                    "NLTK's punkt_tab English model is not installed: run "
                    "`python -m nltk.downloader punkt_tab` "
                    "on a machine with network access and point NLTK_DATA at it, or use the offline splitter "
                    f"(--sentence-splitter {PUNKT_OFFLINE})"
                ) from err
    return PunktSentenceTokenizer(offline_punkt_parameters()), PUNKT_OFFLINE


def split_english_sentences(text: str, source: str = "auto") -> list[str]:
    return english_sentence_splitter(source)[0].tokenize(text)


def count_sentences(text: str, source: str = "auto") -> int:
    if contains_cjk(text):
        return sum(1 for piece in CHINESE_SENTENCE_END_RE.split(text) if piece.strip())
    return len(split_english_sentences(text, source))


def count_words(text: str) -> int:
    if contains_cjk(text):
        return count_cjk(text)
    return len(_WORD_RE_TOKENIZER.tokenize(text))


def word_tokenize(text: str, source: str = "auto") -> list[str]:
    """NLTK's ``word_tokenize`` (Punkt sentences, then the Treebank word tokenizer) without data files."""
    return [tok for sent in split_english_sentences(text, source) for tok in _TREEBANK.tokenize(sent)]
