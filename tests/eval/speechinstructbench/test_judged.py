"""Open-ended and adjustment: judge answer parsing, majority votes, P./I. Acc, IAR/ECR, judge errors."""

import json

import pytest

from megatron_inserter.eval.judge import JudgeConfig, MalformedAnswer
from megatron_inserter.eval.speechinstructbench.bench_files import META
from megatron_inserter.eval.speechinstructbench.judged import (
    adjustment_majority,
    decomposed_questions,
    open_majority,
    open_prompt,
    parse_adjustment_answer,
    parse_open_answer,
    tally_judged,
)
from megatron_inserter.eval.speechinstructbench.judging import judge_rows
from tests.eval.fakes import ScriptedJudge


@pytest.mark.parametrize(
    "text",
    [
        "['YES', 'NO']",
        '["YES","NO"]',
        "```python\n['yes', 'no']\n```",
        "Here is my judgment: ['YES', 'NO'] based on the rules.",
    ],
)
def test_open_answers_in_common_formats_parse(text):
    assert parse_open_answer(text, 2) == ["YES", "NO"]


@pytest.mark.parametrize("text", ["YES, NO", "['YES']", "['YES', 'MAYBE']", ""])
def test_open_answers_that_are_not_a_full_yes_no_list_are_malformed(text):
    with pytest.raises(MalformedAnswer):
        parse_open_answer(text, 2)


def test_adjustment_answer_parses_json_with_or_without_fences():
    fields = {
        "follow_after_adjust": "YES",
        "follow_before_adjust": "no",
        "after_adjust_content_correct": "YES",
    }
    expected = {
        "follow_after_adjust": "YES",
        "follow_before_adjust": "NO",
        "after_adjust_content_correct": "YES",
    }
    assert parse_adjustment_answer(json.dumps(fields)) == expected
    assert parse_adjustment_answer("```json\n" + json.dumps(fields, indent=2) + "\n```") == expected
    with pytest.raises(MalformedAnswer):
        parse_adjustment_answer('{"follow_after_adjust": "YES"}')
    with pytest.raises(MalformedAnswer):
        parse_adjustment_answer("The model followed it.")


def test_majority_is_strict_and_ties_are_no():
    samples = [["YES", "YES", "NO"], ["YES", "NO", "NO"], ["YES", "YES", "YES"], ["NO", "NO", "YES"]]
    assert open_majority(samples) == ["YES", "NO", "NO"]  # 3-1 YES, 2-2 tie, 2-2 tie
    adjust = [
        {"follow_after_adjust": a, "follow_before_adjust": b, "after_adjust_content_correct": c}
        for a, b, c in [("YES", "NO", "YES"), ("YES", "YES", "NO"), ("YES", "NO", "YES"), ("NO", "YES", "NO")]
    ]
    assert adjustment_majority(adjust) == {
        "follow_after_adjust": "YES",
        "follow_before_adjust": "NO",
        "after_adjust_content_correct": "NO",
    }


def test_decomposed_questions_as_list_or_string():
    assert decomposed_questions({"decomposed_questions": ["Is A?", "Is B?"]}) == ("1. Is A?\n2. Is B?", 2)
    assert decomposed_questions({"decomposed_questions": "1. Is A?\n2. Is B?\n3. Is C?"})[1] == 3
    prompt = open_prompt(
        {"prompt": "Write {x}.", "response": "Done {response}", "decomposed_questions": ["Q?"]}
    )
    assert "Write {x}." in prompt and "Done {response}" in prompt and "1. Q?" in prompt


def test_open_and_adjustment_accuracies_by_hand():
    open_rows = [{"response": "r", "judge_votes": v} for v in (["YES", "YES"], ["YES", "NO", "NO"], ["YES"])]
    open_rows.append({"response": "r", "judge_votes": None, "judge_error": "3 malformed answers"})
    open_rows.append({"id": "x"})  # unanswered
    summary = tally_judged("open", open_rows).summary()
    assert summary["p_acc"] == pytest.approx(100 * 2 / 3)  # rows 1 and 3 all YES
    assert summary["i_acc"] == pytest.approx(100 * 4 / 6)  # 4 YES of 6 questions
    assert (summary["prompts"], summary["judge_errors"], summary["unanswered"]) == (3, 1, 1)

    def votes(a, b, c):
        return {"follow_after_adjust": a, "follow_before_adjust": b, "after_adjust_content_correct": c}

    adjust_rows = [
        {"response": "r", "judge_votes": votes(*v)}
        for v in [("YES", "NO", "YES"), ("YES", "YES", "NO"), ("NO", "YES", "NO"), ("YES", "NO", "YES")]
    ]
    summary = tally_judged("adjustment", adjust_rows).summary()
    assert summary["iar"] == pytest.approx(50.0)  # rows 1 and 4
    assert summary["ecr"] == pytest.approx(50.0)  # rows 2 and 3


def _open_row(uid, response="An answer."):
    return {
        "prompt": "Say two things.",
        "response": response,
        "decomposed_questions": ["A?", "B?"],
        META: {"uid": uid, "task": "open", "variant": "standard", "language": "en"},
    }


def test_judge_errors_are_counted_and_verdicts_are_reused_on_resume(tmp_path):
    rows = [_open_row("open/standard/en/1"), _open_row("open/standard/en/2", response="bad")]
    judge = ScriptedJudge(
        lambda prompt: "not a list" if "***AI Assistant's Answer:***\nbad" in prompt else "['YES', 'NO']"
    )
    config = JudgeConfig(max_attempts=2, backoff_s=0.0)
    stats = judge_rows(rows, judge, config, tmp_path / "judgements.jsonl", progress=False)
    assert stats == {"reused": 0, "judged": 1, "judge_errors": 1, "bad_rows": 0}
    assert rows[0]["judge_votes"] == ["YES", "NO"] and rows[0]["pred_score"] == ["['YES', 'NO']"] * 4
    assert rows[1]["judge_votes"] is None and "malformed" in rows[1]["judge_error"]
    summary = tally_judged("open", rows).summary()
    assert summary["prompts"] == 1 and summary["judge_errors"] == 1 and summary["p_acc"] == 0.0

    calls = len(judge.prompts)
    stats = judge_rows(rows, judge, config, tmp_path / "judgements.jsonl", progress=False)
    assert stats["reused"] == 1 and stats["judge_errors"] == 1  # the error is retried, the verdict reused
    assert len(judge.prompts) == calls + 2

    rows[0]["response"] = "A different answer."  # a changed response is judged again
    stats = judge_rows(rows, judge, config, tmp_path / "judgements.jsonl", progress=False)
    assert stats["reused"] == 0 and stats["judged"] == 1
