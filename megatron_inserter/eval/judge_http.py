"""One HTTP POST that keeps its credentials, with a deadline for the whole exchange.

:func:`post` sends a request with ``http.client`` and returns the status, headers and body. It never
follows a redirect itself; :func:`same_origin` tells the caller whether a ``Location`` may be followed.
The deadline covers connecting, sending and every byte of the reply: each socket operation gets the time
that is left, so a server that trickles one byte a second cannot keep a request alive past it. A reply
shorter than its ``Content-Length`` raises ``http.client.IncompleteRead``; a reply larger than
``max_bytes`` is refused. Proxies come from ``http_proxy`` / ``https_proxy`` / ``no_proxy`` as in
``urllib``.

:class:`Url` is a parsed address without its credentials: ``display`` never shows the user, password or
query, and :class:`Redactor` removes secrets from any text before it is logged or written.
"""

from __future__ import annotations

import base64
import http.client
import io
import time
import urllib.parse
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass

REDACTED = "***"
DEFAULT_PORTS = {"http": 80, "https": 443}


class DeadlineExceeded(TimeoutError):
    """The whole request took longer than its deadline."""


@dataclass(frozen=True)
class Url:
    scheme: str
    host: str  # lower case; IPv6 without brackets
    port: int
    path: str  # path and query, as sent in the request line
    username: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, url: str) -> Url:
        """Raises ``ValueError`` (without echoing credentials) for anything but an http(s) URL with a host."""
        parts = urllib.parse.urlsplit(url.strip())
        scheme = parts.scheme.lower()
        if scheme not in DEFAULT_PORTS or not parts.hostname:
            raise ValueError(f"expected an http:// or https:// URL with a host, got scheme {scheme or 'none'!r}")
        try:
            port = parts.port or DEFAULT_PORTS[scheme]
        except ValueError:
            raise ValueError(f"the URL's port is not a number (host {parts.hostname})") from None
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        unquote = urllib.parse.unquote
        return cls(scheme, parts.hostname.lower(), port, path,
                   unquote(parts.username) if parts.username is not None else None,
                   unquote(parts.password) if parts.password is not None else None)

    @property
    def origin(self) -> tuple[str, str, int]:
        return self.scheme, self.host, self.port

    @property
    def netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"

    @property
    def display(self) -> str:
        """scheme://host[:port]/path: no credentials, no query."""
        return f"{self.scheme}://{self.netloc}{self.path.split('?', 1)[0]}"

    @property
    def absolute(self) -> str:
        """The full address without credentials (the request line sent to an HTTP proxy)."""
        return f"{self.scheme}://{self.netloc}{self.path}"

    def join(self, location: str) -> Url:
        return Url.parse(urllib.parse.urljoin(self.absolute, location))

    def basic_auth(self) -> str | None:
        if self.username is None and self.password is None:
            return None
        token = f"{self.username or ''}:{self.password or ''}".encode()
        return "Basic " + base64.b64encode(token).decode("ascii")

    def secrets(self) -> list[str]:
        """Every form in which this URL's credentials could be echoed."""
        out = [self.password or ""]
        if self.username is not None or self.password is not None:
            out += [f"{self.username or ''}:{self.password or ''}", (self.basic_auth() or "").split(" ", 1)[1]]
        query = self.path.split("?", 1)[1] if "?" in self.path else ""
        out += [value for _, value in urllib.parse.parse_qsl(query)]
        return [s for s in out if s]


def same_origin(a: Url, b: Url) -> bool:
    return a.origin == b.origin


def chat_endpoint(url: str) -> str:
    """The ``/chat/completions`` address of an OpenAI-compatible server given by its base URL or by it."""
    url = url.strip()
    base, sep, query = url.partition("?")
    base = base.rstrip("/")
    base = base if base.endswith("/chat/completions") else base + "/chat/completions"
    return base + sep + query


class Redactor:
    """Replaces every secret (and its URL-quoted form) by ``***``; secrets shorter than 3 characters are
    not looked for (they would erase ordinary text)."""

    def __init__(self, secrets: Iterable[str | None]):
        found = set()
        for secret in secrets:
            if secret and len(secret) >= 3:
                found |= {secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret)}
        self._secrets = sorted(found, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text


class ChatEndpoint:
    """Where chat completions are asked for and with which credentials: ``url`` (the ``/chat/completions``
    address, parsed; ``ValueError`` when it is not usable), the key sent as a bearer token or else the URL's
    credentials as basic authentication, and ``redact``, which removes the key and every credential of the
    URL and of its proxy from a text."""

    def __init__(self, url: str, api_key: str | None = None):
        self.url = Url.parse(chat_endpoint(url))
        self._key = api_key or None
        proxy = proxy_for(self.url)
        self.redact = Redactor([self._key, *self.url.secrets(), *(proxy.secrets() if proxy else [])])

    def headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        elif self.url.basic_auth():
            headers["Authorization"] = self.url.basic_auth()
        return headers


def backoff(attempt: int, base_s: float, max_s: float) -> float:
    """Seconds to wait before retry ``attempt`` (1 for the first retry): ``base_s`` doubled per retry, at
    most ``max_s``."""
    return min(max_s, base_s * 2 ** (attempt - 1))


def time_left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise DeadlineExceeded("the deadline passed")
    return left


class _DeadlineSocket:
    """A connected socket whose every send and receive may use only the time left before ``deadline``."""

    def __init__(self, sock, deadline: float):
        self._sock, self._deadline = sock, deadline

    def sendall(self, data, *args):
        self._sock.settimeout(time_left(self._deadline))
        return self._sock.sendall(data, *args)

    def makefile(self, mode="rb", *args, **kwargs):
        raw = self._sock.makefile("rb", buffering=0)  # holds a reference: the socket stays open for it
        return io.BufferedReader(_DeadlineReader(raw, self._sock, self._deadline))

    def __getattr__(self, name):
        return getattr(self._sock, name)


class _DeadlineReader(io.RawIOBase):
    def __init__(self, raw, sock, deadline: float):
        self._raw, self._sock, self._deadline = raw, sock, deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        self._sock.settimeout(time_left(self._deadline))
        return self._raw.readinto(buffer)

    def close(self) -> None:
        self._raw.close()
        super().close()


class _DeadlineConnection:
    deadline: float = float("inf")

    def connect(self):
        self.timeout = time_left(self.deadline)
        super().connect()
        self.sock = _DeadlineSocket(self.sock, self.deadline)


class _HTTPConnection(_DeadlineConnection, http.client.HTTPConnection):
    pass


class _HTTPSConnection(_DeadlineConnection, http.client.HTTPSConnection):
    pass


def proxy_for(url: Url) -> Url | None:
    """The proxy ``urllib`` would use for ``url`` (``<scheme>_proxy`` unless ``no_proxy`` matches)."""
    proxy = urllib.request.getproxies_environment().get(url.scheme)
    if not proxy or urllib.request.proxy_bypass_environment(url.host):
        return None
    return Url.parse(proxy if "://" in proxy else f"http://{proxy}")


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes


def post(url: Url, body: bytes, headers: dict[str, str], deadline: float, max_bytes: int) -> Reply:
    """POST ``body`` to ``url`` and read the whole reply before ``deadline`` (``time.monotonic()``)."""
    proxy = proxy_for(url)
    target, connect_to, headers = url.path, url, dict(headers)
    tunnel_headers = {}
    if proxy is not None:
        connect_to = proxy
        if proxy.basic_auth():
            (headers if url.scheme == "http" else tunnel_headers)["Proxy-Authorization"] = proxy.basic_auth()
        if url.scheme == "http":
            target = url.absolute
    cls = _HTTPSConnection if url.scheme == "https" else _HTTPConnection
    if proxy is not None and url.scheme == "https":
        conn = cls(proxy.host, proxy.port, timeout=time_left(deadline))
        conn.set_tunnel(url.host, url.port, headers=tunnel_headers)
    else:
        conn = cls(connect_to.host, connect_to.port, timeout=time_left(deadline))
    conn.deadline = deadline
    try:
        conn.request("POST", target, body=body, headers=headers)
        response = conn.getresponse()
        chunks, size = [], 0
        while True:
            chunk = response.read(65536)
            if not chunk:
                break
            size += len(chunk)
            if size > max_bytes:
                raise http.client.HTTPException(f"reply larger than {max_bytes} bytes")
            chunks.append(chunk)
        if response.length:  # the server closed before sending Content-Length bytes
            raise http.client.IncompleteRead(b"".join(chunks), response.length)
        return Reply(response.status, response.headers, b"".join(chunks))
    except TimeoutError as err:  # the per-operation timeout is the time that was left
        raise DeadlineExceeded(str(err) or "timed out") from None
    finally:
        conn.close()
