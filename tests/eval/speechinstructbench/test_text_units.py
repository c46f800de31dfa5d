"""Sentence and word counting without downloaded NLTK data."""

import pytest

from megatron_inserter.eval.speechinstructbench import text_units
from megatron_inserter.eval.speechinstructbench.checkers import build_registry
from megatron_inserter.eval.speechinstructbench.text_units import (
    count_sentences,
    count_words,
    split_english_sentences,
    word_tokenize,
)

# Hand-labelled sentence splits of typical model answers (what Punkt's trained English model gives).
TYPICAL = [
    (
        "Dr. Smith went to Washington. He arrived at 5 p.m. yesterday.",
        ["Dr. Smith went to Washington.", "He arrived at 5 p.m. yesterday."],
    ),
    (
        "I like fruit, e.g. apples and pears. They are sweet.",
        ["I like fruit, e.g. apples and pears.", "They are sweet."],
    ),
    (
        "We bought apples, pears, etc. The shop was busy.",
        ["We bought apples, pears, etc.", "The shop was busy."],
    ),
    (
        "The U.S. economy grew 3.5 percent. Analysts were surprised!",
        ["The U.S. economy grew 3.5 percent.", "Analysts were surprised!"],
    ),
    ("J. R. R. Tolkien wrote books. He was British.", ["J. R. R. Tolkien wrote books.", "He was British."]),
    ('He said "Stop." Then he left.', ['He said "Stop."', "Then he left."]),
    (
        "Mr. and Mrs. Brown arrived at 10 a.m. on Monday. The party began.",
        ["Mr. and Mrs. Brown arrived at 10 a.m. on Monday.", "The party began."],
    ),
    ("It costs $5.99. That is cheap.", ["It costs $5.99.", "That is cheap."]),
    ("Is it ready? Yes! Let us go.", ["Is it ready?", "Yes!", "Let us go."]),
    ("no final punctuation here", ["no final punctuation here"]),
    ("First line.\nSecond line.", ["First line.", "Second line."]),
]


@pytest.mark.parametrize("text,expected", TYPICAL)
def test_offline_punkt_splits_typical_text_as_expected(text, expected):
    assert split_english_sentences(text, "punkt-offline") == expected


def test_offline_splitter_agrees_with_installed_punkt_tab():
    try:
        from nltk.tokenize.punkt import PunktTokenizer

        trained = PunktTokenizer("english")
    except LookupError:
        pytest.skip("punkt_tab is not installed here; the hand-labelled cases above stand in for it")
    for text, _ in TYPICAL:
        assert split_english_sentences(text, "punkt-offline") == trained.tokenize(text)


def test_missing_punkt_tab_raises_instead_of_scoring(monkeypatch):
    import nltk.data

    def not_found(*args, **kwargs):
        raise LookupError("Resource punkt_tab not found")

    monkeypatch.setattr(nltk.data, "find", not_found)
    text_units.english_sentence_splitter.cache_clear()
    build_registry.cache_clear()
    try:
        with pytest.raises(LookupError, match="punkt_tab"):
            build_registry("speechinstructbench", "punkt_tab")
        tokenizer, source = text_units.english_sentence_splitter("auto")
        assert source == "punkt-offline" and tokenizer.tokenize("It rains. We stay.") == [
            "It rains.",
            "We stay.",
        ]
    finally:
        text_units.english_sentence_splitter.cache_clear()
        build_registry.cache_clear()


def test_lm_eval_sentence_counter_needs_data_that_is_absent_here():
    """The reason for the offline splitter: lm-eval's own counter fails with LookupError without punkt_tab."""
    try:
        from nltk.tokenize.punkt import PunktTokenizer

        PunktTokenizer("english")
        pytest.skip("punkt_tab is installed")
    except LookupError:
        pass
    from lm_eval.tasks.ifeval import instructions_util

    from megatron_inserter.eval.speechinstructbench.checkers import ifeval  # noqa: F401 (quiet lm-eval import)

    with pytest.raises(LookupError):
        instructions_util.count_sentences("One. Two.")


def test_chinese_sentences_split_on_full_width_enders():
    assert count_sentences("今天天气很好。我们去公园吧！你去吗？") == 3
    assert count_sentences("今天天气很好。。好！") == 2  # empty pieces are not sentences
    assert count_sentences("你好. 我是小明") == 1  # ASCII period does not end a Chinese sentence


def test_words_are_chinese_characters_when_any_cjk_is_present():
    assert count_words("我们去公园，好吗？") == 7
    assert count_words("我有 3 个 apples") == 3  # only ideographs count in Chinese text
    assert count_words("Don't stop-now, friend") == 5  # \w+ runs


def test_word_tokenize_matches_nltk_treebank_within_sentences():
    assert word_tokenize("HELLO there. I LOVE NYC!", "punkt-offline") == [
        "HELLO",
        "there",
        ".",
        "I",
        "LOVE",
        "NYC",
        "!",
    ]
