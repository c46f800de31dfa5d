"""The evaluation path: a task supplies its parts; skipped rows are listed on stderr and in the results."""

import json

import pytest

from megatron_inserter.eval import task
from megatron_inserter.eval.asr import AsrConfig, run_asr
from megatron_inserter.eval.responder import EvalRequest
from tests.eval.fakes import ScriptedResponder, touch_audio


class EchoTask(task.EvalTask):
    """The smallest task: rows {id, text}; the answer must repeat the text."""

    command, kind, stem = "echo", "echo", "echo_answers"

    def __init__(self, rows, config):
        super().__init__(config)
        self.rows = rows

    def load(self):
        return [{**row, "uid": row["id"]} for row in self.rows]

    def request(self, row):
        if not row["text"]:
            return "empty text"
        return EvalRequest(text_prompt=row["text"], request_id=row["uid"])

    def score(self, rows):
        answered = [r for r in rows if isinstance(r.get("response"), str)]
        correct = sum(r["response"] == r["text"] for r in answered)
        return {"metrics": {"accuracy": 100.0 * correct / len(answered)}, "details": {}, "config": {}}

    def write(self, rows, results):
        (self.config.output_dir / "echo.json").write_text(json.dumps(results))


ROWS = [{"id": f"r{i}", "text": f"t{i}" if i != 3 else ""} for i in range(7)]


def echo(request):
    return request.text_prompt if request.request_id != "r5" else "wrong"


def test_two_ranks_gather_to_the_one_rank_result_and_skips_are_reported(tmp_path, capsys):
    single = task.run(EchoTask(ROWS, task.EvalConfig(tmp_path / "one", progress=False)),
                          ScriptedResponder(echo))
    out = tmp_path / "two"
    rank1 = ScriptedResponder(echo, fail={"r6"})
    config = task.EvalConfig(out, progress=False, dp_size=2)
    assert task.run(EchoTask(ROWS, task.EvalConfig(out, progress=False, dp_rank=1, dp_size=2)), rank1) is None
    assert "rank 1: 1 of 3 requests failed (first: r6: RuntimeError" in capsys.readouterr().err
    rank0 = ScriptedResponder(echo)
    gathered = task.run(EchoTask(ROWS, config), rank0)
    assert {r.request_id for r in rank0.requests} == {"r0", "r1", "r2"}  # r3 has no input; r4-r6 are rank 1's
    assert single["metrics"] == {"accuracy": 100 * 5 / 6}
    assert gathered["metrics"] == {"accuracy": 100 * 4 / 5}  # r6 failed on rank 1
    assert gathered["skipped"]["by_stage"] == {"input": 1, "generation": 1}
    assert [(s["row"], s["stage"]) for s in gathered["skipped"]["rows"]] == [("r3", "input"), ("r6", "generation")]
    err = capsys.readouterr().err
    assert "inserter eval echo: 2 of 7 rows skipped (input 1, generation 1)" in err
    assert "[input] r3: empty text" in err and "[generation] r6: RuntimeError: backend failed on r6" in err
    assert json.loads((out / "echo.json").read_text())["skipped"]["total"] == 2


def test_asr_rows_skipped_on_input_are_named_on_stderr(tmp_path, capsys):
    touch_audio(tmp_path / "a.wav")
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(
        '{"audio_filepath": "a.wav", "text": "hello"}\n'
        '{"audio_filepath": "gone.wav", "text": "x"}\n'
        "not json\n"
        '{"audio_filepath": "a.wav", "text": 5}\n',
        encoding="utf-8",
    )
    results = run_asr(manifest, ScriptedResponder(lambda r: "hello"),
                      AsrConfig(output_dir=tmp_path / "out", nemo_cross_check=False, progress=False))
    assert results["metrics"] == pytest.approx({"en/wer": 0.0})
    err = capsys.readouterr().err
    assert "3 of 4 rows skipped (input 3)" in err
    assert f"{manifest}:2: audio file {tmp_path / 'gone.wav'} not found" in err
    assert f"{manifest}:3: not valid JSON" in err
    assert f"{manifest}:4: needs string fields audio_filepath and text" in err
    assert results["stats"]["load"]["skipped"] == 3 and results["skipped"]["total"] == 3


def test_control_characters_in_row_ids_are_escaped_on_stderr(tmp_path, capsys):
    rows = [{"id": "evil\x1b[2J", "text": ""}, {"id": "ok", "text": "t"}]
    task.run(EchoTask(rows, task.EvalConfig(tmp_path, progress=False)), ScriptedResponder(echo))
    err = capsys.readouterr().err
    assert "\x1b" not in err and "evil\\x1b[2J: empty text" in err
