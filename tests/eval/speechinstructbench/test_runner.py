"""SpeechInstructBench end to end with a fake responder and judge.

Scores, resume, data parallel and score-only."""

import json

import pytest

from megatron_inserter.eval.answers import is_answered
from megatron_inserter.eval.judge import HttpChatJudge, JudgeConfig
from megatron_inserter.eval.records import RecordLog, read_jsonl
from megatron_inserter.eval.speechinstructbench import runner
from megatron_inserter.eval.speechinstructbench.bench_files import META
from tests.eval.fakes import (
    FakeChatServer,
    ScriptedJudge,
    ScriptedResponder,
    bench_answer,
    bench_judge_reply,
    make_bench,
)

EXPECTED = {
    "en/closed/standard/p_acc": 100 * 2 / 3,
    "en/closed/standard/i_acc": 100 * 2 / 3,
    "zh/closed/background/p_acc": 50.0,
    "zh/closed/background/i_acc": 50.0,
    "en/open/p_acc": 50.0,
    "en/open/i_acc": 100 * 2 / 3,
    "en/adjustment/iar": 50.0,
    "en/adjustment/ecr": 50.0,
}


def config(out, **kw):
    return runner.RunConfig(
        output_dir=out,
        name="fake",
        sentence_splitter="punkt-offline",
        progress=False,
        judge=JudgeConfig(backoff_s=0.0),
        batch_size=2,
        **kw,
    )


@pytest.fixture
def bench(tmp_path):
    return make_bench(tmp_path / "bench")


def test_full_run_scores_every_task_and_writes_the_leaderboard_table(bench, tmp_path):
    responder = ScriptedResponder(bench_answer)
    results = runner.run(bench, responder, ScriptedJudge(bench_judge_reply), config(tmp_path / "out"))
    assert results["metrics"] == pytest.approx(EXPECTED)
    assert len(responder.requests) == 9
    req = next(r for r in responder.requests if r.request_id == "closed/standard/en/1")
    assert req.audio_path.endswith(
        "closed-ended/standard/en/closed_standard_1_en.wav"
    )  # absolute path elsewhere
    assert req.system_prompt == runner.DEFAULT_SYSTEM_PROMPT and req.text_prompt == ""
    scored = {r[META]["uid"]: r for r in read_jsonl(tmp_path / "out/scored.jsonl").rows}
    assert scored["closed/standard/en/1"]["pred_score"] == {"strict": [True], "loose": [True]}
    assert scored["open/standard/en/o1"]["pred_score"] == ["['YES', 'NO']"] * 4
    table = (tmp_path / "out/results.md").read_text()
    assert "| English | 66.67 / 66.67 | – | – | – | – | 50.00 / 66.67 | 50.00 / 50.00 |" in table
    assert "| Chinese | – | 50.00 / 50.00 |" in table
    saved = json.loads((tmp_path / "out/results.json").read_text())
    assert (
        saved["config"]["sentence_splitter"] == "punkt-offline" and saved["config"]["judge"]["kind"] == "fake"
    )


def test_resume_generates_only_rows_without_an_answer(bench, tmp_path):
    out = tmp_path / "out"
    first = ScriptedResponder(bench_answer, fail={"closed/standard/en/2"})
    results = runner.run(bench, first, ScriptedJudge(bench_judge_reply), config(out))
    assert results["details"]["en/closed/standard"]["unanswered"] == 1
    with open(out / "responses.jsonl", "a") as f:  # a crash in the middle of a line
        f.write('{"uid": "open/standard/en/o2", "resp')
    second = ScriptedResponder(bench_answer)
    judge = ScriptedJudge(bench_judge_reply)
    results = runner.run(bench, second, judge, config(out))
    assert [r.request_id for r in second.requests] == ["closed/standard/en/2"]
    assert results["metrics"] == pytest.approx(EXPECTED)
    assert judge.prompts == []  # every verdict is reused
    with RecordLog(out / "responses.jsonl") as log:  # reopening keeps the last record per row
        assert len(log) == 9 and all(is_answered(r) for r in log)
    uids = [r["uid"] for r in read_jsonl(out / "responses.jsonl").rows]
    assert len(uids) == len(set(uids)) == 9


def test_two_data_parallel_ranks_gather_to_the_single_rank_result(bench, tmp_path):
    single = runner.run(
        bench, ScriptedResponder(bench_answer), ScriptedJudge(bench_judge_reply), config(tmp_path / "one")
    )
    out = tmp_path / "two"
    rank0, rank1 = ScriptedResponder(bench_answer), ScriptedResponder(bench_answer)
    judge = ScriptedJudge(bench_judge_reply)
    assert runner.run(bench, rank0, judge, config(out, dp_rank=0, dp_size=2)) is None  # rank 1 not done yet
    assert runner.run(bench, rank1, None, config(out, dp_rank=1, dp_size=2)) is None
    gathered = runner.run(bench, rank0, judge, config(out, dp_rank=0, dp_size=2))
    assert len(rank0.requests) == 5 and len(rank1.requests) == 4  # no row answered twice
    assert {r.request_id for r in rank0.requests}.isdisjoint(r.request_id for r in rank1.requests)
    assert gathered["metrics"] == single["metrics"]
    assert read_jsonl(out / "scored.jsonl").rows == read_jsonl(tmp_path / "one/scored.jsonl").rows


def test_score_only_on_rows_in_the_benchmark_format(bench, tmp_path):
    runner.run(
        bench, ScriptedResponder(bench_answer), ScriptedJudge(bench_judge_reply), config(tmp_path / "gen")
    )
    plain = tmp_path / "plain.jsonl"
    with open(plain, "w") as f:
        for row in read_jsonl(tmp_path / "gen/scored.jsonl").rows:
            row = {k: v for k, v in row.items() if k not in (META, "pred_score", "judge_votes")}
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    cfg = config(tmp_path / "scored")
    rows, stats = runner.load_scored_rows(plain, cfg)
    assert {r[META]["uid"].rsplit("/", 1)[0] for r in rows} == {
        "closed/standard/en",
        "closed/background/zh",
        "open/standard/en",
        "adjustment/standard/en",
    }
    results = runner.score(rows, ScriptedJudge(bench_judge_reply), cfg, stats)
    assert results["metrics"] == pytest.approx(EXPECTED)


def test_text_modality_sends_the_written_prompt_without_audio(bench, tmp_path):
    responder = ScriptedResponder(bench_answer)
    runner.run(bench, responder, None, config(tmp_path / "out", tasks=("closed",), modality="text"))
    req = next(r for r in responder.requests if r.request_id == "closed/standard/en/3")
    assert req.audio_path is None and req.text_prompt == "Mention the sun."


def test_missing_audio_is_counted_not_generated(bench, tmp_path):
    (bench / "open-ended/en/open_o2.wav").unlink()
    responder = ScriptedResponder(bench_answer)
    results = runner.run(
        bench, responder, ScriptedJudge(bench_judge_reply), config(tmp_path / "out", tasks=("open",))
    )
    assert [r.request_id for r in responder.requests] == ["open/standard/en/o1"]
    assert results["stats"]["load"]["missing_audio"] == 1
    assert results["details"]["en/open"]["unanswered"] == 1


def test_http_judge_with_concurrent_workers_counts_malformed_rows_as_errors(bench, tmp_path):
    def reply(prompt):
        if "Leaves fall slowly" in prompt:
            return "I would say yes to both."  # never a list: a judge error for o1
        return bench_judge_reply(prompt)

    with FakeChatServer(reply=reply) as server:
        judge = HttpChatJudge(server.url, "judge-m", api_key="k")
        cfg = config(tmp_path / "out", tasks=("open", "adjustment"), judge_workers=3)
        cfg.judge = JudgeConfig(max_attempts=2, backoff_s=0.0)
        results = runner.run(bench, ScriptedResponder(bench_answer), judge, cfg)
    details = results["details"]
    assert details["en/open"]["judge_errors"] == 1 and details["en/open"]["prompts"] == 1
    assert results["metrics"]["en/open/p_acc"] == 100.0  # only o2 is scored
    assert results["metrics"]["en/adjustment/iar"] == 50.0 and results["stats"]["judge"]["judge_errors"] == 1
    assert "o1: 0 valid answers after 2 attempts" in details["en/open"]["first_errors"][0]
