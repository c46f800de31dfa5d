"""Round-trip ASR through servers of the OpenAI transcription API: ``POST {base}/audio/transcriptions``, a
multipart form with ``file`` (16-bit WAV), ``model``, ``language`` and ``response_format=json``; the reply
is ``{"text": ...}``. Served by vLLM, faster-whisper servers, speaches and others. The servers are a
``servers.ServerPool`` (spreading, benching, retries, per-server counters)."""

from __future__ import annotations

import json
import secrets

import numpy as np

from megatron_inserter.data.synth.asr.base import Transcriber, wav_bytes
from megatron_inserter.data.synth.servers import RequestRejected, ServerPool, api_key_from_env
from megatron_inserter.data.synth.stats import subtract

MAX_REPLY_BYTES = 1 << 20


def multipart(fields: dict[str, str], file_name: str, file_bytes: bytes, file_type: str) -> tuple[bytes, str]:
    """A ``multipart/form-data`` body -> ``(body, content type)``."""
    boundary = "inserter-" + secrets.token_hex(16)
    parts = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{file_name}"\r\n'
                 f"Content-Type: {file_type}\r\n\r\n".encode() + file_bytes + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def reply_text(data: bytes) -> str | None:
    """The ``text`` of a JSON reply; ``None`` when the reply is not such an object."""
    try:
        reply = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return None
    text = reply.get("text") if isinstance(reply, dict) else None
    return text if isinstance(text, str) else None


class OpenAITranscriber(Transcriber):
    name = "openai"
    concurrent = True

    def __init__(self, urls, model: str, *, api_key: str | None = None, api_key_env: str | None = None,
                 concurrency: int = 4, timeout: float = 120.0, retries: int = 4, servers: ServerPool | None = None):
        self.model = model
        self.concurrency = concurrency
        if api_key is None:
            api_key = api_key_from_env(api_key_env, "--asr-api-key-env")
        self.servers = servers or ServerPool("ASR", urls, "/audio/transcriptions", api_key=api_key, timeout=timeout,
                                             retries=retries, max_reply_bytes=MAX_REPLY_BYTES)
        self._reported: dict[str, dict] = {}

    def transcribe_one(self, audio: np.ndarray, language: str) -> str | None:
        body, content_type = multipart({"model": self.model, "language": language, "response_format": "json"},
                                       "span.wav", wav_bytes(audio), "audio/wav")
        try:
            data, server, _ = self.servers.post(body, content_type)
        except RequestRejected:
            return None
        text = reply_text(data)
        if text is None:
            self.servers.record_failure(server, "bad_reply")
        else:
            self.servers.record_audio(server, len(audio) / 16000)
        return text

    def transcribe(self, clips):
        return [self.transcribe_one(a, lang) for a, lang in clips]

    def collect_stats(self) -> dict:
        now = self.servers.stats()
        delta = {label: subtract(s, self._reported.get(label)) for label, s in now.items()}
        self._reported = now
        return {"asr_servers": delta}
