"""Fake responders, judges and benchmark folders for the evaluation tests."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from megatron_inserter.eval.responder import EvalRequest


class ScriptedResponder:
    """Answers from ``answer(request)``; records every request; raises for request ids in ``fail``."""

    def __init__(self, answer=None, fail=()):
        self.answer = answer or (lambda req: f"answer to {req.request_id}")
        self.fail = set(fail)
        self.calls: list[list[EvalRequest]] = []

    @property
    def requests(self) -> list[EvalRequest]:
        return [r for batch in self.calls for r in batch]

    def respond(self, requests):
        self.calls.append(list(requests))
        for req in requests:
            if req.request_id in self.fail:
                raise RuntimeError(f"backend failed on {req.request_id}")
        return [self.answer(req) for req in requests]


class ScriptedJudge:
    """In-process judge: ``reply(prompt)`` gives the answer text for every sample."""

    def __init__(self, reply):
        self.reply = reply
        self.prompts: list[str] = []

    def describe(self) -> dict:
        return {"kind": "fake"}

    def sample(self, prompt, config, n):
        self.prompts.append(prompt)
        return [self.reply(prompt) for _ in range(n)]


def write_jsonl(path: Path, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def touch_audio(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"RIFF0000WAVE")  # resolution only checks that the file exists
    return path


def make_bench(root: Path) -> Path:
    """A miniature SpeechInstructBench folder in the released layout."""
    closed_en = [
        {
            "key": 1,
            "instruction_id_list": ["punctuation:no_comma"],
            "kwargs": [{}],
            "prompt": "Describe rain without commas.",
            "audio_path": "/elsewhere/closed_standard_1_en.wav",
        },
        {
            "key": 2,
            "instruction_id_list": ["change_case:english_lowercase"],
            "kwargs": [{}],
            "prompt": "Answer in lowercase.",
            "audio_path": "closed-ended/standard/en/closed_standard_2_en.wav",
        },
        {
            "key": 3,
            "instruction_id_list": ["keywords:existence"],
            "kwargs": [{"keywords": ["sun"]}],
            "prompt": "Mention the sun.",
            "audio_path": "closed_standard_3_en.wav",
        },
    ]
    for row in closed_en:
        touch_audio(root / "closed-ended/standard/en" / Path(row["audio_path"]).name)
    write_jsonl(root / "closed-ended/standard/closed_standard_en.jsonl", closed_en)
    closed_zh = [
        {
            "key": 7,
            "instruction_id_list": ["length_constraints:number_words"],
            "kwargs": [{"num_words": 5, "relation": "at least"}],
            "prompt": "写五个字以上。",
            "audio_path": "closed_background_7_cn.wav",
        },
        {
            "key": 8,
            "instruction_id_list": ["punctuation:no_comma"],
            "kwargs": [{}],
            "prompt": "不要用逗号。",
            "audio_path": "closed_background_8_cn.wav",
        },
    ]
    for row in closed_zh:
        touch_audio(root / "closed-ended/background/cn" / row["audio_path"])
    write_jsonl(root / "closed-ended/background/closed_background_cn.jsonl", closed_zh)
    open_en = [
        {
            "id": "o1",
            "prompt": "Write a haiku about autumn.",
            "gender": "female",
            "decomposed_questions": ["Is it a haiku?", "Is it about autumn?"],
            "audio": "en/open_o1.wav",
            "language": "en",
        },
        {
            "id": "o2",
            "prompt": "List three fruits.",
            "gender": "male",
            "decomposed_questions": ["Are there three fruits?"],
            "audio": "en/open_o2.wav",
            "language": "en",
        },
    ]
    for row in open_en:
        touch_audio(root / "open-ended" / row["audio"])
    write_jsonl(root / "open-ended/open_ended_en.jsonl", open_en)
    adjust_en = [
        {"id": "a1", "prompt": "Tell me about cats, no wait, about dogs.", "audio": "en/adjust_a1.wav"},
        {"id": "a2", "prompt": "Count to three, sorry, to five.", "audio": "en/adjust_a2.wav"},
    ]
    for row in adjust_en:
        touch_audio(root / "adjustment" / row["audio"])
    write_jsonl(root / "adjustment/adjustment_en.jsonl", adjust_en)
    return root


BENCH_ANSWERS = {
    "closed/standard/en/1": "Rain falls softly on the roof.",  # no comma: followed
    "closed/standard/en/2": "It Is Raining.",  # not lowercase
    "closed/standard/en/3": "The sun is bright.",
    "closed/background/zh/7": "今天天气非常好",  # 7 characters >= 5
    "closed/background/zh/8": "好的，我知道了",  # comma: not followed
    "open/standard/en/o1": "Leaves fall slowly",
    "open/standard/en/o2": "apple, pear, plum",
    "adjustment/standard/en/a1": "Dogs are loyal.",
    "adjustment/standard/en/a2": "1 2 3 4 5",
}


def bench_answer(request) -> str:
    return BENCH_ANSWERS[request.request_id]


def bench_judge_reply(prompt: str) -> str:
    if "Task Definition" in prompt:  # adjustment
        followed = "Dogs are loyal." in prompt
        return json.dumps(
            {
                "follow_after_adjust": "YES" if followed else "NO",
                "follow_before_adjust": "NO" if followed else "YES",
                "after_adjust_content_correct": "YES" if followed else "NO",
            }
        )
    if "Is it a haiku?" in prompt:
        return "['YES', 'NO']"
    return '["YES"]'


class _LocalServer:
    """An HTTP server on 127.0.0.1 (a free port, ``root``; ``url``: its ``/v1``) serving in a thread while
    entered."""

    def _serve(self, handler_class) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler_class)
        self.root = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.url = self.root + "/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


class FakeChatServer(_LocalServer):
    """Answers with ``reply(prompt)``, or plays back ``script``, one item per request:
    ("ok", [texts]), ("status", code), ("garbage",) or ("sleep", seconds)."""

    def __init__(self, script=(), reply=None):
        self.script = list(script)
        self.reply = reply  # when given: user prompt -> answer text, for every request
        self.requests = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def handle(self):
                try:
                    super().handle()
                except OSError:  # the client gave up (a timeout test)
                    pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append(
                    {"path": self.path, "body": body, "auth": self.headers.get("Authorization")}
                )
                if server.reply is not None:
                    prompt = body["messages"][-1]["content"]
                    action = ("ok", [server.reply(prompt) for _ in range(body["n"])])
                else:
                    action = server.script.pop(0) if server.script else ("status", 500)
                if action[0] == "sleep":
                    time.sleep(action[1])
                    action = ("ok", ["['YES']"] * body["n"])
                if action[0] == "status":
                    self.send_response(action[1])
                    self.end_headers()
                    self.wfile.write(b'{"error": "boom"}')
                    return
                payload = b"<html>not json" if action[0] == "garbage" else chat_completion(action[1])
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self._serve(Handler)


class ChatTokenizer:
    """Characters -> ids, with one id each for the chat markers (what a Qwen2 tokenizer has)."""

    tokenizer_model = "chat-chars"
    def tokenize(self, text):
        return {"<|im_start|>": [1], "<|im_end|>": [2]}.get(text) or [10 + ord(c) % 100 for c in text]


def chat_completion(texts) -> bytes:
    return json.dumps({"choices": [{"message": {"role": "assistant", "content": t}} for t in texts]}).encode()


class ScriptedServer(_LocalServer):
    """An HTTP server on 127.0.0.1 that records every request (any method) and lets ``handle(handler,
    request, count)`` write the reply by hand (``handler.wfile``), including broken ones."""

    def __init__(self, handle):
        self.requests = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _any(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                request = {"method": self.command, "path": self.path, "auth": self.headers.get("Authorization"),
                           "body": body}
                server.requests.append(request)
                try:
                    handle(self, request, len(server.requests))
                except OSError:  # the client went away
                    pass

            do_GET = do_POST = do_PUT = do_HEAD = _any

        self._serve(Handler)


def reply(handler, status=200, body=b"", headers=()):
    handler.send_response(status)
    for name, value in headers:
        handler.send_header(name, value)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)
