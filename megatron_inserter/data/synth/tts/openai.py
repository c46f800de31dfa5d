"""``--tts openai``: any server of the OpenAI speech API (``POST {base}/audio/speech``), as CosyVoice, F5-TTS,
Kokoro, Fish-Speech and others serve it.

A request is JSON ``{"model", "input", "voice", "response_format", "speed"}``; the reply is the audio:
``wav`` or ``flac`` (decoded with soundfile; a WAV with unset chunk sizes, as streaming servers write it,
is read too) or ``pcm`` (raw signed 16-bit little-endian mono at ``--tts-pcm-rate``, 24 kHz as OpenAI
sends it). Audio is mixed to mono and resampled to 16 kHz. Voices come from the ``--tts-voices`` pool; a
span only gets a voice of its language. The servers are a ``servers.ServerPool`` (spreading, benching,
retries, per-server counters); up to ``--tts-concurrency`` requests are in flight per worker.
"""

from __future__ import annotations

import io
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from megatron_inserter.data.document import TTSControls
from megatron_inserter.data.synth.servers import RequestRejected, ServerPool, api_key_from_env
from megatron_inserter.data.synth.stats import subtract
from megatron_inserter.data.synth.tts.base import SAMPLE_RATE, TTSBackend, TTSError, TTSRequest, to_16k
from megatron_inserter.data.synth.voices import VoicePool, read_voice_pool

MAX_REPLY_BYTES = 64 << 20
MAX_CLIP_SECONDS = 600.0  # a decoded reply longer than this is refused (a span is a few seconds)


class BadAudio(TTSError):
    """The reply is not audio of the expected format."""


@dataclass(frozen=True)
class OpenAIConfig:
    urls: tuple[str, ...]
    model: str
    voices: str  # the voice file
    api_key_env: str | None = None
    response_format: str = "wav"
    pcm_rate: int = 24000
    concurrency: int = 8
    timeout: float = 120.0
    retries: int = 4


def decode_reply(data: bytes, response_format: str, pcm_rate: int = 24000) -> np.ndarray:
    """The audio of a reply -> 16 kHz mono float32; ``BadAudio`` when it is not audio of that format."""
    if response_format == "pcm":
        if len(data) % 2:
            raise BadAudio(f"pcm reply of {len(data)} bytes is not whole 16-bit samples")
        if len(data) / 2 / pcm_rate > MAX_CLIP_SECONDS:
            raise BadAudio(f"pcm reply is longer than {MAX_CLIP_SECONDS:.0f} s")
        return to_16k(np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0, pcm_rate)
    import soundfile as sf

    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            if f.frames / max(f.samplerate, 1) > MAX_CLIP_SECONDS or f.channels > 16:
                raise BadAudio(f"{response_format} reply is longer than {MAX_CLIP_SECONDS:.0f} s or has "
                               f"{f.channels} channels")
            audio, rate = f.read(dtype="float32", always_2d=True), f.samplerate
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        if response_format == "wav" and data[:4] == b"RIFF":
            from megatron_inserter.data.synth.tts.espeak import _parse_wav  # unset sizes (streamed WAV)

            pcm, rate = _parse_wav(data)
            return to_16k(pcm.astype(np.float32) / 32768.0, rate)
        raise BadAudio(f"the reply is not {response_format} audio ({e})") from None
    return to_16k(audio.mean(axis=1), rate)


class OpenAIBackend(TTSBackend):
    name = "openai"
    concurrent = True
    takes_speed = True

    def __init__(self, cfg: OpenAIConfig, *, api_key: str | None = None, pool: VoicePool | None = None,
                 servers: ServerPool | None = None):
        """``api_key``: the key itself (else read from ``cfg.api_key_env``)."""
        self.cfg = cfg
        self.pool = pool or read_voice_pool(cfg.voices)
        self.languages = self.pool.languages
        if api_key is None:
            api_key = api_key_from_env(cfg.api_key_env, "--tts-api-key-env")
        self.servers = servers or ServerPool("TTS", cfg.urls, "/audio/speech", api_key=api_key, timeout=cfg.timeout,
                                             retries=cfg.retries, max_reply_bytes=MAX_REPLY_BYTES)
        self.concurrency = self.batch_size = cfg.concurrency
        self._executor: ThreadPoolExecutor | None = None
        self._reported: dict[str, dict] = {}

    def speakers(self, language: str) -> list[str]:
        voices = self.pool.voices(language)
        if not voices:
            raise ValueError(f"the voice pool {self.pool.path} has no voice for {language!r}")
        return voices

    def gender(self, speaker: str) -> str | None:
        return self.pool.gender_of.get(speaker)

    def describe(self, request: TTSRequest) -> tuple[str | None, TTSControls]:
        return self.cfg.model, TTSControls(speed=1.0 if request.speed is None else request.speed)

    def request_body(self, request: TTSRequest) -> bytes:
        body = {"model": self.cfg.model, "input": request.text, "voice": request.speaker,
                "response_format": self.cfg.response_format, "speed": 1.0 if request.speed is None else request.speed}
        return json.dumps(body, ensure_ascii=False).encode("utf-8")

    def synthesize_one(self, request: TTSRequest) -> np.ndarray:
        try:
            data, server, _ = self.servers.post(self.request_body(request), "application/json")
        except RequestRejected as e:
            raise TTSError(str(e)) from None
        try:
            audio = decode_reply(data, self.cfg.response_format, self.cfg.pcm_rate)
        except BadAudio:
            self.servers.record_failure(server, "bad_audio")
            raise
        self.servers.record_audio(server, len(audio) / SAMPLE_RATE)
        return audio

    def synthesize(self, requests: list[TTSRequest]) -> list[np.ndarray]:
        """All requests at once over the thread pool; a request that fails gives an empty array."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self.concurrency, thread_name_prefix="tts")

        def one(req):
            try:
                return self.synthesize_one(req)
            except TTSError:
                return np.zeros(0, dtype=np.float32)

        return list(self._executor.map(one, requests))

    def collect_stats(self) -> dict:
        """The per-server counters since the last call."""
        now = self.servers.stats()
        delta = {label: subtract(s, self._reported.get(label)) for label, s in now.items()}
        self._reported = now
        failures: dict[str, int] = {}
        for s in delta.values():
            for reason, n in s["failed"].items():
                failures[reason] = failures.get(reason, 0) + n
        return {"tts_servers": delta, "tts_failures": failures}

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

