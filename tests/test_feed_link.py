"""`bridge link NAME --feed URL`, polling a feed end to end (loopback website + mastodon-mock), and bad feeds in `status`."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from bridge.cli import main
from bridge.targets.mastodon import html_to_text
from tests.bridge_env import BridgeEnv
from tests.fakes.x_api import FakeXServer
from tests.feed_server import FEEDS, FeedServer
from tests.mastodon_server import MastodonServer

_n = itertools.count()
NEW_ITEM = """<item>
      <title>Christmas market stall</title>
      <link>http://example.coop/posts/market/</link>
      <pubDate>Tue, 01 Dec 2026 14:00:00 +0000</pubDate>
      <guid>http://example.coop/posts/market/</guid>
      <description>&lt;p&gt;Find us at the &lt;a href="http://example.coop/market"&gt;Christmas market&lt;/a&gt; on Saturday.&lt;/p&gt;</description>
    </item>
    """


@pytest.fixture
def env(tmp_path: Path, x_server: FakeXServer, mastodon: MastodonServer) -> Iterator[BridgeEnv]:
    yield BridgeEnv(tmp_path, x_server, mastodon)


def bridge(env: BridgeEnv, *args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(main, ["--config", str(env.config_path), "--log-format", "json", *args], input=input)


def account(env: BridgeEnv) -> tuple[str, str]:
    """A cooperative's Mastodon account: (username, token)."""
    username = f"feedcoop{next(_n)}"
    return username, env.mastodon.create_account(username)


def toots(env: BridgeEnv, name: str) -> list[str]:
    with env.ledger() as ledger:
        org = ledger.get_org(name)
    assert org is not None and org.token
    return [html_to_text(s["content"]) for s in reversed(env.mastodon.statuses(org.token, org.account_id))]


def hugo_with(*items: str, redate: bool = False) -> str:
    text = (FEEDS / "hugo.xml").read_text()
    if redate:  # the site regenerated with every date moved to today
        text = text.replace("Sun, 15 Nov 2026 09:00:00", "Tue, 01 Dec 2026 15:00:00").replace(
            "Tue, 01 Dec 2026 12:00:00", "Tue, 01 Dec 2026 15:00:00")
    at = text.index("<item>")
    return text[:at] + "".join(items) + text[at:]


def test_link_needs_either_an_x_account_or_a_feed(env: BridgeEnv) -> None:
    neither = bridge(env, "link", "coop")
    both = bridge(env, "link", "coop", "--x-username", "Coop", "--feed", "http://127.0.0.1:9/feed")
    for result in (neither, both):
        assert result.exit_code == 2 and "either --x-username" in result.output and "Traceback" not in result.output


def test_linking_a_homepage_with_several_feeds_lists_them_and_yes_takes_the_first(env: BridgeEnv, feed_server: FeedServer) -> None:
    home = feed_server.serve_file("homepage.html", "/")
    feed_server.serve_file("hugo.xml")
    feed_server.serve_file("jekyll.xml")
    _, token = account(env)
    result = bridge(env, "link", "riverside", "--feed", home, "--access-token", token, "--yes")
    assert result.exit_code == 0, result.output
    assert f"offers 2 feeds:\n  1. Example Co-op » Feed  {feed_server.url('/feeds/hugo.xml')}" in result.output
    assert "Taking the first (--yes)." in result.output
    assert f"Linked riverside: feed 'Posts on Riverside Housing Co-op' ({feed_server.url('/feeds/hugo.xml')})" in result.output
    assert "The 2 entries in the feed now are not posted; new entries will be." in result.output
    with env.ledger() as ledger:
        src = ledger.get_source("riverside")
    assert src is not None and (src.kind, src.account_id) == ("feed", feed_server.url("/feeds/hugo.xml"))


def test_linking_a_homepage_with_several_feeds_asks_which_one(env: BridgeEnv, feed_server: FeedServer) -> None:
    home = feed_server.serve_file("homepage.html", "/")
    feed_server.serve_file("hugo.xml")
    feed_server.serve_file("jekyll.xml")
    _, token = account(env)
    result = bridge(env, "link", "tisserands", "--feed", home, "--access-token", token, input="2\n")
    assert result.exit_code == 0, result.output
    assert "Which one" in result.output and "feed 'Scop Les Tisserands'" in result.output


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("html", "no feed at {url}: it is not a feed, and its page names none"),
        ("404", "feed {url} was not found (HTTP 404)"),
        ("410", "feed {url} is gone (HTTP 410)"),
        ("malformed", "feed {url} is not well-formed XML: line"),
    ],
)
def test_linking_a_bad_feed_names_the_feed_and_the_problem_and_stores_nothing(
    env: BridgeEnv, feed_server: FeedServer, fault: str, message: str
) -> None:
    feed_server.fault("/feed", fault)
    url = feed_server.url("/feed")
    _, token = account(env)
    result = bridge(env, "link", "badfeed", "--feed", url, "--access-token", token)
    assert result.exit_code == 2 and message.format(url=url) in result.output and "Traceback" not in result.output
    with env.ledger() as ledger:
        assert ledger.get_org("badfeed") is None


def test_a_linked_feed_posts_a_new_entry_once_an_idle_poll_is_one_empty_304_and_a_redated_entry_is_not_reposted(
    env: BridgeEnv, feed_server: FeedServer
) -> None:
    url = feed_server.serve_file("hugo.xml")
    _, token = account(env)
    assert bridge(env, "link", "garden", "--feed", url, "--access-token", token).exit_code == 0
    # The first poll after linking posts nothing old.
    first = bridge(env, "poll", "garden")
    assert first.exit_code == 0, first.output
    assert toots(env, "garden") == []
    # A new entry appears: exactly one toot, title, summary and link.
    feed_server.serve("/feeds/hugo.xml", hugo_with(NEW_ITEM))
    assert bridge(env, "poll", "garden").exit_code == 0
    assert toots(env, "garden") == [
        "Christmas market stall\n\nFind us at the Christmas market http://example.coop/market on Saturday."
        "\n\nhttp://example.coop/posts/market/"]
    # Idle: one conditional request, answered 304 with no body.
    before = len(feed_server.hits)
    idle = bridge(env, "poll", "garden")
    assert idle.exit_code == 0 and "fetched 0" in idle.output
    assert [(h.status, h.body_bytes) for h in feed_server.hits[before:]] == [(304, 0)]
    # The site re-dates every entry (a theme change, a rebuild): nothing is posted again.
    feed_server.serve("/feeds/hugo.xml", hugo_with(NEW_ITEM.replace("14:00:00", "16:00:00"), redate=True))
    assert bridge(env, "poll", "garden").exit_code == 0
    assert len(toots(env, "garden")) == 1


def test_a_feed_answering_410_shows_its_source_gone_in_status_and_orgs_and_recovers(
    env: BridgeEnv, feed_server: FeedServer
) -> None:
    url = feed_server.serve_file("hugo.xml")
    _, token = account(env)
    assert bridge(env, "link", "vanished", "--feed", url, "--access-token", token).exit_code == 0
    feed_server.fault("/feeds/hugo.xml", "410")
    poll = bridge(env, "poll", "vanished")
    assert poll.exit_code == 1 and f"feed {url} is gone (HTTP 410)" in poll.output
    status = bridge(env, "status", "vanished")
    assert f"vanished: active (feed {url} is gone (HTTP 410)" in status.output
    assert f"feed {url} (Posts on Riverside Housing Co-op) -> " in status.output and "source needs_relink" in status.output
    assert f"feed {url} (needs_relink)" in bridge(env, "orgs").output
    # The site comes back: the source is active again and the reason is gone.
    feed_server.serve_file("hugo.xml")
    assert bridge(env, "poll", "vanished").exit_code == 0
    status = bridge(env, "status", "vanished")
    assert "vanished: active\n" in status.output and "source needs_relink" not in status.output


def tiny_png() -> bytes:
    """A valid 1x1 PNG (the mock checks what it is sent)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0\xff\0\0")) + chunk(b"IEND", b"")


def test_a_mastodon_account_feed_entry_arrives_with_its_image_and_alt_text(env: BridgeEnv, feed_server: FeedServer) -> None:
    whole = (FEEDS / "mastodon.rss").read_text().replace("http://social.example/", feed_server.url("/"))
    first, second = whole.index("<item>"), whole.index("<item>", whole.index("<item>") + 1)
    feed_server.serve("/@coopradio.rss", whole[:first] + whole[second:])  # before the toot with the photo
    feed_server.serve("/system/media_attachments/files/113/578/000/original/studio.png", tiny_png(),
                      content_type="image/png")
    _, token = account(env)
    assert bridge(env, "link", "radio", "--feed", feed_server.url("/@coopradio.rss"), "--access-token", token).exit_code == 0
    feed_server.serve("/@coopradio.rss", whole)
    poll = bridge(env, "poll", "radio")
    assert poll.exit_code == 0 and "delivered 1" in poll.output, poll.output
    with env.ledger() as ledger:
        org = ledger.get_org("radio")
    assert org is not None and org.token
    (status,) = env.mastodon.statuses(org.token, org.account_id)
    assert html_to_text(status["content"]).startswith("On air tonight: the #cooperatives hour.")
    assert [m["description"] for m in status["media_attachments"]] == ["The studio microphone under a red ON AIR light"]


def test_preview_shows_what_a_feed_entry_would_become(env: BridgeEnv, feed_server: FeedServer) -> None:
    url = feed_server.serve_file("wordpress.xml")
    result = bridge(env, "preview", "--feed", url, "--post", "http://example.coop/?p=412")
    assert result.exit_code == 0, result.output
    assert "Asamblea general de diciembre" in result.output
    assert "http://example.coop/2026/12/01/asamblea-general-de-diciembre/" in result.output
    missing = bridge(env, "preview", "--feed", url, "--post", "nope")
    assert missing.exit_code == 2 and f"feed {url}: no entry with id 'nope'" in missing.output


def test_an_entry_whose_text_changes_later_edits_its_toot_and_a_new_date_alone_does_not(
    env: BridgeEnv, feed_server: FeedServer
) -> None:
    url = feed_server.serve_file("hugo.xml")
    _, token = account(env)
    assert bridge(env, "link", "edits", "--feed", url, "--access-token", token).exit_code == 0
    feed_server.serve("/feeds/hugo.xml", hugo_with(NEW_ITEM))
    assert bridge(env, "poll", "edits").exit_code == 0
    # Only the date moves: no edit.
    feed_server.serve("/feeds/hugo.xml", hugo_with(NEW_ITEM.replace("14:00:00", "14:30:00")))
    assert "fetched 0" in bridge(env, "poll", "edits").output
    # The words change (same guid): the toot is edited, not posted again.
    feed_server.serve("/feeds/hugo.xml", hugo_with(NEW_ITEM.replace("on Saturday", "on Sunday")))
    edit = bridge(env, "poll", "edits")
    assert edit.exit_code == 0, edit.output
    assert toots(env, "edits") == [
        "Christmas market stall\n\nFind us at the Christmas market http://example.coop/market on Sunday."
        "\n\nhttp://example.coop/posts/market/"]
    # An entry that was already in the feed when it was linked is never posted, edited or not.
    feed_server.serve("/feeds/hugo.xml", hugo_with(NEW_ITEM.replace("on Saturday", "on Sunday")).replace(
        "keep rents flat", "keep rents flat in 2027"))
    assert "fetched 0" in bridge(env, "poll", "edits").output
    assert len(toots(env, "edits")) == 1


def test_a_malformed_feed_fails_its_poll_with_the_feed_and_the_line_and_records_nothing(
    env: BridgeEnv, feed_server: FeedServer
) -> None:
    url = feed_server.serve_file("hugo.xml")
    _, token = account(env)
    assert bridge(env, "link", "broken", "--feed", url, "--access-token", token).exit_code == 0
    feed_server.fault("/feeds/hugo.xml", "malformed")
    poll = bridge(env, "poll", "broken")
    assert poll.exit_code == 1 and f"website: feed {url} is not well-formed XML: line " in poll.output
    assert "X:" not in poll.output and "Traceback" not in poll.output
    feed_server.serve("/feeds/hugo.xml", hugo_with(NEW_ITEM))  # fixed: the entry added meanwhile arrives
    assert "delivered 1" in bridge(env, "poll", "broken").output


def test_adding_a_feed_to_a_linked_x_organisation_needs_no_new_authorisation(env: BridgeEnv, feed_server: FeedServer) -> None:
    org = env.link("xandfeed")
    url = feed_server.serve_file("hugo.xml")

    added = bridge(env, "link", "xandfeed", "--feed", url)  # no token, no code, and no prompt

    assert added.exit_code == 0, added.output
    assert f"Added feed 'Posts on Riverside Housing Co-op' ({url}) to xandfeed as source 'feed': its posts go to" \
        f" @{org.acct} (linked already, no new authorisation)." in added.output
    assert "The 2 entries in the feed now are not posted; new entries will be." in added.output
    with env.ledger() as ledger:
        sources = {s.name: (s.kind, s.account_id, bool(s.cursor)) for s in ledger.sources("xandfeed")}
    assert sources == {"x": ("x", org.x_user_id, True), "feed": ("feed", url, True)}
    same = bridge(env, "link", "xandfeed", "--feed", url)
    assert same.exit_code == 0 and "already (source 'feed'); nothing changed" in same.output
    code = bridge(env, "link", "xandfeed", "--feed", url, "--instance", env.mastodon.base_url)
    assert code.exit_code == 2 and "--instance: organisation 'xandfeed' is linked already" in code.output


def test_a_feed_organisation_given_another_feed_replaces_it_after_asking_and_posts_nothing_old(
    env: BridgeEnv, feed_server: FeedServer
) -> None:
    hugo = feed_server.serve_file("hugo.xml")
    jekyll = feed_server.serve_file("jekyll.xml")
    _, token = account(env)
    assert bridge(env, "link", "moving", "--feed", hugo, "--access-token", token).exit_code == 0

    no = bridge(env, "link", "moving", "--feed", jekyll, input="n\n")
    assert no.exit_code == 1 and f"Organisation 'moving' reads feed {hugo}. Replace it with feed" in no.output
    moved = bridge(env, "link", "moving", "--feed", jekyll, "--yes")

    assert moved.exit_code == 0, moved.output
    assert f"Replaced feed {hugo} of moving with feed 'Scop Les Tisserands' ({jekyll}) (source 'x')." in moved.output
    with env.ledger() as ledger:
        assert [(s.name, s.kind, s.account_id) for s in ledger.sources("moving")] == [("x", "feed", jekyll)]
    assert "fetched 0" in bridge(env, "poll", "moving").output
    assert toots(env, "moving") == []


def test_an_x_account_is_not_put_over_a_feed_organisation(env: BridgeEnv, feed_server: FeedServer) -> None:
    url = feed_server.serve_file("hugo.xml")
    _, token = account(env)
    assert bridge(env, "link", "feedonly", "--feed", url, "--access-token", token).exit_code == 0
    result = bridge(env, "link", "feedonly", "--x-username", "Someone", "--yes")
    assert result.exit_code == 2 and f"organisation 'feedonly' reads feed {url}; an X account can not be added" in result.output
    with env.ledger() as ledger:
        assert [(s.kind, s.account_id) for s in ledger.sources("feedonly")] == [("feed", url)]


CATEGORISED = NEW_ITEM.replace("<guid>", "<category>Christmas market</category>\n      <guid>")


def test_each_organisation_says_its_feed_entries_as_its_own_feed_policy_asks(env: BridgeEnv, feed_server: FeedServer) -> None:
    env.write_config("organisations:\n  notes:\n    feed:\n      post: full\n      categories_as_hashtags: true\n")
    articles = feed_server.serve_file("hugo.xml")
    notes = feed_server.serve("/notes.xml", hugo_with())
    for name, url in (("articles", articles), ("notes", notes)):
        _, token = account(env)
        assert bridge(env, "link", name, "--feed", url, "--access-token", token).exit_code == 0
    feed_server.serve("/feeds/hugo.xml", hugo_with(CATEGORISED))
    feed_server.serve("/notes.xml", hugo_with(CATEGORISED))
    assert "delivered 1" in bridge(env, "poll", "articles", "notes").output

    assert toots(env, "articles") == [
        "Christmas market stall\n\nFind us at the Christmas market http://example.coop/market on Saturday."
        "\n\nhttp://example.coop/posts/market/"]
    assert toots(env, "notes") == [
        "Find us at the Christmas market http://example.coop/market on Saturday.\n\n#ChristmasMarket"
        "\n\nhttp://example.coop/posts/market/"]
    shown = bridge(env, "check-config")
    assert "feed:\n      post: full\n      categories_as_hashtags: true" in shown.output


def test_a_feed_policy_with_an_unknown_mode_names_its_place(env: BridgeEnv) -> None:
    env.write_config("organisations:\n  notes:\n    feed:\n      post: everything\n")
    result = bridge(env, "check-config")
    assert result.exit_code == 2 and "organisations.notes.feed.post" in result.output and "title_link" in result.output


def test_the_x_read_budget_projection_counts_only_x_sources(env: BridgeEnv, feed_server: FeedServer) -> None:
    import json

    url = feed_server.serve_file("hugo.xml")
    _, token = account(env)
    assert bridge(env, "link", "feedcoop", "--feed", url, "--access-token", token).exit_code == 0
    feed_only = json.loads(bridge(env, "status", "--json").output)["budget"]
    assert (feed_only["projected_requests_per_15min"], feed_only["projected_posts_per_month"]) == (0, 0)
    env.link("xcoop")
    with_x = json.loads(bridge(env, "status", "--json").output)["budget"]
    x_requests = with_x["projected_requests_per_15min"]
    assert x_requests > 0
    # Adding a feed to the X organisation costs no X reads either.
    assert bridge(env, "link", "xcoop", "--feed", feed_server.serve("/more.xml", hugo_with())).exit_code == 0
    assert json.loads(bridge(env, "status", "--json").output)["budget"]["projected_requests_per_15min"] == x_requests


def test_a_feed_backfill_brings_over_the_entries_the_feed_still_holds_oldest_first_once(
    env: BridgeEnv, feed_server: FeedServer
) -> None:
    url = feed_server.serve_file("hugo.xml")
    _, token = account(env)
    assert bridge(env, "link", "history", "--feed", url, "--access-token", token).exit_code == 0

    archive = bridge(env, "backfill", "history", "--archive", "x.zip", "--yes")
    assert archive.exit_code == 2 and "reads a feed source, not X; bring over what it still holds with --api" in archive.output
    done = bridge(env, "backfill", "history", "--api", "--yes", "--pace", "0")
    assert done.exit_code == 0, done.output
    said = toots(env, "history")
    assert [t.split("\n", 1)[0] for t in said] == ["Rent review", "Garden work day"]  # oldest first
    again = bridge(env, "backfill", "history", "--api", "--yes", "--pace", "0")
    assert again.exit_code == 0 and "nothing to bring over" in again.output
    assert "fetched 0" in bridge(env, "poll", "history").output
    assert toots(env, "history") == said


def test_an_added_feed_is_polled_next_to_the_x_account(env: BridgeEnv, feed_server: FeedServer) -> None:
    org = env.link("xfeed")
    url = feed_server.serve_file("hugo.xml")
    assert bridge(env, "link", "xfeed", "--feed", url).exit_code == 0
    assert "fetched 0" in bridge(env, "poll", "xfeed").output  # nothing old from the feed

    feed_server.serve("/feeds/hugo.xml", hugo_with(NEW_ITEM))
    env.publish(env.tweet(org, "Still on X"))
    poll = bridge(env, "poll", "xfeed")

    assert poll.exit_code == 0, poll.output
    assert sorted(toots(env, "xfeed")) == [
        "Christmas market stall\n\nFind us at the Christmas market http://example.coop/market on Saturday."
        "\n\nhttp://example.coop/posts/market/", "Still on X"]
