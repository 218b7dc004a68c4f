"""The Mastodon stand-in itself: accounts, OAuth codes and fault injection can be driven from tests."""

from __future__ import annotations

import itertools

import httpx
from mastodon import Mastodon

from tests.mastodon_server import MastodonServer

_names = itertools.count()


def test_account_token_posts_a_status(mastodon: MastodonServer) -> None:
    token = mastodon.create_account(f"fixture{next(_names)}")
    api = Mastodon(access_token=token, api_base_url=mastodon.base_url)
    api.status_post("hello")
    assert [s["content"] for s in mastodon.statuses(token)] == ["<p>hello</p>"]


def test_fault_injection_is_driven_from_tests(mastodon: MastodonServer) -> None:
    mastodon.add_fault({"match": {"methods": ["GET"], "path": "/api/v2/instance"}, "effect": {"type": "status", "status": 503}, "count": 1})
    assert httpx.get(f"{mastodon.base_url}/api/v2/instance").status_code == 503
    assert httpx.get(f"{mastodon.base_url}/api/v2/instance").status_code == 200
    mastodon.add_fault({"match": {"path": "/api/v2/instance"}, "effect": {"type": "ratelimit"}, "count": 1})
    r = httpx.get(f"{mastodon.base_url}/api/v2/instance")
    assert r.status_code == 429 and "X-RateLimit-Reset" in r.headers
    mastodon.add_fault({"match": {"path": "/api/v2/instance"}, "effect": {"type": "malformed"}, "count": 1})
    assert httpx.get(f"{mastodon.base_url}/api/v2/instance").text.startswith('{"error": "truncated')
    # A slow answer the client gives up on. Not the "timeout" effect: it holds its request at least 30 s
    # whatever delay_ms says, and the session's mock cannot exit before that request is done.
    mastodon.add_fault({"match": {"path": "/api/v2/instance"}, "effect": {"type": "latency", "delay_ms": 1000}, "count": 1})
    try:
        httpx.get(f"{mastodon.base_url}/api/v2/instance", timeout=0.3)
        raise AssertionError("expected a timeout")
    except httpx.TimeoutException:
        pass
    assert mastodon.faults() == []
