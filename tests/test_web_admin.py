"""The operator page, and what every page promises: security headers, cookie flags, clear error pages."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.fakes.x_api import FakeXServer
from tests.mastodon_server import MastodonServer
from tests.web_browser import OPERATOR_TOKEN, Browser, WebServer, authorize_on_instance, make_web, unique


def operator_sign_in(b: Browser, web: WebServer, password: str = OPERATOR_TOKEN) -> None:
    b.page.goto(web.base_url + "/admin")
    b.page.fill("#token", password)
    b.page.click("form.card button[type=submit]")


def test_the_operator_page_needs_the_operator_password_and_lists_every_organisation(
        web: WebServer, browser: Browser, second_browser: Browser) -> None:
    a, b = web.env.link(unique("op-a")), web.env.link(unique("op-b"))
    web.env.publish(web.env.tweet(a, "one post"))
    assert web.cli("poll", a.name).exit_code == 0
    web.env.mastodon.add_fault({"match": {"methods": ["POST"], "path": "/api/v1/statuses"},
                                "effect": {"type": "status", "status": 422, "body": {"error": "Validation failed"}},
                                "count": 1})
    web.env.publish(web.env.tweet(b, "refused"))
    web.cli("poll", b.name)
    browser.page.goto(web.base_url + "/admin")
    assert browser.h1() == "Operator sign-in" and a.name not in browser.page.content()
    browser.check("admin-login")
    operator_sign_in(browser, web, "wrong")
    assert "That password is not right." in browser.page.locator("[role=alert]").inner_text()
    operator_sign_in(browser, web)
    assert browser.h1() == "Operator"
    rows = {r.locator("th").inner_text(): r.locator("td").all_inner_texts()
            for r in browser.page.locator("tbody tr").all()}
    assert rows[a.name][2:6] == ["active", "0", "0", rows[a.name][5]] and rows[a.name][5] != "never"
    assert rows[b.name][2:5] == ["active", "0", "1"] and rows[b.name][5] == "never"
    assert "posts per month" in browser.page.locator("#h-budget + p").inner_text()
    browser.check("admin")
    # An organisation's sign-in is not the operator's
    second_browser.page.goto(web.base_url + "/admin")
    assert second_browser.h1() == "Operator sign-in"


def test_the_operator_invites_from_the_page_and_the_link_links(web: WebServer, browser: Browser,
                                                               second_browser: Browser) -> None:
    operator_sign_in(browser, web)
    browser.page.fill("#org", "from-the-page")
    browser.page.get_by_role("button", name="Invite", exact=True).click()
    link = browser.page.input_value("#invite-link")
    assert link.startswith(web.base_url + "/invite/")
    browser.check("admin-invite")
    handle, username = unique("PageInv"), unique("pageinv")
    web.env.x.add_user("655001", handle)
    web.env.mastodon.create_account(username)
    second_browser.page.goto(link)
    second_browser.page.fill("#x_username", handle)
    second_browser.page.click("form.card button[type=submit]")
    authorize_on_instance(second_browser.page, username)
    second_browser.page.wait_for_url(web.base_url + "/oauth/callback?**")
    assert second_browser.h1() == "Connected"
    browser.page.goto(web.base_url + "/admin")
    assert "from-the-page" in browser.page.locator("tbody").inner_text()
    # Re-invite: a fresh link for an organisation that exists
    browser.page.get_by_role("button", name="Re-invite: from-the-page").click()
    assert browser.page.input_value("#invite-link") != link


def test_every_page_sends_the_security_headers_and_cookie_flags(web: WebServer) -> None:
    for path in ("/", "/signin", "/admin", "/no-such-page", "/invite/forged.token", "/static/style.css"):
        r = httpx.get(web.base_url + path)
        csp = r.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp and "script-src" not in csp, path
        assert r.headers["x-frame-options"] == "DENY" and r.headers["x-content-type-options"] == "nosniff", path
        assert r.headers["referrer-policy"] == "no-referrer", path
        assert "Traceback" not in r.text
    cookie = httpx.get(web.base_url + "/").headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie
    assert "secure" not in cookie  # this bench runs plain http on loopback (web.secure_cookies: false)


def test_secure_cookies_are_the_default(tmp_path: Path, x_server: FakeXServer, mastodon: MastodonServer) -> None:
    server = make_web(tmp_path, x_server, mastodon, secure=True)
    try:
        cookie = httpx.get(server.base_url + "/").headers["set-cookie"].lower()
        assert "; secure" in cookie and "httponly" in cookie and "samesite=lax" in cookie
        assert "form-action 'self' https:;" in httpx.get(server.base_url + "/").headers["content-security-policy"] + ";"
    finally:
        server.stop()


def test_unknown_pages_and_methods_give_a_clear_page_never_a_traceback(web: WebServer, browser: Browser) -> None:
    browser.page.goto(web.base_url + "/no/such/page")
    assert browser.h1() == "Page not found"
    browser.check("not-found")
    r = httpx.post(web.base_url + "/admin", headers={"Accept-Language": "en"})
    assert r.status_code == 405 and "Page not found" in r.text
    r = httpx.get(web.base_url + "/lang/de", params={"next": "https://evil.example/"}, follow_redirects=False)
    assert r.headers["location"] == "/"  # redirects stay on this site
    r = httpx.get(web.base_url + "/lang/de", params={"next": "//evil.example/x"}, follow_redirects=False)
    assert r.headers["location"] == "/"
    browser.page.goto(web.base_url + "/")
    browser.check("home")


def test_the_sign_in_endpoints_are_rate_limited(tmp_path: Path, x_server: FakeXServer, mastodon: MastodonServer) -> None:
    server = make_web(tmp_path, x_server, mastodon, rate_limit=3)
    try:
        with httpx.Client(base_url=server.base_url, headers={"Accept-Language": "en"}) as client:
            page = client.get("/admin").text
            csrf = page.split('name="csrf" value="', 1)[1].split('"', 1)[0]
            codes = [client.post("/admin/login", data={"csrf": csrf, "token": f"guess-{i}"}).status_code for i in range(4)]
            assert codes == [403, 403, 403, 429]
            # the right password is refused too while the address is over its limit: guessing gains nothing
            late = client.post("/admin/login", data={"csrf": csrf, "token": OPERATOR_TOKEN})
            assert late.status_code == 429 and "Too many attempts" in late.text
            assert client.get("/oauth/callback", params={"state": "x", "code": "y"}).status_code == 429
    finally:
        server.stop()
