"""An OpenAI-compatible ``/chat/completions`` client for the answer step.

It sends through the evaluation judge's HTTP layer (``eval.judge_http``): a deadline for the whole
exchange (connecting, sending and every byte of the reply), replies capped in size, proxies as urllib.
Redirects are never followed, so the key stays with the address given. The key comes from an environment
variable whose *name* is given (``--chat-key-env``); the key and the URL's credentials are redacted from
every message.

Failures: HTTP 408/409/425/429/5xx, deadlines, refused connections, replies cut short and bodies that are
not chat completions are retried with exponential backoff; after ``max_attempts`` the seed fails
(:class:`ChatFailed`, counted and asked again on the next run). A redirect fails the seed at once. HTTP
400/401/403/404 mean the configuration is wrong and stop the run (:class:`ChatConfigError`).
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Callable
from dataclasses import dataclass

from megatron_inserter.errors import InserterError
from megatron_inserter.eval.judge_http import ChatEndpoint, DeadlineExceeded, backoff, post
from megatron_inserter.inference.requests import SamplingParams

RETRYABLE_HTTP = frozenset({408, 409, 425, 429})
MAX_REPLY_BYTES = 16 << 20
MAX_SHOWN = 300


class ChatConfigError(InserterError):
    """The endpoint refuses this configuration (URL, model or key): every request would fail."""


class ChatFailed(RuntimeError):
    """One request failed after its retries (or at once, for a redirect)."""


class _Retry(Exception):
    pass


@dataclass
class ChatSettings:
    timeout_s: float = 120.0
    max_attempts: int = 4
    backoff_s: float = 2.0
    max_backoff_s: float = 60.0


class ChatClient:
    def __init__(self, url: str, model: str, api_key: str | None = None, settings: ChatSettings | None = None,
                 sleep: Callable[[float], None] = time.sleep):
        if not model:
            raise ChatConfigError("--chat-model is required with --chat-url")
        try:
            self._endpoint = ChatEndpoint(url, api_key)
        except ValueError as err:
            raise ChatConfigError(f"--chat-url is not usable: {err}") from None
        self._url = self._endpoint.url
        self.model = model
        self.settings = settings or ChatSettings()
        self.endpoint = self._url.display
        self._redact = self._endpoint.redact
        self._sleep = sleep

    def __repr__(self) -> str:  # never the key
        return f"ChatClient(endpoint={self.endpoint!r}, model={self.model!r})"

    def describe(self) -> dict:
        return {"kind": "http", "endpoint": self.endpoint, "model": self.model}

    def complete(self, messages: list[dict], sampling: SamplingParams) -> str:
        """The assistant's reply to ``messages``; raises ``ChatFailed`` or ``ChatConfigError``."""
        body = {"model": self.model, "messages": messages, "temperature": sampling.temperature,
                "top_p": sampling.top_p, "max_tokens": sampling.max_new_tokens}
        if sampling.seed is not None:
            body["seed"] = sampling.seed
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        errors = []
        for attempt in range(self.settings.max_attempts):
            if attempt:
                self._sleep(backoff(attempt, self.settings.backoff_s, self.settings.max_backoff_s))
            try:
                return self._once(data)
            except _Retry as err:
                errors.append(self._redact(str(err)))
        raise ChatFailed(f"{len(errors)} attempts failed (last: {errors[-1]})")

    def _once(self, data: bytes) -> str:
        url, s = self._url, self.settings
        try:
            reply = post(url, data, self._endpoint.headers(), time.monotonic() + s.timeout_s, MAX_REPLY_BYTES)
        except DeadlineExceeded:
            raise _Retry(f"no complete reply from {url.display} within {s.timeout_s:g}s") from None
        except http.client.IncompleteRead as err:
            raise _Retry(f"reply from {url.display} cut short after {len(err.partial)} bytes") from None
        except (OSError, http.client.HTTPException) as err:
            raise _Retry(f"request to {url.display} failed: {type(err).__name__}: {err}") from None
        if 300 <= reply.status < 400:
            raise ChatFailed(self._redact(f"HTTP {reply.status} from {url.display}: redirects are not followed; give "
                                          "--chat-url the final address"))
        text = reply.body[:MAX_SHOWN].decode("utf-8", "replace")
        if reply.status in RETRYABLE_HTTP or reply.status >= 500:
            raise _Retry(f"HTTP {reply.status} from {url.display}: {text}")
        if reply.status >= 400:
            raise ChatConfigError(self._redact(f"HTTP {reply.status} from {url.display}: {text} (check --chat-url, "
                                               "--chat-model and the key in --chat-key-env)"))
        try:
            content = json.loads(reply.body)["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError, RecursionError):
            raise _Retry(f"reply from {url.display} is not a chat completion: {text}") from None
        if not isinstance(content, str):
            raise _Retry(f"chat completion from {url.display} without text content")
        return self._redact(content)
