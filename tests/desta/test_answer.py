"""`inserter desta answer` against a chat server on 127.0.0.1 and a scripted local model: what the LLM is
asked, the conversations written, failures counted, resume, and keys that stay put."""

import json
import os
import threading

import pytest

from megatron_inserter.data.conversation.messages import load_audio, parse_conversation
from megatron_inserter.desta.answer import AnswerConfig, answer, log_path
from megatron_inserter.desta.chat_client import ChatClient, ChatConfigError, ChatSettings
from megatron_inserter.desta.cli import main
from megatron_inserter.desta.prompts import DEFAULT_POOL, MAIN_PROMPT, choose_prompt, user_text
from megatron_inserter.desta.seeds import read_seeds
from tests.eval.fakes import ScriptedResponder, ScriptedServer, chat_completion, reply

KEY = "sk-desta-5e3c1a9b7f"
FAST = ChatSettings(timeout_s=5.0, max_attempts=2, backoff_s=0.0)


def describe_server(fail_text=None, status=500):
    """A chat server answering 'ANSWER <n> (<the key>)', n the number of characters of the user turn; a
    request whose user turn contains ``fail_text`` gets ``status``."""
    lock = threading.Lock()

    def handle(handler, request, count):
        body = json.loads(request["body"])
        user = body["messages"][-1]["content"]
        with lock:
            failing = fail_text is not None and fail_text in user
        if failing:
            reply(handler, status, b'{"error": "overloaded"}')
        else:
            reply(handler, 200, chat_completion([f"ANSWER {len(user)} ({KEY})"]),
                  [("Content-Type", "application/json")])

    return ScriptedServer(handle)


def client(server, **kw):
    return ChatClient(server.url, "backbone-llm", api_key=KEY, settings=FAST, sleep=lambda s: None, **kw)


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_every_seed_becomes_a_conversation_with_the_llms_answer(built_seeds, tmp_path):
    seeds_path, _ = built_seeds
    seeds = read_seeds(seeds_path)
    out = tmp_path / "conversations.jsonl"
    with describe_server() as server:
        result = answer(AnswerConfig(seeds_path, out, progress=False), client(server))
    assert (result.conversations, result.generated, result.failed) == (len(seeds.rows), len(seeds.rows), 0)
    sent = [json.loads(r["body"]) for r in server.requests]
    assert all(r["auth"] == f"Bearer {KEY}" and r["path"] == "/v1/chat/completions" for r in server.requests)
    by_user = {b["messages"][-1]["content"]: b for b in sent}
    conversations = read_jsonl(out)
    prompts = set()
    for row, conv in zip(seeds.rows, conversations):
        prompt = choose_prompt(DEFAULT_POOL, row["id"])
        prompts.add(prompt)
        user = user_text(row["seed"], prompt)
        body = by_user[user]  # the LLM saw the seed transcript, then the prompt
        assert body["model"] == "backbone-llm" and body["temperature"] == 0.0
        assert body["messages"][0] == {"role": "system", "content": "You are a helpful assistant."}
        assert conv["id"] == row["id"] and conv["seed"] == row["seed"]
        assert conv["messages"] == [
            {"role": "user", "content": [{"type": "audio", "audio": os.path.relpath(row["audio"], out.parent)},
                                         {"type": "text", "text": prompt}]},
            {"role": "assistant", "content": f"ANSWER {len(user)} (***)"},  # the key is redacted from answers
        ]
    assert MAIN_PROMPT in prompts and len(prompts) > 2  # a seeded choice from the pool
    for raw in conversations:  # what `inserter preprocess --format conversation` reads
        conv = parse_conversation(raw, base_dir=str(out.parent))
        assert [m.role for m in conv.messages] == ["user", "assistant"] and conv.id == raw["id"]
        (clip,) = conv.audio
        assert load_audio(clip).size > 16_000
    assert KEY not in out.read_text() and KEY not in log_path(out).read_text()


def test_failures_are_counted_and_a_rerun_asks_only_for_them(built_seeds, tmp_path, capsys):
    seeds_path, _ = built_seeds
    seeds = read_seeds(seeds_path)
    out = tmp_path / "conversations.jsonl"
    victim = seeds.rows[2]["seed"]
    with describe_server(fail_text=victim) as server:
        result = answer(AnswerConfig(seeds_path, out, progress=False, workers=3), client(server))
    n = len(seeds.rows)
    assert (result.conversations, result.failed) == (n - 1, 1)
    assert len(server.requests) == n - 1 + FAST.max_attempts  # the 500 was retried, then counted
    assert seeds.rows[2]["id"] not in {c["id"] for c in read_jsonl(out)}
    err = capsys.readouterr().err
    assert "1 of" in err and "failed" in err and seeds.rows[2]["id"] in err and KEY not in err
    with describe_server() as server:
        again = answer(AnswerConfig(seeds_path, out, progress=False), client(server))
    assert len(server.requests) == 1 and (again.generated, again.reused, again.failed) == (1, n - 1, 0)
    assert [c["id"] for c in read_jsonl(out)] == [r["id"] for r in seeds.rows]  # seed order


def test_a_killed_run_resumes_and_a_changed_question_is_asked_again(built_seeds, tmp_path):
    seeds_path, _ = built_seeds
    n = len(read_seeds(seeds_path).rows)
    out = tmp_path / "c.jsonl"
    with describe_server() as server:
        answer(AnswerConfig(seeds_path, out, progress=False, limit=4), client(server))
        assert len(server.requests) == 4
        answer(AnswerConfig(seeds_path, out, progress=False), client(server))
        assert len(server.requests) == n
        answer(AnswerConfig(seeds_path, out, progress=False, system_prompt="Be brief."), client(server))
        assert len(server.requests) == 2 * n  # another system prompt: every answer is asked again
    assert len(read_jsonl(out)) == n


def test_a_redirect_is_not_followed_and_a_rejected_key_stops_the_run(built_seeds, tmp_path):
    seeds_path, _ = built_seeds
    other = ScriptedServer(lambda h, r, n: reply(h, 200, chat_completion(["stolen"])))
    target = other.url + "/chat/completions"
    redirecting = ScriptedServer(lambda h, r, n: reply(h, 307, headers=[("Location", target)]))
    with other, redirecting as server:
        result = answer(AnswerConfig(seeds_path, tmp_path / "a.jsonl", progress=False, limit=2), client(server))
    assert other.requests == [] and result.failed == 2 and result.conversations == 0
    assert len(server.requests) == 2  # not retried: a retry cannot change a redirect
    assert "redirects are not followed" in result.errors[0]
    rejecting = ScriptedServer(lambda h, r, n: reply(h, 401, f'{{"error": "bad key {KEY}"}}'.encode()))
    with rejecting as server, pytest.raises(ChatConfigError) as err:
        answer(AnswerConfig(seeds_path, tmp_path / "b.jsonl", progress=False, workers=1), client(server))
    assert "HTTP 401" in str(err.value) and KEY not in str(err.value)
    assert len(server.requests) <= 4  # stopped at once, not one request per seed


def test_the_command_line_reads_the_key_from_the_named_variable(built_seeds, tmp_path, monkeypatch, capsys):
    seeds_path, _ = built_seeds
    out = tmp_path / "c.jsonl"
    monkeypatch.setenv("DESTA_TEST_KEY", KEY)
    with describe_server() as server:
        code = main(["answer", "--seeds", str(seeds_path), "--output", str(out), "--chat-url", server.url,
                     "--chat-model", "m", "--chat-key-env", "DESTA_TEST_KEY", "--limit", "3", "--no-progress"])
    assert code == 0 and len(read_jsonl(out)) == 3
    assert {r["auth"] for r in server.requests} == {f"Bearer {KEY}"}
    monkeypatch.delenv("DESTA_TEST_KEY")
    assert main(["answer", "--seeds", str(seeds_path), "--output", str(out), "--chat-url", server.url,
                 "--chat-model", "m", "--chat-key-env", "DESTA_TEST_KEY"]) == 2
    assert main(["answer", "--seeds", str(seeds_path), "--output", str(out)]) == 2  # neither --load nor --chat-url
    lines = capsys.readouterr().err.strip().splitlines()
    assert "DESTA_TEST_KEY" in lines[-2] and "--load" in lines[-1]


def test_our_own_model_answers_from_text_only(built_seeds, tmp_path, monkeypatch):
    seeds_path, _ = built_seeds
    seeds = read_seeds(seeds_path)
    model = ScriptedResponder(lambda req: f"I hear {req.request_id}.")
    monkeypatch.setattr("megatron_inserter.eval.responder.load_responder", lambda *a, **k: model)
    out = tmp_path / "c.jsonl"
    assert main(["answer", "--seeds", str(seeds_path), "--output", str(out), "--load", str(tmp_path),
                 "--batch-size", "4", "--no-progress"]) == 0
    assert len(model.calls) == -(-len(seeds.rows) // 4)  # batched
    for req, row in zip(model.requests, seeds.rows):
        assert not req.has_audio and req.text_prompt.startswith(row["seed"] + "\n\n")
        assert req.system_prompt == "You are a helpful assistant."
    assert [c["messages"][1]["content"] for c in read_jsonl(out)] == [f"I hear {r['id']}." for r in seeds.rows]
