"""The conversion rules of issue 3, one by one, on hand-built posts."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from datetime import datetime, timezone

from bridge.convert import mastodon_language, mastodon_mention_re, status_length
from bridge.convert.counting import WORD_JOINER
from bridge.model import (
    BridgedToot,
    Media,
    MediaVariant,
    Mention,
    Poll,
    SourcePost,
    UrlEntity,
)
from bridge.policy import InstanceLimits, Policy, VisibilityPolicy
from tests.x_convert import convert

OWN = "1400000000000000001"
LIMITS = InstanceLimits()


def post(text: str, post_id: str = "100", **fields: object) -> SourcePost:
    base: dict = dict(
        id=post_id,
        author_id=OWN,
        author_username="WohnGenoNord",
        created_at=datetime(2026, 2, 20, 9, 10, 58, tzinfo=timezone.utc),
        text=text,
        lang="de",
    )
    base.update(fields)
    return SourcePost(**base)


DEFAULT_POLICY = Policy()


def run(p: SourcePost, limits: InstanceLimits = LIMITS, policy: Policy = DEFAULT_POLICY, **kw: object):
    return convert(p, limits, policy, own_user_id=OWN, **kw)  # type: ignore[arg-type]


def toots(*ids: str):
    known = {i: BridgedToot(f"9{i}", f"https://wohnen.social.example/@coop/9{i}") for i in ids}
    return known.get


# --- rule 1, 2: text and links -------------------------------------------------------


def test_text_is_not_unescaped_again() -> None:
    [d] = run(post("Heizkosten &amp; Nebenkosten <3")).drafts
    assert d.text == "Heizkosten &amp; Nebenkosten <3"


def test_links_expanded_in_place_and_media_link_removed() -> None:
    p = post(
        "A https://t.co/aaa B https://t.co/bbb https://t.co/med",
        urls=(
            UrlEntity("https://t.co/aaa", "https://example.org/x?jahr=2023&tab=tagesordnung"),
            UrlEntity("https://t.co/bbb", "https://de.wikipedia.org/wiki/Genossenschaft"),
            UrlEntity("https://t.co/med", "https://x.com/WohnGenoNord/status/100/photo/1", media_key="m1"),
        ),
        media=(Media("m1", "photo", url="https://pbs.twimg.com/media/abc.jpg"),),
    )
    [d] = run(p).drafts
    assert d.text == "A https://example.org/x?jahr=2023&tab=tagesordnung B https://de.wikipedia.org/wiki/Genossenschaft"
    assert len(d.media) == 1


def test_unknown_tco_link_is_removed_noted_and_original_linked() -> None:
    c = run(post("Siehe https://t.co/zzz dazu"))
    [d] = c.drafts
    assert "t.co" not in d.text
    assert d.text.endswith("https://x.com/WohnGenoNord/status/100")
    assert any("https://t.co/zzz" in n for n in c.notes)


# --- rule 3: mentions ----------------------------------------------------------------


def test_mapped_mention_becomes_fediverse_handle_case_insensitively() -> None:
    [d] = run(post("Danke @GenoSocialHH!"), mentions={"genosocialhh": "genosocial@hamburg.social.example"}).drafts
    assert d.text == "Danke @genosocial@hamburg.social.example!"


class LookupOnly(Mapping[str, str]):
    """A mention map that answers lookups and refuses to be read whole, as the pipeline's
    ledger-backed map should be used (reading it whole costs a scan of every organisation: issue 18)."""

    def __init__(self, entries: dict[str, str]) -> None:
        self.entries = entries

    def __getitem__(self, handle: str) -> str:
        return self.entries[handle]

    def __iter__(self) -> Iterator[str]:
        raise AssertionError("the renderer read the whole mention map")

    def __len__(self) -> int:
        raise AssertionError("the renderer read the whole mention map (its length, or its truth)")


def test_the_renderer_looks_mentions_up_one_handle_at_a_time_and_never_reads_the_whole_map() -> None:
    mentions = LookupOnly({"genosocialhh": "genosocial@hamburg.social.example"})
    [d] = run(post("Danke @GenoSocialHH und @Fremd!"), mentions=mentions).drafts
    assert d.text == f"Danke @genosocial@hamburg.social.example und @{WORD_JOINER}Fremd!"


def test_policy_mention_map_is_used() -> None:
    policy = Policy(mention_map=(("hostsharing", "hostsharing@social.hostsharing.example"),))
    [d] = run(post("bei @Hostsharing"), policy=policy).drafts
    assert d.text == "bei @hostsharing@social.hostsharing.example"


def test_unmapped_mention_modes() -> None:
    p = post("Danke @Hostsharing.", mentions=(Mention("Hostsharing"),))
    assert run(p).drafts[0].text == f"Danke @{WORD_JOINER}Hostsharing."
    assert run(p, policy=Policy(mentions_unmapped="domain")).drafts[0].text == "Danke @Hostsharing@x.com."
    assert run(p, policy=Policy(mentions_unmapped="link")).drafts[0].text == "Danke https://x.com/Hostsharing."


def test_mention_without_entity_is_neutralised_and_remote_handles_pass() -> None:
    [d] = run(post("cc @nobody und @wohngenonord@wohnen.social.example")).drafts
    assert d.text == f"cc @{WORD_JOINER}nobody und @wohngenonord@wohnen.social.example"


def test_at_inside_a_url_is_encoded_not_a_mention() -> None:
    p = post("x https://t.co/u", urls=(UrlEntity("https://t.co/u", "https://example.org/a?b=1&@evil"),))
    [d] = run(p).drafts
    assert d.text == "x https://example.org/a?b=1&%40evil"
    assert not [m for m in mastodon_mention_re().finditer(d.text) if not m.group(2)]


def test_self_reply_drops_leading_reply_mentions_and_replies_to_parent() -> None:
    p = post(
        "@WohnGenoNord @GenoSocialHH Teil 2 mit @GenoSocialHH",
        post_id="101",
        in_reply_to_post_id="100",
        in_reply_to_user_id=OWN,
    )
    [d] = run(p).drafts
    assert d.text == f"Teil 2 mit @{WORD_JOINER}GenoSocialHH"
    assert d.in_reply_to == "100"


# --- rule 4, 8, 9 ---------------------------------------------------------------------


def test_hashtags_and_cashtags_stay() -> None:
    [d] = run(post("#Genossenschaft $WGN 500 €")).drafts
    assert d.text == "#Genossenschaft $WGN 500 €"


def test_sensitive_and_content_warning() -> None:
    [d] = run(post("Sperrmüll", sensitive=True), policy=Policy(content_warning="Vandalismus")).drafts
    assert d.sensitive is True and d.spoiler_text == "Vandalismus"
    assert d.length == status_length("Sperrmüll", "Vandalismus") == 9 + 11


def test_language_codes() -> None:
    assert [mastodon_language(x) for x in ["de", "en", "pt-BR", "in", "und", "zxx", "qme", "qht", "qam", "qst", "art", None, "xx"]] == [
        "de", "en", "pt", "id", None, None, None, None, None, None, None, None, None,
    ]
    assert run(post("🏠🔑❤️", lang="art")).drafts[0].language is None


# --- rule 5, 6: length and threads ------------------------------------------------------


def test_limit_comes_from_the_instance() -> None:
    text = "Wort " * 150  # 750 characters
    assert len(run(post(text.strip()), limits=InstanceLimits(max_characters=1000)).drafts) == 1
    assert len(run(post(text.strip())).drafts) == 2


def test_urls_count_23_so_long_links_do_not_split() -> None:
    url = "https://example.org/" + "a" * 600
    p = post("Link: https://t.co/l", urls=(UrlEntity("https://t.co/l", url),))
    [d] = run(p).drafts
    assert d.text == "Link: " + url and d.length == 6 + 23


def test_split_prefers_paragraphs_then_sentences_and_counters() -> None:
    para1 = "Erster Absatz. " * 12
    para2 = "Zweiter Absatz hat Sätze. " * 12
    text = (para1.strip() + "\n\n" + para2.strip())
    c = run(post(text), limits=InstanceLimits(max_characters=320), policy=Policy(thread_counters=True))
    texts = [d.text for d in c.drafts]
    assert texts[0] == para1.strip() + "\n\n1/" + str(len(texts))
    assert all(t.endswith(f"\n\n{i + 1}/{len(texts)}") for i, t in enumerate(texts))
    assert all(d.length <= 320 for d in c.drafts)
    assert [d.reply_to_part for d in c.drafts] == [None] + list(range(len(texts) - 1))
    for t in texts[1:]:
        body = t.rsplit("\n\n", 1)[0]
        assert body.endswith(".")  # cut at sentence ends


def test_overlong_word_is_cut_at_graphemes() -> None:
    word = "👨\u200d👩\u200d👧\u200d👦" * 150
    c = run(post(word), limits=InstanceLimits(max_characters=100))
    assert "".join(d.text for d in c.drafts) == word
    assert all(d.length <= 100 for d in c.drafts)


def test_media_goes_on_the_first_part() -> None:
    p = post("Satz. " * 200, media=(Media("m", "photo", url="https://pbs.twimg.com/media/p.jpg"),))
    c = run(p)
    assert len(c.drafts) > 1 and c.drafts[0].media and not any(d.media for d in c.drafts[1:])


def test_footer_counted_and_kept_whole() -> None:
    policy = Policy(footer="Original: {url}")
    c = run(post("Wort " * 120), policy=policy, limits=InstanceLimits(max_characters=300))
    assert c.drafts[-1].text.endswith("Original: https://x.com/WohnGenoNord/status/100")
    assert all(d.length <= 300 for d in c.drafts)


# --- rule 7: media ---------------------------------------------------------------------


def _video(bitrates: list[int], duration_ms: int = 60_000, **kw: object) -> Media:
    variants = tuple(MediaVariant(f"https://video.twimg.com/v/{b}.mp4", "video/mp4", b) for b in bitrates)
    variants += (MediaVariant("https://video.twimg.com/v/pl.m3u8", "application/x-mpegURL"),)
    return Media("v", "video", variants=variants, duration_ms=duration_ms, **kw)  # type: ignore[arg-type]


def test_video_highest_bitrate_that_fits() -> None:
    m = _video([256_000, 2_176_000, 832_000, 10_000_000])  # 60 s at 10 Mbit/s = 75 MB
    [d] = run(post("v", media=(m,)), limits=InstanceLimits(video_size_limit=40 * 1024 * 1024)).drafts
    assert d.media[0].source.endswith("/2176000.mp4")
    assert [f.rsplit("/", 1)[1] for f in d.media[0].fallbacks] == ["832000.mp4", "256000.mp4"]


def test_video_too_big_is_noted_and_original_linked() -> None:
    m = _video([10_000_000])
    c = run(post("v", media=(m,)), limits=InstanceLimits(video_size_limit=1024 * 1024))
    [d] = c.drafts
    assert not d.media and d.text == "v\n\nhttps://x.com/WohnGenoNord/status/100"
    assert any("exceeds" in n for n in c.notes)


def test_archive_media_uses_the_local_file() -> None:
    m = Media("p", "photo", url="https://pbs.twimg.com/media/p.jpg", local_path="/a/data/tweets_media/100-p.jpg", size_bytes=1000)
    [d] = run(post("x", media=(m,))).drafts
    assert d.media[0].source == "/a/data/tweets_media/100-p.jpg" and d.media[0].fallbacks == ()


def test_photo_too_big_locally_falls_back_to_smaller_remote_sizes() -> None:
    m = Media("p", "photo", url="https://pbs.twimg.com/media/p.jpg", local_path="/a/p.jpg", size_bytes=20 * 1024 * 1024)
    [d] = run(post("x", media=(m,))).drafts
    assert d.media[0].source == "https://pbs.twimg.com/media/p.jpg?name=large"


def test_video_and_photos_are_never_mixed_and_max_attachments_holds() -> None:
    photos = tuple(Media(f"p{i}", "photo", url=f"https://pbs.twimg.com/media/p{i}.jpg") for i in range(5))
    c = run(post("x", media=(photos[0], _video([832_000]), *photos[1:])))
    groups = [[m.type for m in d.media] for d in c.drafts]
    assert groups == [["photo"], ["video"], ["photo", "photo", "photo", "photo"]]
    assert [d.reply_to_part for d in c.drafts] == [None, 0, 1]


def test_alt_text_becomes_description_cut_to_limit() -> None:
    m = Media("p", "photo", url="https://pbs.twimg.com/media/p.jpg", alt_text="Ein Haus 🏠 mit Garten")
    [d] = run(post("x", media=(m,)), limits=InstanceLimits(description_limit=9)).drafts
    assert d.media[0].description == "Ein Haus "


def test_mime_type_not_accepted_is_noted() -> None:
    m = Media("p", "photo", url="https://pbs.twimg.com/media/p.png")
    c = run(post("x", media=(m,)), limits=InstanceLimits(supported_mime_types=("image/jpeg",)))
    assert not c.drafts[0].media and c.notes


# --- rule 10: retweets -------------------------------------------------------------------


def _retweet(**kw: object) -> SourcePost:
    original = post(
        "Fest am 4. Juli https://t.co/f",
        post_id="900",
        author_id="777",
        author_username="GenoSocialHH",
        urls=(UrlEntity("https://t.co/f", "https://genosocial.example/fest"),),
    )
    fields = dict(retweet_of=original, retweet_of_id="900", retweet_of_username="GenoSocialHH")
    fields.update(kw)
    return post("RT @GenoSocialHH: Fest am 4. Juli…", post_id="101", **fields)


def test_retweet_boost_when_bridged_else_skip() -> None:
    [d] = run(_retweet(), bridged=toots("900")).drafts
    assert d.kind == "boost" and d.boost_of == "900"
    c = run(_retweet())
    assert not c.drafts and "not bridged" in (c.skipped or "")
    assert run(_retweet(), policy=Policy(retweets="skip"), bridged=toots("900")).skipped


def test_retweet_link_posts_the_full_original() -> None:
    [d] = run(_retweet(), policy=Policy(retweets="link")).drafts
    assert d.text == (
        f"RT @{WORD_JOINER}GenoSocialHH: Fest am 4. Juli https://genosocial.example/fest\n\n"
        "https://x.com/GenoSocialHH/status/900"
    )


def test_truncated_archive_retweet_is_never_posted_as_whole() -> None:
    p = post("RT @GenoSocialHH: Am 1. Juli ist Internationaler…", retweet_of_username="GenoSocialHH", truncated=True)
    assert run(p).skipped
    [d] = run(p, policy=Policy(retweets="link")).drafts
    assert "Internationaler" not in d.text
    assert d.text.startswith(f"RT @{WORD_JOINER}GenoSocialHH:")


def test_own_retweet_boosts_never_reposts() -> None:
    own = post("Flyer", post_id="900")
    p = post("RT @WohnGenoNord: Flyer", post_id="101", retweet_of=own, retweet_of_id="900", retweet_of_username="WohnGenoNord")
    assert run(p, policy=Policy(retweets="link"), bridged=toots("900")).drafts[0].kind == "boost"
    assert run(p, policy=Policy(retweets="link")).skipped


# --- rule 11: quotes ---------------------------------------------------------------------


def _quote() -> SourcePost:
    return post(
        "Genau! https://t.co/q",
        quote_of_id="900",
        urls=(UrlEntity("https://t.co/q", "https://twitter.com/GenoSocialHH/status/900"),),
    )


def test_quote_native_link_toot_or_link_original() -> None:
    [d] = run(_quote(), limits=InstanceLimits(supports_quotes=True), bridged=toots("900")).drafts
    assert d.quote_of == "900" and d.text == "Genau!"
    [d] = run(_quote(), bridged=toots("900")).drafts
    assert d.quote_of is None and d.text == "Genau! https://wohnen.social.example/@coop/9900"
    [d] = run(_quote()).drafts
    assert d.text == "Genau! https://twitter.com/GenoSocialHH/status/900"
    [d] = run(post("Lesenswert.", quote_of_id="901")).drafts
    assert d.text == "Lesenswert.\n\nhttps://x.com/i/web/status/901"
    assert run(_quote(), policy=Policy(quotes="skip")).skipped


# --- rule 12: replies and visibility ---------------------------------------------------------


def test_reply_policies() -> None:
    other = post("@GenoSocialHH Gern!", in_reply_to_post_id="55", in_reply_to_user_id="777",
                 mentions=(Mention("GenoSocialHH", "777"),))
    assert "another account" in (run(other).skipped or "")
    [d] = run(other, policy=Policy(replies="all")).drafts
    assert d.text == "Gern!\n\nhttps://x.com/GenoSocialHH/status/55" and d.in_reply_to is None
    selfreply = post("Teil 2", in_reply_to_post_id="55", in_reply_to_user_id=OWN)
    assert run(selfreply, policy=Policy(replies="none")).skipped


def test_visibility_per_kind() -> None:
    vis = VisibilityPolicy(original="public", self_reply="unlisted", retweet="private", quote="direct", backfill="unlisted")
    policy = Policy(visibility=vis, retweets="link")
    assert run(post("a"), policy=policy).drafts[0].visibility == "public"
    assert run(post("a", in_reply_to_post_id="1", in_reply_to_user_id=OWN), policy=policy).drafts[0].visibility == "unlisted"
    assert run(_retweet(), policy=policy).drafts[0].visibility == "private"
    assert run(_quote(), policy=policy).drafts[0].visibility == "direct"
    assert run(post("a"), policy=Policy(visibility=VisibilityPolicy(backfill="private")), backfill=True).drafts[0].visibility == "private"


# --- rule 13, 14, edits, backfill ---------------------------------------------------------------


def test_poll_cut_to_instance_limits() -> None:
    p = post("Name?", poll=Poll(("Lindenstube", "Treff", "Salon"), duration_minutes=60 * 24 * 90))
    limits = InstanceLimits(poll_max_options=2, poll_max_characters_per_option=5)
    c = run(p, limits=limits)
    assert c.drafts[0].poll is not None
    assert c.drafts[0].poll.options == ("Linde", "Treff")
    assert c.drafts[0].poll.expires_in == limits.poll_max_expiration
    assert len(c.notes) == 2


def test_edit_of_a_bridged_post() -> None:
    p = post("neu", post_id="102", edit_history_ids=("100", "102"))
    [d] = run(p, bridged=toots("100")).drafts
    assert d.kind == "edit" and d.edit_of == "100"
    assert run(p).drafts[0].kind == "status"
    assert "superseded" in (run(post("alt", post_id="100", edit_history_ids=("100", "102"))).skipped or "")


def test_backfill_date_prefix() -> None:
    [d] = run(post("Sommerfest"), policy=Policy(date_prefix=True), backfill=True).drafts
    assert d.text == "2026-02-20: Sommerfest"
    assert run(post("Sommerfest"), policy=Policy(date_prefix=True)).drafts[0].text == "Sommerfest"


def test_empty_post_links_the_original() -> None:
    c = run(post("@GenoSocialHH", in_reply_to_post_id="1", in_reply_to_user_id=OWN))
    assert c.drafts[0].text == "https://x.com/WohnGenoNord/status/100"


# --- issue 12: limits on what a stranger controls --------------------------------------------


def test_a_huge_post_is_cut_after_max_thread_parts_and_the_last_part_links_the_original() -> None:
    text = "Ein Satz über die Genossenschaft. " * 12_000  # about 400,000 characters
    c = run(post(text.strip()))
    assert len(c.drafts) == 10
    assert all(d.length <= 500 for d in c.drafts)
    last = c.drafts[-1].text
    assert last.endswith("…\n\nhttps://x.com/WohnGenoNord/status/100")
    assert any("max_thread_parts: 10" in n and "links the original" in n for n in c.notes)
    assert "max_thread_parts" in c.drafts[0].notes[0]  # shown by preview and recorded with the delivery


def test_max_thread_parts_counts_media_follow_ups_counters_and_keeps_the_footer() -> None:
    videos = tuple(dataclasses.replace(_video([500_000], duration_ms=10_000), key=f"v{i}") for i in range(2))
    policy = Policy(max_thread_parts=4, thread_counters=True, footer="Original: {url}")
    c = run(post("Wort " * 2000, media=videos), policy=policy)
    assert len(c.drafts) == 4  # three text parts and one video of its own
    texts = [d.text for d in c.drafts if d.text]
    assert len(texts) == 3 and texts[-1].endswith("…\n\nOriginal: https://x.com/WohnGenoNord/status/100\n\n3/3")
    assert all(d.length <= 500 for d in c.drafts)


def test_a_post_within_max_thread_parts_is_split_whole() -> None:
    text = "Satz. " * 400
    c = run(post(text.strip()), policy=Policy(max_thread_parts=10))
    assert "".join(d.text for d in c.drafts).replace(" ", "") == text.replace(" ", "")
    assert not any("max_thread_parts" in n for n in c.notes)


def test_retweet_skip_reasons_read_well_without_an_id() -> None:
    own = post("RT @WohnGenoNord: Flyer", post_id="101", retweet_of_username="WohnGenoNord", truncated=True)
    assert run(own).skipped == (
        "post 101: retweet of an own post whose id the source does not give; nothing to boost"
    )
    other = post("RT @KoopB: Fest", post_id="102", retweet_of_username="KoopB")
    assert run(other).skipped == (
        "post 102: retweet of @KoopB's post (the source does not give its id): not bridged, nothing to boost"
        " (policy retweets: auto)"
    )
    assert "retweet of @GenoSocialHH's post 900: not bridged" in (run(_retweet()).skipped or "")
