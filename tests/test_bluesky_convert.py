"""What Bluesky posts become (issue 15's remaining gaps), read from the reference PDS: videos with alt text, replies to
other accounts under the reply policy, reposts crediting the original author's handle, and unmapped mentions that
never become a bare @name or a made-up fediverse address."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from bridge.convert import convert
from bridge.model import Post
from bridge.policy import InstanceLimits, Policy
from bridge.sources.bluesky import BlueskySource
from tests.bluesky_pds import BlueskyPds
from tests.test_bluesky_pds import auth
from tests.test_bluesky_source import POST, REPOST, create, rkey

pytestmark = pytest.mark.bluesky

MP4 = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + b"\x00" * 64


@pytest.fixture(scope="module")
def posted(bluesky_pds: BlueskyPds) -> dict[str, Any]:
    pds = bluesky_pds
    start = datetime.now(timezone.utc) - timedelta(seconds=1)
    did, jwt, _ = pds.create_account("coop-conv.test")
    friend, friend_jwt, _ = pds.create_account("friend-conv.test")
    friends_post = create(pds, friend, friend_jwt, POST, {"text": "a friend's post"})
    refs: dict[str, Any] = {"did": did, "friend": friend, "start": start, "friends_post": friends_post}
    up = pds.client.post(pds.xrpc("com.atproto.repo.uploadBlob"), headers={**auth(jwt), "Content-Type": "video/mp4"},
                         content=MP4)
    assert up.status_code == 200, up.text
    refs["video"] = create(pds, did, jwt, POST, {"text": "Our film", "embed": {
        "$type": "app.bsky.embed.video", "video": up.json()["blob"], "alt": "Members planting trees",
        "aspectRatio": {"width": 16, "height": 9}}})
    refs["reply"] = create(pds, did, jwt, POST, {"text": "Thanks, friend!", "reply": {
        "root": friends_post, "parent": friends_post}})
    refs["repost"] = create(pds, did, jwt, REPOST, {"subject": friends_post})
    text = "Hello @friend-conv.test and @stranger.example"
    raw = text.encode()
    facets = []
    for name, who in ((b"@friend-conv.test", friend), (b"@stranger.example", friend)):
        at = raw.index(name)
        facets.append({"index": {"byteStart": at, "byteEnd": at + len(name)},
                       "features": [{"$type": "app.bsky.richtext.facet#mention", "did": who}]})
    refs["mention"] = create(pds, did, jwt, POST, {"text": text, "facets": facets})
    return refs


@pytest.fixture(scope="module")
def read(bluesky_pds: BlueskyPds, posted: dict[str, Any]) -> tuple[BlueskySource, dict[str, Post]]:
    source = BlueskySource(plc_url=bluesky_pds.plc_url, appview_url=bluesky_pds.url, timeout=10)
    result = source.read_new(posted["did"], source.cursor_at(posted["start"]))
    assert result.unreadable == []
    return source, {p.id: source.neutral(p, posted["did"]) for p in result.posts}


def text_of(post: Post, **policy: Any) -> str:
    mentions = policy.pop("mentions", None) or {}
    conversion = convert(post, InstanceLimits(), Policy(**policy), mentions=mentions)
    assert conversion.skipped is None, conversion.skipped
    return "\n".join(d.text for d in conversion.drafts)


def test_a_video_keeps_its_alt_text_and_downloads_from_the_pds(
    bluesky_pds: BlueskyPds, posted: dict[str, Any], read: tuple[BlueskySource, dict[str, Post]], tmp_path: Path
) -> None:
    source, posts = read
    [video] = posts[rkey(posted["video"])].media
    assert (video.type, video.alt_text, video.mime_type) == ("video", "Members planting trees", "video/mp4")
    [url] = video.candidates
    path, mime = source.open_media(url, tmp_path / "clip", 10_000)
    assert (path.read_bytes(), mime) == (MP4, "video/mp4")
    conversion = convert(posts[rkey(posted["video"])], InstanceLimits(), Policy())
    assert [(m.type, m.description) for m in conversion.drafts[0].media] == [("video", "Members planting trees")]


def test_a_reply_to_another_account_follows_the_reply_policy(
    posted: dict[str, Any], read: tuple[BlueskySource, dict[str, Post]]
) -> None:
    _, posts = read
    reply = posts[rkey(posted["reply"])]
    assert reply.reply_to is not None and not reply.reply_to.own
    friend_url = f"https://bsky.app/profile/{posted['friend']}/post/{rkey(posted['friends_post'])}"
    assert reply.reply_to.url == friend_url

    skipped = convert(reply, InstanceLimits(), Policy(replies="self"))
    assert skipped.skipped is not None and "reply to another account (policy replies: self)" in skipped.skipped
    assert convert(reply, InstanceLimits(), Policy(replies="none")).skipped is not None
    assert text_of(reply, replies="all") == f"Thanks, friend!\n\n{friend_url}"


def test_a_repost_of_another_account_credits_its_author_by_handle(
    posted: dict[str, Any], read: tuple[BlueskySource, dict[str, Post]]
) -> None:
    _, posts = read
    repost = posts[rkey(posted["repost"])]
    assert repost.repost_of is not None and repost.repost_of.author == "friend-conv.test"
    said = text_of(repost, retweets="link", mentions_unmapped="link")
    original = f"https://bsky.app/profile/{posted['friend']}/post/{rkey(posted['friends_post'])}"
    # Credited by handle, not DID, with the original's words (read from its author's PDS) and a link to it.
    assert said == f"RT https://bsky.app/profile/friend-conv.test: a friend's post\n\n{original}"
    assert repost.repost_of.post is not None and repost.repost_of.post.author == "friend-conv.test"


@pytest.mark.parametrize(
    ("mode", "friend", "stranger"),
    [
        ("plain", "@\u2060friend-conv.test", "@\u2060stranger.example"),
        ("domain", "https://bsky.app/profile/friend-conv.test", "https://bsky.app/profile/stranger.example"),
        ("link", "https://bsky.app/profile/friend-conv.test", "https://bsky.app/profile/stranger.example"),
    ],
)
def test_an_unmapped_bluesky_mention_is_never_a_bare_name_or_a_made_up_address(
    posted: dict[str, Any], read: tuple[BlueskySource, dict[str, Post]], mode: str, friend: str, stranger: str
) -> None:
    _, posts = read
    said = text_of(posts[rkey(posted["mention"])], mentions_unmapped=mode)
    assert said == f"Hello {friend} and {stranger}"
    assert "@bsky.app" not in said


def test_a_mapped_bluesky_mention_becomes_the_organisations_fediverse_account(
    posted: dict[str, Any], read: tuple[BlueskySource, dict[str, Post]]
) -> None:
    _, posts = read
    said = text_of(posts[rkey(posted["mention"])], mentions_unmapped="domain",
                   mentions={"friend-conv.test": "friend@geno.social"})
    assert said == "Hello @friend@geno.social and https://bsky.app/profile/stranger.example"
