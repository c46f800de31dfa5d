"""Which parts of a document are read aloud (InSerter's span selection).

Words: English by whitespace, Chinese by jieba word segmentation (also for Chinese quoted inside an
English document); a "word" must hold a letter, digit or ideograph (punctuation tokens are not counted).
Sentences end at ``.!?`` before a space and at ``。！？；`` in either language. Spans start at a word's
first character and end at a word's last character (plus punctuation glued to it), so a span never cuts
a word and the whitespace around it stays in the neighbouring text. Spans never touch: at least one word of text lies between
two spans, so text and speech alternate.

  word mode      random spans of ``min_words``..``max_words`` words until about ``ratio`` of the words, at
                 jittered positions (evenly spread with random offsets, so each part of a long document
                 gets about ``ratio`` of its words spoken)
  sentence mode  whole sentences until about ``ratio`` of the words

The choice depends only on the text and the generator passed in (``document_rngs(seed, doc_id, source)``), so
the same document gets the same spans whichever worker, node or order processes it. The expected share
of spoken words is ``ratio`` (the last span is drawn so the expectation is exact); documents too short
for the minimum span always get one span, which pushes their own share above ``ratio``.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
from dataclasses import dataclass

import numpy as np

# Closing punctuation that belongs to the word before it (kept inside a span that ends at that word).
TRAILING_PUNCT = set(",.!?;:'\")]}，。！？；：、”’」』）】》…—～")
SENTENCE_TRIALS = 8  # random selections tried per document; the one nearest the target wins
_SENTENCE_END = re.compile(r"[。！？；]+[”’」』）)]*|[.!?]+[\"'”’)\]]*(?=\s|$)")
_CJK = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f]")


@dataclass(frozen=True)
class SpanConfig:
    mode: str = "word"  # "word" or "sentence"
    ratio: float = 0.3
    min_words: int = 5
    max_words: int = 15


@dataclass(frozen=True)
class Span:
    start: int  # character offsets into the document text, end exclusive
    end: int
    num_words: int


@dataclass(frozen=True)
class SpanSelection:
    spans: tuple[Span, ...]
    num_words: int  # words in the whole document

    @property
    def spoken_words(self) -> int:
        return sum(s.num_words for s in self.spans)


def document_key_entropy(seed: int, doc_id: str, source: str = "", *extra) -> list[int]:
    """Entropy words for a ``SeedSequence`` from the full seed (any integer: ``s`` and ``s + 2**32`` differ),
    the input file and the document id, plus ``extra`` parts (a span index, a purpose)."""
    parts = [str(int(seed)), source, doc_id, *map(str, extra)]
    digest = hashlib.sha256("\0".join(parts).encode("utf-8", "surrogatepass")).digest()
    return np.frombuffer(digest, dtype=np.uint32).tolist()


def document_rngs(seed: int, doc_id: str, source: str = "") -> tuple[np.random.Generator, np.random.Generator]:
    """Two independent generators (spans, speakers) that depend only on ``seed``, the input file the
    document came from (``source``) and the document id."""
    spans_seq, speakers_seq = np.random.SeedSequence(document_key_entropy(seed, doc_id, source)).spawn(2)
    return np.random.default_rng(spans_seq), np.random.default_rng(speakers_seq)


def span_rng(seed: int, doc_id: str, source: str, span_index: int, purpose: str) -> np.random.Generator:
    """A generator for one span and one purpose (``"noise"``, ``"speed"``, ``"voice-2"``, ...)."""
    return np.random.default_rng(np.random.SeedSequence(document_key_entropy(seed, doc_id, source, span_index,
                                                                             purpose)))


_jieba = None


def _jieba_module():
    global _jieba
    if _jieba is None:
        import jieba

        jieba.setLogLevel(logging.WARNING)
        jieba.initialize()
        _jieba = jieba
    return _jieba


def warm_up_segmenter() -> None:
    """Load jieba's dictionary now (so forked workers share it instead of each loading it)."""
    _jieba_module()


def split_words(text: str, lang: str) -> list[tuple[int, int]]:
    """Character ranges of the words of ``text``."""
    if lang == "zh":
        tokens = [(s, e) for _, s, e in _jieba_module().tokenize(text)]
    else:
        tokens = [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]
        if _CJK.search(text):  # Chinese inside an English document: its words, not one run per space
            tokens = [word for s, e in tokens for word in _segment_cjk(text, s, e)]
    return [(s, e) for s, e in tokens if any(ch.isalnum() for ch in text[s:e])]


def _segment_cjk(text: str, start: int, end: int) -> list[tuple[int, int]]:
    if not _CJK.search(text, start, end):
        return [(start, end)]
    return [(start + a, start + b) for _, a, b in _jieba_module().tokenize(text[start:end])]


def split_sentences(text: str, lang: str) -> list[tuple[int, int]]:
    """Character ranges of the sentences of ``text``, without surrounding whitespace."""
    out, start = [], 0
    ends = [m.end() for m in _SENTENCE_END.finditer(text)] + [len(text)]
    for end in ends:
        s, e = start, end
        while s < e and text[s].isspace():
            s += 1
        while e > s and text[e - 1].isspace():
            e -= 1
        if e > s:
            out.append((s, e))
        start = end
    return out


def _extend_over_punct(text: str, end: int, limit: int) -> int:
    while end < limit and text[end] in TRAILING_PUNCT:
        end += 1
    return end


def _select_word_spans(words, cfg: SpanConfig, rng: np.random.Generator, text: str) -> list[Span]:
    n = len(words)
    if n < cfg.min_words + 1:
        return []
    target = cfg.ratio * n
    lengths: list[int] = []
    while (remaining := target - sum(lengths)) > 0:
        length = int(rng.integers(cfg.min_words, cfg.max_words + 1))
        if length <= remaining:
            lengths.append(length)
            continue
        if remaining >= cfg.min_words:  # last span: floor or ceil so that the expectation is `remaining`
            base = math.floor(remaining)
            lengths.append(base + int(rng.random() < remaining - base))
        elif rng.random() < remaining / cfg.min_words:
            lengths.append(cfg.min_words)
        break
    if not lengths:
        lengths = [cfg.min_words]  # every written document is interleaved
    while lengths and sum(lengths) + max(len(lengths) - 1, 1) > n:  # room for the separating text
        lengths.pop()
    k = len(lengths)
    if k == 0:
        return []
    lengths = [lengths[i] for i in rng.permutation(k)]
    free = n - sum(lengths) - (k - 1)
    # The free words go to the k+1 gaps around the spans through k "bars" in [0, free + k): bar j is drawn
    # uniformly from the j-th of k equal strata (jittered sampling). One span may land anywhere; many spans
    # spread evenly over a long document, so every part of it gets about ``ratio`` of its words spoken.
    edges = [(j * (free + k)) // k for j in range(k + 1)]
    bars = np.array([edges[j] + int(rng.integers(edges[j + 1] - edges[j])) for j in range(k)], dtype=np.int64)
    gaps = np.diff(np.concatenate([[-1], bars, [free + k]])) - 1  # k+1 parts summing to `free`
    spans, pos = [], int(gaps[0])
    for i, length in enumerate(lengths):
        first, last = pos, pos + length - 1
        limit = words[last + 1][0] if last + 1 < n else len(text)
        spans.append(Span(words[first][0], _extend_over_punct(text, words[last][1], limit), length))
        pos = last + 1 + 1 + int(gaps[i + 1])
    return spans


def _select_sentence_spans(words, text, lang, cfg: SpanConfig, rng: np.random.Generator) -> list[Span]:
    starts = [s for s, _ in words]
    sentences = []
    for s, e in split_sentences(text, lang):
        count = int(np.searchsorted(starts, e) - np.searchsorted(starts, s))
        if count > 0:
            sentences.append((s, e, count))
    if len(sentences) < 2:
        return []
    target = cfg.ratio * len(words)
    best: tuple[float, set[int]] | None = None
    for _ in range(SENTENCE_TRIALS):
        chosen = _greedy_sentences([c for _, _, c in sentences], target, rng)
        miss = abs(sum(sentences[i][2] for i in chosen) - target)
        if best is None or miss < best[0]:
            best = (miss, chosen)
    return [Span(*sentences[i]) for i in sorted(best[1])]


def _greedy_sentences(counts: list[int], target: float, rng: np.random.Generator) -> set[int]:
    """Non-adjacent sentences in a random order while they fit, then the one free sentence (if any) that
    brings the total nearest to ``target``. Never empty."""
    chosen: set[int] = set()
    spoken = 0
    for i in rng.permutation(len(counts)).tolist():
        if i - 1 not in chosen and i + 1 not in chosen and counts[i] <= target - spoken:
            chosen.add(i)
            spoken += counts[i]
    free = [i for i in range(len(counts)) if i not in chosen and i - 1 not in chosen and i + 1 not in chosen]
    if free:
        i = min(free, key=lambda j: abs(spoken + counts[j] - target))
        if not chosen or abs(spoken + counts[i] - target) < abs(spoken - target):
            chosen.add(i)
    return chosen


def select_spans(text: str, lang: str, cfg: SpanConfig, rng: np.random.Generator) -> SpanSelection:
    """The spans of ``text`` to read aloud, sorted, non-overlapping and separated by text."""
    words = split_words(text, lang)
    if cfg.mode == "sentence":
        spans = _select_sentence_spans(words, text, lang, cfg, rng)
    elif cfg.mode == "word":
        spans = _select_word_spans(words, cfg, rng, text)
    else:
        raise ValueError(f"unknown span mode {cfg.mode!r}")
    return SpanSelection(tuple(spans), len(words))


def segment_ranges(text_length: int, spans) -> list[tuple[str, int, int]]:
    """``[("text"|"speech", start, end), ...]`` covering ``[0, text_length)`` exactly; no empty text pieces."""
    out, pos = [], 0
    for sp in spans:
        if sp.start > pos:
            out.append(("text", pos, sp.start))
        out.append(("speech", sp.start, sp.end))
        pos = sp.end
    if pos < text_length:
        out.append(("text", pos, text_length))
    return out
