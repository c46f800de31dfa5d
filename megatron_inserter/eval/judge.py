"""LLM judges behind one interface, with retries that never turn a failure into a score.

A judge returns ``n`` sampled answers to one prompt. Two implementations:

* :class:`HttpChatJudge`: an OpenAI-compatible ``/chat/completions`` endpoint (:mod:`.judge_http`).
  Configured from ``INSERTER_JUDGE_URL`` (the server's base URL such as ``https://host/v1``, or the full
  ``.../chat/completions`` URL), ``INSERTER_JUDGE_MODEL`` and ``INSERTER_JUDGE_API_KEY`` (optional; sent as a
  bearer token). Credentials in the URL (``https://user:pass@host/v1``) are sent as basic authentication
  when there is no key. The key and the URL's credentials never appear in a log, an error or an output
  file: every text coming back from the server is redacted, and the endpoint is shown without them.
  Redirects are followed only to the same origin (scheme, host and port) and always as a POST with the
  same body; any other redirect is a failed request, so the key never leaves for another host.
  ``timeout_s`` is a deadline for the whole request, reply included.
* :class:`ResponderJudge`: a local :class:`~megatron_inserter.eval.responder.Responder` (text-only requests).

:func:`collect_votes` asks until it holds ``samples`` answers that ``parse`` accepts. Transport failures
(HTTP 408/409/429/5xx, deadlines, refused connections, replies cut short, bodies that are not chat
completions) and malformed answers are retried with exponential backoff; after ``max_attempts`` the
verdict is ``ok=False`` and the caller counts a judge error. A redirect that is not followed fails the
row at once. HTTP 400/401/403/404 are configuration errors and stop the run.
"""

from __future__ import annotations

import http.client
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from megatron_inserter.errors import InserterError
from megatron_inserter.eval import judge_http
from megatron_inserter.eval.judge_http import ChatEndpoint, DeadlineExceeded
from megatron_inserter.eval.responder import EvalRequest, Responder, SamplingParams

JUDGE_URL_ENV = "INSERTER_JUDGE_URL"
JUDGE_MODEL_ENV = "INSERTER_JUDGE_MODEL"
JUDGE_KEY_ENV = "INSERTER_JUDGE_API_KEY"
JUDGE_SYSTEM_PROMPT = "You are a helpful assistant who tries to help answer the user's question."
RETRYABLE_HTTP = frozenset({408, 409, 425, 429})
FOLLOWED_REDIRECTS = frozenset({301, 302, 307, 308})
MAX_REDIRECTS = 3
MAX_REPLY_BYTES = 16 << 20
MAX_KEPT_TEXT = 500


@dataclass(frozen=True)
class JudgeConfig:
    samples: int = 4
    temperature: float = 0.5
    top_p: float = 0.95
    max_tokens: int = 1024
    max_attempts: int = 6
    backoff_s: float = 2.0
    max_backoff_s: float = 60.0
    timeout_s: float = 120.0
    system_prompt: str = JUDGE_SYSTEM_PROMPT


class JudgeTransientError(RuntimeError):
    """A call that may succeed when retried."""


class JudgeRowError(JudgeTransientError):
    """A call that failed in a way a retry cannot change (a redirect that is not followed): the row is
    counted as a judge error at once."""


class JudgeFatalError(InserterError, RuntimeError):
    """A call that cannot succeed with this configuration (bad URL, model or credentials)."""


class MalformedAnswer(ValueError):
    """The judge answered, but not in the required format."""


class Judge(Protocol):
    def sample(self, prompt: str, config: JudgeConfig, n: int) -> list[str]: ...

    def describe(self) -> dict: ...


class HttpChatJudge:
    def __init__(self, url: str, model: str, api_key: str | None = None):
        if not url or not model:
            raise JudgeFatalError(
                f"an HTTP judge needs a URL and a model name (${JUDGE_URL_ENV}, ${JUDGE_MODEL_ENV})"
            )
        try:
            self._endpoint = ChatEndpoint(url, api_key)
        except ValueError as err:
            raise JudgeFatalError(f"${JUDGE_URL_ENV} is not usable: {err}") from None
        self._url = self._endpoint.url
        self.endpoint = self._url.display
        self.model = model
        self._redact = self._endpoint.redact

    @classmethod
    def from_env(cls, environ: dict | None = None) -> HttpChatJudge:
        env = os.environ if environ is None else environ
        url, model = env.get(JUDGE_URL_ENV, ""), env.get(JUDGE_MODEL_ENV, "")
        if not url or not model:
            raise JudgeFatalError(
                f"the HTTP judge is configured by environment variables: set {JUDGE_URL_ENV} (for example "
                f"https://api.openai.com/v1) and {JUDGE_MODEL_ENV} (for example gpt-4o-mini), and "
                f"{JUDGE_KEY_ENV} when the server needs a key"
            )
        return cls(url, model, env.get(JUDGE_KEY_ENV))

    def __repr__(self) -> str:  # the key is never shown
        return f"HttpChatJudge(endpoint={self.endpoint!r}, model={self.model!r})"

    def describe(self) -> dict:
        return {"kind": "http", "endpoint": self.endpoint, "model": self.model}

    def sample(self, prompt: str, config: JudgeConfig, n: int) -> list[str]:
        body = {
            "model": self.model,
            "messages": [
                {"role": "system", "content": config.system_prompt},
                {"role": "user", "content": prompt},
            ],
            "temperature": config.temperature,
            "top_p": config.top_p,
            "max_tokens": config.max_tokens,
            "n": n,
        }
        try:
            return [self._redact(t) for t in self._exchange(json.dumps(body).encode("utf-8"), config)]
        except (JudgeTransientError, JudgeFatalError) as err:
            raise type(err)(self._redact(str(err))) from None

    def _exchange(self, body: bytes, config: JudgeConfig) -> list[str]:
        deadline = time.monotonic() + config.timeout_s
        url = self._url
        for _ in range(MAX_REDIRECTS + 1):
            try:
                reply = judge_http.post(url, body, self._endpoint.headers(), deadline, MAX_REPLY_BYTES)
            except DeadlineExceeded:
                raise JudgeTransientError(
                    f"no complete reply from {url.display} within --judge-timeout {config.timeout_s:g}s (timed out)"
                ) from None
            except http.client.IncompleteRead as err:
                raise JudgeTransientError(
                    f"reply from {url.display} cut short: {len(err.partial)} bytes read, "
                    f"{err.expected} more announced"
                ) from None
            except (OSError, http.client.HTTPException) as err:
                raise JudgeTransientError(f"request to {url.display} failed: {type(err).__name__}: {err}") from None
            location = reply.headers.get("Location")
            if reply.status in FOLLOWED_REDIRECTS and location:
                try:
                    next_url = url.join(location)
                except ValueError:
                    raise JudgeRowError(f"HTTP {reply.status} from {url.display} to an unusable address") from None
                if not judge_http.same_origin(url, next_url):
                    raise JudgeRowError(
                        f"HTTP {reply.status} from {url.display} redirects to another origin "
                        f"({next_url.scheme}://{next_url.netloc}); not followed, so the request and its key stay "
                        f"where {JUDGE_URL_ENV} points: set it to the final address"
                    )
                url = next_url
                continue
            if 300 <= reply.status < 400:
                raise JudgeRowError(
                    f"HTTP {reply.status} from {url.display} not followed (a POST is never turned into a GET); "
                    f"set {JUDGE_URL_ENV} to the final address"
                )
            if reply.status >= 400:
                message = f"HTTP {reply.status} from {url.display}: {_excerpt(reply.body)}"
                if reply.status in RETRYABLE_HTTP or reply.status >= 500:
                    raise JudgeTransientError(message)
                raise JudgeFatalError(message + " (check the judge URL, model name and API key)")
            return _parse_chat_completion(reply.body)
        raise JudgeRowError(f"more than {MAX_REDIRECTS} redirects from {self.endpoint}")


def _parse_chat_completion(payload: bytes) -> list[str]:
    try:
        data = json.loads(payload)
        texts = [choice["message"]["content"] for choice in data["choices"]]
    except (ValueError, KeyError, TypeError, RecursionError) as err:
        raise JudgeTransientError(
            f"reply is not a chat completion ({type(err).__name__}): {_excerpt(payload)}"
        ) from None
    if not all(isinstance(t, str) for t in texts):
        raise JudgeTransientError(f"chat completion without text content: {_excerpt(payload)}")
    return texts


class ResponderJudge:
    """Judge with a local model: ``n`` text-only requests per prompt."""

    def __init__(self, responder: Responder, load_dir: str | None = None):
        self.responder = responder
        self.load_dir = load_dir

    def describe(self) -> dict:
        return {"kind": "local", "load": self.load_dir}

    def sample(self, prompt: str, config: JudgeConfig, n: int) -> list[str]:
        sampling = SamplingParams(
            temperature=config.temperature, top_p=config.top_p, max_new_tokens=config.max_tokens
        )
        requests = [
            EvalRequest(
                text_prompt=prompt,
                system_prompt=config.system_prompt,
                sampling=sampling,
                request_id=f"judge-{i}",
            )
            for i in range(n)
        ]
        try:
            answers = self.responder.respond(requests)
        except Exception as err:
            raise JudgeTransientError(f"local judge failed: {type(err).__name__}: {err}") from err
        if not isinstance(answers, (list, tuple)) or not all(isinstance(a, str) for a in answers):
            raise JudgeTransientError("local judge returned something other than a list of strings")
        return list(answers)


@dataclass
class Verdict:
    ok: bool
    answers: list[str] = field(default_factory=list)  # accepted answers, verbatim
    parsed: list[Any] = field(default_factory=list)  # parse(answer) for each accepted answer
    rejected: list[str] = field(default_factory=list)  # malformed answers (excerpts)
    errors: list[str] = field(default_factory=list)  # transport errors
    attempts: int = 0

    def failure(self) -> str:
        parts = []
        if self.errors:
            parts.append(f"{len(self.errors)} failed calls (last: {self.errors[-1]})")
        if self.rejected:
            parts.append(f"{len(self.rejected)} malformed answers (last: {self.rejected[-1]!r})")
        return f"{len(self.parsed)} valid answers after {self.attempts} attempts; " + "; ".join(parts)


def collect_votes(
    judge: Judge,
    prompt: str,
    parse: Callable[[str], Any],
    config: JudgeConfig,
    sleep: Callable[[float], None] = time.sleep,
) -> Verdict:
    verdict = Verdict(ok=False)
    for attempt in range(config.max_attempts):
        need = config.samples - len(verdict.parsed)
        if need <= 0:
            break
        if attempt:
            sleep(judge_http.backoff(attempt, config.backoff_s, config.max_backoff_s))
        verdict.attempts += 1
        try:
            texts = judge.sample(prompt, config, need)
        except JudgeRowError as err:
            verdict.errors.append(str(err))
            break
        except JudgeTransientError as err:
            verdict.errors.append(str(err))
            continue
        for text in texts[:need]:
            try:
                parsed = parse(text)
            except Exception:  # noqa: BLE001 - any answer the parser cannot read is a malformed answer
                verdict.rejected.append(_excerpt(text))
                continue
            verdict.answers.append(text)
            verdict.parsed.append(parsed)
    verdict.ok = len(verdict.parsed) >= config.samples
    return verdict


def _excerpt(text: str | bytes) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return text if len(text) <= MAX_KEPT_TEXT else text[:MAX_KEPT_TEXT] + "..."
