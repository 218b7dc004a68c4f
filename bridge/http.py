"""HTTP sessions for the long-lived clients (X via tweepy, Mastodon via Mastodon.py).

Both libraries send with ``requests``. A daemon worker keeps one session per
host across cycles (connection and TLS reuse), so the per-request work of a
default session matters at scale: it re-reads the proxy and CA variables and
``~/.netrc`` on every request (``Session.merge_environment_settings``,
``prepare_request``), which cost more CPU than the rest of an idle poll
(bench/poll_scale.py, issue 8).
"""

from __future__ import annotations

import os
from http.cookiejar import DefaultCookiePolicy

import requests


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
