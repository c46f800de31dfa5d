"""A pool of interchangeable HTTP servers (TTS or ASR) that one worker's threads post requests to.

Each request goes to the available server with the fewest requests in flight (round robin among equals),
so load spreads over all servers. Failures are sorted by whose fault they are:

  the server's   connection refused/reset, deadline passed, incomplete reply, 408, 429, 5xx: the server is
                 benched (1 s, doubling per consecutive failure, at most 30 s; then tried again) and the
                 request is retried, on another server when one is available, up to ``retries`` times; then
                 ``ServiceUnavailableError``: the shard fails and a rerun redoes it, so an outage never turns
                 spans into text;
  the request's  400, 413, 422: ``RequestRejected`` (the caller may try another voice or keep the text);
  the setup's    401, 403, 404, 405, any redirect: ``ServerSetupError`` (wrong URL, model or key).

Redirects are never followed, so the API key is only ever sent to the origins given. The key comes from
an environment variable and never appears in a message: messages show servers as scheme://host:port/path
and pass through a ``Redactor``. Every attempt is counted per server and reason; latencies go to a
histogram (``stats``).
"""

from __future__ import annotations

import http.client
import os
import threading
import time
from dataclasses import dataclass, field

from megatron_inserter.data.synth.stats import latency_bucket, new_server_stats
from megatron_inserter.errors import InserterError, UsageError
from megatron_inserter.eval.judge_http import DeadlineExceeded, Redactor, Url, post

BENCH_FIRST_S = 1.0
BENCH_MAX_S = 30.0
TRANSIENT_STATUS = {408, 429}
SETUP_STATUS = {401, 403, 404, 405}


class ServiceUnavailableError(InserterError, RuntimeError):
    """No server answered a request after all retries: the shard fails (a rerun redoes it)."""


class ServerSetupError(InserterError, RuntimeError):
    """A server refuses every request of this kind (wrong URL, model name or API key)."""

    exit_code = 2


class RequestRejected(Exception):
    """A server refused this one request (its text, its voice): not retried on another server."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def api_key_from_env(name: str | None, flag: str) -> str | None:
    """The API key held by environment variable ``name`` (``None`` when no variable is named)."""
    if not name:
        return None
    key = os.environ.get(name, "")
    if not key:
        raise UsageError(f"{flag} {name}: that environment variable is not set or empty; export the API key in it")
    return key


@dataclass
class _Server:
    url: Url
    label: str
    in_flight: int = 0
    bench_until: float = 0.0
    consecutive_failures: int = 0
    stats: dict = field(default_factory=new_server_stats)


class ServerPool:
    def __init__(self, kind: str, urls, endpoint: str, *, api_key: str | None = None, timeout: float = 120.0,
                 retries: int = 4, max_reply_bytes: int = 64 << 20, bench_first_s: float = BENCH_FIRST_S,
                 bench_max_s: float = BENCH_MAX_S):
        self.kind = kind
        self.timeout, self.retries, self.max_reply_bytes = timeout, retries, max_reply_bytes
        self.bench_first_s, self.bench_max_s = bench_first_s, bench_max_s
        self.servers: list[_Server] = []
        secrets = [api_key]
        for raw in urls:
            try:
                base = Url.parse(raw)
            except ValueError as e:
                raise UsageError(f"{kind} server URL: {e}") from None
            url = base.join(base.path.split("?", 1)[0].rstrip("/") + endpoint)
            secrets += base.secrets()
            label = base.display.rstrip("/")
            if any(s.label == label for s in self.servers):
                raise UsageError(f"{kind} server {label} is given twice")
            self.servers.append(_Server(url, label))
        if not self.servers:
            raise UsageError(f"no {kind} server URL given")
        self.redact = Redactor(secrets)
        self._headers = {}
        basic = Url.parse(urls[0]).basic_auth() if urls else None
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        elif basic:
            self._headers["Authorization"] = basic
        self._lock = threading.Lock()
        self._turn = 0

    # --- choosing and benching servers ------------------------------------------------------------------

    def _acquire(self) -> _Server:
        while True:
            with self._lock:
                now = time.monotonic()
                ready = [s for s in self.servers if s.bench_until <= now]
                if ready:
                    self._turn += 1
                    least = min(s.in_flight for s in ready)
                    tied = [s for s in ready if s.in_flight == least]
                    server = tied[self._turn % len(tied)]
                    server.in_flight += 1
                    server.stats["requests"] += 1
                    return server
                wake = min(s.bench_until for s in self.servers)
            time.sleep(max(0.0, min(wake - time.monotonic(), self.bench_max_s)) + 0.001)

    def _failed(self, server: _Server, reason: str, bench: bool) -> None:
        with self._lock:
            server.in_flight -= 1
            failed = server.stats["failed"]
            failed[reason] = failed.get(reason, 0) + 1
            if bench and server.bench_until <= time.monotonic():  # requests sent before the bench add nothing
                server.consecutive_failures += 1
                pause = min(self.bench_first_s * 2 ** (server.consecutive_failures - 1), self.bench_max_s)
                server.bench_until = time.monotonic() + pause

    def _succeeded(self, server: _Server, latency: float) -> None:
        with self._lock:
            server.in_flight -= 1
            server.consecutive_failures = 0
            s = server.stats
            s["ok"] += 1
            s["latency_seconds"] += latency
            key = latency_bucket(latency)
            s["latency_hist"][key] = s["latency_hist"].get(key, 0) + 1

    def record_failure(self, server_label: str, reason: str) -> None:
        """Count a failure found after a successful exchange (a reply that is not usable audio)."""
        with self._lock:
            for s in self.servers:
                if s.label == server_label:
                    s.stats["failed"][reason] = s.stats["failed"].get(reason, 0) + 1

    def record_audio(self, server_label: str, seconds: float) -> None:
        with self._lock:
            for s in self.servers:
                if s.label == server_label:
                    s.stats["audio_seconds"] += seconds

    def stats(self) -> dict[str, dict]:
        """Per server label: requests, ok, failed by reason, latency histogram and sums (a copy)."""
        with self._lock:
            return {s.label: {k: (dict(v) if isinstance(v, dict) else v) for k, v in s.stats.items()}
                    for s in self.servers}

    def failures(self) -> dict[str, int]:
        out: dict[str, int] = {}
        with self._lock:
            for s in self.servers:
                for reason, n in s.stats["failed"].items():
                    out[reason] = out.get(reason, 0) + n
        return out

    # --- one request --------------------------------------------------------------------------------------

    def post(self, body: bytes, content_type: str) -> tuple[bytes, str, float]:
        """POST ``body`` to some server -> ``(reply body, server label, seconds)``; retried as described above."""
        headers = {**self._headers, "Content-Type": content_type, "Accept": "*/*"}
        last = ""
        for _ in range(self.retries + 1):
            server = self._acquire()
            start = time.monotonic()
            try:
                reply = post(server.url, body, headers, start + self.timeout, self.max_reply_bytes)
            except (DeadlineExceeded, TimeoutError):
                reason, detail = "timeout", f"no complete reply within {self.timeout:g} s"
            except http.client.IncompleteRead:
                reason, detail = "incomplete_reply", "the reply ended early"
            except (OSError, http.client.HTTPException) as e:
                reason, detail = "connection", self.redact(str(e) or type(e).__name__)
            else:
                status = reply.status
                if 200 <= status < 300:
                    self._succeeded(server, time.monotonic() - start)
                    return reply.body, server.label, time.monotonic() - start
                snippet = self.redact(reply.body[:200].decode("utf-8", "replace").strip())
                reason, detail = f"http_{status}", f"HTTP {status} {snippet!r}"
                if 300 <= status < 400:
                    self._failed(server, reason, bench=False)
                    raise ServerSetupError(
                        f"{self.kind} server {server.label} answered with a redirect (HTTP {status}); redirects are "
                        "not followed (the API key must not leave the servers given): give the final address")
                if status in SETUP_STATUS:
                    self._failed(server, reason, bench=False)
                    raise ServerSetupError(f"{self.kind} server {server.label} refused the request with {detail}; "
                                           "check the URL, the model name and the API key")
                if status not in TRANSIENT_STATUS and status < 500:
                    self._failed(server, reason, bench=False)
                    raise RequestRejected(reason, f"{self.kind} server {server.label}: {detail}")
            self._failed(server, reason, bench=True)
            last = f"{server.label}: {detail}"
        raise ServiceUnavailableError(
            f"{self.kind} request failed {self.retries + 1} times (last: {last}); the shard is left for a rerun: "
            "run the same command again once the servers are back")
