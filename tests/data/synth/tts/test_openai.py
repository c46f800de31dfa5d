"""The OpenAI-compatible TTS client against fake servers: replies decoded (wav, flac, pcm) to 16 kHz, requests
spread over servers, a dead or failing server benched, 500s and timeouts retried and counted, refusals and
redirects never followed, the API key sent only as a header and never shown."""

import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import soundfile as sf

from megatron_inserter.data.synth.servers import (
    RequestRejected,
    ServerPool,
    ServerSetupError,
    ServiceUnavailableError,
)
from megatron_inserter.data.synth.tts.base import SAMPLE_RATE, TTSError, TTSRequest
from megatron_inserter.data.synth.tts.openai import BadAudio, OpenAIBackend, OpenAIConfig, decode_reply
from megatron_inserter.data.synth.voices import parse_voice_lines
from tests.data.synth.fake_servers import FakeTTSServer, TTSState, speech_pcm

KEY = "sk-test-0123456789abcdef"


def _pool(urls, **kw):
    return ServerPool("TTS", urls, "/audio/speech", bench_first_s=0.2, bench_max_s=0.4, **kw)


def _backend(urls, fmt="wav", **kw):
    voices = parse_voice_lines([b"v_en\ten\tfemale\n", b"v_zh\tzh\tm\n"], "voices.tsv")
    cfg = OpenAIConfig(urls=tuple(urls), model="kokoro", voices="voices.tsv", response_format=fmt, concurrency=4,
                       timeout=kw.pop("timeout", 10.0), retries=kw.pop("retries", 3))
    return OpenAIBackend(cfg, api_key=KEY, pool=voices, servers=_pool(urls, api_key=KEY, timeout=cfg.timeout,
                                                                      retries=cfg.retries))


@pytest.mark.parametrize("fmt,rate", [("wav", 16000), ("flac", 22050), ("pcm", 24000), ("wav", 48000)])
def test_replies_decode_to_16k_mono(fmt, rate):
    n = rate * 2
    pcm = (np.sin(np.arange(n) / rate * 2 * np.pi * 200) * 16000).astype(np.int16)
    if fmt == "pcm":
        data = pcm.astype("<i2").tobytes()
    else:
        buf = io.BytesIO()
        sf.write(buf, np.stack([pcm, pcm], axis=1), rate, format=fmt.upper(), subtype="PCM_16")  # stereo
        data = buf.getvalue()
    audio = decode_reply(data, fmt, pcm_rate=rate)
    assert audio.dtype == np.float32 and audio.ndim == 1 and abs(len(audio) - 2 * SAMPLE_RATE) <= 2
    assert abs(float(np.max(np.abs(audio))) - 16000 / 32768) < 0.01


def test_streamed_wav_with_unset_sizes_and_bad_replies():
    buf = io.BytesIO()
    sf.write(buf, np.full(1600, 1000, np.int16), 16000, format="WAV", subtype="PCM_16")
    data = bytearray(buf.getvalue())
    data[4:8] = b"\xff\xff\xff\xff"
    data[40:44] = b"\xff\xff\xff\xff"  # the data chunk size as a streaming server leaves it
    assert len(decode_reply(bytes(data), "wav")) == 1600
    with pytest.raises(BadAudio):
        decode_reply(b"<html>oops</html>", "wav")
    with pytest.raises(BadAudio):
        decode_reply(b"\x00\x01\x02", "pcm")  # not whole samples


def test_requests_spread_over_servers_and_carry_model_voice_speed_and_key():
    state = TTSState()
    with FakeTTSServer(state=state).start() as a, FakeTTSServer(state=state).start() as b:
        backend = _backend([a.url, b.url])
        reqs = [TTSRequest(f"word {i} and some more words here", "en", "v_en", speed=1.25) for i in range(24)]
        audio = backend.synthesize(reqs)
        backend.close()
    for req, clip in zip(reqs, audio):
        want = speech_pcm(req.text, req.speaker, 1.25).astype(np.float32) / 32768
        np.testing.assert_array_equal(clip, want)  # 16 kHz wav: no resampling, exact samples
    assert len(a.requests) >= 6 and len(b.requests) >= 6 and len(a.requests) + len(b.requests) == 24
    sent = a.requests[0]
    assert (sent["model"], sent["voice"], sent["speed"], sent["response_format"]) == ("kokoro", "v_en", 1.25, "wav")
    assert sent["authorization"] == f"Bearer {KEY}"
    stats = backend.collect_stats()["tts_servers"]
    assert {s["ok"] for s in stats.values()} == {len(a.requests), len(b.requests)}
    assert all(sum(s["latency_hist"].values()) == s["ok"] for s in stats.values())


def test_a_dead_server_is_benched_and_the_other_answers():
    with FakeTTSServer().start() as live:
        dead = FakeTTSServer().start()
        dead_url = dead.url
        dead.stop()  # nothing listens there now
        backend = _backend([dead_url, live.url])
        audio = backend.synthesize([TTSRequest(f"text number {i} here", "en", "v_en") for i in range(12)])
        assert all(len(a) > 0 for a in audio) and len(live.requests) == 12
        stats = backend.collect_stats()
        failed = stats["tts_servers"][dead_url]["failed"]
        assert 1 <= failed["connection"] <= 4  # benched after its failures, not asked for every request
        assert stats["tts_failures"] == failed


def test_500s_and_timeouts_are_retried_and_counted():
    texts = [f"sentence {i} to speak" for i in range(8)]
    actions = {texts[0]: 500, texts[1]: 503, texts[2]: "hang", texts[3]: 429}
    state = TTSState(first_attempt=lambda text, voice: actions.get(text))
    with FakeTTSServer(state=state, hang_seconds=2.0).start() as server:
        backend = _backend([server.url], timeout=0.7)
        audio = backend.synthesize([TTSRequest(t, "en", "v_en") for t in texts])
        stats = backend.collect_stats()
    assert all(len(a) > 0 for a in audio)
    assert stats["tts_failures"] == {"http_500": 1, "http_503": 1, "timeout": 1, "http_429": 1}
    only = next(iter(stats["tts_servers"].values()))
    assert only["requests"] == 12 and only["ok"] == 8


def test_a_server_that_stays_down_fails_the_request_instead_of_losing_speech():
    dead = FakeTTSServer().start()
    url = dead.url
    dead.stop()
    backend = _backend([url], retries=1)
    with pytest.raises(ServiceUnavailableError, match="run the same command again"):
        backend.synthesize_one(TTSRequest("hello there world", "en", "v_en"))


class _Answer(BaseHTTPRequestHandler):
    """Answers every POST with ``status`` and ``headers_out``; ``seen`` collects the request headers (both set
    per server by ``_answering``)."""

    def log_message(self, *args):
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        type(self).seen.append(dict(self.headers))
        body = json.dumps({"error": f"nope {KEY}"}).encode()  # a server echoing the key must not leak it
        self.send_response(self.status)
        for k, v in self.headers_out.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _answering(status, headers_out=None):
    handler = type("H", (_Answer,), {"status": status, "headers_out": headers_out or {}, "seen": []})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, handler, f"http://127.0.0.1:{httpd.server_address[1]}/v1"


def test_refusals_redirects_and_the_key():
    other, other_handler, other_url = _answering(200)
    cases = [(400, {}, RequestRejected), (401, {}, ServerSetupError), (404, {}, ServerSetupError),
             (307, {"Location": other_url + "/audio/speech"}, ServerSetupError)]
    try:
        for status, headers, error in cases:
            httpd, handler, url = _answering(status, headers)
            try:
                pool = _pool([url], api_key=KEY)
                with pytest.raises(error) as e:
                    pool.post(b"{}", "application/json")
                assert KEY not in str(e.value) and "***" in str(e.value) or status == 307
                assert len(handler.seen) == 1 and handler.seen[0]["Authorization"] == f"Bearer {KEY}"
            finally:
                httpd.shutdown()
                httpd.server_close()
        assert other_handler.seen == []  # the redirect was not followed: the key never went there
    finally:
        other.shutdown()
        other.server_close()
    with pytest.raises(TTSError):  # a refused request is a failed span, not a failed run
        httpd, _, url = _answering(400)
        try:
            _backend([url]).synthesize_one(TTSRequest("text", "en", "v_en"))
        finally:
            httpd.shutdown()
            httpd.server_close()
