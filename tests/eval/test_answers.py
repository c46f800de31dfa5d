"""Answers: batches, retries one by one, counted failures, no regeneration of answered rows."""

from megatron_inserter.eval.answers import PendingItem, answer_missing
from megatron_inserter.eval.records import RecordLog
from megatron_inserter.eval.responder import EvalRequest
from tests.eval.fakes import ScriptedResponder


def items(n):
    return [PendingItem(f"u{i}", EvalRequest(text_prompt=f"q{i}", request_id=f"u{i}")) for i in range(n)]


def test_a_failing_request_is_isolated_logged_and_retried_next_run(tmp_path):
    responder = ScriptedResponder(fail={"u3"})
    with RecordLog(tmp_path / "log.jsonl") as log:
        stats = answer_missing(items(5), responder, log, batch_size=2, progress=False)
        assert (stats.generated, stats.failed) == (4, 1) and "u3" in stats.errors[0]
        assert (
            log.get("u3")["error"].startswith("RuntimeError") and log.get("u2")["response"] == "answer to u2"
        )
    # batches: [u0,u1] ok; [u2,u3] fails -> u2, u3 one by one; [u4] ok
    assert [len(b) for b in responder.calls] == [2, 2, 1, 1, 1]
    retry = ScriptedResponder()
    with RecordLog(tmp_path / "log.jsonl") as log:
        stats = answer_missing(items(5), retry, log, batch_size=2, progress=False)
    assert stats.already_answered == 4 and [r.request_id for r in retry.requests] == ["u3"]


def test_a_responder_returning_the_wrong_count_is_a_counted_failure(tmp_path):
    class Short:
        def respond(self, requests):
            return ["only one"] if len(requests) > 1 else [42]

    with RecordLog(tmp_path / "log.jsonl") as log:
        stats = answer_missing(items(2), Short(), log, batch_size=2, progress=False)
    assert stats.failed == 2 and "TypeError" in stats.errors[0]
