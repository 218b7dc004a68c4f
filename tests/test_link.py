"""Linking against mastodon-mock's real OAuth flow, plus the servers a volunteer might mistype."""

from __future__ import annotations

import http.server
import itertools
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from bridge.errors import AuthError, ConfigError, TransientError
from bridge.ledger import AppRecord, Ledger
from bridge.link import (
    OOB_REDIRECT,
    SCOPES,
    AuthRequest,
    authorization_request,
    check_instance,
    ensure_app,
    exchange_code,
    normalise_instance_url,
    plain_instructions,
    verify_token,
)
from bridge.model import Draft
from bridge.targets.mastodon import MastodonTarget
from tests.mastodon_server import MastodonServer, free_port

_names = itertools.count()


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger.open(tmp_path / "ledger.db") as led:
        yield led


class _HtmlHandler(http.server.BaseHTTPRequestHandler):
    """Any ordinary web site: HTML for every path."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        body = b"<!doctype html><html><body><h1>Our housing cooperative</h1></body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def html_site() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HtmlHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


# -- the instance ------------------------------------------------------------------


def test_check_instance_accepts_mastodon_and_normalises(mastodon: MastodonServer) -> None:
    assert check_instance(mastodon.base_url + "/") == mastodon.base_url
    assert normalise_instance_url("geno.social") == "https://geno.social"
    assert normalise_instance_url(" https://geno.social/ ") == "https://geno.social"
    assert normalise_instance_url("http://localhost:3000") == "http://localhost:3000"
    assert normalise_instance_url("http://[::1]:3000") == "http://[::1]:3000"
    assert normalise_instance_url("http://127.8.0.1") == "http://127.8.0.1"


@pytest.mark.parametrize("url", ["http://geno.social", "http://10.0.0.5:3000", "http://127.0.0.1.example.org"])
def test_plain_http_is_refused_off_loopback(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        check_instance(url)
    assert "https://" in str(caught.value) and url in str(caught.value)


def test_a_non_mastodon_server_is_refused(html_site: str) -> None:
    with pytest.raises(ConfigError) as caught:
        check_instance(html_site)
    message = str(caught.value)
    assert f"{html_site} does not look like a Mastodon server" in message and "text/html" in message


def test_a_json_server_without_the_instance_shape_is_refused(mastodon: MastodonServer) -> None:
    mastodon.add_fault({"match": {"path": "/api/v2/instance"}, "effect": {"type": "status", "status": 200, "body": {"ok": True}}, "count": 1})
    with pytest.raises(ConfigError, match="does not look like a Mastodon server"):
        check_instance(mastodon.base_url)
    mastodon.add_fault({"match": {"path": "/api/v2/instance"}, "effect": {"type": "status", "status": 404}, "count": 1})
    with pytest.raises(ConfigError, match="answered 404"):
        check_instance(mastodon.base_url)


def test_an_unreachable_instance_names_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ConfigError) as caught:
        check_instance(url, timeout=2)
    assert f"cannot reach {url}" in str(caught.value)


def test_a_failing_instance_is_transient(mastodon: MastodonServer) -> None:
    mastodon.add_fault({"match": {"path": "/api/v2/instance"}, "effect": {"type": "status", "status": 503}, "count": 1})
    with pytest.raises(TransientError, match=mastodon.base_url):
        check_instance(mastodon.base_url)


# -- the OAuth flow ------------------------------------------------------------------------


def test_happy_path_links_the_cooperative_account(mastodon: MastodonServer, ledger: Ledger) -> None:
    username = f"linkcoop{next(_names)}"
    mastodon.create_account(username)
    instance = check_instance(mastodon.base_url)

    app = ensure_app(instance, "geno-bridge", ledger)
    assert ledger.get_app(instance) == app and app.scopes == SCOPES and app.redirect_uri == OOB_REDIRECT
    assert ensure_app(instance, "geno-bridge", ledger) == app  # registered once per instance

    request = authorization_request(app)
    query = parse_qs(urlsplit(request.url).query)
    assert request.url.startswith(f"{instance}/oauth/authorize?")
    assert query["client_id"] == [app.client_id] and query["scope"] == [SCOPES]
    assert query["redirect_uri"] == [OOB_REDIRECT] and query["response_type"] == ["code"]
    assert query["state"] == [request.state] and len(request.state) >= 20
    assert query["code_challenge_method"] == ["S256"] and request.code_verifier
    assert authorization_request(app).state != request.state

    # the volunteer opens the link, logs in as the cooperative and clicks "Authorize"
    code = mastodon.authorize_code(app.client_id, username, SCOPES, request.state)
    token = exchange_code(app, f"  {code}\n", request)

    linked = verify_token(instance, token)
    assert (linked.acct, linked.username) == (username, username)
    assert linked.url.endswith(f"/@{username}") and linked.account_id
    assert linked.full_acct == f"{username}@{linked.domain}" and linked.domain
    assert linked.limits.max_characters == 500 and linked.limits.supports_quotes
    posted = MastodonTarget(instance, token).post_status(Draft(post_id="1", part=0, text="linked"), idempotency_key="l-1")
    assert [s["id"] for s in mastodon.statuses(token)] == [posted.id]  # it posts as the cooperative


def test_pkce_challenge_matches_the_verifier(mastodon: MastodonServer, ledger: Ledger) -> None:
    import base64
    import hashlib

    app = ensure_app(mastodon.base_url, "geno-bridge", ledger)
    request = authorization_request(app, state="fixed-state")
    query = parse_qs(urlsplit(request.url).query)
    assert query["state"] == ["fixed-state"]
    assert request.code_verifier is not None and 43 <= len(request.code_verifier) <= 128
    digest = hashlib.sha256(request.code_verifier.encode()).digest()
    assert query["code_challenge"] == [base64.urlsafe_b64encode(digest).rstrip(b"=").decode()]


def test_no_pkce_where_the_server_does_not_advertise_it(ledger: Ledger, html_site: str) -> None:
    app = AppRecord(instance=html_site, client_id="cid", client_secret="secret", scopes=SCOPES)
    request = authorization_request(app)
    query = parse_qs(urlsplit(request.url).query)
    assert request.code_verifier is None and "code_challenge" not in query
    assert request.url.startswith(f"{html_site}/oauth/authorize?") and request.token_endpoint == f"{html_site}/oauth/token"


def test_an_app_with_other_scopes_is_replaced(mastodon: MastodonServer, ledger: Ledger) -> None:
    old = AppRecord(instance=mastodon.base_url, client_id="old", client_secret="old-secret", scopes="read write")
    ledger.save_app(old)
    app = ensure_app(mastodon.base_url, "geno-bridge", ledger)
    assert app.client_id != "old" and ledger.get_app(mastodon.base_url) == app


def test_a_wrong_code_is_a_clear_error(mastodon: MastodonServer, ledger: Ledger) -> None:
    app = ensure_app(mastodon.base_url, "geno-bridge", ledger)
    request = authorization_request(app)
    with pytest.raises(ConfigError) as caught:
        exchange_code(app, "not-the-code", request)
    message = str(caught.value)
    assert f"the code was not accepted by {mastodon.base_url}" in message and "single-use" in message
    assert app.client_secret not in message
    with pytest.raises(ConfigError, match="no authorisation code"):
        exchange_code(app, "   ", request)


def test_a_revoked_token_then_fails_verification(mastodon: MastodonServer, ledger: Ledger) -> None:
    username = f"linkcoop{next(_names)}"
    mastodon.create_account(username)
    app = ensure_app(mastodon.base_url, "geno-bridge", ledger)
    request = authorization_request(app)
    token = exchange_code(app, mastodon.authorize_code(app.client_id, username, SCOPES, request.state), request)
    assert verify_token(mastodon.base_url, token).username == username

    MastodonTarget(mastodon.base_url, token).revoke(app.client_id, app.client_secret)
    with pytest.raises(AuthError) as caught:
        verify_token(mastodon.base_url, token)
    assert "relink" in str(caught.value) and token not in str(caught.value)


def test_token_exchange_server_error_is_transient(mastodon: MastodonServer, ledger: Ledger) -> None:
    app = ensure_app(mastodon.base_url, "geno-bridge", ledger)
    request = AuthRequest(url="", state="s", code_verifier=None, token_endpoint=f"{mastodon.base_url}/oauth/token")
    mastodon.add_fault({"match": {"path": "/oauth/token"}, "effect": {"type": "status", "status": 502}, "count": 1})
    with pytest.raises(TransientError, match="502"):
        exchange_code(app, "mockcode_x", request)


def test_plain_instructions_speak_to_a_volunteer() -> None:
    text = plain_instructions("https://geno.social/oauth/authorize?x=1", "https://geno.social")
    assert "https://geno.social/oauth/authorize?x=1" in text
    for words in ("Open this link", "cooperative's account on geno.social", "Authorize", "code", "password"):
        assert words in text
    assert "OAuth" not in text and "token" not in text
