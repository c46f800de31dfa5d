"""Strict/loose and prompt/instruction averaging on a fixture computed by hand."""

import pytest

from megatron_inserter.eval.speechinstructbench.closed import clean_kwargs, loose_variants, score_closed_rows

ROWS = [
    # no_comma followed both ways; the JSON is only found once the first line is dropped (loose).
    {
        "key": 1,
        "instruction_id_list": ["punctuation:no_comma", "detectable_format:json_format"],
        "kwargs": [{}, {}],
        "response": 'Here you go\n{"a": 1}',
    },
    # The "<1>" turn marker is removed before checking, as the benchmark does.
    {
        "key": 2,
        "instruction_id_list": ["keywords:existence"],
        "kwargs": [{"keywords": ["sun"]}],
        "response": "<1> The sun is bright",
    },
    # Fails everything, strict and loose.
    {
        "key": 3,
        "instruction_id_list": ["length_constraints:number_words", "change_case:english_lowercase"],
        "kwargs": [{"num_words": 5, "relation": "at least"}, {}],
        "response": "Too short",
    },
    # Checker error (unknown id): counted, not scored.
    {"key": 4, "instruction_id_list": ["no_such:instruction"], "kwargs": [{}], "response": "x"},
    # Not answered: counted, not scored.
    {"key": 5, "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]},
    # Chinese row: 4 characters < 5 words required, and a full-width comma.
    {
        "key": 6,
        "instruction_id_list": ["length_constraints:number_words", "punctuation:no_comma"],
        "kwargs": [{"num_words": 5, "relation": "at least"}, {}],
        "response": "好的，谢谢",
    },
]


def test_prompt_and_instruction_accuracy_strict_loose_and_mean():
    rows = [dict(r) for r in ROWS]
    summary = score_closed_rows(rows, sentence_splitter="punkt-offline").summary()
    # strict per instruction: [T, F], [T], [F, F], [F, F]  -> prompts 1/4, instructions 2/7
    # loose  per instruction: [T, T], [T], [F, F], [F, F]  -> prompts 2/4, instructions 3/7
    assert summary["prompts"] == 4 and summary["instructions"] == 7
    assert summary["strict_prompt_acc"] == pytest.approx(25.0)
    assert summary["loose_prompt_acc"] == pytest.approx(50.0)
    assert summary["strict_instruction_acc"] == pytest.approx(100 * 2 / 7)
    assert summary["loose_instruction_acc"] == pytest.approx(100 * 3 / 7)
    assert summary["p_acc"] == pytest.approx(37.5)
    assert summary["i_acc"] == pytest.approx(100 * 5 / 14)
    assert summary["errors"] == 1 and summary["unanswered"] == 1
    assert rows[0]["pred_score"] == {"strict": [True, False], "loose": [True, True]}
    assert "no_such:instruction" in rows[3]["score_error"] and "pred_score" not in rows[3]


def test_empty_response_follows_nothing():
    rows = [{"key": 1, "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}], "response": "  \n "}]
    summary = score_closed_rows(rows).summary()
    assert summary["strict_instruction_acc"] == 0.0 and summary["loose_instruction_acc"] == 0.0


def test_loose_variants_drop_first_last_lines_and_asterisks():
    variants = loose_variants("**Title**\nbody\nend")
    assert variants[:4] == ["**Title**\nbody\nend", "body\nend", "**Title**\nbody", "body"]
    assert variants[4] == "Title\nbody\nend"


def test_unset_kwargs_are_dropped_but_zero_is_kept():
    assert clean_kwargs({"a": None, "b": "", "c": [], "d": 0, "e": "x"}) == {"d": 0, "e": "x"}
