"""The Bluesky renderer (bridge/convert/bluesky.py): pure, so checked without a server.

Properties over generated posts: every facet's UTF-8 byte range slices the text to what it claims,
no part is over the lexicon's 300 graphemes or 3,000 bytes, and no word is lost across the parts.
"""

from __future__ import annotations

from datetime import datetime, timezone

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.convert.bluesky import convert, display_url, grapheme_length
from bridge.convert.bluesky_lexicon import POST_MAX_BYTES, POST_MAX_GRAPHEMES
from bridge.model import BridgedToot, Draft, Handle, Link, MediaItem, Post, PostRef
from bridge.policy import InstanceLimits, Policy, VisibilityPolicy

WHEN = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
LIMITS = InstanceLimits(max_characters=300, max_media_attachments=4, image_size_limit=50_000_000,
                        description_limit=2000, supports_quotes=True)
MENTIONS = {"wohneneg": "wohnen-eg.bsky.social"}


def post(text: str, **kwargs: object) -> Post:
    return Post(id=str(kwargs.pop("id", "100")), author="coop", created_at=WHEN, text=text,
                permalink=f"https://x.com/coop/status/{kwargs.get('id', '100')}", network="x", home="x.com",
                **kwargs)  # type: ignore[arg-type]


def claimed(draft: Draft) -> list[tuple[str, str]]:
    """(what each facet's byte range holds, what the facet says it holds)."""
    raw = draft.text.encode()
    out = []
    for f in draft.facets:
        shown = raw[f.byte_start : f.byte_end].decode()
        want = {"link": display_url(f.value), "mention": "@" + f.value, "tag": "#" + f.value}[f.kind]
        out.append((shown if not shown.startswith("＃") else "#" + shown[1:], want))
    return out


def photo(n: int, alt: str = "") -> MediaItem:
    return MediaItem(key=f"m{n}", type="photo", alt_text=alt or f"picture {n}", candidates=(f"https://img.example/{n}.jpg",),
                     mime_type="image/jpeg")


WORDS = st.sampled_from([
    "Genossenschaft", "Grüße", "e\u0301te\u0301", "👨‍👩‍👧‍👦", "日本語の文章", "🇩🇪", "Wohnen.", "ok!", "Straße",
    "https://geno.social/about/a-rather-long-path?q=1", "#Wohnen", "@WohnenEG", "@stranger", "@other.bsky.social",
    "\n\n", "\n", "x" * 40, "ﷺ", "a\u200db",
])
TEXTS = st.lists(WORDS, min_size=1, max_size=220).map(" ".join).map(str.strip).filter(bool)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(TEXTS, st.booleans())
def test_facets_slice_the_text_to_what_they_claim_and_no_part_is_over_the_limits(text: str, counters: bool) -> None:
    conversion = convert(post(text), LIMITS, Policy(thread_counters=counters, max_thread_parts=100), mentions=MENTIONS)
    assert conversion.drafts
    for draft in conversion.drafts:
        assert grapheme_length(draft.text) <= POST_MAX_GRAPHEMES
        assert len(draft.text.encode()) <= POST_MAX_BYTES
        assert draft.length == grapheme_length(draft.text)
        for shown, want in claimed(draft):
            assert shown == want
        starts = [f.byte_start for f in draft.facets]
        assert starts == sorted(starts)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(["Wort", "Grüße", "e\u0301", "👨‍👩‍👧‍👦", "日本語", "\n\n", "Satz.", "x" * 30]),
                min_size=1, max_size=400).map(" ".join).map(str.strip).filter(bool))
def test_no_text_is_lost_across_the_parts_of_a_thread(text: str) -> None:
    conversion = convert(post(text), LIMITS, Policy(max_thread_parts=1000))
    joined = "".join(d.text for d in conversion.drafts)
    assert "".join(joined.split()) == "".join(text.split())
    for i, draft in enumerate(conversion.drafts[1:], 1):
        assert draft.reply_to_part == i - 1


def test_a_300_grapheme_text_of_long_emoji_is_split_by_its_3000_bytes() -> None:
    family = "👨‍👩‍👧‍👦"  # one grapheme, 25 bytes
    conversion = convert(post(" ".join([family] * 200)), LIMITS, Policy())
    assert len(conversion.drafts) > 1
    assert all(len(d.text.encode()) <= POST_MAX_BYTES for d in conversion.drafts)
    assert sum(d.text.count(family) for d in conversion.drafts) == 200


def test_a_link_is_shown_shortened_and_its_facet_carries_the_whole_url() -> None:
    url = "https://geno.social/about/our-cooperative-and-its-history?utm=x"
    [draft] = convert(post(f"Read {url} now"), LIMITS, Policy()).drafts
    assert draft.text == "Read geno.social/about/our-co... now"
    [facet] = draft.facets
    assert (facet.kind, facet.value) == ("link", url)
    assert draft.text.encode()[facet.byte_start : facet.byte_end] == b"geno.social/about/our-co..."


def test_only_a_linked_organisations_handle_becomes_a_mention_facet() -> None:
    text = "Danke @WohnenEG und @stranger, schreib an info@wohnen.example"
    [draft] = convert(post(text, mentions=(Handle("x", "WohnenEG"), Handle("x", "stranger"))), LIMITS, Policy(),
                      mentions=MENTIONS).drafts
    assert draft.text == "Danke @wohnen-eg.bsky.social und @stranger, schreib an info@wohnen.example"
    assert [(f.kind, f.value) for f in draft.facets] == [("mention", "wohnen-eg.bsky.social")]


def test_the_bluesky_renderer_looks_mentions_up_one_handle_at_a_time_and_never_reads_the_whole_map() -> None:
    from tests.test_convert import LookupOnly

    [draft] = convert(post("Danke @WohnenEG und @stranger", mentions=(Handle("x", "WohnenEG"), Handle("x", "stranger"))),
                      LIMITS, Policy(), mentions=LookupOnly(MENTIONS)).drafts
    assert draft.text == "Danke @wohnen-eg.bsky.social und @stranger"


def test_tags_are_tag_facets_with_utf8_offsets_after_multibyte_text() -> None:
    [draft] = convert(post("Grüße aus Köln #Genossenschaft #Wohnen"), LIMITS, Policy()).drafts
    assert claimed(draft) == [("#Genossenschaft", "#Genossenschaft"), ("#Wohnen", "#Wohnen")]
    assert draft.facets[0].byte_start == len("Grüße aus Köln ".encode())


def test_more_than_four_images_go_to_the_following_parts() -> None:
    conversion = convert(post("Neun Bilder", media=tuple(photo(n) for n in range(9))), LIMITS, Policy())
    assert [len(d.media) for d in conversion.drafts] == [4, 4, 1]
    assert [d.text for d in conversion.drafts] == ["Neun Bilder", "", ""]
    assert [d.reply_to_part for d in conversion.drafts] == [None, 0, 1]
    assert conversion.drafts[0].media[0].description == "picture 0"


def test_a_long_post_with_images_carries_them_along_its_thread() -> None:
    conversion = convert(post("Wort " * 150, media=tuple(photo(n) for n in range(6))), LIMITS, Policy())
    assert [len(d.media) for d in conversion.drafts] == [4, 2, 0][: len(conversion.drafts)]
    assert all(d.text for d in conversion.drafts)


def test_sensitive_media_get_a_self_label_and_the_language_is_kept_as_bcp47() -> None:
    [draft] = convert(post("Bild", media=(photo(1),), sensitive=True, lang="pt-BR"), LIMITS, Policy()).drafts
    assert draft.labels == ("graphic-media",)
    assert draft.language == "pt-BR"
    [plain] = convert(post("Text", lang="und"), LIMITS, Policy()).drafts
    assert plain.labels == () and plain.language is None


def test_a_policy_content_warning_is_the_first_line_because_bluesky_has_no_warning_field() -> None:
    [draft] = convert(post("Inhalt"), LIMITS, Policy(content_warning="Politik")).drafts
    assert draft.text == "CW: Politik\n\nInhalt"


def test_a_post_the_policy_keeps_private_is_not_posted_to_bluesky() -> None:
    policy = Policy(visibility=VisibilityPolicy(original="private"))
    conversion = convert(post("nur für Mitglieder"), LIMITS, policy)
    assert conversion.drafts == ()
    assert conversion.skipped is not None and "every Bluesky post is public" in conversion.skipped


def test_a_quote_of_a_bridged_post_is_a_native_quote_and_its_link_leaves_the_text() -> None:
    quoted_url = "https://x.com/other/status/7"
    text = f"Schaut euch das an {quoted_url}"
    p = post(text, links=(Link(quoted_url, text.index(quoted_url), len(text), post_id="7"),),
             quote_of=PostRef("7", quoted_url, "other"))
    bridged = {"7": BridgedToot("at://did:plc:x/app.bsky.feed.post/3abc", "https://bsky.app/profile/x/post/3abc")}
    [draft] = convert(p, LIMITS, Policy(), bridged=bridged.get).drafts
    assert draft.quote_of == "7"
    assert draft.text == "Schaut euch das an"
    [unbridged] = convert(p, LIMITS, Policy()).drafts
    assert unbridged.quote_of is None and unbridged.facets[0].value == quoted_url


def test_a_backfilled_post_keeps_its_source_time_for_created_at_and_a_live_one_does_not() -> None:
    [live] = convert(post("jetzt"), LIMITS, Policy()).drafts
    [old] = convert(post("damals"), LIMITS, Policy(), backfill=True).drafts
    assert live.created_at == old.created_at == WHEN
    assert (live.backdate, old.backdate) == (False, True)


def test_a_retweet_of_a_bridged_post_is_a_repost() -> None:
    p = post("", repost_of=PostRef("7", "https://x.com/other/status/7", "other"))
    bridged = {"7": BridgedToot("at://did:plc:x/app.bsky.feed.post/3abc", "https://bsky.app/profile/x/post/3abc")}
    [draft] = convert(p, LIMITS, Policy(), bridged=bridged.get).drafts
    assert (draft.kind, draft.boost_of) == ("boost", "7")


def test_the_preview_prints_a_bluesky_draft_with_its_grapheme_count_and_facets() -> None:
    from bridge.render import render_text

    conversion = convert(post("Grüße 👨‍👩‍👧‍👦 https://geno.social/about/our-history #Wohnen", sensitive=True,
                              media=(photo(1),)), LIMITS, Policy())

    out = render_text(conversion, POST_MAX_GRAPHEMES)
    assert "length: 43 / 300" in out
    assert "facet link bytes 34-61 'geno.social/about/our-hi...' -> https://geno.social/about/our-history" in out
    assert "facet tag bytes 62-69 '#Wohnen'" in out
    assert "labels: graphic-media" in out


def test_a_text_longer_than_max_thread_parts_is_cut_and_the_last_part_links_the_original() -> None:
    conversion = convert(post("Wort " * 400), LIMITS, Policy(max_thread_parts=2))
    assert len(conversion.drafts) == 2
    last = conversion.drafts[1]
    assert last.text.endswith("…\n\nx.com/coop/status/...")  # shown as Bluesky's app shows a link
    assert claimed(last)[-1] == ("x.com/coop/status/...", "x.com/coop/status/...")
    assert last.facets[-1].value == "https://x.com/coop/status/100"
    assert any("cut after 2" in n for n in conversion.notes)


def test_thread_counters_count_the_parts_and_still_fit() -> None:
    conversion = convert(post("Wort " * 150), LIMITS, Policy(thread_counters=True))
    n = len(conversion.drafts)
    assert n > 1
    assert [d.text.rsplit("\n\n", 1)[1] for d in conversion.drafts] == [f"{i}/{n}" for i in range(1, n + 1)]
    assert all(grapheme_length(d.text) <= POST_MAX_GRAPHEMES for d in conversion.drafts)


def test_a_poll_is_written_as_text_because_bluesky_has_none() -> None:
    from bridge.model import Poll

    [draft] = convert(post("Wann treffen wir uns?", poll=Poll(("Montag", "Dienstag"))), LIMITS, Policy()).drafts
    assert draft.text == "Wann treffen wir uns?\n\n○ Montag\n○ Dienstag"


def test_an_unmapped_handle_can_be_written_as_a_link_to_its_profile() -> None:
    [draft] = convert(post("Danke @stranger"), LIMITS, Policy(mentions_unmapped="link")).drafts
    assert draft.text == "Danke x.com/stranger"
    assert [(f.kind, f.value) for f in draft.facets] == [("link", "https://x.com/stranger")]


def test_a_video_is_alone_in_its_post_and_images_go_together() -> None:
    from bridge.model import MediaVariant

    video = MediaItem(key="v", type="video", variants=(MediaVariant("https://vid.example/v.mp4", "video/mp4", 800_000),),
                      duration_ms=10_000)
    conversion = convert(post("Film und Bilder", media=(photo(1), video, photo(2))), LIMITS, Policy())
    assert [[m.type for m in d.media] for d in conversion.drafts] == [["photo"], ["video"], ["photo"]]
