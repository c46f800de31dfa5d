"""IFEval verifiable-instruction checkers, as SpeechInstructBench applies them to English and Chinese.

The checkers are lm-eval's (``lm_eval.tasks.ifeval``, Google's IFEval). Two rule sets are offered:

``speechinstructbench`` (default; the benchmark's scoring). Rules switch on content, for both languages:
  * sentences: a text with CJK ideographs is split on ``！？。``; otherwise English Punkt;
  * words: the number of CJK ideographs when there are any; otherwise ``\\w+`` runs;
  * nth paragraph first word: a paragraph with CJK starts with the word when its first ``len(word)``
    characters equal it; otherwise IFEval's rule, with ``。，？！‘“”`` also ending the word;
  * placeholders may use ``【】`` as well as ``[]``; titles ``《》`` as well as ``<<>>``; quotation may use
    ``“”``; ``no_comma`` also forbids ``，``;
  * constrained response also accepts ``我的答案是是的。`` / ``我的答案是不是。`` / ``我的答案是可能。``;
  * postscript accepts any ``PS``, ``P.S.``, ``P.P.S.`` or the requested marker as a whole word;
  * forbidden words: a forbidden word is found either as a whole word ignoring case or as a
    case-sensitive substring (how Chinese words are found);
  * end phrase: compared after removing ASCII and Chinese punctuation from both sides.

``ifeval``: lm-eval's checkers unchanged apart from the two fixes below (English-only semantics).

Both rule sets fix two things the upstream code cannot do here: English sentence and word tokenization
runs on Punkt without downloaded data (see ``text_units``), and ``language:response_language`` accepts
codes missing from IFEval's table (``zh``) and matches langdetect's regional answers (``zh-cn``,
``zh-tw``) by their base code. langdetect is seeded so language checks are reproducible.
"""

from __future__ import annotations

import contextlib
import functools
import io
import re
import string

import langdetect
import nltk

from megatron_inserter.eval.speechinstructbench import text_units
from megatron_inserter.eval.speechinstructbench.choices import RULE_SETS


def _import_ifeval():
    """lm-eval downloads NLTK's punkt_tab when it imports (and prints a success line even when the download
    fails). Scoring must not depend on the network, and Punkt data is looked up by ``text_units``, so the
    download is switched off for the import."""
    download = nltk.download
    nltk.download = lambda *args, **kwargs: False
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            from lm_eval.tasks.ifeval import instructions
            from lm_eval.tasks.ifeval.instructions_registry import INSTRUCTION_DICT
    finally:
        nltk.download = download
    return instructions, INSTRUCTION_DICT


ifeval, IFEVAL_REGISTRY = _import_ifeval()

langdetect.DetectorFactory.seed = 0

LESS_THAN, AT_LEAST = "less than", "at least"
CHINESE_CONSTRAINED_OPTIONS = ("我的答案是是的。", "我的答案是不是。", "我的答案是可能。")
FIRST_WORD_STOP = frozenset(".,?!'\"。，？！‘“”")
END_PUNCTUATION = string.punctuation + "，。！？；：“”‘’（）—【】《》〈〉、·"
_END_PUNCTUATION_RE = re.compile(f"[{re.escape(END_PUNCTUATION)}]")
_POSTSCRIPT_PATTERNS = (r"\bps\b", r"\bp\.\s*s\.", r"\bp\.\s?p\.\s*s\.")


def compare(count: int, relation: str, threshold: int) -> bool:
    if relation == LESS_THAN:
        return count < threshold
    if relation == AT_LEAST:
        return count >= threshold
    raise ValueError(f"relation must be {LESS_THAN!r} or {AT_LEAST!r}, got {relation!r}")


# ---- fixes shared by both rule sets -------------------------------------------------------------------


class EnglishNumberOfSentences(ifeval.NumberOfSentences):
    sentence_splitter = "auto"

    def check_following(self, value):
        count = len(text_units.split_english_sentences(value, self.sentence_splitter))
        return compare(count, self._comparison_relation, self._num_sentences_threshold)


class CapitalWordFrequencyChecker(ifeval.CapitalWordFrequencyChecker):
    sentence_splitter = "auto"

    def check_following(self, value):
        words = text_units.word_tokenize(value, self.sentence_splitter)
        return compare(sum(1 for w in words if w.isupper()), self._comparison_relation, self._frequency)


class ResponseLanguageChecker(ifeval.ResponseLanguageChecker):
    def build_description(self, *, language=None):
        if language is None or language in ifeval._LANGUAGES:
            return super().build_description(language=language)
        self._language = language
        return f"Your ENTIRE response should be in {language} language, no other language is allowed."

    def check_following(self, value):
        try:
            detected = langdetect.detect(value)
        except langdetect.LangDetectException:
            return True  # IFEval: text whose language cannot be detected counts as followed
        return detected == self._language or detected.split("-")[0] == self._language.split("-")[0]


# ---- SpeechInstructBench rules ------------------------------------------------------------------------


class NumberOfSentences(EnglishNumberOfSentences):
    def check_following(self, value):
        count = text_units.count_sentences(value, self.sentence_splitter)
        return compare(count, self._comparison_relation, self._num_sentences_threshold)


class NumberOfWords(ifeval.NumberOfWords):
    def check_following(self, value):
        return compare(text_units.count_words(value), self._comparison_relation, self._num_words)


class ParagraphFirstWordCheck(ifeval.ParagraphFirstWordCheck):
    def check_following(self, value):
        paragraphs = re.split(r"\n\n", value)
        num_paragraphs = sum(1 for p in paragraphs if p.strip())
        if self._nth_paragraph > num_paragraphs:
            return False
        paragraph = paragraphs[self._nth_paragraph - 1].strip()
        if not paragraph:
            return False
        if text_units.contains_cjk(paragraph):
            first_word = paragraph[: len(self._first_word)]
        else:
            word = paragraph.split()[0].strip().lstrip("'").lstrip('"')
            first_word = ""
            for letter in word:
                if letter in FIRST_WORD_STOP:
                    break
                first_word += letter.lower()
        return num_paragraphs == self._num_paragraphs and first_word == self._first_word


class PlaceholderChecker(ifeval.PlaceholderChecker):
    def check_following(self, value):
        return len(re.findall(r"[\[【].*?[\]】]", value)) >= self._num_placeholders


class ConstrainedResponseChecker(ifeval.ConstrainedResponseChecker):
    def build_description(self):
        description = super().build_description()
        self._constrained_responses = tuple(self._constrained_responses) + CHINESE_CONSTRAINED_OPTIONS
        return description


class PostscriptChecker(ifeval.PostscriptChecker):
    def check_following(self, value):
        text = value.lower()
        marker = r"\b" + re.escape(self._postscript_marker.lower()) + r"\b"
        return any(re.search(p, text, flags=re.MULTILINE) for p in (*_POSTSCRIPT_PATTERNS, marker))


class ForbiddenWords(ifeval.ForbiddenWords):
    def check_following(self, value):
        for word in self._forbidden_words:
            if word in value or re.search(r"\b" + re.escape(word) + r"\b", value, flags=re.IGNORECASE):
                return False
        return True


class EndChecker(ifeval.EndChecker):
    def check_following(self, value):
        text = _END_PUNCTUATION_RE.sub("", value.strip().lower())
        phrase = _END_PUNCTUATION_RE.sub("", self._end_phrase.strip().lower())
        return text.endswith(phrase)


class TitleChecker(ifeval.TitleChecker):
    def check_following(self, value):
        return super().check_following(value.replace("《", "<<").replace("》", ">>"))


class CommaChecker(ifeval.CommaChecker):
    def check_following(self, value):
        return re.search(r"[，,]", value) is None


class QuotationChecker(ifeval.QuotationChecker):
    def check_following(self, value):
        value = value.strip()
        return len(value) > 1 and value[0] in '"“' and value[-1] in '"”'


_SHARED_FIXES = {
    "length_constraints:number_sentences": EnglishNumberOfSentences,
    "change_case:capital_word_frequency": CapitalWordFrequencyChecker,
    "language:response_language": ResponseLanguageChecker,
}
_BENCHMARK_RULES = {
    "length_constraints:number_sentences": NumberOfSentences,
    "length_constraints:number_words": NumberOfWords,
    "length_constraints:nth_paragraph_first_word": ParagraphFirstWordCheck,
    "detectable_content:number_placeholders": PlaceholderChecker,
    "detectable_content:postscript": PostscriptChecker,
    "detectable_format:constrained_response": ConstrainedResponseChecker,
    "detectable_format:title": TitleChecker,
    "keywords:forbidden_words": ForbiddenWords,
    "startend:end_checker": EndChecker,
    "startend:quotation": QuotationChecker,
    "punctuation:no_comma": CommaChecker,
}


@functools.cache
def build_registry(rules: str = "speechinstructbench", sentence_splitter: str = "auto") -> dict[str, type]:
    """instruction id -> checker class, for a rule set and an English sentence splitter source."""
    if rules not in RULE_SETS:
        raise ValueError(f"checker rules must be one of {RULE_SETS}, got {rules!r}")
    text_units.english_sentence_splitter(sentence_splitter)  # fail now, not on the first response
    registry = dict(IFEVAL_REGISTRY)
    registry.update(_SHARED_FIXES)
    if rules == "speechinstructbench":
        registry.update(_BENCHMARK_RULES)
    for instruction_id, cls in registry.items():
        if hasattr(cls, "sentence_splitter"):
            registry[instruction_id] = type(cls.__name__, (cls,), {"sentence_splitter": sentence_splitter})
    return registry
