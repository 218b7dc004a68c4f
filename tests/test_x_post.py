"""The X source's neutral step: X shapes in, a neutral ``Post`` out (entities as data, no t.co left)."""

from __future__ import annotations

from datetime import datetime, timezone

from bridge.model import Media, Mention, SourcePost, UrlEntity
from bridge.sources.x_post import neutral_post

OWN = "42"
T = datetime(2026, 3, 1, tzinfo=timezone.utc)


def post(text: str, **kw: object) -> SourcePost:
    return SourcePost(id="100", author_id=OWN, author_username="coop", created_at=T, text=text, **kw)  # type: ignore[arg-type]


def test_links_are_expanded_with_their_offsets_and_the_quote_link_is_marked() -> None:
    p = post(
        "Lest  https://t.co/a \nund https://t.co/q https://t.co/m",
        urls=(
            UrlEntity("https://t.co/a", "https://example.org/a"),
            UrlEntity("https://t.co/q", "https://twitter.com/other/status/7"),
            UrlEntity("https://t.co/m", "https://x.com/coop/status/100/photo/1", media_key="3_1"),
        ),
        quote_of_id="7",
        media=(Media("3_1", "photo", url="https://pbs.twimg.com/media/F1.jpg"),),
    )
    n = neutral_post(p, OWN)
    assert n.text == "Lest  https://example.org/a\nund https://twitter.com/other/status/7"
    assert [(n.text[k.start:k.end], k.post_id) for k in n.links] == [
        ("https://example.org/a", None), ("https://twitter.com/other/status/7", "7")]
    assert n.quote_of is not None and n.quote_of.url == "https://x.com/i/web/status/7"
    (m,) = n.media
    assert m.candidates == tuple(f"https://pbs.twimg.com/media/F1.jpg?name={s}" for s in ("orig", "large", "medium"))
    assert m.mime_type == "image/jpeg" and n.permalink == "https://x.com/coop/status/100" and n.home == "x.com"


def test_an_unexpandable_link_is_removed_noted_and_marks_the_post_incomplete() -> None:
    n = neutral_post(post("Siehe https://t.co/zz dort"), OWN)
    assert n.text == "Siehe  dort" and n.incomplete
    assert n.notes == ("post 100: link https://t.co/zz has no expansion; removed, original post linked",)


def test_a_reply_loses_x_addressing_and_knows_whether_it_is_a_self_reply() -> None:
    n = neutral_post(post("@coop @nachbar Danke!", in_reply_to_post_id="99", in_reply_to_user_id=OWN,
                          mentions=(Mention("nachbar", "5"),)), OWN)
    assert n.text == "Danke!" and n.reply_to is not None and n.reply_to.own
    other = neutral_post(post("@nachbar Gern", in_reply_to_post_id="55", in_reply_to_user_id="5",
                              mentions=(Mention("nachbar", "5"),)), OWN)
    assert other.reply_to is not None and not other.reply_to.own
    assert other.reply_to.url == "https://x.com/nachbar/status/55"


def test_an_archive_retweet_without_its_original_says_its_text_without_the_rt_prefix() -> None:
    n = neutral_post(post("RT @nachbar: Sommerfest https://t.co/a", retweet_of_username="nachbar",
                          urls=(UrlEntity("https://t.co/a", "https://example.org/fest"),)), OWN)
    assert n.text == "Sommerfest https://example.org/fest"
    assert n.links[0].start == len("Sommerfest ")
    assert n.repost_of is not None and n.repost_of.author == "nachbar" and n.repost_of.id is None
    assert n.repost_of.url == "https://x.com/coop/status/100"  # no id: the retweet itself is linked


def test_edits_name_the_first_version_and_older_versions_the_newest() -> None:
    newest = neutral_post(SourcePost("3", OWN, "coop", T, "v3", edit_history_ids=("1", "3")), OWN)
    older = neutral_post(SourcePost("1", OWN, "coop", T, "v1", edit_history_ids=("1", "3")), OWN)
    assert (newest.edit_of, newest.superseded_by) == ("1", None)
    assert (older.edit_of, older.superseded_by) == (None, "3")
