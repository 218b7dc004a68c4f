"""HTTP sessions for the long-lived clients (X via tweepy, Mastodon via Mastodon.py).

Both libraries send with ``requests``. A daemon worker keeps one session per
host across cycles (connection and TLS reuse), so the per-request work of a
default session matters at scale: it re-reads the proxy and CA variables and
``~/.netrc`` on every request (``Session.merge_environment_settings``,
``prepare_request``), which cost more CPU than the rest of an idle poll
(bench/poll_scale.py, issue 8).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from http.cookiejar import DefaultCookiePolicy
from typing import Any
from urllib.parse import unquote, urlencode

import requests
import urllib3


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
    session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
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


class LeanClient:
    """Requests to one host over urllib3, the transport ``requests`` itself sends with.

    For the hottest request of the daemon, the X timeline poll of every organisation
    (10,000 of them every 15 minutes at one app key's capacity): ``requests``'
    request preparation (URL re-quoting, cookie and settings merging, hooks) and
    adapter were 40 % of an idle poll's CPU (py-spy, bench/poll_scale.py, issue 18);
    this sends the same request for about 0.7 ms less CPU each. The environment is read
    once as ``settle_environment`` reads it: proxy variables (incl. ``NO_PROXY``)
    and the CA bundle variables apply, ``~/.netrc`` and cookies do not. No
    retries and no redirects: a failure is the caller's to classify.
    """

    def __init__(self, base_url: str, *, maxsize: int = 4) -> None:
        self.base_url = base_url.rstrip("/")
        proxy = requests.utils.select_proxy(self.base_url, requests.utils.get_environ_proxies(self.base_url))
        ca = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or requests.utils.DEFAULT_CA_BUNDLE_PATH
        options: dict[str, Any] = {"num_pools": 2, "maxsize": maxsize, "retries": False, "ca_certs": ca,
                                   "cert_reqs": "CERT_REQUIRED"}
        self.prefix = urllib3.util.parse_url(self.base_url).path or ""
        self.host: urllib3.HTTPConnectionPool | None = None  # the host's own pool, when no proxy is in between
        if proxy:
            auth = urllib3.util.parse_url(proxy).auth
            headers = urllib3.util.make_headers(proxy_basic_auth=unquote(auth)) if auth else None
            self.pool: urllib3.PoolManager = urllib3.ProxyManager(proxy, proxy_headers=headers, **options)
        else:
            self.pool = urllib3.PoolManager(**options)
            # Sending to the host's pool directly skips the manager's parse of the whole URL (urllib3 re-encodes a
            # URL character by character in Python; an X poll's URL has ~500: a third of the poll's CPU).
            self.host = self.pool.connection_from_url(self.base_url)

    def request(
        self, method: str, path: str, *, params: Mapping[str, Any] | None = None, json_body: Any = None,
        headers: Mapping[str, str], timeout: float,
    ) -> Answer:
        """Send one request; urllib3's ``TimeoutError`` or ``HTTPError`` if no answer came."""
        rest = path + ("?" + urlencode(params, doseq=True) if params else "")
        body = None
        sent = dict(headers)
        if json_body is not None:
            body = json.dumps(json_body).encode()
            sent["Content-Type"] = "application/json"
        limit = urllib3.Timeout(connect=timeout, read=timeout)
        if self.host is not None:
            raw = self.host.urlopen(method, self.prefix + rest, body=body, headers=sent, timeout=limit, retries=False, redirect=False,
                                    preload_content=True)
        else:
            raw = self.pool.urlopen(method, self.base_url + rest, body=body, headers=sent, timeout=limit, redirect=False,
                                    preload_content=True)
        return Answer(raw.status, raw.reason or "", raw.headers, raw.data)

    def close(self) -> None:
        self.pool.clear()
