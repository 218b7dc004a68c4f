"""`bridge invite` and linking in a real browser: the volunteer's way, and every way it can go wrong."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx

from bridge.targets.mastodon import html_to_text
from bridge.web.flows import make_invitation
from tests.fakes.x_api import FakeXServer, make_tweet
from tests.feed_server import FeedServer
from tests.mastodon_server import MastodonServer
from tests.web_browser import Browser, WebServer, authorize_on_instance, make_web, query, unique


def new_x_account(web: WebServer, handle: str, old_posts: int = 2) -> str:
    user_id = str(700000 + abs(hash(handle)) % 100000)
    web.env.x.add_user(user_id, handle)
    for i in range(old_posts):
        web.env.x.add_tweet(make_tweet(str(1_790_000_000_000_000_000 + int(user_id) * 10 + i), user_id, f"old post {i}",
                                       created_at="2025-01-01T10:00:00.000Z", author_username=handle))
    return user_id


def new_post_id(n: int = 0) -> str:
    ms = int((datetime.now(timezone.utc) + timedelta(seconds=1)).timestamp() * 1000) - 1288834974657
    return str((ms << 22) + n)


def start_linking(b: Browser, url: str, *, x: str = "", feed: str = "") -> None:
    b.page.goto(url)
    if x:
        b.page.fill("#x_username", x)
    if feed:
        b.page.fill("#feed_url", feed)
    b.page.click("form.card button[type=submit]")


def test_a_volunteer_links_x_in_the_browser_and_only_new_posts_go_out(web: WebServer, browser: Browser) -> None:
    handle, username = unique("WebCoop"), unique("webcoop")
    user_id = new_x_account(web, handle, old_posts=3)
    web.env.mastodon.create_account(username)
    url = web.invite("web-coop")
    assert url.startswith(web.base_url + "/invite/")
    browser.page.goto(url)
    assert browser.h1() == "Connect web-coop to Mastodon"
    browser.check("invite")
    start_linking(browser, url, x="@" + handle)
    # The instance's own authorisation page, asked with PKCE S256 and a state, and sending the browser back to the bridge
    authorize_url = browser.page.url
    browser.page.wait_for_url("**/oauth/authorize?**")
    q = query(browser.page.url)
    assert q["code_challenge_method"] == "S256" and len(q["code_challenge"]) == 43 and len(q["state"]) >= 32
    assert q["redirect_uri"] == web.base_url + "/oauth/callback" and authorize_url
    authorize_on_instance(browser.page, username)
    browser.page.wait_for_url(web.base_url + "/oauth/callback?**")
    assert browser.h1() == "Connected"
    text = browser.page.locator("main").inner_text()
    assert f"posts go to @{username}@localhost" in text and "Posting starts with the next new post" in text
    browser.check("linked")
    with web.env.ledger() as ledger:
        org = ledger.get_org("web-coop")
        assert org is not None and org.x_user_id == user_id and org.state == "active"
        assert ledger.get_cursor("web-coop") == str(1_790_000_000_000_000_000 + int(user_id) * 10 + 2)
        assert ledger.db["web_invites"].count == 1
        assert list(ledger.db["web_logins"].rows) == []  # the attempt served once
    # The daemon's poll picks it up like after `bridge link`: the old posts stay, a new one goes out.
    web.env.x.add_tweet(make_tweet(new_post_id(), user_id, "fresh from the web link", author_username=handle,
                                   created_at="2026-12-01T10:00:00.000Z"))
    assert web.cli("poll", "web-coop").exit_code == 0
    token = web.env.mastodon.create_account(unique("probe"))
    with web.env.ledger() as ledger:
        copy = ledger.last_delivery("web-coop")
    assert copy is not None
    status = httpx.get(f"{web.env.mastodon.base_url}/api/v1/statuses/{copy.status_id}",
                       headers={"Authorization": f"Bearer {token}"}).json()
    assert html_to_text(status["content"]) == "fresh from the web link"
    with web.env.ledger() as ledger:
        assert [p.state for p in ledger.posts("web-coop")] == ["delivered"]


def test_a_second_browser_cannot_use_the_spent_invitation(web: WebServer, browser: Browser,
                                                          second_browser: Browser) -> None:
    handle, username = unique("Twice"), unique("twice")
    new_x_account(web, handle)
    web.env.mastodon.create_account(username)
    url = web.invite("twice")
    start_linking(browser, url, x=handle)
    authorize_on_instance(browser.page, username)
    browser.page.wait_for_url(web.base_url + "/oauth/callback?**")
    assert browser.h1() == "Connected"
    second_browser.page.goto(url)
    assert second_browser.h1() == "This invitation was already used"
    assert "Traceback" not in second_browser.page.content()
    second_browser.check("invite-used")


def test_two_browsers_racing_on_one_invitation_link_one_organisation(web: WebServer, browser: Browser,
                                                                     second_browser: Browser) -> None:
    handle, username = unique("Race"), unique("race")
    new_x_account(web, handle)
    web.env.mastodon.create_account(username)
    url = web.invite("race")
    start_linking(browser, url, x=handle)
    start_linking(second_browser, url, x=handle)
    authorize_on_instance(browser.page, username)
    browser.page.wait_for_url(web.base_url + "/oauth/callback?**")
    authorize_on_instance(second_browser.page, username)
    second_browser.page.wait_for_url(web.base_url + "/oauth/callback?**")
    assert browser.h1() == "Connected"
    assert second_browser.h1() == "This invitation was already used"


def test_deny_on_the_instance_stores_nothing_and_offers_another_try(web: WebServer, browser: Browser) -> None:
    handle = unique("Deny")
    new_x_account(web, handle)
    url = web.invite("deny")
    start_linking(browser, url, x=handle)
    browser.page.wait_for_url("**/oauth/authorize?**")
    # mastodon-mock's page has no Deny button; Mastodon answers Deny by sending the browser back with
    # error=access_denied and the state (RFC 6749 section 4.1.2.1), which is what this does.
    state = query(browser.page.url)["state"]
    browser.page.goto(f"{web.base_url}/oauth/callback?error=access_denied&error_description=denied&state={state}")
    assert browser.h1() == "Not connected"
    browser.check("denied")
    with web.env.ledger() as ledger:
        assert ledger.get_org("deny") is None
    browser.page.click("text=Try again")
    assert browser.h1() == "Connect deny to Mastodon"  # the invitation is still good


def test_a_stale_or_forged_state_gives_a_clear_page_and_stores_nothing(web: WebServer, browser: Browser,
                                                                       second_browser: Browser) -> None:
    handle, username = unique("Stale"), unique("stale")
    new_x_account(web, handle)
    web.env.mastodon.create_account(username)
    url = web.invite("stale")
    browser.page.goto(f"{web.base_url}/oauth/callback?code=mockcode_{username}&state=made-up")
    assert browser.h1() == "This sign-in is out of date"
    browser.check("stale")
    # A real state, but from another browser's attempt: the answer is not for this session
    start_linking(browser, url, x=handle)
    browser.page.wait_for_url("**/oauth/authorize?**")
    state = query(browser.page.url)["state"]
    second_browser.page.goto(f"{web.base_url}/oauth/callback?code=mockcode_{username}&state={state}")
    assert second_browser.h1() == "This sign-in is out of date"
    # The same answer twice: the first links, the replay is refused
    authorize_on_instance(browser.page, username)
    browser.page.wait_for_url(web.base_url + "/oauth/callback?**")
    assert browser.h1() == "Connected"
    browser.page.goto(browser.page.url)
    assert browser.h1() == "This sign-in is out of date"
    with web.env.ledger() as ledger:
        assert [o.name for o in ledger.list_orgs()] == ["stale"]


def test_a_website_feed_links_in_the_browser_and_its_old_entries_are_not_posted(
        web: WebServer, browser: Browser, feed_server: FeedServer) -> None:
    home = feed_server.serve_file("homepage.html", "/")
    feed_server.serve_file("hugo.xml")
    feed_server.serve_file("jekyll.xml")
    username = unique("feedcoop")
    token = web.env.mastodon.create_account(username)
    start_linking(browser, web.invite("riverside"), feed=home)
    authorize_on_instance(browser.page, username)
    browser.page.wait_for_url(web.base_url + "/oauth/callback?**")
    assert browser.h1() == "Connected"
    assert "Website feed: " + feed_server.url("/feeds/hugo.xml") in browser.page.locator("main").inner_text()
    with web.env.ledger() as ledger:
        src = ledger.get_source("riverside")
        assert src is not None and src.kind == "feed" and src.account_id == feed_server.url("/feeds/hugo.xml")
    assert web.cli("poll", "riverside").exit_code == 0
    assert web.env.mastodon.statuses(token) == []


def test_an_unknown_x_handle_or_no_source_is_named_on_the_form_and_nothing_is_stored(
        web: WebServer, browser: Browser) -> None:
    url = web.invite("typo")
    start_linking(browser, url)
    assert "Give an X username or a website address" in browser.page.locator("[role=alert]").inner_text()
    start_linking(browser, url, x="NoSuchHandle")
    assert "NoSuchHandle" in browser.page.locator("[role=alert]").inner_text()
    assert browser.page.input_value("#x_username") == "NoSuchHandle"  # what was typed is kept
    browser.check("invite-error")
    with web.env.ledger() as ledger:
        assert ledger.get_org("typo") is None


def test_expired_tampered_and_unknown_invitations_give_clear_pages(web: WebServer, browser: Browser) -> None:
    config = web.env.config
    with web.env.ledger() as ledger:
        old = make_invitation(config, ledger, "late", datetime.now(timezone.utc) - timedelta(days=8))
    browser.page.goto(old.url)
    assert browser.h1() == "This invitation has expired"
    browser.check("invite-expired")
    good = web.invite("tamper")
    body, sig = good.rsplit("/", 1)[1].split(".")
    forged = body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1]
    for bad in (f"{forged}.{sig}", f"{body}.{sig[:-1]}", "nonsense", "a.b"):
        browser.page.goto(f"{web.base_url}/invite/{bad}")
        assert browser.h1() == "This link is not valid", bad
    browser.check("invite-invalid")
    # A signed token the ledger does not know (another bridge's secret would not even verify)
    with web.env.ledger() as ledger:
        ledger.db.execute("DELETE FROM web_invites")
        ledger.db.conn.commit()
    browser.page.goto(good)
    assert browser.h1() == "This link is not valid"


def test_the_invitation_pages_are_rate_limited(tmp_path: Path, x_server: FakeXServer, mastodon: MastodonServer) -> None:
    server = make_web(tmp_path, x_server, mastodon, rate_limit=3)
    try:
        url = server.invite("busy")
        codes = [httpx.get(url).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        assert "Too many attempts" in httpx.get(url, headers={"Accept-Language": "en"}).text
        assert httpx.get(server.base_url + "/").status_code == 200  # only the invitation and sign-in pages
    finally:
        server.stop()


def test_bridge_invite_refuses_a_bad_name_and_a_missing_secret(tmp_path: Path, x_server: FakeXServer,
                                                               mastodon: MastodonServer) -> None:
    from tests.bridge_env import BridgeEnv
    from tests.web_browser import WebServer as _W  # noqa: F401  (same module as the fixtures)

    env = BridgeEnv(tmp_path, x_server, mastodon)
    from click.testing import CliRunner

    from bridge.cli import main

    r = CliRunner().invoke(main, ["--config", str(env.config_path), "invite", "ok-name"])
    assert r.exit_code == 2 and "web.secret_file" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(main, ["--config", str(env.config_path), "invite", "bad name!"])
    assert r.exit_code == 2 and "not a valid organisation name" in r.output
    r = CliRunner().invoke(main, ["--config", str(env.config_path), "web"])
    assert r.exit_code == 2 and "web.secret_file" in r.output
