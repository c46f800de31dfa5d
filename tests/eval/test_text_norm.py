"""Transcript normalization and error rates with known values."""

import pytest

from megatron_inserter.eval.text_norm import edit_distance, error_rate, normalize_chinese, normalize_english


@pytest.mark.parametrize(
    "raw,expected",
    [
        ("Hello, World!", "hello world"),
        ("I can't go; they won't [noise] come (laughs).", "i can not go they will not come"),
        ("It’s 3.5 percent of 1,000 <unk> people.", "its 3.5 percent of 1000 people"),
        (
            "We're here and you'll see I'm fine, I've said.",
            "we are here and you will see i am fine i have said",
        ),
        ("Café   déjà-vu", "cafe deja vu"),
        ("Let's go.", "let us go"),
    ],
)
def test_english_normalizer(raw, expected):
    assert normalize_english(raw) == expected


def test_chinese_normalizer_removes_punctuation_spaces_and_width():
    assert normalize_chinese("今天 天气，很好！ＡＢＣ１２３（笑）「好」") == "今天天气很好abc123好"


def test_edit_distance_counts_substitutions_deletions_insertions():
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance([], ["a", "b"]) == 2
    assert edit_distance(["a", "b", "c"], ["a", "c"]) == 1


def test_wer_and_cer_on_fixtures_with_known_values():
    refs = ["the cat sat on the mat", "hello world"]
    hyps = ["the cat sit on mat", "hello big world"]  # 1 sub + 1 del, 1 ins -> 3 / 8 words
    assert error_rate(refs, hyps, "word") == pytest.approx(37.5)
    refs_zh = [normalize_chinese("今天天气很好。"), normalize_chinese("谢谢")]
    hyps_zh = [
        normalize_chinese("今天天汽很好！"),
        normalize_chinese("谢谢你"),
    ]  # 1 sub, 1 ins -> 2 / 8 chars
    assert error_rate(refs_zh, hyps_zh, "char") == pytest.approx(25.0)
