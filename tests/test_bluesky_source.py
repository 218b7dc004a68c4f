"""The Bluesky source (issue 15) against the reference PDS: real records posted through its API, read back
with the source over real HTTP, converted to the neutral model. Lexicons:
https://github.com/bluesky-social/atproto/tree/main/lexicons
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from bridge.config import load_config
from bridge.errors import ConfigError, PermanentError, SourceError
from bridge.ledger import SourceAccount as LedgerSource
from bridge.model import Handle, Link, SourcePost
from bridge.registry import make_source
from bridge.sources.bluesky import BlueskyCursor, BlueskySource, tid_at, tid_micros
from tests.bluesky_pds import BlueskyPds
from tests.bridge_env import BridgeEnv
from tests.fakes.x_api import FakeXServer
from tests.mastodon_server import MastodonServer
from tests.test_bluesky_pds import CREATED_AT, auth, tiny_png

pytestmark = pytest.mark.bluesky

POST = "app.bsky.feed.post"
REPOST = "app.bsky.feed.repost"


def create(pds: BlueskyPds, did: str, jwt: str, collection: str, record: dict[str, Any]) -> dict[str, str]:
    body = {"repo": did, "collection": collection, "record": {"$type": collection, "createdAt": CREATED_AT, **record}}
    r = pds.client.post(pds.xrpc("com.atproto.repo.createRecord"), headers=auth(jwt), json=body)
    assert r.status_code == 200, r.text
    return {"uri": r.json()["uri"], "cid": r.json()["cid"]}


def rkey(ref: dict[str, str]) -> str:
    return ref["uri"].rsplit("/", 1)[1]


def source_for(pds: BlueskyPds) -> BlueskySource:
    return BlueskySource(plc_url=pds.plc_url, appview_url=pds.url, timeout=10)


@pytest.fixture(scope="module")
def posted(bluesky_pds: BlueskyPds) -> dict[str, Any]:
    """One account with every kind of record the source reads, and a friend it mentions and reposts."""
    pds = bluesky_pds
    start = datetime.now(timezone.utc) - timedelta(seconds=1)
    did, jwt, _ = pds.create_account("coop-read.test")
    friend, friend_jwt, _ = pds.create_account("friend-read.test")
    friends_post = create(pds, friend, friend_jwt, POST, {"text": "from a friend"})

    text = "Grüße an @friend-read.test: geno.social/about… #Genossenschaft"
    raw = text.encode()
    m, lk, tg = raw.index(b"@friend"), raw.index(b"geno.social"), raw.index(b"#Gen")
    facets = [
        {"index": {"byteStart": m, "byteEnd": m + len(b"@friend-read.test")},
         "features": [{"$type": "app.bsky.richtext.facet#mention", "did": friend}]},
        {"index": {"byteStart": lk, "byteEnd": lk + len("geno.social/about…".encode())},
         "features": [{"$type": "app.bsky.richtext.facet#link", "uri": "https://geno.social/about?lang=de"}]},
        {"index": {"byteStart": tg, "byteEnd": len(raw)},
         "features": [{"$type": "app.bsky.richtext.facet#tag", "tag": "Genossenschaft"}]},
    ]
    refs: dict[str, Any] = {"did": did, "jwt": jwt, "friend": friend, "start": start}
    refs["facets"] = create(pds, did, jwt, POST, {"text": text, "facets": facets, "langs": ["de"]})

    png = tiny_png()
    up = pds.client.post(pds.xrpc("com.atproto.repo.uploadBlob"), headers={**auth(jwt), "Content-Type": "image/png"},
                         content=png)
    assert up.status_code == 200, up.text
    refs["png"] = png
    refs["image"] = create(pds, did, jwt, POST, {"text": "Ein Bild", "embed": {
        "$type": "app.bsky.embed.images", "images": [{"alt": "Ein roter Punkt", "image": up.json()["blob"]}]}})
    refs["thread1"] = create(pds, did, jwt, POST, {"text": "Thread 1/2"})
    refs["thread2"] = create(pds, did, jwt, POST, {"text": "Thread 2/2", "reply": {
        "root": refs["thread1"], "parent": refs["thread1"]}})
    refs["quote"] = create(pds, did, jwt, POST, {"text": "Quoting myself", "embed": {
        "$type": "app.bsky.embed.record", "record": refs["thread1"]}})
    refs["quote_media"] = create(pds, did, jwt, POST, {"text": "Bild und Zitat", "embed": {
        "$type": "app.bsky.embed.recordWithMedia", "record": {"$type": "app.bsky.embed.record", "record": refs["thread1"]},
        "media": {"$type": "app.bsky.embed.images", "images": [{"alt": "Noch ein Punkt", "image": up.json()["blob"]}]}}})
    refs["card"] = create(pds, did, jwt, POST, {"text": "Read this", "embed": {
        "$type": "app.bsky.embed.external",
        "external": {"uri": "https://example.org/news", "title": "News", "description": "d"}}})
    refs["labelled"] = create(pds, did, jwt, POST, {"text": "careful", "labels": {
        "$type": "com.atproto.label.defs#selfLabels", "values": [{"val": "graphic-media"}]}})
    refs["repost_own"] = create(pds, did, jwt, REPOST, {"subject": refs["thread1"]})
    refs["repost_friend"] = create(pds, did, jwt, REPOST, {"subject": friends_post})
    refs["friends_post"] = friends_post
    return refs


def read_all(pds: BlueskyPds, posted: dict[str, Any]) -> tuple[BlueskySource, dict[str, SourcePost], Any]:
    source = source_for(pds)
    result = source.read_new(posted["did"], source.cursor_at(posted["start"]))
    assert result.unreadable == []
    return source, {p.id: p for p in result.posts}, result


def test_a_handle_resolves_to_its_did_its_pds_and_back(bluesky_pds: BlueskyPds, posted: dict[str, Any]) -> None:
    with source_for(bluesky_pds) as source:
        account = source.resolve("@coop-read.test")
    assert (account.did, account.handle, account.pds) == (posted["did"], "coop-read.test", bluesky_pds.url)


def test_an_unknown_handle_is_an_error_naming_it(bluesky_pds: BlueskyPds) -> None:
    with source_for(bluesky_pds) as source:
        with pytest.raises(SourceError, match=r"nobody-here\.test.*resolveHandle.*HTTP 400"):
            source.resolve("nobody-here.test")
        with pytest.raises(PermanentError, match="not valid"):
            source.resolve("not a handle")


def test_every_post_and_repost_since_the_cursor_is_read_newest_first(
    bluesky_pds: BlueskyPds, posted: dict[str, Any]
) -> None:
    source, posts, result = read_all(bluesky_pds, posted)
    names = ["facets", "image", "thread1", "thread2", "quote", "quote_media", "card", "labelled", "repost_own", "repost_friend"]
    assert [p.id for p in result.posts] == [rkey(posted[n]) for n in reversed(names)]
    assert result.complete
    keys = [source.sort_key(p.id) for p in result.posts]
    assert keys == sorted(keys, reverse=True)
    # The sort key is the TID's value: microseconds first.
    micros = tid_micros(result.posts[0].id)
    assert micros is not None and abs(micros / 1e6 - datetime.now(timezone.utc).timestamp()) < 120


def test_an_idle_read_is_one_request(bluesky_pds: BlueskyPds, posted: dict[str, Any]) -> None:
    source, _posts, first = read_all(bluesky_pds, posted)
    assert first.cursor is not None

    idle = source.read_new(posted["did"], first.cursor)

    assert (idle.entries, idle.requests, idle.cursor) == ([], 1, None)


def test_a_new_post_after_the_cursor_is_read_alone(bluesky_pds: BlueskyPds, posted: dict[str, Any]) -> None:
    did, jwt, _ = bluesky_pds.create_account("coop-next.test")
    source = source_for(bluesky_pds)
    create(bluesky_pds, did, jwt, POST, {"text": "old"})
    first = source.read_new(did, None)
    assert [p.text for p in first.posts] == ["old"]

    new = create(bluesky_pds, did, jwt, POST, {"text": "new"})
    second = source.read_new(did, first.cursor)

    assert [p.id for p in second.posts] == [rkey(new)]
    assert second.cursor is not None
    later, earlier = BlueskyCursor.load(second.cursor).rev, BlueskyCursor.load(first.cursor).rev
    assert source.sort_key(later) > source.sort_key(earlier)


def test_facets_at_utf8_byte_offsets_become_links_mentions_and_tags(
    bluesky_pds: BlueskyPds, posted: dict[str, Any]
) -> None:
    source, posts, _ = read_all(bluesky_pds, posted)
    post = source.neutral(posts[rkey(posted["facets"])], posted["did"])

    url = "https://geno.social/about?lang=de"
    assert post.text == f"Grüße an @friend-read.test: {url} #Genossenschaft"
    [link] = post.links
    assert link == Link(url, post.text.index(url), post.text.index(url) + len(url))
    assert post.mentions == (Handle("bluesky", "friend-read.test"),)
    assert post.tags == ("Genossenschaft",)
    assert post.lang == "de"
    assert post.network == "bluesky"
    assert post.permalink == f"https://bsky.app/profile/coop-read.test/post/{rkey(posted['facets'])}"
    assert source.permalink("coop-read.test", "3abc") == "https://bsky.app/profile/coop-read.test/post/3abc"


def test_an_image_keeps_its_alt_text_and_downloads_from_the_pds(
    bluesky_pds: BlueskyPds, posted: dict[str, Any], tmp_path: Path
) -> None:
    source, posts, _ = read_all(bluesky_pds, posted)
    post = source.neutral(posts[rkey(posted["image"])], posted["did"])

    [image] = post.media
    assert (image.type, image.alt_text) == ("photo", "Ein roter Punkt")
    [url] = image.candidates
    assert url.startswith(f"{bluesky_pds.url}/xrpc/com.atproto.sync.getBlob?")
    path, mime = source.open_media(url, tmp_path / "img", 10_000)
    assert (path.read_bytes(), mime) == (posted["png"], "image/png")

    with pytest.raises(PermanentError, match="over the 10-byte limit"):
        source.open_media(url, tmp_path / "small", 10)
    elsewhere = url.replace(bluesky_pds.url, "http://127.0.0.9:1")
    with pytest.raises(PermanentError, match="not on the PDS of"):
        source.open_media(elsewhere, tmp_path / "other", 10_000)


def test_a_self_thread_a_quote_and_reposts_become_references(
    bluesky_pds: BlueskyPds, posted: dict[str, Any]
) -> None:
    source, posts, _ = read_all(bluesky_pds, posted)
    did, first = posted["did"], rkey(posted["thread1"])

    reply = source.neutral(posts[rkey(posted["thread2"])], did)
    assert reply.reply_to is not None
    assert (reply.reply_to.id, reply.reply_to.own) == (first, True)
    assert reply.reply_to.url == f"https://bsky.app/profile/coop-read.test/post/{first}"

    quote = source.neutral(posts[rkey(posted["quote"])], did)
    assert quote.quote_of is not None and (quote.quote_of.id, quote.quote_of.own) == (first, True)
    assert quote.text.endswith(quote.quote_of.url)
    assert quote.links[-1].post_id == first

    both = source.neutral(posts[rkey(posted["quote_media"])], did)
    assert both.quote_of is not None and both.quote_of.id == first
    assert [m.alt_text for m in both.media] == ["Noch ein Punkt"]

    own = source.neutral(posts[rkey(posted["repost_own"])], did)
    assert own.repost_of is not None and (own.repost_of.id, own.repost_of.own) == (first, True)
    friends = source.neutral(posts[rkey(posted["repost_friend"])], did)
    assert friends.repost_of is not None
    assert (friends.repost_of.id, friends.repost_of.own) == (rkey(posted["friends_post"]), False)
    friend_rkey = rkey(posted["friends_post"])
    assert friends.repost_of.url == f"https://bsky.app/profile/{posted['friend']}/post/{friend_rkey}"


def test_a_link_card_is_linked_and_a_self_label_makes_it_sensitive_with_a_warning(
    bluesky_pds: BlueskyPds, posted: dict[str, Any]
) -> None:
    source, posts, _ = read_all(bluesky_pds, posted)
    card = source.neutral(posts[rkey(posted["card"])], posted["did"])
    assert card.text == "Read this\n\nhttps://example.org/news"
    assert [link.url for link in card.links] == ["https://example.org/news"]

    labelled = source.neutral(posts[rkey(posted["labelled"])], posted["did"])
    assert labelled.sensitive
    assert "Sensitive" in labelled.content_warning
    assert not source.neutral(posts[rkey(posted["card"])], posted["did"]).sensitive


def test_tids_round_trip_their_time() -> None:
    when = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
    assert tid_micros(tid_at(when)) == int(when.timestamp() * 1_000_000)
    assert tid_micros("not-a-tid") is None
    assert BlueskySource().sort_key("not-a-tid") == 0


def test_a_bluesky_organisation_is_bridged_to_mastodon_once_per_post_without_bare_mentions(
    bluesky_pds: BlueskyPds, tmp_path: Path, x_server: FakeXServer, mastodon: MastodonServer
) -> None:
    pds = bluesky_pds
    did, jwt, _ = pds.create_account("coop-e2e.test")
    friend, _, _ = pds.create_account("friend-e2e.test")
    env = BridgeEnv(tmp_path, x_server, mastodon,
                    extra_config=f"bluesky:\n  plc_url: {pds.plc_url}\n  appview_url: {pds.url}\n  timeout: 10\n")
    with source_for(pds) as source:
        start = source.cursor_at(datetime.now(timezone.utc) - timedelta(seconds=1))
    org = env.link("coop-bsky", "coop-e2e.test", x_user_id=did, cursor=start)
    with env.ledger() as ledger:
        ledger.add_source(LedgerSource("coop-bsky", "x", "bluesky", did, "coop-e2e.test"), datetime.now(timezone.utc))

    text = "Hallo @friend-e2e.test und Grüße"
    raw = text.encode()
    m = raw.index(b"@friend")
    mention = [{"index": {"byteStart": m, "byteEnd": m + len(b"@friend-e2e.test")},
                "features": [{"$type": "app.bsky.richtext.facet#mention", "did": friend}]}]
    first = create(pds, did, jwt, POST, {"text": text, "facets": mention})
    create(pds, did, jwt, POST, {"text": "Zweiter Teil", "reply": {"root": first, "parent": first}})
    up = pds.client.post(pds.xrpc("com.atproto.repo.uploadBlob"), headers={**auth(jwt), "Content-Type": "image/png"},
                         content=tiny_png())
    assert up.status_code == 200, up.text
    create(pds, did, jwt, REPOST, {"subject": first})
    create(pds, did, jwt, POST, {"text": "Vorsicht", "labels": {
        "$type": "com.atproto.label.defs#selfLabels", "values": [{"val": "nudity"}]}, "embed": {
        "$type": "app.bsky.embed.images", "images": [{"alt": "Ein roter Punkt", "image": up.json()["blob"]}]}})

    with env.ledger() as ledger:
        pipeline = env.pipeline(ledger)
        done = pipeline.cycle("coop-bsky")
        assert done.error is None, done.error
        again = pipeline.cycle("coop-bsky")
        assert (again.error, again.fetched, again.x_requests) == (None, 0, 1)

    toots = env.toots(org)
    assert len(toots) == 4
    assert toots[2]["reblog"]["id"] == toots[0]["id"]  # a repost of the organisation's own post: a boost
    toots = [t for t in toots if not t.get("reblog")]
    assert toots[1]["in_reply_to_id"] == toots[0]["id"]
    assert "Grüße" in toots[0]["content"]
    assert not toots[0].get("mentions")  # never a bare @name Mastodon would read as a local mention
    assert "@friend" not in toots[0]["content"]
    assert "friend-e2e.test" in toots[0]["content"]
    assert toots[2]["sensitive"] is True
    assert "Sensitive" in toots[2]["spoiler_text"]
    [attachment] = toots[2]["media_attachments"]
    assert attachment["description"] == "Ein roter Punkt"


def test_the_bluesky_urls_are_configurable_and_validated(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("database: l.db\nbluesky:\n  plc_url: http://localhost:2582\n  appview_url: http://localhost:2583\n")
    config = load_config(path)
    assert (config.bluesky.plc_url, config.bluesky.appview_url) == ("http://localhost:2582", "http://localhost:2583")
    assert isinstance(make_source("bluesky", config), BlueskySource)

    path.write_text("database: l.db\nbluesky:\n  plc_url: plc.directory\n")
    with pytest.raises(ConfigError, match=r"bluesky\.plc_url"):
        load_config(path)


def test_an_unknown_did_is_an_error_naming_the_account_and_its_did_document(bluesky_pds: BlueskyPds) -> None:
    with source_for(bluesky_pds) as source:
        with pytest.raises(SourceError, match=r"did:plc:a{24}: reading its DID document .*HTTP 404"):
            source.read_new("did:plc:" + "a" * 24, None)
        with pytest.raises(PermanentError, match="'did:example:1': not a did:plc or did:web DID"):
            source.read_new("did:example:1", None)


def test_a_malformed_record_is_unreadable_alone_and_names_the_account_and_record(bluesky_pds: BlueskyPds) -> None:
    did, jwt, _ = bluesky_pds.create_account("coop-broken.test")
    with source_for(bluesky_pds) as source:
        start = source.cursor_at(datetime.now(timezone.utc) - timedelta(seconds=1))
    good = create(bluesky_pds, did, jwt, POST, {"text": "fine"})
    # validate=false: the PDS stores what a buggy client wrote, as another PDS might serve it.
    body = {"repo": did, "collection": POST, "validate": False,
            "record": {"$type": POST, "createdAt": CREATED_AT, "text": 5}}
    r = bluesky_pds.client.post(bluesky_pds.xrpc("com.atproto.repo.createRecord"), headers=auth(jwt), json=body)
    assert r.status_code == 200, r.text
    bad = rkey(r.json())

    with source_for(bluesky_pds) as source:
        read = source.read_new(did, start)

    assert [p.id for p in read.posts] == [rkey(good)]
    [unreadable] = read.unreadable
    assert unreadable.post_id == bad
    assert f"coop-broken.test ({did}) app.bsky.feed.post/{bad}: text is not a string" in unreadable.error


def test_a_backfill_reads_the_account_newest_first_or_the_one_post_named(
    bluesky_pds: BlueskyPds, posted: dict[str, Any]
) -> None:
    with source_for(bluesky_pds) as source:
        everything = [p.id for p in source.read_range(posted["did"])]
        one = list(source.read_range(posted["did"], around=rkey(posted["thread2"])))
        limited = [p.id for p in source.read_range(posted["did"], limit=2)]

    assert rkey(posted["facets"]) in everything and rkey(posted["repost_friend"]) == everything[0]
    assert [p.text for p in one] == ["Thread 2/2"]
    assert limited == everything[:2]
