"""`bridge link / relink / unlink / orgs` as an operator uses them, against mastodon-mock's real OAuth flow."""

from __future__ import annotations

import http.server
import itertools
import re
import stat
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from bridge.cli import main
from bridge.targets.mastodon import html_to_text
from tests.bridge_env import BridgeEnv
from tests.fakes.x_api import FakeXServer, make_tweet
from tests.mastodon_server import MastodonServer, free_port

_n = itertools.count()


@pytest.fixture
def env(tmp_path: Path, x_server: FakeXServer, mastodon: MastodonServer) -> Iterator[BridgeEnv]:
    yield BridgeEnv(tmp_path, x_server, mastodon)


def bridge(env: BridgeEnv, *args: str, input: str | None = None):
    return CliRunner().invoke(main, ["--config", str(env.config_path), "--log-format", "json", *args], input=input)


def volunteer_code(env: BridgeEnv, auth_url: str, username: str) -> str:
    """What the cooperative's volunteer does in the browser: open the link, click Authorize."""
    from urllib.parse import parse_qs, urlsplit

    q = parse_qs(urlsplit(auth_url).query)
    return env.mastodon.authorize_code(q["client_id"][0], username, q["scope"][0], q.get("state", [""])[0])


def new_coop(env: BridgeEnv, handle: str, posts: int = 0) -> tuple[str, str]:
    """An X account with some old posts, and the cooperative's Mastodon account."""
    n = next(_n)
    user_id = str(880000 + n)
    env.x.add_user(user_id, handle)
    for i in range(posts):
        env.x.add_tweet(make_tweet(str(1_800_000_000_000_000_000 + n * 100 + i), user_id, f"old post {i}",
                                   created_at="2025-01-01T10:00:00.000Z", author_username=handle))
    username = f"linkcli{n}"
    env.mastodon.create_account(username)
    return user_id, username


def new_post_id() -> str:
    """The id X gives a post made now, after the link: X ids carry their creation time (X docs, "Twitter IDs")."""
    ms = int((datetime.now(timezone.utc) + timedelta(seconds=1)).timestamp() * 1000) - 1288834974657
    return str((ms << 22) + next(_n))


def auth_url_from(output: str) -> str:
    return re.search(r"(https?://\S+/oauth/authorize\?\S+)", output).group(1)


def test_interactive_link_through_the_prompt(env: BridgeEnv) -> None:
    user_id, username = new_coop(env, "WohnenEG", posts=3)
    # First run: the volunteer has no code yet; the operator reads the printed link and instructions.
    first = bridge(env, "link", "wohnen-eg", "--x-username", "WohnenEG", input="\n")
    url = auth_url_from(first.output)
    assert "state=" in url and "code_challenge=" in url and "code_challenge_method=S256" in url
    assert "scope=read%3Aaccounts+read%3Astatuses+write%3Astatuses+write%3Amedia" in url or "read:accounts" in url
    assert "Log in as the cooperative's account" in first.output
    # No code at the prompt: the command stops without a traceback and stores nothing.
    assert first.exit_code != 0 and "Traceback" not in first.output
    with env.ledger() as ledger:
        assert ledger.get_org("wohnen-eg") is None
    # Second run: the volunteer's code arrives at the prompt (the printed URL carries a fresh state).
    # The app is registered once, so the client id in a new URL is the same; the mock's code encodes the account.
    code = volunteer_code(env, url, username)
    result = bridge(env, "link", "wohnen-eg", "--x-username", "WohnenEG", input=code + "\n")
    assert result.exit_code == 0, result.output
    assert f"Linked wohnen-eg: X @WohnenEG (id {user_id}) -> @{username}@localhost" in result.output
    assert "bridge backfill wohnen-eg" in result.output  # how to bring older posts over
    with env.ledger() as ledger:
        org = ledger.get_org("wohnen-eg")
        assert org.x_user_id == user_id and org.acct == f"{username}@localhost"
        assert org.limits["max_characters"] > 0  # instance limits read and cached
        assert ledger.get_cursor("wohnen-eg") == str(1_800_000_000_000_000_000 + int(user_id) % 100 * 100 + 2)
        assert ledger.db["apps"].count == 1
    # No flood: the first poll posts none of the 3 old posts.
    assert bridge(env, "poll", "wohnen-eg").exit_code == 0
    assert env.mastodon.statuses(env.mastodon.create_account(f"probe{next(_n)}")) == []


def test_link_with_code_and_app_reused(env: BridgeEnv) -> None:
    _, user_a = new_coop(env, "CoopA")
    _, user_b = new_coop(env, "CoopB")
    first = bridge(env, "link", "coop-a", "--x-username", "CoopA", "--code", "wrong-code")
    assert first.exit_code == 2 and "not accepted" in first.output, first.output
    # --code skips the prompt; get a real code for the app the bridge registered
    with env.ledger() as ledger:
        app = ledger.get_app(env.mastodon.base_url)
    assert app is not None
    code = env.mastodon.authorize_code(app.client_id, user_a, app.scopes)
    ok = bridge(env, "link", "coop-a", "--x-username", "CoopA", "--code", code)
    assert ok.exit_code == 0, ok.output
    code_b = env.mastodon.authorize_code(app.client_id, user_b, app.scopes)
    ok_b = bridge(env, "link", "coop-b", "--x-username", "@CoopB", "--code", code_b)
    assert ok_b.exit_code == 0, ok_b.output
    with env.ledger() as ledger:
        assert ledger.db["apps"].count == 1  # one app per instance, reused
        assert {o.name for o in ledger.list_orgs()} == {"coop-a", "coop-b"}


def test_link_with_access_token_verifies_it(env: BridgeEnv) -> None:
    new_coop(env, "TokenCoop")
    bad = bridge(env, "link", "token-coop", "--x-username", "TokenCoop", "--access-token", "not-a-valid-token")
    assert bad.exit_code == 1 and "refused" in bad.output, bad.output
    token = env.mastodon.create_account(f"tokencoop{next(_n)}")
    ok = bridge(env, "link", "token-coop", "--x-username", "TokenCoop", "--access-token", token)
    assert ok.exit_code == 0, ok.output
    assert token not in ok.output


def test_relinking_an_existing_name_asks_and_never_duplicates(env: BridgeEnv) -> None:
    new_coop(env, "DupCoop")
    token = env.mastodon.create_account(f"dupcoop{next(_n)}")
    assert bridge(env, "link", "dup", "--x-username", "DupCoop", "--access-token", token).exit_code == 0
    no = bridge(env, "link", "dup", "--x-username", "DupCoop", "--access-token", token, input="n\n")
    assert no.exit_code == 1 and "already linked" in no.output
    yes = bridge(env, "link", "dup", "--x-username", "DupCoop", "--access-token", token, "--yes")
    assert yes.exit_code == 0 and "Updated dup" in yes.output
    # the same X account under another name is refused
    other = bridge(env, "link", "dup-2", "--x-username", "DupCoop", "--access-token", token)
    assert other.exit_code == 2 and "already linked as organisation 'dup'" in other.output
    with env.ledger() as ledger:
        assert [o.name for o in ledger.list_orgs()] == ["dup"]


def test_bad_instances_and_handles(env: BridgeEnv) -> None:
    new_coop(env, "BadInputCoop")
    args = ["link", "x", "--x-username", "BadInputCoop", "--access-token", "t"]
    r = bridge(env, *args, "--instance", "http://example.org")
    assert r.exit_code == 2 and "https://" in r.output
    r = bridge(env, *args, "--instance", f"http://127.0.0.1:{free_port()}")
    assert r.exit_code == 2 and "cannot reach" in r.output
    # a web server that is not Mastodon
    class Html(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            body = b"<html><body>Just a homepage</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Html)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        r = bridge(env, *args, "--instance", f"http://127.0.0.1:{server.server_address[1]}")
        assert r.exit_code == 2 and "does not look like a Mastodon server" in r.output
    finally:
        server.shutdown()
        server.server_close()
    r = bridge(env, "link", "x", "--x-username", "NoSuchHandle", "--access-token", "t")
    assert r.exit_code in (1, 2) and "NoSuchHandle" in r.output and "Traceback" not in r.output
    env.x.inject("/2/users/by/username/", "503", count=1)
    r = bridge(env, "link", "x", "--x-username", "BadInputCoop", "--access-token", "t")
    assert r.exit_code == 1 and "503" in r.output
    r = bridge(env, "link", "bad name!", "--x-username", "BadInputCoop")
    assert r.exit_code == 2 and "not a valid organisation name" in r.output


def test_revoked_token_needs_relink_then_relink_keeps_ledger_and_cursor(env: BridgeEnv) -> None:
    user_id, _ = new_coop(env, "RevokeCoop")
    username = f"revoke{next(_n)}"
    token = env.mastodon.create_account(username)
    assert bridge(env, "link", "revoke", "--x-username", "RevokeCoop", "--access-token", token).exit_code == 0
    env.x.add_tweet(make_tweet(new_post_id(), user_id, "after the link", created_at="2026-11-01T10:00:00.000Z",
                               author_username="RevokeCoop"))
    httpx.post(f"{env.mastodon.base_url}/oauth/revoke", data={"token": token}).raise_for_status()
    r = bridge(env, "poll", "revoke")
    assert r.exit_code == 1
    status = bridge(env, "status", "revoke")
    assert "needs_relink" in status.output
    orgs = bridge(env, "orgs")
    assert "needs_relink" in orgs.output
    with env.ledger() as ledger:
        cursor = ledger.get_cursor("revoke")
    new_token = env.mastodon.create_account(f"revoke-other{next(_n)}")
    wrong = bridge(env, "relink", "revoke", "--access-token", new_token)
    assert wrong.exit_code == 2 and "not the organisation's account" in wrong.output
    # the right account authorises again (a new token for the same account)
    login = httpx.post(f"{env.mastodon.base_url}/api/v1/_mock/login", json={"username": username})
    fresh = login.json()["access_token"]
    ok = bridge(env, "relink", "revoke", "--access-token", fresh)
    assert ok.exit_code == 0, ok.output
    with env.ledger() as ledger:
        assert ledger.get_org("revoke").state == "active" and ledger.get_cursor("revoke") == cursor
    assert bridge(env, "poll", "revoke").exit_code == 0
    statuses = env.mastodon.statuses(fresh)
    assert [html_to_text(s["content"]) for s in statuses] == ["after the link"]


def test_unlink_revokes_and_keep_history(env: BridgeEnv) -> None:
    user_id, _ = new_coop(env, "UnlinkCoop")
    token = env.mastodon.create_account(f"unlink{next(_n)}")
    # an app must exist for revocation: link through --access-token registers none, so register via a code link
    assert bridge(env, "link", "unlink-me", "--x-username", "UnlinkCoop", "--access-token", token).exit_code == 0
    from bridge.link import ensure_app

    with env.ledger() as ledger:
        ensure_app(env.mastodon.base_url, "geno-bridge", ledger)
    r = bridge(env, "unlink", "unlink-me", "--keep-history", "--yes")
    assert r.exit_code == 0 and "revoked" in r.output and "history is kept" in r.output
    assert httpx.get(f"{env.mastodon.base_url}/api/v1/accounts/verify_credentials",
                     headers={"Authorization": f"Bearer {token}"}).status_code == 401
    with env.ledger() as ledger:
        assert ledger.list_orgs() == [] and ledger.get_org("unlink-me").state == "unlinked"
    assert "No organisations linked yet" in bridge(env, "orgs").output


def test_linked_handles_mention_each_other(env: BridgeEnv) -> None:
    a_id, _ = new_coop(env, "MentionA")
    new_coop(env, "MentionB")
    ta = env.mastodon.create_account(f"mentiona{next(_n)}")
    tb = env.mastodon.create_account(f"mentionb{next(_n)}")
    assert bridge(env, "link", "ma", "--x-username", "MentionA", "--access-token", ta).exit_code == 0
    assert bridge(env, "link", "mb", "--x-username", "MentionB", "--access-token", tb).exit_code == 0
    env.x.add_tweet(make_tweet(new_post_id(), a_id, "Hello @MentionB!", mentions=["MentionB"],
                               created_at="2026-11-01T10:00:00.000Z", author_username="MentionA"))
    assert bridge(env, "poll", "ma").exit_code == 0
    with env.ledger() as ledger:
        b = ledger.get_org("mb")
    text = html_to_text(env.mastodon.statuses(ta)[0]["content"])
    assert f"@{b.acct}" in text


def test_tokens_never_in_logs_or_output_and_ledger_stays_0600(env: BridgeEnv) -> None:
    new_coop(env, "SecretCoop")
    token = env.mastodon.create_account(f"secret{next(_n)}")
    outputs = [bridge(env, "link", "secret", "--x-username", "SecretCoop", "--access-token", token).output]
    outputs.append(bridge(env, "check-config").output)
    outputs.append(bridge(env, "orgs").output)
    outputs.append(bridge(env, "orgs", "--json").output)
    outputs.append(bridge(env, "status", "--json").output)
    outputs.append(bridge(env, "poll").output)
    for out in outputs:
        assert token not in out
        assert env.x.token not in out
    assert stat.S_IMODE(env.config.database.stat().st_mode) == 0o600


# ---------------------------------------------------------------------------- no flood, ever (issue 12, item 2)


def test_a_link_x_cannot_finish_stores_nothing_and_nothing_old_is_posted_later(env: BridgeEnv) -> None:
    user_id, _ = new_coop(env, "DownCoop", posts=3)
    token = env.mastodon.create_account(f"down{next(_n)}")
    env.x.inject(f"/2/users/{user_id}/tweets", "503")  # X fails just when the link asks for the newest post
    r = bridge(env, "link", "down", "--x-username", "DownCoop", "--access-token", token)
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert "503" in r.output and "down was not linked (nothing stored)" in r.output, r.output
    with env.ledger() as ledger:
        assert ledger.get_org("down") is None and ledger.get_cursor("down") is None
    assert bridge(env, "poll").exit_code == 0
    assert env.mastodon.statuses(token) == []
    # X is back: the link goes through and starts at the newest post, so still nothing old is posted
    ok = bridge(env, "link", "down", "--x-username", "DownCoop", "--access-token", token)
    assert ok.exit_code == 0, ok.output
    with env.ledger() as ledger:
        assert ledger.get_cursor("down") == str(1_800_000_000_000_000_000 + int(user_id) % 100 * 100 + 2)
    assert bridge(env, "poll", "down").exit_code == 0
    assert env.mastodon.statuses(token) == []


def test_a_link_x_cannot_finish_leaves_the_volunteers_code_unspent(env: BridgeEnv) -> None:
    user_id, username = new_coop(env, "CodeCoop", posts=1)
    first = bridge(env, "link", "code-coop", "--x-username", "CodeCoop", input="\n")
    code = volunteer_code(env, auth_url_from(first.output), username)
    env.x.inject(f"/2/users/{user_id}/tweets", "503")
    down = bridge(env, "link", "code-coop", "--x-username", "CodeCoop", "--code", code)
    assert down.exit_code == 1 and "nothing stored" in down.output, down.output
    # X is read before the single-use code is exchanged: the same code still links
    ok = bridge(env, "link", "code-coop", "--x-username", "CodeCoop", "--code", code)
    assert ok.exit_code == 0, ok.output
    with env.ledger() as ledger:
        assert ledger.get_cursor("code-coop") == str(1_800_000_000_000_000_000 + int(user_id) % 100 * 100)


def test_linking_an_account_with_no_posts_yet_bridges_every_post_made_after_it(env: BridgeEnv) -> None:
    user_id, _ = new_coop(env, "FreshCoop")
    token = env.mastodon.create_account(f"fresh{next(_n)}")
    r = bridge(env, "link", "fresh", "--x-username", "FreshCoop", "--access-token", token)
    assert r.exit_code == 0 and "has no posts yet: every post from now on will be bridged" in r.output, r.output
    with env.ledger() as ledger:
        assert ledger.get_cursor("fresh") is not None  # never an active organisation without a cursor
    env.x.add_tweet(make_tweet(new_post_id(), user_id, "our very first post", created_at="2026-12-01T10:00:00.000Z",
                               author_username="FreshCoop"))
    assert bridge(env, "poll", "fresh").exit_code == 0
    assert [html_to_text(s["content"]) for s in env.mastodon.statuses(token)] == ["our very first post"]
