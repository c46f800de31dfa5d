"""Classifying released files and inferring groups of rows from other tools."""

import pytest

from megatron_inserter.eval.speechinstructbench.bench_files import BenchFile, classify, infer_meta


@pytest.mark.parametrize(
    "path,expected",
    [
        ("closed-ended/standard/closed_standard_en.jsonl", ("closed", "standard", "en")),
        ("closed-ended/closed_paralinguistics_cn.jsonl", ("closed", "paralinguistics", "zh")),
        ("closed-ended/disfluency/zh/closed_disfluency.jsonl", ("closed", "disfluency", "zh")),
        ("open-ended/open_ended_cn.jsonl", ("open", "standard", "zh")),
        ("adjustment/adjustment_en.jsonl", ("adjustment", "standard", "en")),
    ],
)
def test_released_file_names_are_classified(path, expected):
    found = classify(path)
    assert isinstance(found, BenchFile) and (found.task, found.variant, found.language) == expected


@pytest.mark.parametrize(
    "path,reason",
    [
        ("notes/readme.jsonl", "no task"),
        ("open-ended/open.jsonl", "no language"),
        ("closed-ended/closed_en.jsonl", "without a variant"),
    ],
)
def test_unrecognized_files_are_skipped_with_a_reason(path, reason):
    assert reason in classify(path)


def test_groups_of_foreign_rows_are_inferred():
    closed = infer_meta({"key": 5, "instruction_id_list": [], "audio_path": "/x/closed_accent_5_cn.wav"}, 0)
    assert closed == {"uid": "closed/accent/zh/5", "task": "closed", "variant": "accent", "language": "zh"}
    opened = infer_meta({"id": "o", "decomposed_questions": [], "language": "Chinese"}, 3)
    assert (opened["task"], opened["language"]) == ("open", "zh")
    adjusted = infer_meta({"prompt": "讲个故事，不对，讲个笑话"}, 7)
    assert adjusted["uid"] == "adjustment/standard/zh/line7"
