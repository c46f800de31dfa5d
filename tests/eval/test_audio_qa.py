"""Dynamic-SUPERB style label matching and accuracy."""

import pytest

from megatron_inserter.eval.audio_qa import AudioQaConfig, match_label, run_audio_qa
from tests.eval.fakes import ScriptedResponder, touch_audio, write_jsonl

EMOTIONS = ["happy", "sad", "very sad", "neutral"]


@pytest.mark.parametrize(
    "response,expected",
    [
        ("Happy.", "happy"),
        ("The speaker sounds happy to me.", "happy"),
        ("The speaker is very sad.", "very sad"),  # "sad" inside the longer match does not count
        ("Either happy or sad.", None),  # two labels: unmatched
        ("Unhappy", None),  # whole phrases only
        ("I cannot tell.", None),
    ],
)
def test_match_label(response, expected):
    assert match_label(response, EMOTIONS) == expected


def test_accuracy_per_task_and_overall(tmp_path):
    rows = [
        {"id": 1, "task": "emotion", "audio_filepath": "1.wav", "instruction": "Emotion?", "label": "happy"},
        {"id": 2, "task": "emotion", "audio_filepath": "2.wav", "instruction": "Emotion?", "label": "sad"},
        {
            "id": 3,
            "task": "emotion",
            "audio_filepath": "3.wav",
            "instruction": "Emotion?",
            "label": "neutral",
        },
        {
            "id": 1,
            "task": "gender",
            "audio_filepath": "4.wav",
            "instruction": "Gender?",
            "label": "female",
            "candidates": ["male", "female"],
        },
    ]
    for row in rows:
        touch_audio(tmp_path / row["audio_filepath"])
    answers = {
        "emotion/1": "Happy",
        "emotion/2": "It is neutral.",
        "emotion/3": "happy or neutral",
        "gender/1": "The voice is female.",
    }
    results = run_audio_qa(
        write_jsonl(tmp_path / "m.jsonl", rows),
        ScriptedResponder(lambda r: answers[r.request_id]),
        AudioQaConfig(output_dir=tmp_path / "out", progress=False),
    )
    assert results["metrics"] == pytest.approx(
        {
            "emotion/accuracy": 100 / 3,
            "gender/accuracy": 100.0,
            "overall/accuracy": 50.0,
            "overall/macro_accuracy": (100 / 3 + 100) / 2,
        }
    )
    assert results["details"]["emotion"]["unmatched"] == 1
    assert "unique candidate label" in results["matching_rule"]
