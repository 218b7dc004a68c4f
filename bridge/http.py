"""HTTP sessions for the long-lived clients (X via tweepy, Mastodon via Mastodon.py).

Both libraries send with ``requests``. A daemon worker keeps one session per
host across cycles (connection and TLS reuse), so the per-request work of a
default session matters at scale: it re-reads the proxy and CA variables and
``~/.netrc`` on every request (``Session.merge_environment_settings``,
``prepare_request``), which cost more CPU than the rest of an idle poll
(bench/poll_scale.py, issue 8).
"""

from __future__ import annotations

import http.client
import json
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache, partial
from http.cookiejar import DefaultCookiePolicy
from typing import Any
from urllib.parse import quote_plus, unquote

import requests
import urllib3
import urllib3.connection


def ca_bundle() -> str | None:
    """The CA bundle the environment names (``REQUESTS_CA_BUNDLE``, else ``CURL_CA_BUNDLE``), as requests reads it."""
    return os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or None


def settle_environment(session: requests.Session, base_url: str) -> requests.Session:
    """Read the environment once, for the one host ``session`` talks to.

    The proxy variables (``HTTPS_PROXY``, ``NO_PROXY``…) and the CA bundle
    variables (``REQUESTS_CA_BUNDLE``, ``CURL_CA_BUNDLE``) still apply, as
    requests would apply them. ``~/.netrc`` no longer does: an entry for the
    host would replace our bearer token with Basic auth. No cookies are kept:
    a session shared by several organisations' clients must carry nothing from
    one to the next (each request has its own ``Authorization``).
    """
    session.proxies.update(requests.utils.get_environ_proxies(base_url))
    session.verify = ca_bundle() or True
    session.trust_env = False
    session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
    return session


def host_session(base_url: str) -> requests.Session:
    """A new session for ``base_url``, environment settled."""
    return settle_environment(requests.Session(), base_url)


@dataclass(frozen=True)
class Answer:
    """An HTTP answer read whole: what the X client needs of ``requests.Response`` (status, headers, body)."""

    status_code: int
    reason: str
    headers: Mapping[str, str]  # case-insensitive (urllib3's HTTPHeaderDict)
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body as JSON; ``json.JSONDecodeError`` if it is not (also for bytes that are not UTF-8)."""
        try:
            return json.loads(self.content)
        except UnicodeDecodeError as exc:
            raise json.JSONDecodeError(f"not UTF-8: {exc.reason}", "", 0) from None


@lru_cache(maxsize=256)
def _query_pair(key: str, value: str) -> str:
    """``key=value`` as ``urlencode`` writes it, remembered: an X poll's field lists are the same in every poll
    and encoding them was a fifth of an idle poll's CPU (cProfile, one thread)."""
    return quote_plus(key) + "=" + quote_plus(value)


# A page of 100 posts with every expansion is a few hundred KB; anything far beyond is not an X page.
MAX_ANSWER_BYTES = 16 * 1024 * 1024


class TooLarge(Exception):
    """The answer is larger than the client reads."""


class NoAnswer(Exception):
    """No answer within the timeout."""


class ConnectionFailed(Exception):
    """The request could not be sent or its answer not read (refused, reset, TLS, a broken answer)."""


def _failure(exc: BaseException) -> Exception:
    """A transport error as the caller classifies it: no answer in time, or no connection / a broken answer."""
    if isinstance(exc, urllib3.exceptions.NewConnectionError):  # a ConnectTimeoutError subclass in urllib3 2, yet refused
        return ConnectionFailed(type(exc).__name__)
    if isinstance(exc, (TimeoutError, urllib3.exceptions.TimeoutError)):
        return NoAnswer()
    return ConnectionFailed(type(exc).__name__)


class LeanClient:
    """Requests to one host over urllib3's connections (the transport ``requests`` itself sends with).

    For the hottest request of the daemon, the X timeline poll of every organisation
    (10,000 of them every 15 minutes at one app key's capacity): ``requests``' request
    preparation (URL re-quoting, cookie and settings merging, hooks), its adapter, and
    urllib3's pools, which re-encode a URL character by character in Python (an X poll's
    URL has ~500), were three quarters of an idle poll's CPU (py-spy, bench/poll_scale.py,
    issue 18). This keeps urllib3's connections (TLS with the CA bundle, timeouts,
    answers) and its own small pool of kept-alive ones: a kept connection is checked
    before use as urllib3's pool checks it, and is dropped after any failure.

    The environment is read once as ``settle_environment`` reads it: proxy variables
    (incl. ``NO_PROXY``) and the CA bundle variables apply, ``~/.netrc`` and cookies do
    not; through a proxy, urllib3's ProxyManager sends. No retries and no redirects: a
    failure is the caller's to classify (``NoAnswer``, ``ConnectionFailed``, ``TooLarge``: an answer over
    ``max_bytes`` is not read). Thread-safe.
    """

    def __init__(self, base_url: str, *, timeout: float, max_bytes: int = MAX_ANSWER_BYTES, keep: int = 4) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.keep = keep
        url = urllib3.util.parse_url(self.base_url)
        self.prefix = url.path or ""
        proxy = requests.utils.select_proxy(self.base_url, requests.utils.get_environ_proxies(self.base_url))
        ca = ca_bundle() or requests.utils.DEFAULT_CA_BUNDLE_PATH
        self.proxied: urllib3.ProxyManager | None = None
        if proxy:
            auth = urllib3.util.parse_url(proxy).auth
            headers = urllib3.util.make_headers(proxy_basic_auth=unquote(auth)) if auth else None
            self.proxied = urllib3.ProxyManager(proxy, proxy_headers=headers, num_pools=2, maxsize=keep, retries=False,
                                                ca_certs=ca, cert_reqs="CERT_REQUIRED")
        tls = url.scheme == "https"
        self._connect: Callable[[], urllib3.connection.HTTPConnection] = (
            partial(urllib3.connection.HTTPSConnection, url.host or "", url.port or 443, timeout=timeout,
                    cert_reqs="CERT_REQUIRED", ca_certs=ca)
            if tls else partial(urllib3.connection.HTTPConnection, url.host or "", url.port or 80, timeout=timeout)
        )
        self._kept: list[urllib3.connection.HTTPConnection] = []
        self._lock = threading.Lock()

    def request(
        self, method: str, path: str, *, params: Mapping[str, Any] | None = None, json_body: Any = None,
        headers: Mapping[str, str],
    ) -> Answer:
        """Send one request and read its answer whole."""
        rest = path + ("?" + "&".join(_query_pair(str(k), str(v)) for k, v in params.items()) if params else "")
        body = None
        sent = dict(headers)
        if json_body is not None:
            body = json.dumps(json_body).encode()
            sent["Content-Type"] = "application/json"
        if self.proxied is not None:
            return self._via_proxy(method, self.base_url + rest, body, sent)
        conn = self._take() or self._connect()
        try:
            conn.request(method, self.prefix + rest, body=body, headers=sent, preload_content=False)
            raw = conn.getresponse()
            content = raw.read(self.max_bytes + 1)
        except (OSError, http.client.HTTPException, urllib3.exceptions.HTTPError) as exc:
            conn.close()
            raise _failure(exc) from None
        except BaseException:
            conn.close()
            raise
        if len(content) > self.max_bytes:
            conn.close()  # not read to its end: never reused
            raise self._too_large()
        self._give_back(conn)
        return Answer(raw.status, raw.reason or "", raw.headers, content)

    def _via_proxy(self, method: str, url: str, body: bytes | None, headers: dict[str, str]) -> Answer:
        assert self.proxied is not None
        try:
            raw = self.proxied.urlopen(method, url, body=body, headers=headers, redirect=False, preload_content=False,
                                       timeout=urllib3.Timeout(connect=self.timeout, read=self.timeout))
            content = raw.read(self.max_bytes + 1)
        except urllib3.exceptions.HTTPError as exc:
            raise _failure(exc) from None
        if len(content) > self.max_bytes:
            raw.close()  # not read to its end: the connection is not reused
            raw.release_conn()
            raise self._too_large()
        raw.release_conn()
        return Answer(raw.status, raw.reason or "", raw.headers, content)

    def _too_large(self) -> TooLarge:
        return TooLarge(f"the answer is larger than {self.max_bytes:,} bytes; not read")

    def _take(self) -> urllib3.connection.HTTPConnection | None:
        """A kept-alive connection the server has not closed meanwhile, newest first."""
        with self._lock:
            while self._kept:
                conn = self._kept.pop()
                if conn.is_connected:
                    return conn
                conn.close()
        return None

    def _give_back(self, conn: urllib3.connection.HTTPConnection) -> None:
        with self._lock:
            if conn.sock is not None and len(self._kept) < self.keep:
                self._kept.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            kept, self._kept = self._kept, []
        for conn in kept:
            conn.close()
        if self.proxied is not None:
            self.proxied.clear()
