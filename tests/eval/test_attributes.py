"""`inserter eval attributes`: label accuracy per task with chance beside it, from a seeds file or Dynamic-SUPERB
rows; open-ended rows rated by the judge."""

import json

import pytest

from megatron_inserter.desta.seeds import Buckets, header_record
from megatron_inserter.errors import DataError
from megatron_inserter.eval import cli
from megatron_inserter.eval.attributes import AttributesConfig, AttributesTask, parse_score
from megatron_inserter.eval.judge import JudgeConfig, MalformedAnswer
from megatron_inserter.eval.task import run
from tests.eval.fakes import ScriptedJudge, ScriptedResponder, touch_audio, write_jsonl

SEEDS = [  # id, attributes
    ("s1", {"gender": "Female", "accent": "Scottish", "pitch": "High", "speed": "Slow", "noise": "Clean"}),
    ("s2", {"gender": "Male", "accent": "American", "pitch": "Low", "speed": "Fast", "noise": "SNR 10 dB",
            "snr_db": 10.0}),
    ("s3", {"gender": "Male", "accent": "Scottish", "pitch": "Normal", "speed": "Normal", "noise": "SNR 35 dB",
            "snr_db": 35.0}),
    ("s4", {"gender": "Female", "accent": "American", "pitch": "High", "speed": "Fast"}),  # noise unknown
]
ANSWERS = {
    "gender/s1": "The speaker is female.",  # right
    "gender/s2": "Female",  # wrong
    "gender/s3": "male",  # right ("male" is not inside "female": whole phrases only)
    "gender/s4": "Could be male or female.",  # two labels: unmatched, wrong
    "accent/s1": "A Scottish accent.", "accent/s2": "american", "accent/s3": "Scottish!", "accent/s4": "British",
    "pitch/s1": "high", "pitch/s2": "low", "pitch/s3": "high", "pitch/s4": "It is high pitched.",
    "speed/s1": "slow", "speed/s2": "normal", "speed/s3": "normal", "speed/s4": "fast",
    "noise/s1": "Clean.", "noise/s2": "There is background noise, it is noisy.", "noise/s3": "noisy",
}


def write_seeds(path, seeds=SEEDS):
    rows = [header_record(Buckets(), {"seeds": len(seeds)})]
    for seed_id, attributes in seeds:
        touch_audio(path.parent / "audio" / f"{seed_id}.wav")
        rows.append({"id": seed_id, "audio": f"audio/{seed_id}.wav", "text": "hello", "seed": "[..]",
                     "attributes": attributes})
    return write_jsonl(path, rows)


def run_task(tmp_path, responder, **kw):
    config = AttributesConfig(output_dir=tmp_path / "out", progress=False, **kw)
    task = AttributesTask(config, seeds=write_seeds(tmp_path / "seeds.jsonl"))
    return run(task, responder), task


def test_accuracy_per_task_with_chance_and_majority_beside_it(tmp_path, capsys):
    model = ScriptedResponder(lambda req: ANSWERS[req.request_id])
    results, _ = run_task(tmp_path, model)
    labels = results["details"]["labels"]
    assert {t: (e["correct"], e["scored"], e["unmatched"]) for t, e in labels.items()} == {
        "gender": (2, 4, 1), "accent": (3, 4, 1), "pitch": (3, 4, 0), "speed": (3, 4, 0), "noise": (2, 3, 0),
    }
    assert labels["gender"]["chance"] == pytest.approx(50.0) and labels["pitch"]["chance"] == pytest.approx(100 / 3)
    assert labels["noise"]["label_counts"] == {"clean": 2, "noisy": 1}  # SNR 35 dB counts as clean
    assert labels["noise"]["majority"] == pytest.approx(200 / 3)
    assert labels["accent"]["labels"] == ["american", "scottish"]  # the accents found in the file
    assert results["metrics"]["noise/accuracy"] == pytest.approx(200 / 3)
    assert results["metrics"]["overall/macro_accuracy"] == pytest.approx((50 + 75 + 75 + 75 + 200 / 3) / 5)
    assert results["metrics"]["overall/macro_chance"] == pytest.approx((50 + 50 + 100 / 3 + 100 / 3 + 50) / 5)
    # language and volume: no seed knows them; noise of s4 unknown: no row asked
    assert {r.request_id for r in model.requests} == set(ANSWERS)
    asked = {r.request_id: r for r in model.requests}
    assert asked["gender/s1"].text_prompt == "Is the speaker male or female? Answer with one word: male or female."
    assert asked["accent/s1"].text_prompt.endswith("Answer with one of: american or scottish.")
    assert asked["pitch/s2"].audio_path == str(tmp_path / "audio" / "s2.wav")
    table = (tmp_path / "out" / "attributes_results.md").read_text()
    assert "| gender | 50.00 | 50.00 | 50.00 | 4 | 1 | 0 |" in table
    scored = [json.loads(line) for line in (tmp_path / "out" / "attributes_scored.jsonl").read_text().splitlines()]
    assert next(r for r in scored if r["uid"] == "gender/s4")["predicted_label"] is None


def test_a_failed_answer_is_a_skip_and_a_rerun_asks_only_for_it(tmp_path, capsys):
    failing = ScriptedResponder(lambda req: ANSWERS[req.request_id], fail={"speed/s2"})
    results, _ = run_task(tmp_path, failing, tasks=("speed",))
    assert results["details"]["labels"]["speed"]["unanswered"] == 1
    assert results["skipped"]["by_stage"] == {"generation": 1}
    assert "speed/s2" in capsys.readouterr().err
    healthy = ScriptedResponder(lambda req: ANSWERS[req.request_id])
    results, _ = run_task(tmp_path, healthy, tasks=("speed",))
    assert [r.request_id for r in healthy.requests] == ["speed/s2"]
    assert results["metrics"]["speed/accuracy"] == pytest.approx(75.0)


def test_a_task_with_one_label_is_left_out_and_listed(tmp_path):
    config = AttributesConfig(output_dir=tmp_path / "out", progress=False, tasks=("gender", "accent"))
    one_accent = [(i, {**a, "accent": "Scottish"}) for i, a in SEEDS]
    task = AttributesTask(config, seeds=write_seeds(tmp_path / "seeds.jsonl", one_accent))
    rows = task.load()
    assert {r["task"] for r in rows} == {"gender"}
    assert sum(1 for s in task.skips if "accent" in s.row and "two labels" in s.reason) == 4


def test_dynamic_superb_rows_in_jsonl_and_json_layouts_and_open_rows_judged(tmp_path):
    root = tmp_path / "ds"
    for name in ("a.wav", "b.wav", "c.wav", "d.wav", "e.wav", "f.wav"):
        touch_audio(root / "audio" / name)
    write_jsonl(root / "EmotionRecognition.jsonl", [
        {"audio": "audio/a.wav", "instruction": "Emotion? happy or sad.", "label": "happy", "file": "a"},
        {"audio": {"path": "audio/b.wav"}, "instruction": "Emotion? happy or sad.", "label": "sad", "file": "b"},
        {"audio": "audio/missing.wav", "instruction": "Emotion?", "label": "sad"},
        {"instruction": "no audio", "label": "sad"},
    ])
    (root / "gender.json").write_text(json.dumps({"audio": ["audio/c.wav", "audio/d.wav"],
                                                  "instruction": ["Gender?", "Gender?"],
                                                  "label": ["male", "female"]}))  # columns
    (root / "sub").mkdir()
    (root / "sub" / "chat.json").write_text(json.dumps({"rows": [  # datasets-server layout, open-ended
        {"row": {"path": "../audio/e.wav", "question": "What is the man doing?", "answer_gt": "He sings.",
                 "task_name": "speech_QA", "id": "q1"}},
        {"row": {"path": "../audio/f.wav", "question": "What instrument plays?", "answer_gt": "A piano.",
                 "task_name": "music_QA", "id": "q2"}}]}))
    (root / "broken.json").write_bytes(b"\xff\xfe not json")
    answers = {"EmotionRecognition/a": "happy", "EmotionRecognition/b": "happy", "gender/row0": "male",
               "gender/row1": "I think female.", "speech_QA/q1": "He is singing.", "music_QA/q2": "A violin."}
    model = ScriptedResponder(lambda req: answers[req.request_id])
    judge = ScriptedJudge(lambda prompt: "9" if "He is singing." in prompt else "2/10")
    config = AttributesConfig(output_dir=tmp_path / "out", progress=False, judge=JudgeConfig(samples=2))
    results = run(AttributesTask(config, dataset=root, judge=judge), model)
    labels = results["details"]["labels"]
    assert {t: (e["correct"], e["scored"]) for t, e in labels.items()} == {"EmotionRecognition": (1, 2),
                                                                        "gender": (2, 2)}
    assert labels["gender"]["labels"] == ["male", "female"]
    assert results["details"]["open"]["speech_QA"]["mean_score"] == 9.0
    assert results["metrics"]["open/music_QA/mean_score"] == 2.0
    assert "Reference answer: He sings." in judge.prompts[0] and "Question: What is the man doing?" in judge.prompts[0]
    assert results["skipped"]["by_stage"] == {"input": 3}  # missing audio, no audio field, broken.json
    judged = len(judge.prompts)
    run(AttributesTask(config, dataset=root, judge=judge), model)
    assert len(judge.prompts) == judged  # verdicts reused while judge, settings and prompt are unchanged


def test_open_rows_without_a_judge_are_listed_not_scored(tmp_path):
    root = tmp_path / "ds"
    touch_audio(root / "e.wav")
    write_jsonl(root / "chat.jsonl", [{"audio": "e.wav", "question": "What?", "reference": "Rain."}])
    config = AttributesConfig(output_dir=tmp_path / "out", progress=False)
    results = run(AttributesTask(config, dataset=root), ScriptedResponder(lambda req: "Rain."))
    assert results["details"]["open"]["chat"] == {"judge_errors": 1, "unanswered": 0, "rated": 0,
                                                  "mean_score": None}
    assert results["skipped"]["by_stage"] == {"judge": 1}


@pytest.mark.parametrize("text,score", [("7", 7), (" 10 ", 10), ("Score: 8/10.", 8), ("**3**", 3)])
def test_judge_scores_parse(text, score):
    assert parse_score(text) == score


@pytest.mark.parametrize("text", ["", "11", "0", "7 or 8", "good"])
def test_malformed_judge_scores_are_refused(text):
    with pytest.raises(MalformedAnswer):
        parse_score(text)


def test_command_line_runs_on_a_seeds_file_and_refuses_bad_inputs(tmp_path, monkeypatch, capsys):
    from megatron_inserter.eval import responder

    monkeypatch.setattr(responder, "load_responder",
                        lambda *a, **k: ScriptedResponder(lambda req: ANSWERS.get(req.request_id, "?")))
    seeds = write_seeds(tmp_path / "seeds.jsonl")
    assert cli.main(["attributes", "--seeds", str(seeds), "--load", str(tmp_path), "--output",
                     str(tmp_path / "out"), "--tasks", "gender,pitch", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "| gender | 50.00 | 50.00 |" in out and "| pitch | 75.00 | 33.33 |" in out
    assert cli.main(["attributes", "--load", "x", "--output", str(tmp_path / "o")]) == 2
    assert cli.main(["attributes", "--seeds", str(seeds), "--load", "x", "--output", str(tmp_path / "o"),
                     "--tasks", "gender,mood"]) == 2
    (tmp_path / "bad.jsonl").write_text('{"id": 1}\n')
    assert cli.main(["attributes", "--seeds", str(tmp_path / "bad.jsonl"), "--load", "x", "--output",
                     str(tmp_path / "o")]) == 1
    errors = capsys.readouterr().err.strip().splitlines()
    assert "--seeds" in errors[0] and "mood" in errors[1] and "seeds header" in errors[2]


def test_no_usable_rows_is_a_data_error(tmp_path):
    config = AttributesConfig(output_dir=tmp_path / "out", progress=False, tasks=("language",))
    with pytest.raises(DataError, match="no usable rows"):
        AttributesTask(config, seeds=write_seeds(tmp_path / "seeds.jsonl")).load()
