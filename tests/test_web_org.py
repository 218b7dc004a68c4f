"""The organisation's own page in a real browser: sign in with Mastodon, posts, failures, pause, policies, unlink."""

from __future__ import annotations

from typing import Any

import httpx

from bridge.pipeline import Pipeline
from bridge.targets.mastodon import html_to_text
from tests.bridge_env import LinkedOrg
from tests.web_browser import Browser, WebServer, authorize_on_instance, sign_in, unique


def cycle(web: WebServer, name: str) -> Any:
    with web.env.ledger() as ledger, Pipeline(web.env.config, ledger, retry_wait_max=0.01) as pipeline:
        return pipeline.cycle(name)


def statuses(web: WebServer, org: LinkedOrg) -> list[dict[str, Any]]:
    return list(reversed(web.env.mastodon.statuses(org.token)))


def refuse_next_status(web: WebServer) -> None:
    web.env.mastodon.add_fault({"match": {"methods": ["POST"], "path": "/api/v1/statuses"},
                                "effect": {"type": "status", "status": 422,
                                           "body": {"error": "Validation failed: Text is invalid"}}, "count": 1})


def test_the_org_page_shows_bridged_posts_and_failures_in_plain_words_and_try_again_sends_it(
        web: WebServer, browser: Browser) -> None:
    org = web.env.link(unique("page-coop"))
    web.env.publish(web.env.tweet(org, "first bridged post"))
    assert cycle(web, org.name).delivered == 1
    refuse_next_status(web)
    web.env.publish(web.env.tweet(org, "refused once"))
    result = cycle(web, org.name)
    assert result.failed == 1, result
    sign_in(browser, web, org.acct)
    assert browser.page.url == web.base_url + "/org"
    assert browser.h1() == org.name
    recent = browser.page.locator("#h-recent + ul")
    assert "first bridged post" in recent.inner_text()
    toot_links = recent.locator("a").evaluate_all("els => els.map(e => e.href)")
    toots = statuses(web, org)
    assert set(toot_links) <= {t["url"] for t in toots} and toot_links
    failed = browser.page.locator("#h-failed + ul")
    assert "refused once" in failed.inner_text() and "The instance refused the post." in failed.inner_text()
    browser.page.locator("#h-failed + ul summary").first.click()
    assert "422" in failed.inner_text()  # the technical reason, one click away
    browser.check("org")
    browser.page.click("#h-failed + ul button")
    assert "queued again" in browser.page.locator("[role=status]").inner_text()
    assert cycle(web, org.name).delivered == 1
    assert "refused once" in [html_to_text(t["content"]) for t in statuses(web, org)]
    browser.page.reload()
    assert "None." in browser.page.locator("#h-failed ~ p").first.inner_text()


def test_sign_in_lets_only_the_linked_account_in(web: WebServer, browser: Browser) -> None:
    org = web.env.link(unique("signin-coop"))
    stranger = unique("stranger")
    web.env.mastodon.create_account(stranger)
    browser.page.goto(web.base_url + "/org")
    assert browser.page.url == web.base_url + "/signin"  # not signed in: sent to the sign-in page
    browser.check("signin")
    sign_in(browser, web, stranger)
    assert browser.h1() == "No organisation for this account"
    assert f"@{stranger}@localhost" in browser.page.locator("main").inner_text()
    browser.page.goto(web.base_url + "/org")
    assert browser.page.url == web.base_url + "/signin"
    sign_in(browser, web, org.acct)
    assert browser.h1() == org.name
    # The sign-in token was only to learn who it is: withdrawn at once; the organisation's own token still works.
    assert httpx.get(f"{web.env.mastodon.base_url}/api/v1/accounts/verify_credentials",
                     headers={"Authorization": f"Bearer {org.token}"}).status_code == 200


def test_pause_stops_the_pipeline_and_resume_starts_it_again(web: WebServer, browser: Browser) -> None:
    org = web.env.link(unique("pause-coop"))
    sign_in(browser, web, org.acct)
    browser.page.get_by_role("button", name="Pause").click()
    assert "Paused." in browser.page.locator("[role=status]").inner_text()
    with web.env.ledger() as ledger:
        assert ledger.get_org(org.name).state == "paused"
    web.env.publish(web.env.tweet(org, "written while paused"))
    cycle(web, org.name)
    assert statuses(web, org) == []
    browser.page.get_by_role("button", name="Resume").click()
    assert "Resumed." in browser.page.locator("[role=status]").inner_text()
    cycle(web, org.name)
    assert [html_to_text(t["content"]) for t in statuses(web, org)] == ["written while paused"]


def test_policies_set_on_the_page_preview_first_and_then_win_over_the_config(web: WebServer, browser: Browser) -> None:
    org = web.env.link(unique("policy-coop"))
    web.env.publish(web.env.tweet(org, "before the settings"))
    cycle(web, org.name)
    sign_in(browser, web, org.acct)
    page = browser.page
    page.fill("#content_warning", "Genossenschaft")
    page.fill("#footer", "Original: {url}")
    page.select_option("#visibility", "unlisted")
    page.click("button[value=preview]")
    preview = page.locator(".preview")
    assert "Genossenschaft" in preview.inner_text() and "Original: " in preview.inner_text()
    assert "before the settings" in preview.inner_text()
    browser.check("org-preview")
    with web.env.ledger() as ledger:
        assert ledger.get_org_policy(org.name) is None  # a preview stores nothing
    page.click("button[value=save]")
    assert "Saved." in page.locator("[role=status]").inner_text()
    assert page.input_value("#content_warning") == "Genossenschaft"
    web.env.publish(web.env.tweet(org, "after the settings"))
    cycle(web, org.name)
    newest = statuses(web, org)[-1]
    assert html_to_text(newest["content"]).startswith("after the settings")
    assert "Original: " in html_to_text(newest["content"])
    assert newest["spoiler_text"] == "Genossenschaft" and newest["visibility"] == "unlisted"
    first = statuses(web, org)[0]
    assert first["spoiler_text"] == "" and first["visibility"] == "public"  # the configured default before


def test_unlink_revokes_the_token_and_signs_out(web: WebServer, browser: Browser) -> None:
    org = web.env.link(unique("unlink-coop"))
    sign_in(browser, web, org.acct)  # the sign-in registers the app on the instance, which revocation needs
    page = browser.page
    page.click("button.danger")  # the confirmation box is required: nothing happens without it
    assert page.url == web.base_url + "/org"
    page.check("#confirm")
    page.click("button.danger")
    assert browser.h1() == "Unlinked"
    browser.check("unlinked")
    assert httpx.get(f"{web.env.mastodon.base_url}/api/v1/accounts/verify_credentials",
                     headers={"Authorization": f"Bearer {org.token}"}).status_code == 401
    with web.env.ledger() as ledger:
        assert ledger.get_org(org.name).state == "unlinked"
    page.goto(web.base_url + "/org")
    assert page.url == web.base_url + "/signin"


def test_a_form_without_its_csrf_token_changes_nothing(web: WebServer, browser: Browser) -> None:
    org = web.env.link(unique("csrf-coop"))
    sign_in(browser, web, org.acct)
    # The session cookie is there (same browser), only the token is missing, as in a cross-site form post
    response = browser.page.request.post(web.base_url + "/org/pause", form={"csrf": "forged"})
    assert response.status == 400 and "Das Formular ist abgelaufen" in response.text()  # no Accept-Language: German
    with web.env.ledger() as ledger:
        assert ledger.get_org(org.name).state == "active"


def test_a_german_browser_gets_german_pages_and_the_switch_keeps_the_page(web: WebServer, chromium: Any) -> None:
    org = web.env.link(unique("lang-coop"))
    b = Browser(chromium, locale="de-DE")
    try:
        sign_in(b, web, org.acct)
        assert "Zuletzt übertragene Beiträge" in b.page.locator("main").inner_text()
        assert b.page.locator("html").get_attribute("lang") == "de"
        b.check("org-de")
        b.page.get_by_role("link", name="English").click()
        assert b.page.url == web.base_url + "/org"
        assert "Recently bridged posts" in b.page.locator("main").inner_text()
        assert b.page.locator("html").get_attribute("lang") == "en"
    finally:
        b.close()


def test_authorize_twice_in_one_sign_in_only_the_first_counts(web: WebServer, browser: Browser) -> None:
    org = web.env.link(unique("replay-coop"))
    browser.page.goto(web.base_url + "/signin")
    browser.page.click("form.card button[type=submit]")
    authorize_on_instance(browser.page, org.acct)
    browser.page.wait_for_url(web.base_url + "/org")
    browser.page.go_back()  # back to the instance's page, authorise again: the state was spent
    browser.page.wait_for_url("**/oauth/authorize?**")
    authorize_on_instance(browser.page, org.acct)
    browser.page.wait_for_url(web.base_url + "/oauth/callback?**")
    assert browser.h1() == "This sign-in is out of date"
