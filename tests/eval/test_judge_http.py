"""The HTTP judge against hostile servers on 127.0.0.1: redirects, trickling and cut-short replies, key leaks."""

import base64
import json
import threading
import time

import pytest

from megatron_inserter.eval.judge import HttpChatJudge, JudgeConfig, MalformedAnswer, collect_votes
from megatron_inserter.eval.speechinstructbench import runner
from tests.eval.fakes import FakeChatServer, ScriptedServer, chat_completion, reply, write_jsonl

KEY = "sk-live-9f8e7d6c5b4a"
PASSWORD = "hunter2-pass"
ONE = JudgeConfig(samples=1, max_attempts=3, backoff_s=0.0, timeout_s=5.0)


def parse_yes(text):
    if text.strip() != "['YES']":
        raise MalformedAnswer(text)
    return "YES"


def judge_for(url, key=KEY):
    return HttpChatJudge(url, "judge-m", api_key=key)


def votes(judge, config=ONE):
    return collect_votes(judge, "Is it good?", parse_yes, config, sleep=lambda s: None)


def test_a_redirect_to_another_origin_never_reaches_it_and_the_row_fails():
    with ScriptedServer(lambda h, r, n: reply(h, 200, chat_completion(["['YES']"]))) as other:
        target = other.url + "/chat/completions"
        with ScriptedServer(lambda h, r, n: reply(h, 302, headers=[("Location", target)])) as judge_server:
            verdict = votes(judge_for(judge_server.url))
    assert other.requests == []  # no request of any method: neither the key nor the prompt left
    assert not verdict.ok and len(judge_server.requests) == 1  # not retried: a retry cannot change it
    assert judge_server.requests[0]["method"] == "POST"
    assert "another origin" in verdict.errors[0] and KEY not in verdict.errors[0]


def test_a_same_origin_307_is_followed_as_the_same_post_and_a_303_is_not():
    def moved(handler, request, count):
        if count == 1:
            reply(handler, 307, headers=[("Location", "/v2/chat/completions")])
        else:
            reply(handler, 200, chat_completion(["['YES']"]), [("Content-Type", "application/json")])

    with ScriptedServer(moved) as server:
        verdict = votes(judge_for(server.url))
    first, second = server.requests
    assert verdict.ok and second["path"] == "/v2/chat/completions"
    assert first["method"] == second["method"] == "POST" and first["body"] == second["body"]
    assert second["auth"] == f"Bearer {KEY}"

    with ScriptedServer(lambda h, r, n: reply(h, 303, headers=[("Location", "/v1/other")])) as server:
        verdict = votes(judge_for(server.url))
    assert not verdict.ok and [r["method"] for r in server.requests] == ["POST"]
    assert "never turned into a GET" in verdict.errors[0]


def _trickle(head_first: bool):
    """A reply that arrives one byte every 0.1 s (100 bytes, 10 s in all); counts the bytes sent until the
    client hangs up."""
    sent, done = {"bytes": 0}, threading.Event()

    def handle(handler, request, count):
        body = chat_completion(["['YES']" + " " * 100])
        head = f"HTTP/1.0 200 OK\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        try:
            if not head_first:
                handler.wfile.write(head)
                handler.wfile.flush()
            for byte in ((head if head_first else b"") + body)[:100]:
                handler.wfile.write(bytes([byte]))
                handler.wfile.flush()
                sent["bytes"] += 1
                time.sleep(0.1)
        finally:
            done.set()

    return handle, sent, done


@pytest.mark.parametrize("head_first", [False, True], ids=["trickled-body", "trickled-status-line"])
def test_a_trickling_server_is_cut_at_the_deadline(head_first):
    handle, sent, done = _trickle(head_first)
    config = JudgeConfig(samples=1, max_attempts=1, timeout_s=0.5)
    with ScriptedServer(handle) as server:
        verdict = votes(judge_for(server.url), config)
        done.wait(15)  # the server stops at its first write after the client hung up
    assert not verdict.ok and "--judge-timeout 0.5s" in verdict.errors[0]
    assert sent["bytes"] < 90  # a timeout per read would have waited for all 100 bytes


def test_a_reply_cut_short_is_retried_then_counted():
    def cut_first(handler, request, count):
        body = chat_completion(["['YES']"])
        if count == 1:
            handler.wfile.write(f"HTTP/1.0 200 OK\r\nContent-Length: {len(body) + 500}\r\n\r\n".encode() + body)
            handler.close_connection = True
        else:
            reply(handler, 200, body)

    with ScriptedServer(cut_first) as server:
        verdict = votes(judge_for(server.url))
    assert verdict.ok and len(server.requests) == 2 and "cut short" in verdict.errors[0]

    def always_cut(handler, request, count):
        handler.wfile.write(b"HTTP/1.0 200 OK\r\nContent-Length: 900\r\n\r\n{\"choices\": [")

    with ScriptedServer(always_cut) as server:
        verdict = votes(judge_for(server.url))
    assert not verdict.ok and len(server.requests) == 3 and all("cut short" in e for e in verdict.errors)


def test_the_key_and_url_credentials_never_reach_an_output_file_or_stderr(tmp_path, capsys):
    basic = base64.b64encode(f"judge:{PASSWORD}".encode()).decode()

    def echo(handler, request, count):
        if count == 1:  # an error page that echoes what it was sent
            reply(handler, 500, f"bad auth {request['auth']} key={KEY} pass={PASSWORD} basic={basic}".encode())
        else:
            reply(handler, 200, chat_completion([f"['YES'] {request['auth']}", "['YES']"]))

    rows = write_jsonl(tmp_path / "rows.jsonl", [
        {"id": "o1", "prompt": "Say hi.", "decomposed_questions": ["Did it say hi?"], "language": "en",
         "response": "hi"},
    ])
    with ScriptedServer(echo) as server:
        url = server.url.replace("http://", f"http://judge:{PASSWORD}@") + "?api-key=query-secret-1"
        judge = HttpChatJudge(url, "judge-m", api_key=KEY)
        config = runner.RunConfig(output_dir=tmp_path / "out", progress=False, sentence_splitter="punkt-offline",
                                  judge=JudgeConfig(samples=2, max_attempts=4, backoff_s=0.0, timeout_s=5.0))
        loaded, stats = runner.load_scored_rows(rows, config)
        results = runner.score(loaded, judge, config, stats)
    assert server.requests[0]["auth"] == f"Bearer {KEY}"  # the key does go to the judge itself
    assert results["details"]["en/open"]["prompts"] == 1
    err = capsys.readouterr().err
    secrets = (KEY, PASSWORD, basic, "query-secret-1")
    for path in (tmp_path / "out").rglob("*"):
        text = path.read_text(encoding="utf-8")
        assert not any(s in text for s in secrets), path
    assert not any(s in err for s in secrets)
    assert "***" in (tmp_path / "out/judgements.jsonl").read_text()  # the echo was there, redacted
    assert json.loads((tmp_path / "out/results.json").read_text())["config"]["judge"]["endpoint"] == (
        f"{server.root}/v1/chat/completions")


def test_url_credentials_are_sent_as_basic_auth_when_there_is_no_key():
    with FakeChatServer([("ok", ["['YES']"])]) as server:
        url = server.url.replace("http://", f"http://judge:{PASSWORD}@")
        verdict = votes(judge_for(url, key=None))
    assert verdict.ok
    assert server.requests[0]["auth"] == "Basic " + base64.b64encode(f"judge:{PASSWORD}".encode()).decode()
    assert PASSWORD not in repr(judge_for(url, key=None))


def test_http_proxy_from_the_environment_is_used(monkeypatch):
    with FakeChatServer([("ok", ["['YES']"])]) as proxy:
        monkeypatch.setenv("http_proxy", proxy.url.rsplit("/", 1)[0])
        monkeypatch.delenv("no_proxy", raising=False)
        monkeypatch.delenv("NO_PROXY", raising=False)
        verdict = votes(judge_for("http://judge.example.invalid/v1"))
    assert verdict.ok and proxy.requests[0]["path"] == "http://judge.example.invalid/v1/chat/completions"
