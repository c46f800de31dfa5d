"""LLM judges behind one interface, with retries that never turn a failure into a score.

A judge returns ``n`` sampled answers to one prompt. Two implementations:

* :class:`HttpChatJudge`: an OpenAI-compatible ``/chat/completions`` endpoint over ``urllib``. Configured from
  ``INSERTER_JUDGE_URL`` (the server's base URL such as ``https://host/v1``, or the full
  ``.../chat/completions`` URL), ``INSERTER_JUDGE_MODEL`` and ``INSERTER_JUDGE_API_KEY`` (optional; sent as a
  bearer token and never logged or written to results).
* :class:`ResponderJudge`: a local :class:`~megatron_inserter.eval.responder.Responder` (text-only requests).

:func:`collect_votes` asks until it holds ``samples`` answers that ``parse`` accepts. Transport failures
(HTTP 408/409/429/5xx, timeouts, refused connections, bodies that are not chat completions) and malformed
answers are retried with exponential backoff; after ``max_attempts`` the verdict is ``ok=False`` and the
caller counts a judge error. HTTP 400/401/403/404 are configuration errors and stop the run.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from megatron_inserter.eval.responder import EvalRequest, Responder, SamplingParams

JUDGE_URL_ENV = "INSERTER_JUDGE_URL"
JUDGE_MODEL_ENV = "INSERTER_JUDGE_MODEL"
JUDGE_KEY_ENV = "INSERTER_JUDGE_API_KEY"
JUDGE_SYSTEM_PROMPT = "You are a helpful assistant who tries to help answer the user's question."
RETRYABLE_HTTP = frozenset({408, 409, 425, 429})
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


class JudgeFatalError(RuntimeError):
    """A call that cannot succeed with this configuration (bad URL, model or credentials)."""


class MalformedAnswer(ValueError):
    """The judge answered, but not in the required format."""


class Judge(Protocol):
    def sample(self, prompt: str, config: JudgeConfig, n: int) -> list[str]: ...

    def describe(self) -> dict: ...


def chat_endpoint(url: str) -> str:
    url = url.rstrip("/")
    return url if url.endswith("/chat/completions") else url + "/chat/completions"


class HttpChatJudge:
    def __init__(self, url: str, model: str, api_key: str | None = None):
        if not url or not model:
            raise JudgeFatalError(
                f"an HTTP judge needs a URL and a model name (${JUDGE_URL_ENV}, ${JUDGE_MODEL_ENV})"
            )
        self.endpoint = chat_endpoint(url)
        self.model = model
        self._api_key = api_key or None

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
        parts = urllib.parse.urlsplit(self.endpoint)
        return {
            "kind": "http",
            "endpoint": f"{parts.scheme}://{parts.netloc}{parts.path}",
            "model": self.model,
        }

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
        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        request = urllib.request.Request(
            self.endpoint, data=json.dumps(body).encode("utf-8"), headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=config.timeout_s) as reply:
                payload = reply.read()
        except urllib.error.HTTPError as err:
            detail = _excerpt(err.read().decode("utf-8", "replace")) if err.fp is not None else ""
            message = f"HTTP {err.code} from {self.endpoint}: {detail}"
            if err.code in RETRYABLE_HTTP or err.code >= 500:
                raise JudgeTransientError(message) from None
            raise JudgeFatalError(message + " (check the judge URL, model name and API key)") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise JudgeTransientError(
                f"request to {self.endpoint} failed: {type(reason).__name__}: {reason}"
            ) from None
        return _parse_chat_completion(payload)


def _parse_chat_completion(payload: bytes) -> list[str]:
    try:
        data = json.loads(payload)
        texts = [choice["message"]["content"] for choice in data["choices"]]
    except (ValueError, KeyError, TypeError) as err:
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
            sleep(min(config.max_backoff_s, config.backoff_s * 2 ** (attempt - 1)))
        verdict.attempts += 1
        try:
            texts = judge.sample(prompt, config, need)
        except JudgeTransientError as err:
            verdict.errors.append(str(err))
            continue
        for text in texts[:need]:
            try:
                parsed = parse(text)
            except MalformedAnswer:
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
