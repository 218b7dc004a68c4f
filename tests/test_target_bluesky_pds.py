"""BlueskyTarget against the reference PDS, over real HTTP, reading every record back.

Each test makes its own account (handles under .test) through the PDS's own API, publishes through
bridge/targets/bluesky.py and reads the records back with com.atproto.repo.getRecord/listRecords.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from bridge.convert import bluesky_lexicon as lexicon
from bridge.convert.bluesky import convert, fits_post, grapheme_length
from bridge.errors import AuthError, RateLimited
from bridge.model import Draft, Handle, MediaDraft, Post
from bridge.policy import Policy
from bridge.targets.bluesky import BlueskyTarget, credentials_json, record_key
from tests.bluesky_pds import PDS_DIR, BlueskyPds, start_pds

pytestmark = pytest.mark.bluesky

WHEN = datetime(2026, 3, 1, 12, 0, 5, tzinfo=timezone.utc)
TINY_MP4 = Path(__file__).parent / "data" / "media" / "tiny.mp4"  # 1.8 kB, from the sample X archive
LEXICONS = PDS_DIR / "node_modules" / "@atproto" / "pds" / "dist" / "lexicons"


class Account:
    """A fresh account on the PDS and a target for it; ``requests`` logs every XRPC method the target sent."""

    def __init__(self, pds: BlueskyPds, handle: str) -> None:
        self.pds = pds
        self.handle = handle
        self.did, self.jwt, self.app_password = pds.create_account(handle)
        self.saved: list[str] = []
        self.requests: list[str] = []

    def target(self, credentials: str | None = None) -> BlueskyTarget:
        client = httpx.Client(timeout=30, event_hooks={"request": [lambda r: self.requests.append(r.url.path)]})
        return BlueskyTarget(self.pds.url, credentials or credentials_json(self.app_password), account_id=self.did,
                             handle=self.handle, session=client, save_credentials=self.saved.append,
                             plc_url=self.pds.plc_url)

    def calls(self, method: str) -> int:
        return sum(1 for path in self.requests if path.endswith(method))

    def record(self, uri: str) -> dict[str, Any]:
        repo, collection, rkey = uri.removeprefix("at://").split("/")
        got = self.pds.client.get(self.pds.xrpc("com.atproto.repo.getRecord"),
                                  params={"repo": repo, "collection": collection, "rkey": rkey})
        assert got.status_code == 200, got.text
        return dict(got.json())

    def records(self, collection: str = lexicon.POST) -> list[dict[str, Any]]:
        got = self.pds.client.get(self.pds.xrpc("com.atproto.repo.listRecords"),
                                  params={"repo": self.did, "collection": collection, "limit": 100})
        assert got.status_code == 200, got.text
        return list(got.json()["records"])


@pytest.fixture
def account(bluesky_pds: BlueskyPds, request: pytest.FixtureRequest) -> Iterator[Account]:
    name = hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:12]  # a handle's label is short
    yield Account(bluesky_pds, f"t{name}.test")


def draft(text: str, part: int = 0, post_id: str = "1", **kwargs: Any) -> Draft:
    return Draft(post_id=post_id, part=part, text=text, created_at=kwargs.pop("created_at", WHEN), **kwargs)


def png(path: Path, width: int, height: int, noise: bool = False) -> Path:
    image = Image.frombytes("RGB", (width, height), os.urandom(width * height * 3)) if noise else Image.new(
        "RGB", (width, height), (200, 30, 30))
    image.save(path, "PNG")
    return path


def checked_facets(value: dict[str, Any]) -> list[tuple[str, str]]:
    """(the text each facet's byte range holds, its feature), checking the ranges against the text."""
    raw = value["text"].encode()
    out = []
    for facet in value.get("facets", []):
        start, end = facet["index"]["byteStart"], facet["index"]["byteEnd"]
        assert 0 <= start < end <= len(raw)
        [feature] = facet["features"]
        out.append((raw[start:end].decode(), feature.get("uri") or feature.get("did") or feature.get("tag")))
    return out


def js_number(source: str, pattern: str) -> int:
    m = re.search(pattern, source, re.S)
    assert m, pattern
    return int(m.group(1))


def test_the_lexicon_limits_are_those_the_reference_pds_enforces(bluesky_pds: BlueskyPds) -> None:
    post = (LEXICONS / "app/bsky/feed/post.defs.js").read_text()
    images = (LEXICONS / "app/bsky/embed/images.defs.js").read_text()
    video = (LEXICONS / "app/bsky/embed/video.defs.js").read_text()
    facet = (LEXICONS / "app/bsky/richtext/facet.defs.js").read_text()
    assert js_number(post, r"text: .*?maxLength: (\d+), maxGraphemes: \d+") == lexicon.POST_MAX_BYTES
    assert js_number(post, r"text: .*?maxGraphemes: (\d+)") == lexicon.POST_MAX_GRAPHEMES
    assert js_number(post, r"langs: .*?maxLength: (\d+)") == lexicon.POST_MAX_LANGS
    assert js_number(images, r"images: .*?maxLength: (\d+)") == lexicon.IMAGES_PER_POST
    assert js_number(images, r"accept: \['image/\*'\], maxSize: (\d+)") == lexicon.IMAGE_MAX_BYTES
    assert js_number(video, r"accept: \['video/mp4'\], maxSize: (\d+)") == lexicon.VIDEO_MAX_BYTES
    assert js_number(facet, r"tag: .*?maxLength: (\d+)") == lexicon.TAG_MAX_BYTES
    assert js_number(facet, r"tag: .*?maxGraphemes: (\d+)") == lexicon.TAG_MAX_GRAPHEMES


def test_our_grapheme_count_is_the_pds_count_for_every_kind_of_cluster(bluesky_pds: BlueskyPds, account: Account) -> None:
    clusters = ["e\u0301", "🇩🇪", "👍🏽", "각", "क्ष", "👨‍👩‍👧‍👦", "\r\n", "ᄀ각", "a"]  # combining, flags, modifiers, Hangul, Indic, ZWJ
    text = "".join(clusters[i % len(clusters)] for i in range(300))
    assert grapheme_length(text) == 300 and fits_post(text)

    copy = account.target().publish(draft(text), idempotency_key="k")

    assert account.record(copy.id)["value"]["text"] == text
    longer = text + "é"
    assert not fits_post(longer)
    refused = bluesky_pds.client.post(
        bluesky_pds.xrpc("com.atproto.repo.createRecord"), headers={"Authorization": f"Bearer {account.jwt}"},
        json={"repo": account.did, "collection": lexicon.POST,
              "record": {"$type": lexicon.POST, "text": longer, "createdAt": "2026-03-01T12:00:00.000Z"}})
    assert refused.status_code == 400 and "grapheme" in refused.text


def test_a_rendered_post_is_read_back_with_its_text_facets_mention_and_language(
    bluesky_pds: BlueskyPds, account: Account
) -> None:
    friend = Account(bluesky_pds, "friend-coop.test")
    text = "Grüße an @FriendCoop und @stranger 🎉 https://geno.social/about/our-long-history-page #Wohnen"
    source = Post(id="11", author="coop", created_at=WHEN, text=text, permalink="https://x.com/coop/status/11",
                  home="x.com", lang="de", mentions=(Handle("x", "FriendCoop"), Handle("x", "stranger")))
    [d] = convert(source, account.target().limits(), Policy(), mentions={"friendcoop": "friend-coop.test"}).drafts
    target = account.target()

    copy = target.publish(d, idempotency_key="unused")

    got = account.record(copy.id)["value"]
    assert got["text"] == "Grüße an @friend-coop.test und @stranger 🎉 geno.social/about/our-lo... #Wohnen"
    assert checked_facets(got) == [
        ("@friend-coop.test", friend.did),
        ("geno.social/about/our-lo...", "https://geno.social/about/our-long-history-page"),
        ("#Wohnen", "Wohnen"),
    ]
    assert got["langs"] == ["de"]
    assert copy.url == f"https://bsky.app/profile/{account.handle}/post/{record_key(d)}"
    assert copy.id == f"at://{account.did}/{lexicon.POST}/{record_key(d)}"


def test_a_long_post_is_a_thread_whose_parts_point_at_their_root_and_parent(account: Account) -> None:
    source = Post(id="12", author="coop", created_at=WHEN, text="Wort " * 170 + "Ende.", permalink="https://x.com/coop/status/12")
    drafts = convert(source, account.target().limits(), Policy()).drafts
    assert len(drafts) == 3
    target = account.target()
    copies = []
    for d in drafts:
        copies.append(target.publish(d, idempotency_key="unused", in_reply_to=copies[-1].id if copies else None))

    records = [account.record(c.id) for c in copies]
    assert "reply" not in records[0]["value"]
    root = {"uri": records[0]["uri"], "cid": records[0]["cid"]}
    for parent, child in zip(records, records[1:]):
        assert child["value"]["reply"] == {"root": root, "parent": {"uri": parent["uri"], "cid": parent["cid"]}}
    assert "".join("".join(r["value"]["text"].split()) for r in records) == "".join(source.text.split())


def test_a_reply_after_a_restart_reads_its_parent_to_find_the_thread_root(account: Account) -> None:
    first = account.target()
    a = first.publish(draft("eins", 0), idempotency_key="k")
    b = first.publish(draft("zwei", 1), idempotency_key="k", in_reply_to=a.id)
    later = account.target(account.saved[-1])  # a new process: nothing cached

    c = later.publish(draft("drei", 2), idempotency_key="k", in_reply_to=b.id)

    assert account.record(c.id)["value"]["reply"]["root"] == {"uri": a.id, "cid": account.record(a.id)["cid"]}
    assert account.calls("com.atproto.repo.getRecord") == 1


def test_images_are_read_back_with_their_alt_text_and_aspect_ratio(account: Account, tmp_path: Path) -> None:
    target = account.target()
    ids = [target.upload_media(str(png(tmp_path / f"{n}.png", 30 * (n + 1), 20)), "image/png", f"Bild {n}")
           for n in range(4)]
    d = draft("Vier Bilder", media=tuple(MediaDraft("photo", f"{n}.png") for n in range(4)))

    copy = target.publish(d, idempotency_key="k", media_ids=ids)

    embed = account.record(copy.id)["value"]["embed"]
    assert embed["$type"] == "app.bsky.embed.images"
    assert [i["alt"] for i in embed["images"]] == ["Bild 0", "Bild 1", "Bild 2", "Bild 3"]
    assert [i["aspectRatio"] for i in embed["images"]] == [{"width": 30 * (n + 1), "height": 20} for n in range(4)]
    assert all(i["image"]["mimeType"] == "image/png" for i in embed["images"])


def test_an_image_over_the_blob_limit_is_recompressed_not_dropped(
    bluesky_pds: BlueskyPds, account: Account, tmp_path: Path
) -> None:
    big = png(tmp_path / "noise.png", 1600, 1200, noise=True)
    assert big.stat().st_size > lexicon.IMAGE_MAX_BYTES
    target = account.target()

    media_id = target.upload_media(str(big), "image/png", "Rauschen")
    copy = target.publish(draft("Groß"), idempotency_key="k", media_ids=[media_id])

    [image] = account.record(copy.id)["value"]["embed"]["images"]
    assert image["image"]["mimeType"] == "image/jpeg"
    assert image["image"]["size"] <= lexicon.IMAGE_MAX_BYTES
    assert image["aspectRatio"] == {"width": 1600, "height": 1200}
    blob = bluesky_pds.client.get(bluesky_pds.xrpc("com.atproto.sync.getBlob"),
                                  params={"did": account.did, "cid": image["image"]["ref"]["$link"]})
    assert blob.status_code == 200
    assert Image.open(io.BytesIO(blob.content)).size == (1600, 1200)


def test_a_video_is_an_embed_video_and_a_gif_plays_as_one(account: Account) -> None:
    mp4 = TINY_MP4
    target = account.target()
    video = target.publish(draft("Ein Film", post_id="21", media=(MediaDraft("video", "v.mp4", "Film"),)),
                           idempotency_key="k", media_ids=[target.upload_media(str(mp4), "video/mp4", "Film")])
    gif = target.publish(draft("Ein GIF", post_id="22", media=(MediaDraft("animated_gif", "g.mp4"),)),
                         idempotency_key="k", media_ids=[target.upload_media(str(mp4), "video/mp4", None)])

    embed = account.record(video.id)["value"]["embed"]
    assert (embed["$type"], embed["alt"], embed["video"]["mimeType"]) == ("app.bsky.embed.video", "Film", "video/mp4")
    assert "presentation" not in embed
    assert account.record(gif.id)["value"]["embed"]["presentation"] == "gif"


def test_a_quote_is_an_embed_record_and_with_media_a_record_with_media(account: Account, tmp_path: Path) -> None:
    target = account.target()
    quoted = target.publish(draft("Das Original", post_id="31"), idempotency_key="k")
    plain = target.publish(draft("Zitat", post_id="32"), idempotency_key="k", quote_of=quoted.id)
    media_id = target.upload_media(str(png(tmp_path / "q.png", 10, 10)), "image/png", "Punkt")
    with_media = target.publish(draft("Zitat mit Bild", post_id="33"), idempotency_key="k", quote_of=quoted.id,
                                media_ids=[media_id])

    ref = {"uri": quoted.id, "cid": account.record(quoted.id)["cid"]}
    assert account.record(plain.id)["value"]["embed"] == {"$type": "app.bsky.embed.record", "record": ref}
    embed = account.record(with_media.id)["value"]["embed"]
    assert embed["$type"] == "app.bsky.embed.recordWithMedia"
    assert embed["record"] == {"$type": "app.bsky.embed.record", "record": ref}
    assert embed["media"]["images"][0]["alt"] == "Punkt"


def test_a_repost_is_an_app_bsky_feed_repost_and_reposting_twice_makes_one(bluesky_pds: BlueskyPds, account: Account) -> None:
    other = Account(bluesky_pds, "other-repost.test")
    original = other.target().publish(draft("Neuigkeiten"), idempotency_key="k")
    target = account.target()

    first = target.boost(original.id)
    again = account.target(account.saved[-1]).boost(original.id)

    assert first == again
    [repost] = account.records(lexicon.REPOST)
    assert repost["uri"] == first.id
    assert repost["value"]["subject"] == {"uri": original.id, "cid": other.record(original.id)["cid"]}


def test_sensitive_media_carry_a_self_label(account: Account) -> None:
    copy = account.target().publish(draft("Vorsicht", labels=("graphic-media",)), idempotency_key="k")

    assert account.record(copy.id)["value"]["labels"] == {
        "$type": "com.atproto.label.defs#selfLabels", "values": [{"val": "graphic-media"}]}


def test_a_delete_removes_the_record_and_deleting_it_again_is_no_error(account: Account) -> None:
    target = account.target()
    copy = target.publish(draft("Bald weg"), idempotency_key="k")
    assert len(account.records()) == 1

    target.delete(copy.id)
    target.delete(copy.id)

    assert account.records() == []


def test_a_create_retried_after_a_crash_returns_the_same_record_and_makes_no_second(account: Account) -> None:
    d = draft("Genau einmal", post_id="41")
    before_crash = account.target().publish(d, idempotency_key="k")
    # The process died before recording the copy: a new one publishes the same part again.
    after_restart = account.target(account.saved[-1])

    again = after_restart.publish(d, idempotency_key="k")

    assert again == before_crash
    assert [r["uri"] for r in account.records()] == [before_crash.id]
    assert account.calls("com.atproto.repo.createRecord") == 2
    assert account.calls("com.atproto.repo.getRecord") == 1


def test_another_record_under_the_same_key_is_never_taken_for_the_copy(account: Account) -> None:
    target = account.target()
    target.publish(draft("Erster Text", post_id="51"), idempotency_key="k")
    other = replace(draft("Anderer Text", post_id="51"))

    with pytest.raises(Exception, match="already holds another record"):
        account.target(account.saved[-1]).publish(other, idempotency_key="k")


def test_one_session_serves_many_publishes_across_processes(account: Account) -> None:
    first = account.target()
    for n in range(5):
        first.publish(draft(f"Beitrag {n}", post_id=str(60 + n)), idempotency_key="k")
    for n in range(5):
        account.target(account.saved[-1]).publish(draft(f"Später {n}", post_id=str(70 + n)), idempotency_key="k")

    assert account.calls("com.atproto.server.createSession") == 1
    assert len(account.records()) == 10
    assert json.loads(account.saved[-1])["app_password"] == account.app_password


def test_a_stale_access_token_is_refreshed_and_saved(account: Account) -> None:
    account.target().publish(draft("eins", post_id="81"), idempotency_key="k")
    stale = json.loads(account.saved[-1])
    stale["session"]["accessJwt"] = "expired"

    account.target(json.dumps(stale)).publish(draft("zwei", post_id="82"), idempotency_key="k")

    assert account.calls("com.atproto.server.refreshSession") == 1
    assert account.calls("com.atproto.server.createSession") == 1
    assert json.loads(account.saved[-1])["session"]["accessJwt"] != "expired"


def test_a_revoked_app_password_is_an_auth_error(bluesky_pds: BlueskyPds, account: Account) -> None:
    account.target().publish(draft("vorher", post_id="91"), idempotency_key="k")
    stale = json.loads(account.saved[-1])
    stale["session"]["accessJwt"] = "expired"
    revoked = bluesky_pds.client.post(bluesky_pds.xrpc("com.atproto.server.revokeAppPassword"),
                                      headers={"Authorization": f"Bearer {account.jwt}"}, json={"name": "geno-bridge"})
    assert revoked.status_code == 200, revoked.text

    with pytest.raises(AuthError, match="revoked or changed") as refused:
        account.target(json.dumps(stale)).publish(draft("nachher", post_id="92"), idempotency_key="k")
    with pytest.raises(AuthError):
        account.target().publish(draft("nachher", post_id="92"), idempotency_key="k")

    assert account.app_password not in str(refused.value)
    assert [r["value"]["text"] for r in account.records()] == ["vorher"]



@pytest.fixture(scope="module")
def limited_pds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BlueskyPds]:
    """A second PDS with its rate limits on, as a production PDS has them."""
    server = start_pds(tmp_path_factory.mktemp("limited-pds"), rate_limits=True)
    yield server
    server.stop()


def test_a_429_and_the_ratelimit_headers_become_rate_limited_with_the_reset_time(limited_pds: BlueskyPds) -> None:
    """createSession is limited to 30 per 5 minutes per account: the 31st login is refused with 429,
    and once the headers said none are left, the target does not even ask."""
    account = Account(limited_pds, "limited.test")
    sent = 0
    with pytest.raises(RateLimited) as limited:
        for _ in range(40):
            target = BlueskyTarget(limited_pds.url, credentials_json(account.app_password), account_id=account.did,
                                   handle=account.handle, plc_url=limited_pds.plc_url)
            target.login()
            sent += 1
    assert sent == 30
    assert limited.value.retry_at is not None
    assert datetime.now(timezone.utc) < limited.value.retry_at <= datetime.now(timezone.utc) + timedelta(minutes=5)

    refused = account.target()
    with pytest.raises(RateLimited):
        refused.login()
    with pytest.raises(RateLimited, match="ratelimit-remaining 0"):
        refused.login()
    assert account.calls("com.atproto.server.createSession") == 1
