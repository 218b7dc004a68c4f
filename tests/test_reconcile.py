"""Exactly-once past the Idempotency-Key hour, and after malformed answers, over real HTTP.

A toot whose ``posting`` row outlived the key (Mastodon keeps it 1 hour) is found
again among the account's own statuses, compared with the text the bridge sent.
Real Mastodon renders that text (a mention as ``@user``, links in hidden spans,
hashtags, paragraphs): the comparison is checked against the recorded rendering
of Mastodon 4.6 in the shared fixtures.

mastodon-mock keeps Idempotency-Keys forever and renders no mentions: past the
hour the tests check that no status is POSTed again (``StatusPosts``), and
``serve_as_mastodon`` makes the account's status list show the toots rendered
as Mastodon 4.6 renders them.
"""

from __future__ import annotations

import html
import json
import os
import re
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from bridge.ledger import FetchedPost, Ledger, OrgRecord
from bridge.model import Draft, post_to_dict
from bridge.sources.x_v2 import normalise_page
from bridge.targets.mastodon import html_to_text
from bridge.targets.mastodon import matches_status as _matches
from tests.bridge_env import BridgeEnv, LinkedOrg
from tests.fakes.x_api import FakeXServer
from tests.mastodon_server import MastodonServer

BRIDGE = [sys.executable, "-m", "bridge.cli"]


@pytest.fixture
def env(tmp_path: Path, x_server: FakeXServer, mastodon: MastodonServer) -> Iterator[BridgeEnv]:
    yield BridgeEnv(tmp_path, x_server, mastodon)


# -- Mastodon's rendering, from the recordings ----------------------------------------------


def recorded_posts(fixtures_dir: Path) -> list[tuple[str, str, str]]:
    """(file, text sent, content Mastodon 4.6 answered) of every recorded status post."""
    out = []
    for path in sorted((fixtures_dir / "mastodon-api").glob("*.json")):
        exchanges = json.loads(path.read_text())
        for ex in exchanges if isinstance(exchanges, list) else []:
            body = ex.get("body") if isinstance(ex, dict) else None
            if (ex.get("method") == "POST" and ex.get("uri", "").endswith("/api/v1/statuses") and isinstance(body, dict)
                    and "content" in body):
                sent = parse_qs(ex.get("request_body") or "").get("status", [""])[0]
                out.append((path.name, sent, body["content"]))
    return out


def _recorded(fixtures_dir: Path, name: str, sent: str) -> str:
    return next(c for f, s, c in recorded_posts(fixtures_dir) if f == name and s == sent)


def mastodon_html(text: str, accounts: dict[str, str], base_url: str, fixtures_dir: Path) -> str:
    """``text`` rendered as Mastodon 4.6 does (app/lib/text_formatter.rb), from the recorded shapes:
    a known account's mention as the h-card of test_status_reply.json (``@user``, no domain),
    a URL as the hidden-span link of test_status_card.json (``shortened_link``: 30 characters
    shown, class ``ellipsis`` past them), a hashtag as ``link_to_hashtag``, and paragraphs and
    line breaks as ``simple_format``. ``accounts`` maps ``user@domain`` to the profile URL."""
    mention = _recorded(fixtures_dir, "test_status_reply.json", "@mastodonpy_test_2 same!")
    hcard = mention[len("<p>") : mention.index("</span></a></span>") + len("</span></a></span>")]
    card = _recorded(fixtures_dir, "test_status_card.json", "http://example.org/")
    link_open = card[len("<p>") : card.index(">", len("<p>")) + 1]

    def link(url: str) -> str:
        prefix = re.match(r"https?://(www\.)?", url)
        cut = prefix.end() if prefix else 0
        shown, rest = url[cut : cut + 30], url[cut + 30 :]
        opening = link_open.replace('href="http://example.org/"', f'href="{html.escape(url)}"')
        return (f'{opening}<span class="invisible">{html.escape(url[:cut])}</span>'
                f'<span class="{"ellipsis" if rest else ""}">{html.escape(shown)}</span>'
                f'<span class="invisible">{html.escape(rest)}</span></a>')

    def token(m: re.Match[str]) -> str:
        if m.group("url"):
            return link(m.group("url"))
        if m.group("tag"):
            tag = m.group("tag")
            return f'<a href="{base_url}/tags/{tag}" class="mention hashtag" rel="tag">#<span>{html.escape(tag)}</span></a>'
        acct = m.group("acct")
        if acct not in accounts:
            return html.escape(m.group(0))
        user = acct.split("@")[0]
        return (hcard.replace("http://localhost:3000/@mastodonpy_test_2", accounts[acct])
                .replace("<span>mastodonpy_test_2</span>", f"<span>{user}</span>"))

    pattern = re.compile(r"(?P<url>https?://[^\s<>\"]+)|(?<![\w/])#(?P<tag>\w+)|(?<![\w/=])@(?P<acct>[a-z0-9_]+(?:@[\w.-]+(?::\d+)?)?)", re.I)
    paragraphs = []
    for para in re.split(r"\n\s*\n", text.strip()):
        lines = []
        for line in para.split("\n"):
            out, last = [], 0
            for m in pattern.finditer(line):
                out.append(html.escape(line[last : m.start()], quote=True).replace("&#x27;", "&#39;"))
                out.append(token(m))
                last = m.end()
            out.append(html.escape(line[last:], quote=True).replace("&#x27;", "&#39;"))
            lines.append("".join(out))
        paragraphs.append(f"<p>{'<br />'.join(lines)}</p>")
    return "".join(paragraphs)


def test_the_stand_in_renders_every_recorded_post_exactly_as_mastodon_did(fixtures_dir: Path) -> None:
    """The renderer the end-to-end tests use is checked against every recorded status post."""
    posts = recorded_posts(fixtures_dir)
    assert len(posts) >= 10
    accounts = {"mastodonpy_test_2": "http://localhost:3000/@mastodonpy_test_2"}
    for name, sent, content in posts:
        assert mastodon_html(sent, accounts, "http://localhost:3000", fixtures_dir) == content, name


def test_every_recorded_rendering_matches_the_text_that_was_sent(fixtures_dir: Path) -> None:
    for name, sent, content in recorded_posts(fixtures_dir):
        assert _matches(Draft(post_id="1", part=0, text=sent), {"content": content}, None), name
        assert not _matches(Draft(post_id="1", part=0, text=sent + " (2)"), {"content": content}, None), name


def test_a_mention_sent_with_its_domain_matches_mastodons_local_rendering(fixtures_dir: Path) -> None:
    """The bridge writes a linked organisation as ``@user@instance``; Mastodon shows ``@user``
    (test_status_reply.json, instance domain localhost:3000)."""
    content = _recorded(fixtures_dir, "test_status_reply.json", "@mastodonpy_test_2 same!")
    assert _matches(Draft(post_id="1", part=0, text="@mastodonpy_test_2@localhost:3000 same!"), {"content": content}, None)
    assert _matches(Draft(post_id="1", part=0, text="@mastodonpy_test_2@geno.social same!"), {"content": content}, None)
    assert not _matches(Draft(post_id="1", part=0, text="@someone_else@localhost:3000 same!"), {"content": content}, None)


def test_links_hashtags_and_line_breaks_match_however_they_are_displayed(fixtures_dir: Path) -> None:
    sent = ("Solar on every roof, thanks to @coop_b@geno.social!\n"
            "Read more: https://example.org/news/2026/solar-panels-on-every-roof?utm=x\n\n"
            "#energy #Genossenschaft")
    accounts = {"coop_b@geno.social": "https://geno.social/@coop_b"}
    rendered = mastodon_html(sent, accounts, "https://geno.social", fixtures_dir)
    assert 'class="ellipsis">example.org/news/2026/solar-pa<' in rendered  # shown cut, the rest hidden
    draft = Draft(post_id="1", part=0, text=sent)
    assert _matches(draft, {"content": rendered}, None)
    # A server that cuts the link text itself (a literal "…") and sends no hidden spans: the href counts.
    cut = re.sub(r"<span class=\"invisible\">[^<]*</span>", "", rendered).replace("solar-pa</span>", "solar-pa…</span>")
    assert "solar-pa…</span></a>" in cut
    assert html_to_text(cut).count("https://example.org/news/2026/solar-panels-on-every-roof?utm=x") == 1
    assert _matches(draft, {"content": cut}, None)
    # Paragraphs and line breaks written another way are the same text.
    assert _matches(draft, {"content": rendered.replace("<br />", "</p><p>")}, None)
    # Yet a different link, tag or mention is a different toot.
    for old, new in (("utm=x", "utm=y"), ("#Genossenschaft", "#Genossenschaften"), ("@coop_b@", "@coop_c@")):
        assert not _matches(Draft(post_id="1", part=0, text=sent.replace(old, new)), {"content": rendered}, None), new


def test_a_server_that_renders_markdown_still_matches(env: BridgeEnv) -> None:
    """German gender stars read as emphasis on a Markdown-rendering server (mastodon-mock, glitch-soc)."""
    a = env.link("coop-rec-markdown")
    text = "Liebe Bewohner*innen und Mieter*innen: **Versammlung** am `Montag`"
    httpx.post(f"{env.mastodon.base_url}/api/v1/statuses", headers={"Authorization": f"Bearer {a.token}"},
               data={"status": text}).raise_for_status()
    (toot,) = env.toots(a)
    assert "<em>" in toot["content"] and "<strong>" in toot["content"]
    assert _matches(Draft(post_id="1", part=0, text=text), {"content": toot["content"]}, None)


def test_a_thread_part_must_reply_to_its_recorded_parent() -> None:
    draft = Draft(post_id="1", part=1, text="part two", reply_to_part=0)
    status = {"content": "<p>part two</p>", "in_reply_to_id": "111"}
    assert _matches(draft, status, None, "111")
    assert not _matches(draft, status, None, "222")


def test_the_window_anchor_is_the_last_toot_created_before_the_mark(tmp_path: Path) -> None:
    """An edit recorded before the mark points at an old toot: it is no anchor; toots recorded
    for any post are known, so reconciliation never claims them for another."""
    t0 = datetime(2026, 11, 1, 9, 0, tzinfo=timezone.utc)
    with Ledger.open(tmp_path / "ledger.db") as ledger:
        ledger.save_org(OrgRecord("coop", "1", "coop_x", "https://geno.social", "9", "coop", "u", token="t"), t0)
        posts = [FetchedPost(str(n), t0, {"id": str(n)}) for n in (1, 2, 3, 4)]
        ledger.record_fetched("coop", posts, cursor="4", now=t0)
        ledger.record_delivery("coop", "1", 0, "status", "101", "u1", t0 + timedelta(minutes=1))
        ledger.record_delivery("coop", "2", 0, "status", "102", "u2", t0 + timedelta(minutes=2))
        ledger.record_delivery("coop", "3", 0, "edit", "101", "u1", t0 + timedelta(minutes=3))
        ledger.record_delivery("coop", "4", 0, "status", "104", "u4", t0 + timedelta(minutes=5))
        mark = t0 + timedelta(minutes=4)
        assert ledger.last_delivery("coop", before=mark).status_id == "102"
        assert ledger.last_delivery("coop").status_id == "104"
        assert ledger.last_delivery("coop", before=t0) is None
        assert ledger.known_statuses("coop", ["101", "103", "104", "999"]) == {"101", "104"}


# -- end to end: crash after posting, beyond the key hour -------------------------------------------


def poll_killed_after_posting(env: BridgeEnv, org: LinkedOrg) -> None:
    """`bridge poll` in a subprocess, SIGKILLed right after its first toot was posted (before the ledger knew)."""
    process_env = dict(os.environ, BRIDGE_TEST_CRASH_AT="after_status_post")
    done = subprocess.run([*BRIDGE, "--config", str(env.config_path), "--log-format", "json", "poll", org.name],
                          capture_output=True, text=True, env=process_env, timeout=60, check=False)
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]


class StatusPosts:
    """Counts POST /api/v1/statuses reaching mastodon-mock (a pass-through rule's budget).

    mastodon-mock keeps Idempotency-Keys forever, where Mastodon forgets them after an
    hour; so past the hour "nothing is posted again" is checked here, at the request.
    """

    BUDGET = 10_000

    def __init__(self, mastodon: MastodonServer) -> None:
        self.mastodon = mastodon
        self.rule_id = mastodon.add_fault({"match": {"methods": ["POST"], "path": "/api/v1/statuses"},
                                           "effect": {"type": "latency", "delay_ms": 0}, "count": self.BUDGET})

    @property
    def seen(self) -> int:
        rule = next(r for r in self.mastodon.faults() if r["id"] == self.rule_id)
        return self.BUDGET - int(rule["remaining"])


def serve_as_mastodon(env: BridgeEnv, org: LinkedOrg, accounts: dict[str, str], fixtures_dir: Path) -> None:
    """From now on the account's status list shows its toots as Mastodon 4.6 renders them."""
    headers = {"Authorization": f"Bearer {org.token}"}
    listing = []
    for toot in env.mastodon.statuses(org.token, org.account_id):
        source = httpx.get(f"{env.mastodon.base_url}/api/v1/statuses/{toot['id']}/source", headers=headers).json()
        listing.append(dict(toot, content=mastodon_html(source["text"], accounts, env.mastodon.base_url, fixtures_dir)))
    env.mastodon.add_fault({"match": {"methods": ["GET"], "path": f"/api/v1/accounts/{org.account_id}/statuses"},
                            "effect": {"type": "status", "status": 200, "body": listing}})


def texts_on_server(env: BridgeEnv, org: LinkedOrg) -> Counter[str]:
    env.mastodon.clear_faults()
    return Counter(html_to_text(t["content"]) for t in env.toots(org) if not t.get("reblog"))


def two_hours_later() -> datetime:
    return datetime.now(timezone.utc) + timedelta(hours=2)


def test_a_post_mentioning_a_linked_org_is_found_after_the_key_hour_not_posted_again(
    env: BridgeEnv, fixtures_dir: Path
) -> None:
    a = env.link("coop-rec-mention")
    b = env.link("coop-rec-friend")
    typed = f"Thanks @{b.x_username} for the panels! https://example.org/news/2026/solar-panels-on-every-roof #energy"
    env.publish(env.tweet(a, typed, mentions=[(b.x_username, b.x_user_id)],
                          urls=["https://example.org/news/2026/solar-panels-on-every-roof"], hashtags=["energy"]))
    poll_killed_after_posting(env, a)
    host = env.mastodon.base_url.split("://", 1)[1]
    serve_as_mastodon(env, a, {f"{b.acct}@{host}": f"{env.mastodon.base_url}/@{b.acct}"}, fixtures_dir)
    assert "@<span>" in env.mastodon.faults()[0]["effect"]["body"][0]["content"]  # rendered as Mastodon does
    posts = StatusPosts(env.mastodon)

    with env.ledger() as ledger:
        result = env.pipeline(ledger, clock=two_hours_later).cycle(a.name, poll=False)
        assert (result.delivered, result.failed, result.error) == (1, 0, None)
        assert posts.seen == 0  # found among the account's statuses, not posted again
        (post,) = ledger.posts(a.name)
        (delivery,) = ledger.deliveries(a.name, post.post_id)
    sent = f"Thanks @{b.acct}@{host} for the panels! https://example.org/news/2026/solar-panels-on-every-roof #energy"
    assert texts_on_server(env, a) == Counter({sent: 1})  # exactly one toot
    assert delivery.status_id == env.toots(a)[0]["id"]


def test_a_thread_child_posted_on_its_own_is_found_after_the_key_hour(env: BridgeEnv) -> None:
    """Its parent was refused, so it went out alone with a link to the original: that text is looked for too."""
    a = env.link("coop-rec-orphan")
    parent = env.publish(env.tweet(a, "the parent", post_id="1500000000000000001"))
    env.publish(env.tweet(a, f"@{a.x_username} the child", post_id="1500000000000000002", in_reply_to=parent["id"],
                          replied_user_id=a.x_user_id, mentions=[(a.x_username, a.x_user_id)]))
    env.mastodon.add_fault({"match": {"methods": ["POST"], "path": "/api/v1/statuses"},
                            "effect": {"type": "status", "status": 422, "body": {"error": "Validation failed"}}, "count": 1})
    poll_killed_after_posting(env, a)  # the parent failed, the child was posted on its own, then SIGKILL
    (toot,) = env.toots(a)
    assert f"x.com/{a.x_username}/status/{parent['id']}" in html_to_text(toot["content"])
    posts = StatusPosts(env.mastodon)
    with env.ledger() as ledger:
        result = env.pipeline(ledger, clock=two_hours_later).cycle(a.name, poll=False)
        assert (result.delivered, result.error) == (1, None)
        assert posts.seen == 0
        assert ledger.deliveries(a.name, "1500000000000000002")[0].status_id == toot["id"]


def _backfill_rows(env: BridgeEnv, org: LinkedOrg, n: int) -> None:
    """``n`` old posts (ids below the poll's) recorded as `bridge backfill` records them (origin backfill, no cursor)."""
    tweets = [env.tweet(org, f"history {i}", post_id=str(999_999_999_999_999_000 + i)) for i in range(n)]
    users = [{"id": org.x_user_id, "username": org.x_username, "name": "x"}]
    posts = normalise_page({"data": tweets, "includes": {"users": users}})
    with env.ledger() as ledger:
        ledger.record_fetched(org.name, [FetchedPost(p.id, p.created_at, post_to_dict(p)) for p in posts], cursor=None,
                              now=datetime.now(timezone.utc), origin="backfill")


@pytest.mark.parametrize("earlier", [True, False], ids=["after-a-delivered-post", "first-post"])
def test_a_stuck_poll_post_is_found_after_a_backfill_delivered_past_it(env: BridgeEnv, earlier: bool) -> None:
    """The poll post's toot is older than the backfill's: the search starts at the stuck post's own mark."""
    a = env.link(f"coop-rec-window-{int(earlier)}")
    if earlier:
        env.publish(env.tweet(a, "delivered long before"))
        with env.ledger() as ledger:
            assert env.pipeline(ledger).cycle(a.name).delivered == 1
    _backfill_rows(env, a, 3)
    env.publish(env.tweet(a, "stuck in posting"))
    poll_killed_after_posting(env, a)
    with env.ledger() as ledger, env.pipeline(ledger) as backfill:
        for _ in range(3):  # `bridge backfill` delivers post by post, oldest first: the history, not the stuck post
            assert backfill.deliver(a.name, limit=1).delivered == 1
        assert [p.origin for p in ledger.open_posts(a.name)] == ["poll"]
    posts = StatusPosts(env.mastodon)
    with env.ledger() as ledger:
        result = env.pipeline(ledger, clock=two_hours_later).cycle(a.name, poll=False)
        assert (result.delivered, result.failed, result.error) == (1, 0, None)
        assert posts.seen == 0  # found among the account's statuses, not posted again
    counts = texts_on_server(env, a)
    assert counts["stuck in posting"] == 1 and max(counts.values()) == 1
    assert sum(counts.values()) == 3 + 1 + int(earlier)


# -- malformed 200 answers: a failed attempt, looked for before the next --------------------------


def _malformed(env: BridgeEnv, body: Any, count: int = 1) -> None:
    env.mastodon.add_fault({"match": {"methods": ["POST"], "path": "/api/v1/statuses"},
                            "effect": {"type": "status", "status": 200, "body": body}, "count": count})


@pytest.mark.parametrize("body", [[], {"content": "<p>no id</p>"}, {"id": None}], ids=["list", "no-id", "null-id"])
def test_a_malformed_answer_mid_thread_never_records_none_and_keeps_the_thread(env: BridgeEnv, body: Any) -> None:
    a = env.link("coop-malformed-thread")
    long_text = " ".join(f"Sentence {i} about the cooperative's general assembly." for i in range(25))
    env.publish(env.tweet(a, long_text[:270] + "…", note_tweet=long_text))
    env.mastodon.add_fault({"match": {"methods": ["POST"], "path": "/api/v1/statuses"},
                            "effect": {"type": "latency", "delay_ms": 0}, "count": 1})  # part 0 goes through
    _malformed(env, body)  # part 1's first answer is 200 but no status
    with env.ledger() as ledger:
        result = env.pipeline(ledger).cycle(a.name)
        assert (result.delivered, result.failed) == (1, 0), result
        (post,) = ledger.posts(a.name)
        recorded = [d.status_id for d in ledger.deliveries(a.name, post.post_id)]
    toots = env.toots(a)
    assert len(toots) >= 3 and [t["id"] for t in toots] == recorded and "None" not in recorded
    assert [t["in_reply_to_id"] for t in toots] == [None, *recorded[:-1]]  # one unbroken thread
    assert " ".join(html_to_text(t["content"]) for t in toots).split() == long_text.split()


def test_a_toot_created_behind_a_malformed_answer_is_found_not_posted_again(env: BridgeEnv) -> None:
    """The server created the toot but the answer was garbage, and (like a server without
    Idempotency-Key support) would create another: the retry looks first."""
    a = env.link("coop-malformed-found")
    env.publish(env.tweet(a, "Open day on Saturday"))
    httpx.post(f"{env.mastodon.base_url}/api/v1/statuses", headers={"Authorization": f"Bearer {a.token}"},
               data={"status": "Open day on Saturday"}).raise_for_status()  # what the server did
    _malformed(env, {"content": "<p>Open day on Saturday</p>"})  # what the bridge was told
    with env.ledger() as ledger:
        result = env.pipeline(ledger).cycle(a.name)
        assert (result.delivered, result.failed) == (1, 0), result
        (post,) = ledger.posts(a.name)
        (delivery,) = ledger.deliveries(a.name, post.post_id)
    (toot,) = env.toots(a)
    assert delivery.status_id == toot["id"]


def test_after_malformed_answers_the_deferred_retry_looks_first(env: BridgeEnv) -> None:
    """Three malformed answers defer the post; the next cycle (another process, say) still looks first."""
    a = env.link("coop-malformed-later")
    env.publish(env.tweet(a, "Assembly minutes are online"))
    _malformed(env, [{"id": "1"}], count=3)
    with env.ledger() as ledger:
        result = env.pipeline(ledger).cycle(a.name)
        assert result.delivered == 0 and "malformed" in (result.error or "")
        (post,) = ledger.posts(a.name)
        assert post.state == "posting" and ledger.deliveries(a.name, post.post_id) == []
        ledger.db.conn.execute("UPDATE post_targets SET next_attempt_at = NULL WHERE org = ?", (a.name,))
    httpx.post(f"{env.mastodon.base_url}/api/v1/statuses", headers={"Authorization": f"Bearer {a.token}"},
               data={"status": "Assembly minutes are online"}).raise_for_status()  # the last one did arrive
    with env.ledger() as ledger:
        result = env.pipeline(ledger).cycle(a.name, poll=False)
        assert (result.delivered, result.error) == (1, None)
    assert texts_on_server(env, a) == Counter({"Assembly minutes are online": 1})
