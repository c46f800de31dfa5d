"""A fake OpenAI-compatible TTS server and a fake ASR server (stdlib http.server on 127.0.0.1).

The TTS server answers ``POST /v1/audio/speech`` with 16 kHz 16-bit audio: a tone lasting
``SECONDS_PER_WORD`` per word of the input, whose first four samples spell a digest of (text, voice), so the
audio is a pure function of the request and the ASR server can tell which request a clip came from. It
can fail on purpose: ``TTSState.first_attempt(text, voice)`` returns ``None``, an HTTP status, or ``"hang"``
(no reply for ``hang_seconds``) for the first request of a (text, voice) to any server sharing the state;
later requests of it succeed. ``latency`` delays every reply.

The ASR server answers ``POST /v1/audio/transcriptions`` (multipart) with the text the clip was made from,
or with ``""`` when its voice is in ``bad_voices`` (an error rate of exactly 1).
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import soundfile as sf

SECONDS_PER_WORD = 0.25
RATE = 16000


def digest_samples(text: str, voice: str) -> np.ndarray:
    d = hashlib.blake2b(f"{text}\0{voice}".encode(), digest_size=8).digest()
    return np.frombuffer(d, dtype="<i2").astype(np.int16)


def speech_pcm(text: str, voice: str, speed: float = 1.0) -> np.ndarray:
    n = max(int(len(text.split()) * SECONDS_PER_WORD * RATE / speed), RATE // 5)
    t = np.arange(n) / RATE
    pcm = np.round(np.sin(2 * np.pi * 220 * t) * 0.3 * 32767).astype(np.int16)
    pcm[:4] = digest_samples(text, voice)
    return pcm


class _Quiet(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass


class _Server:
    handler: type

    def __init__(self):
        self.httpd: ThreadingHTTPServer | None = None
        self.port = 0
        self.lock = threading.Lock()

    def start(self, port: int = 0):
        server = self

        class Handler(self.handler):
            owner = server

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


class TTSState:
    """What several fake TTS servers share: attempts per (text, voice), injected failures, the registry."""

    def __init__(self, first_attempt=None, registry=None):
        self.first_attempt = first_attempt
        self.attempts: dict[tuple[str, str], int] = {}
        self.injected: dict[str, int] = {}
        self.registry = {} if registry is None else registry  # digest samples -> (text, voice)
        self.lock = threading.Lock()


class _TTSHandler(_Quiet):
    def do_POST(self):
        s, shared = self.owner, self.owner.state
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        text, voice = body["input"], body["voice"]
        with shared.lock:
            s.requests.append({**body, "authorization": self.headers.get("Authorization")})
            n = shared.attempts.get((text, voice), 0)
            shared.attempts[(text, voice)] = n + 1
            action = shared.first_attempt(text, voice) if n == 0 and shared.first_attempt else None
            if action is not None:
                shared.injected[str(action)] = shared.injected.get(str(action), 0) + 1
        if self.path != "/v1/audio/speech":
            return self.reply(404, b'{"error": "not found"}', "application/json")
        if s.latency:
            time.sleep(s.latency)
        if action == "hang":
            time.sleep(s.hang_seconds)
            return self.reply(500, b"late", "text/plain")
        if isinstance(action, int):
            return self.reply(action, b'{"error": "injected"}', "application/json")
        pcm = speech_pcm(text, voice, float(body.get("speed") or 1.0))
        shared.registry[tuple(pcm[:4].tolist())] = (text, voice)
        fmt = body.get("response_format", "wav")
        if fmt == "pcm":
            return self.reply(200, pcm.astype("<i2").tobytes(), "audio/pcm")
        buf = io.BytesIO()
        sf.write(buf, pcm, RATE, format=fmt.upper(), subtype="PCM_16")
        self.reply(200, buf.getvalue(), f"audio/{fmt}")


class FakeTTSServer(_Server):
    handler = _TTSHandler

    def __init__(self, *, latency: float = 0.0, hang_seconds: float = 3.0, state: TTSState | None = None):
        super().__init__()
        self.latency, self.hang_seconds = latency, hang_seconds
        self.state = state or TTSState()
        self.requests: list[dict] = []  # every request this server received


def parse_multipart(body: bytes, content_type: str) -> dict[str, bytes]:
    boundary = content_type.split("boundary=", 1)[1].encode()
    fields = {}
    for part in body.split(b"--" + boundary):
        if b"\r\n\r\n" not in part:
            continue
        head, data = part.split(b"\r\n\r\n", 1)
        name = head.split(b'name="', 1)[1].split(b'"', 1)[0].decode()
        fields[name] = data[:-2] if data.endswith(b"\r\n") else data
    return fields


class _ASRHandler(_Quiet):
    def do_POST(self):
        s = self.owner
        form = parse_multipart(self.rfile.read(int(self.headers["Content-Length"])), self.headers["Content-Type"])
        pcm, rate = sf.read(io.BytesIO(form["file"]), dtype="int16")
        text, voice = s.registry.get(tuple(pcm[:4].tolist()), ("", ""))
        with s.lock:
            s.requests.append({"model": form["model"].decode(), "language": form["language"].decode(),
                               "text": text, "voice": voice, "rate": rate})
        answer = "" if voice in s.bad_voices else text
        self.reply(200, json.dumps({"text": answer}).encode(), "application/json")


class FakeASRServer(_Server):
    handler = _ASRHandler

    def __init__(self, registry: dict, bad_voices=()):
        super().__init__()
        self.registry, self.bad_voices = registry, set(bad_voices)
        self.requests: list[dict] = []
