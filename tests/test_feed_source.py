"""The feed source (bridge/sources/feed.py) against a real HTTP server on loopback (tests/feed_server.py)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from bridge.errors import SourceError
from bridge.model import SourcePost
from bridge.registry import make_source
from bridge.sources.feed import FeedCursor, FeedGone, FeedSettings, FeedSource, discover, html_to_text
from tests.feed_server import FEEDS, FeedServer

NOW = datetime(2026, 12, 1, 15, 0, tzinfo=timezone.utc)
NEW_ITEM = """<item>
      <title>Christmas market stall</title>
      <link>http://example.coop/posts/market/</link>
      <pubDate>Tue, 01 Dec 2026 14:00:00 +0000</pubDate>
      <guid>http://example.coop/posts/market/</guid>
      <description>&lt;p&gt;Find us at the &lt;a href="http://example.coop/market"&gt;Christmas market&lt;/a&gt;.&lt;/p&gt;</description>
    </item>
    """


def source(**kw: object) -> FeedSource:
    return FeedSource(FeedSettings(**kw), clock=lambda: NOW)  # type: ignore[arg-type]


def hugo_with(*items: str) -> str:
    """hugo.xml with ``items`` added at the top, as Hugo puts a new post."""
    text = (FEEDS / "hugo.xml").read_text()
    at = text.index("<item>")
    return text[:at] + "".join(items) + text[at:]


def linked(feed_server: FeedServer, src: FeedSource, path: str = "/feeds/hugo.xml") -> str:
    cursor, _ = src.start_cursor(feed_server.url(path))
    return cursor


@pytest.mark.parametrize(
    ("name", "ids", "lang"),
    [
        ("wordpress.xml", ["http://example.coop/?p=412", "http://example.coop/?p=398"], "es-ES"),
        ("ghost.xml", ["6745a1f0c2d3e4001f9b7c21", "6731b2e0a1b2c3001f9b7b10"], None),
        ("jekyll.xml", ["http://example.coop/2026/12/01/portes-ouvertes", "http://example.coop/2026/11/15/bilan"], "fr"),
        ("hugo.xml", ["http://example.coop/posts/garden-day/", "http://example.coop/posts/rent-review/"], "en-gb"),
        ("mastodon.rss", ["http://social.example/@coopradio/113578000000000001",
                          "http://social.example/@coopradio/113570000000000002"], None),
        ("podcast.xml", ["worker-owned-ep12", "worker-owned-ep11"], "en"),
        ("jsonfeed.json", ["http://example.coop/2026/12/01/paneel", "2"], "nl"),
    ],
)
def test_each_real_world_feed_gives_its_entries_by_guid_or_id_with_dates_and_language(
    feed_server: FeedServer, name: str, ids: list[str], lang: str | None
) -> None:
    url = feed_server.serve_file(name)
    posts = list(source().read_range(url))
    assert [p.id for p in posts] == ids
    assert all(p.created_at.tzinfo is not None and p.created_at < NOW for p in posts)
    assert all(p.lang == lang for p in posts)
    assert all(p.text.strip() for p in posts)


def test_linking_takes_every_entry_already_in_the_feed_as_old(feed_server: FeedServer) -> None:
    feed_server.serve_file("wordpress.xml")
    src = source()
    cursor = linked(feed_server, src, "/feeds/wordpress.xml")
    feed_server.serve("/feeds/wordpress.xml", (FEEDS / "wordpress.xml").read_bytes() + b" ")  # a new ETag, same entries
    read = src.read_new(feed_server.url("/feeds/wordpress.xml"), cursor)
    assert read.posts == [] and read.unreadable == []


def test_a_new_entry_is_read_once_and_an_idle_poll_is_one_conditional_request_with_no_body(feed_server: FeedServer) -> None:
    url = feed_server.serve_file("hugo.xml")
    src = source()
    cursor = linked(feed_server, src)
    feed_server.serve("/feeds/hugo.xml", hugo_with(NEW_ITEM), content_type="application/rss+xml")
    read = src.read_new(url, cursor)
    assert [p.id for p in read.posts] == ["http://example.coop/posts/market/"]
    assert read.requests == 1 and read.cursor
    before = len(feed_server.hits)
    idle = src.read_new(url, read.cursor)
    hits = feed_server.hits[before:]
    assert idle.posts == [] and idle.cursor is None and idle.requests == 1
    assert [(h.status, h.body_bytes) for h in hits] == [(304, 0)]
    assert hits[0].headers["if-none-match"] and hits[0].headers["if-modified-since"]


def test_a_server_without_validators_costs_one_full_get_and_repeats_nothing(feed_server: FeedServer) -> None:
    url = feed_server.serve("/feed", hugo_with(NEW_ITEM), etag=False, last_modified=None)
    src = source()
    cursor, _ = src.start_cursor(url)
    read = src.read_new(url, cursor)
    assert read.posts == [] and read.requests == 1
    assert feed_server.requests_to("/feed")[-1].status == 200


def test_a_redated_or_reordered_entry_is_not_new(feed_server: FeedServer) -> None:
    url = feed_server.serve_file("hugo.xml")
    src = source()
    cursor = linked(feed_server, src)
    text = (FEEDS / "hugo.xml").read_text()
    redated = text.replace("Sun, 15 Nov 2026 09:00:00 +0000", "Tue, 01 Dec 2026 14:30:00 +0000")
    first, second = redated.index("<item>"), redated.index("<item>", redated.index("<item>") + 1)
    end = redated.index("</channel>")
    reordered = redated[:first] + redated[second:end].rstrip() + "\n    " + redated[first:second] + redated[end:]
    feed_server.serve("/feeds/hugo.xml", reordered)
    read = src.read_new(url, cursor)
    assert read.posts == []


def test_title_link_policy_posts_the_title_a_short_summary_and_the_link(feed_server: FeedServer) -> None:
    url = feed_server.serve_file("wordpress.xml")
    post = next(iter(source().read_range(url)))
    assert post.text.startswith("Asamblea general de diciembre\n\nConvocamos a todas las socias")
    assert post.text.endswith("\n\nhttp://example.coop/2026/12/01/asamblea-general-de-diciembre/")
    assert [u.expanded_url for u in post.urls][-1] == "http://example.coop/2026/12/01/asamblea-general-de-diciembre/"


def test_full_policy_posts_the_whole_text_with_links_kept_and_relative_links_resolved(feed_server: FeedServer) -> None:
    url = feed_server.serve_file("jekyll.xml")
    post = next(iter(source(post="full").read_range(url)))
    assert post.text == ("Venez voir les métiers à tisser le samedi 5 décembre. Plan d’accès http://example.coop/plan.html."
                         "\n\nhttp://example.coop/2026/12/01/portes-ouvertes.html")


def test_html_becomes_plain_text_with_links_kept_and_mastodon_hashtag_links_left_as_words() -> None:
    text, images = html_to_text('<p>On <a href="https://social.example/tags/coop" class="hashtag">#<span>coop</span></a>'
                                ' see <a href="https://a.example/x">our page</a> or <a href="https://b.example/">b.example</a>'
                                '</p><p>Two<br>lines</p><img src="/i.png" alt="A cat"><script>x()</script>',
                                "https://site.example/post/")
    assert text == "On #coop see our page https://a.example/x or b.example\n\nTwo\nlines"
    assert images == [("https://site.example/i.png", "A cat")]


def test_images_and_media_content_become_media_with_their_alt_text(feed_server: FeedServer) -> None:
    mastodon = feed_server.serve_file("mastodon.rss")
    toot = next(iter(source().read_range(mastodon)))
    assert [(m.url, m.alt_text) for m in toot.media] == [
        ("http://social.example/system/media_attachments/files/113/578/000/original/studio.png",
         "The studio microphone under a red ON AIR light")]
    assert toot.text.startswith("On air tonight: the #cooperatives hour.")
    wordpress = feed_server.serve_file("wordpress.xml")
    article = next(iter(source().read_range(wordpress)))
    assert [(m.url, m.alt_text) for m in article.media] == [
        ("http://example.coop/wp-content/uploads/2026/12/horno-1024x683.jpg", "El horno de leña encendido")]
    ghost = feed_server.serve_file("ghost.xml")
    assert [m.url for m in next(iter(source().read_range(ghost))).media] == [
        "http://example.coop/content/images/2026/12/lastenrad.jpg"]


def test_a_podcast_episode_posts_its_link_and_no_audio_as_media(feed_server: FeedServer) -> None:
    url = feed_server.serve_file("podcast.xml")
    episode = next(iter(source().read_range(url)))
    assert episode.media == ()
    assert episode.text == ("Episode 12: The bakery that votes\n\nWe visit a bakery run by its twelve workers."
                            "\n\nhttp://example.coop/podcast/12")


def test_categories_become_hashtags_only_when_the_policy_says_so(feed_server: FeedServer) -> None:
    url = feed_server.serve_file("wordpress.xml")
    plain = next(iter(source().read_range(url)))
    tagged = next(iter(source(categories_as_hashtags=True).read_range(url)))
    assert "#" not in plain.text
    assert "\n\n#Asambleas #EconomíaSocial\n\n" in tagged.text


def test_a_json_feed_is_read_as_plain_json(feed_server: FeedServer) -> None:
    url = feed_server.serve_file("jsonfeed.json")
    first, second = source().read_range(url)
    assert first.text.startswith("Honderdste paneel\n\nHet honderdste paneel ligt op het dak.")
    assert [m.url for m in first.media] == ["http://example.coop/img/paneel.jpg"]
    assert second.text == "Ledenvergadering op 20 november.\n\nhttp://example.coop/2026/11/10/ledenvergadering"


@pytest.mark.parametrize(("kind", "status"), [("404", 404), ("410", 410)])
def test_a_missing_or_gone_feed_raises_feed_gone_naming_the_feed(feed_server: FeedServer, kind: str, status: int) -> None:
    feed_server.fault("/feed", kind)
    with pytest.raises(FeedGone, match=rf"feed {feed_server.url('/feed')} .*HTTP {status}") as info:
        source().read_new(feed_server.url("/feed"), FeedCursor().dump())
    assert info.value.status == status


def test_malformed_xml_is_refused_with_its_line(feed_server: FeedServer) -> None:
    feed_server.fault("/feed", "malformed")
    with pytest.raises(SourceError, match=r"feed http://127\.0\.0\.1:\d+/feed is not well-formed XML: line \d+"):
        source().read_new(feed_server.url("/feed"), FeedCursor().dump())


def test_an_html_page_is_refused_as_not_a_feed(feed_server: FeedServer) -> None:
    feed_server.fault("/", "html")
    with pytest.raises(SourceError, match="is an HTML page, not a feed"):
        source().read_new(feed_server.url("/"), FeedCursor().dump())


def test_a_feed_over_the_size_cap_is_refused_without_reading_it_all(feed_server: FeedServer) -> None:
    feed_server.fault("/feed", "oversize", size=300_000)
    with pytest.raises(SourceError, match=r"over the limit of 100000"):
        source(max_bytes=100_000).read_new(feed_server.url("/feed"), FeedCursor().dump())


def test_a_gzip_bomb_is_refused_at_the_decompression_cap(feed_server: FeedServer) -> None:
    feed_server.fault("/feed", "gzip_bomb", size=50_000_000)
    with pytest.raises(SourceError, match=r"unpacks to more than 1000000 bytes \(gzip encoding\)"):
        source(max_decoded_bytes=1_000_000).read_new(feed_server.url("/feed"), FeedCursor().dump())


def test_a_wrong_charset_is_read_in_the_charset_the_bytes_are_in(feed_server: FeedServer) -> None:
    feed_server.fault("/feed", "wrong_charset")
    post = next(iter(source().read_range(feed_server.url("/feed"))))
    assert post.text.startswith("Crème brûlée")


def test_a_permanent_redirect_is_remembered_and_the_next_poll_goes_to_the_new_url(feed_server: FeedServer) -> None:
    feed_server.serve_file("hugo.xml", "/new.xml")
    feed_server.fault("/old.xml", "moved", to="/new.xml")
    src = source()
    cursor, meta = src.start_cursor(feed_server.url("/old.xml"))
    assert meta["url"] == feed_server.url("/new.xml")
    assert FeedCursor.load(cursor).url == feed_server.url("/new.xml")
    src.read_new(feed_server.url("/old.xml"), cursor)
    assert len(feed_server.requests_to("/old.xml")) == 1  # only the link's request


def test_an_entry_without_id_or_link_is_reported_and_the_others_are_read(feed_server: FeedServer) -> None:
    url = feed_server.serve_file("hugo.xml")
    src = source()
    cursor = linked(feed_server, src)
    feed_server.serve("/feeds/hugo.xml", hugo_with("<item><title>Nameless</title></item>", NEW_ITEM))
    read = src.read_new(url, cursor)
    assert [p.id for p in read.posts] == ["http://example.coop/posts/market/"]
    assert [u.error for u in read.unreadable] == [f"feed {url}: an entry has no id and no link: skipped"]


def test_an_entry_dated_in_the_future_is_taken_as_made_now(feed_server: FeedServer) -> None:
    url = feed_server.serve_file("hugo.xml")
    src = source()
    cursor = linked(feed_server, src)
    feed_server.serve("/feeds/hugo.xml", hugo_with(NEW_ITEM.replace("Tue, 01 Dec 2026", "Fri, 01 Dec 2028")))
    (post,) = src.read_new(url, cursor).posts
    assert post.created_at == NOW


def test_a_homepage_offers_its_feeds_through_link_rel_alternate(feed_server: FeedServer) -> None:
    home = feed_server.serve_file("homepage.html", "/")
    feed_server.serve_file("hugo.xml")
    assert discover(source(), home) == [
        (feed_server.url("/feeds/hugo.xml"), "Example Co-op » Feed"),
        (feed_server.url("/feeds/jekyll.xml"), "Example Co-op » Atom"),
    ]
    assert discover(source(), feed_server.url("/feeds/hugo.xml")) == [
        (feed_server.url("/feeds/hugo.xml"), "Posts on Riverside Housing Co-op")]


def test_the_registry_makes_a_feed_source(tmp_path: Path) -> None:
    from bridge.config import Config

    src = make_source("feed", Config(path=None, database=tmp_path / "l.db"))
    assert src.kind == "feed" and isinstance(src, FeedSource)


def test_neutral_carries_text_links_media_and_language(feed_server: FeedServer) -> None:
    url = feed_server.serve_file("mastodon.rss")
    src = source()
    toot: SourcePost = next(iter(src.read_range(url)))
    post = src.neutral(toot, url)
    assert post.permalink == "http://social.example/@coopradio/113578000000000001"
    assert post.text == toot.text and post.media[0].alt_text.startswith("The studio microphone")
    assert post.links[-1].url == post.permalink and post.text[post.links[-1].start:post.links[-1].end] == post.permalink


def test_the_feed_section_of_the_configuration_sets_the_policy_and_refuses_unknown_modes(tmp_path: Path) -> None:
    from bridge.config import load_config
    from bridge.errors import ConfigError

    path = tmp_path / "config.yaml"
    path.write_text("database: ledger.db\nfeed:\n  post: full\n  categories_as_hashtags: true\n  max_bytes: 2048\n")
    config = load_config(path, environ={})
    assert (config.feed.post, config.feed.categories_as_hashtags, config.feed.max_bytes) == ("full", True, 2048)
    src = make_source("feed", config)
    assert isinstance(src, FeedSource) and src.settings.post == "full"
    path.write_text("database: ledger.db\nfeed:\n  post: everything\n")
    with pytest.raises(ConfigError, match="feed.post"):
        load_config(path, environ={})


def test_an_image_on_a_private_address_that_is_not_the_feeds_own_host_is_not_fetched(
    feed_server: FeedServer, tmp_path: Path
) -> None:
    from bridge.errors import PermanentError

    url = feed_server.serve_file("mastodon.rss")
    feed_server.serve("/img.png", b"\x89PNG fake", content_type="image/png")
    src = source()
    post = next(iter(src.read_range(url)))
    src.neutral(post, url)  # what the pipeline does before it fetches media: the feed's host is the site's own
    path, mime = src.open_media(feed_server.url("/img.png"), tmp_path / "a", 1000)
    assert (path.read_bytes(), mime) == (b"\x89PNG fake", "image/png")
    other = feed_server.url("/img.png").replace("127.0.0.1", "localhost")
    with pytest.raises(PermanentError, match=r"localhost is a private address \(.*\) and not the feed's own host"):
        src.open_media(other, tmp_path / "b", 1000)
    # A redirect from the site's host to a private one is refused at the hop.
    feed_server.fault("/moved.png", "moved", to=other)
    with pytest.raises(PermanentError, match="private address"):
        src.open_media(feed_server.url("/moved.png"), tmp_path / "c", 1000)
