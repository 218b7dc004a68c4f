"""``bridge preview`` rendering: readable text and a JSON list with a fixed set of keys."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from bridge.convert import Conversion
from bridge.model import BridgedToot, Draft, Media, MediaDraft, SourcePost
from bridge.policy import InstanceLimits, Policy
from bridge.render import JSON_KEYS, render_json, render_text
from tests.x_convert import convert

OWN = "1"


def _post(text: str, **kw: object) -> SourcePost:
    return SourcePost(id="10", author_id=OWN, author_username="coop", created_at=datetime(2026, 2, 20, tzinfo=timezone.utc),
                      text=text, lang="de", **kw)  # type: ignore[arg-type]


def test_json_keys_and_values() -> None:
    media = (Media("m", "photo", url="https://pbs.twimg.com/media/a.jpg", alt_text="Ein Haus"),)
    c = convert(_post("Hallo " * 100, media=media, in_reply_to_post_id="9", in_reply_to_user_id=OWN, sensitive=True),
                InstanceLimits(), Policy(content_warning="CW"), own_user_id=OWN)
    out = render_json(c)
    json.dumps(out)  # plain data
    assert len(out) == 2
    assert all(tuple(d) == JSON_KEYS for d in out)
    first = out[0]
    assert first["in_reply_to"] == "9" and first["spoiler_text"] == "CW" and first["sensitive"] is True
    assert first["language"] == "de" and first["visibility"] == "public"
    assert first["media"] == [{"type": "photo", "source": "https://pbs.twimg.com/media/a.jpg?name=orig", "description": "Ein Haus"}]
    assert first["length"] == c.drafts[0].length and out[1]["media"] == []
    assert out[1]["in_reply_to"] is None  # part 2 replies to part 1 of the same post


def test_json_boost_and_quote_targets() -> None:
    original = _post("x")
    rt = SourcePost(id="11", author_id=OWN, author_username="coop", created_at=original.created_at, text="RT @coop: x",
                    retweet_of=original, retweet_of_id="10", retweet_of_username="coop")
    c = convert(rt, InstanceLimits(), Policy(), own_user_id=OWN, bridged=lambda i: BridgedToot("5", "https://m.example/5"))
    assert render_json(c) == [{"text": "", "spoiler_text": "", "language": None, "sensitive": False, "visibility": "public",
                               "in_reply_to": None, "quote_of": None, "boost_of": "10", "media": [], "length": 0}]
    q = convert(_post("Genau", quote_of_id="7"), InstanceLimits(supports_quotes=True), Policy(), own_user_id=OWN,
                bridged=lambda i: BridgedToot("5", "https://m.example/5"))
    assert render_json(q)[0]["quote_of"] == "7"


def test_text_shows_every_draft_with_counted_length_media_targets_and_notes() -> None:
    media = (Media("m", "photo", url="https://pbs.twimg.com/media/a.jpg", alt_text="Ein Haus"),
             Media("v", "video", variants=()))
    c = convert(_post("Satz. " * 100, media=media, in_reply_to_post_id="9", in_reply_to_user_id=OWN),
                InstanceLimits(max_characters=400), Policy(), own_user_id=OWN)
    text = render_text(c, 400)
    assert text.count("--- draft ") == len(c.drafts) == 2
    assert f"length: {c.drafts[0].length} / 400" in text
    assert "target: reply to the toot of post 9" in text and "target: reply to part 1" in text
    assert "media 1: photo https://pbs.twimg.com/media/a.jpg?name=orig" in text
    assert "  description: Ein Haus" in text
    assert "note: post 10: media v (video): no mp4 variant; original post linked" in text
    assert "  | Satz. Satz." in text


def test_text_skipped_and_boost() -> None:
    skipped = Conversion(skipped="post 3: reply to another account (policy replies: self)")
    assert render_text(skipped) == "SKIPPED: post 3: reply to another account (policy replies: self)\n"
    assert render_json(skipped) == []
    boost = Conversion(drafts=(Draft(post_id="4", part=0, kind="boost", boost_of="2"),))
    assert "target: boost of the toot of post 2" in render_text(boost)


def test_text_edit_poll_and_empty_text() -> None:
    d = Draft(post_id="4", part=0, kind="edit", edit_of="3", text="",
              media=(MediaDraft("animated_gif", "/a/x.mp4", None, ("https://v/y.mp4",)),))
    text = render_text(Conversion(drafts=(d,)))
    assert "edits the toot of post 3 (part 1)" in text
    assert "  (empty)" in text and "  description: (none)" in text and "  fallback: https://v/y.mp4" in text
