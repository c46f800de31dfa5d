"""The HTTP judge against a fake OpenAI-compatible server on 127.0.0.1."""

import json

import pytest

from megatron_inserter.eval.judge import (
    HttpChatJudge,
    JudgeConfig,
    JudgeFatalError,
    MalformedAnswer,
    collect_votes,
)
from tests.eval.fakes import FakeChatServer


def parse_yes_no(text):
    if text.strip() not in ("['YES']", "['NO']"):
        raise MalformedAnswer(text)
    return text.strip()[2:-2]


FAST = JudgeConfig(samples=4, max_attempts=3, backoff_s=0.5, timeout_s=5.0)


def judge_for(server, key="sk-secret-123"):
    return HttpChatJudge.from_env(
        {"INSERTER_JUDGE_URL": server.url, "INSERTER_JUDGE_MODEL": "judge-m", "INSERTER_JUDGE_API_KEY": key}
    )


def test_votes_come_back_and_the_request_is_a_chat_completion():
    with FakeChatServer([("ok", ["['YES']", "['NO']", "['YES']", "['YES']"])]) as server:
        judge = judge_for(server)
        verdict = collect_votes(judge, "Is it good?", parse_yes_no, FAST, sleep=lambda s: None)
    assert verdict.ok and verdict.parsed == ["YES", "NO", "YES", "YES"] and verdict.attempts == 1
    (request,) = server.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["auth"] == "Bearer sk-secret-123"
    body = request["body"]
    assert (
        body["model"] == "judge-m" and body["n"] == 4 and body["temperature"] == 0.5 and body["top_p"] == 0.95
    )
    assert body["messages"][-1] == {"role": "user", "content": "Is it good?"}
    assert "sk-secret" not in repr(judge) and "sk-secret" not in json.dumps(judge.describe())


def test_http_500_is_retried_with_backoff_then_succeeds():
    sleeps = []
    with FakeChatServer([("status", 500), ("garbage",), ("ok", ["['YES']"] * 4)]) as server:
        verdict = collect_votes(judge_for(server), "q", parse_yes_no, FAST, sleep=sleeps.append)
    assert verdict.ok and len(server.requests) == 3
    assert sleeps == [0.5, 1.0]  # exponential backoff
    assert "HTTP 500" in verdict.errors[0] and "not a chat completion" in verdict.errors[1]


def test_malformed_answers_are_asked_again_only_for_the_missing_samples():
    with FakeChatServer(
        [("ok", ["['YES']", "maybe", "['NO']", "I think yes"]), ("ok", ["['NO']", "['NO']"])]
    ) as server:
        verdict = collect_votes(judge_for(server), "q", parse_yes_no, FAST, sleep=lambda s: None)
    assert verdict.ok and verdict.parsed == ["YES", "NO", "NO", "NO"]
    assert [r["body"]["n"] for r in server.requests] == [4, 2]
    assert verdict.rejected == ["maybe", "I think yes"]


def test_persistently_malformed_answers_are_a_judge_error_not_a_score():
    with FakeChatServer([("ok", ["no idea"] * 4)] * 3) as server:
        verdict = collect_votes(judge_for(server), "q", parse_yes_no, FAST, sleep=lambda s: None)
    assert not verdict.ok and verdict.parsed == [] and len(server.requests) == 3
    assert "12 malformed answers" in verdict.failure()


def test_timeouts_are_retried_then_counted_as_error():
    config = JudgeConfig(samples=1, max_attempts=2, backoff_s=0.0, timeout_s=0.2)
    with FakeChatServer([("sleep", 1.0), ("sleep", 1.0)]) as server:
        verdict = collect_votes(judge_for(server), "q", parse_yes_no, config, sleep=lambda s: None)
    assert not verdict.ok and len(verdict.errors) == 2
    assert all("timed out" in e.lower() or "timeout" in e.lower() for e in verdict.errors)


def test_a_server_that_ignores_n_is_asked_until_enough_samples():
    with FakeChatServer([("ok", ["['YES']"])] * 4) as server:
        verdict = collect_votes(
            judge_for(server),
            "q",
            parse_yes_no,
            JudgeConfig(max_attempts=6, backoff_s=0.0),
            sleep=lambda s: None,
        )
    assert verdict.ok and [r["body"]["n"] for r in server.requests] == [4, 3, 2, 1]


def test_rejected_credentials_stop_the_run():
    with FakeChatServer([("status", 401)]) as server, pytest.raises(JudgeFatalError, match="HTTP 401"):
        collect_votes(judge_for(server), "q", parse_yes_no, FAST, sleep=lambda s: None)


def test_missing_configuration_names_the_variables():
    with pytest.raises(JudgeFatalError, match="INSERTER_JUDGE_URL"):
        HttpChatJudge.from_env({})
