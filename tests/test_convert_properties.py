"""Properties of the conversion engine over generated posts (hypothesis, derandomized).

For every generated post and instance limit: no draft over the limit, no text
lost when splitting, no t.co link left, no bare unmapped @handle (checked with
Mastodon's own mention regex), no exception, same output for the same input.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import datetime, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.convert import mastodon_mention_re, status_length
from bridge.model import Media, MediaVariant, Mention, SourcePost, UrlEntity
from bridge.policy import InstanceLimits, Policy
from tests.x_convert import convert

OWN = "1400000000000000001"
MAPPED = {"genosocialhh": "genosocial@hamburg.social.example", "hostsharing": "hs@social.example"}
TCO = re.compile(r"https?://t\.co/", re.IGNORECASE)
SETTINGS = settings(derandomize=True, max_examples=150, deadline=None)

words = st.sampled_from(
    ["Genossenschaft", "Wohnen", "und", "die", "Mitglieder", "Versammlung.", "Danke!", "Frage?", "500 €",
     "👨\u200d👩\u200d👧\u200d👦", "🇩🇪", "أهلاً", "e\u0301", "#Wohnen", "$WGN", "&", "<3", "x" * 60, "Satz…",
     "@GenoSocialHH", "@hostsharing", "@someone", "@Some_One.", "(@nobody)", "@wohngenonord@wohnen.social.example",
     "mail@example.org", "https://example.org/@who", "http://a.example/x?b=1&@c"]
)
separators = st.sampled_from([" ", " ", " ", "\n", "\n\n", "  ", " \n "])


@st.composite
def posts(draw: st.DrawFn) -> SourcePost:
    pieces: list[str] = []
    urls: list[UrlEntity] = []
    n = draw(st.integers(1, 120))
    for i in range(n):
        if draw(st.integers(0, 9)) == 0:
            tco = f"https://t.co/L{i}x"
            pieces.append(tco)
            if draw(st.booleans()):
                target = draw(st.sampled_from(["https://example.org/a?b=1&c=2", "https://de.wikipedia.org/wiki/X_(Y)",
                                               "https://mastodon.social/@Gargron", "https://ex.example/" + "p" * 80]))
                urls.append(UrlEntity(tco, target))
        else:
            pieces.append(draw(words))
        pieces.append(draw(separators))
    media: tuple[Media, ...] = ()
    if draw(st.booleans()):
        pieces.append("https://t.co/MEDIA")
        urls.append(UrlEntity("https://t.co/MEDIA", "https://x.com/c/status/1/photo/1", media_key="m0"))
        media = tuple(
            Media(f"m{i}", "photo", url=f"https://pbs.twimg.com/media/m{i}.jpg") for i in range(draw(st.integers(1, 4)))
        )
        if draw(st.booleans()):
            media += (Media("v", "video", variants=(MediaVariant("https://video.twimg.com/v.mp4", "video/mp4", 832000),),
                            duration_ms=draw(st.integers(1000, 10_000_000))),)
    reply = draw(st.sampled_from([None, "self", "other"]))
    return SourcePost(
        id="1788109077890706325",
        author_id=OWN,
        author_username="WohnGenoNord",
        created_at=datetime(2026, 2, 20, tzinfo=timezone.utc),
        text="".join(pieces),
        urls=tuple(urls),
        mentions=(Mention("GenoSocialHH"),),
        media=media,
        in_reply_to_post_id="1" if reply else None,
        in_reply_to_user_id=(OWN if reply == "self" else "2") if reply else None,
        lang=draw(st.sampled_from(["de", "und", "qme", None])),
    )


policies = st.builds(
    Policy,
    replies=st.sampled_from(["self", "all"]),
    mentions_unmapped=st.sampled_from(["plain", "domain", "link"]),
    thread_counters=st.booleans(),
    footer=st.sampled_from(["", "Original: {url}", "🔗 {url} #bridge"]),
    content_warning=st.sampled_from(["", "CW", "Baustelle 🏗️"]),
    max_thread_parts=st.sampled_from([10, 3, 1, 10**6]),
)
limits = st.builds(InstanceLimits, max_characters=st.integers(100, 1000), max_media_attachments=st.integers(1, 4))


def _convert(p: SourcePost, lim: InstanceLimits, pol: Policy):
    return convert(p, lim, pol, own_user_id=OWN, mentions=MAPPED)


@SETTINGS
@given(posts(), limits, policies)
def test_no_draft_over_the_limit_and_lengths_are_mastodons(p: SourcePost, lim: InstanceLimits, pol: Policy) -> None:
    c = _convert(p, lim, pol)
    assert c.drafts or c.skipped
    for d in c.drafts:
        assert d.length == status_length(d.text, d.spoiler_text)
        assert d.length <= lim.max_characters
        assert len(d.media) <= lim.max_media_attachments


@SETTINGS
@given(posts(), limits, policies)
def test_no_tco_and_no_bare_unmapped_mention(p: SourcePost, lim: InstanceLimits, pol: Policy) -> None:
    for d in _convert(p, lim, pol).drafts:
        assert not TCO.search(d.text), d.text
        bare = [m.group(0) for m in mastodon_mention_re().finditer(d.text) if not m.group(2)]
        assert not bare, (bare, d.text)


def _strip_counter(text: str, i: int, n: int) -> str:
    suffix = f"\n\n{i}/{n}"
    assert text.endswith(suffix)
    return text[: -len(suffix)]


@SETTINGS
@given(posts(), limits, policies)
def test_no_text_lost_when_splitting(p: SourcePost, lim: InstanceLimits, pol: Policy) -> None:
    """The parts are consecutive slices of the unsplit text; only whitespace at the cuts is gone."""
    pol = dataclasses.replace(pol, max_thread_parts=10**6)  # the cap is the next test's
    whole = _convert(p, InstanceLimits(max_characters=10**6, max_media_attachments=lim.max_media_attachments), pol)
    split = _convert(p, lim, pol)
    if whole.skipped:
        assert split.skipped
        return
    full = whole.drafts[0].text
    parts = [d for d in split.drafts if d.kind == "status" and (d.text or d.part == 0)]
    if pol.thread_counters and len(parts) > 1:
        texts = [_strip_counter(d.text, i + 1, len(parts)) for i, d in enumerate(parts)]
    else:
        texts = [d.text for d in parts]
    pos = 0
    for t in texts:
        at = full.find(t, pos)
        assert at >= 0, (t, full)
        assert not full[pos:at].strip(), full[pos:at]
        pos = at + len(t)
    assert not full[pos:].strip()


@SETTINGS
@given(posts(), limits, policies)
def test_a_thread_never_exceeds_max_thread_parts_and_a_cut_one_links_the_original(
    p: SourcePost, lim: InstanceLimits, pol: Policy
) -> None:
    """Text parts plus media follow-ups stay within the cap (one text part at least); a cut thread links the original."""
    c = _convert(p, lim, pol)
    statuses = [d for d in c.drafts if d.kind == "status"]
    follow_ups = [d for d in statuses if d.part > 0 and not d.text]
    assert len(statuses) <= max(pol.max_thread_parts, 1 + len(follow_ups))
    if any("max_thread_parts" in n for n in c.notes):
        last_text = [d for d in statuses if d.text][-1].text
        assert "…\n\n" in last_text and p.permalink in last_text


@SETTINGS
@given(st.text(max_size=600), st.lists(st.text(max_size=30), max_size=3), limits, policies)
def test_never_raises_and_is_deterministic(text: str, links: list[str], lim: InstanceLimits, pol: Policy) -> None:
    p = SourcePost(
        id="5",
        author_id=OWN,
        author_username="c",
        created_at=datetime(2026, 2, 20, tzinfo=timezone.utc),
        text=text + " " + " ".join(f"https://t.co/{i}" for i in range(len(links))),
        urls=tuple(UrlEntity(f"https://t.co/{i}", target) for i, target in enumerate(links)),
        lang=text[:5] or None,
    )
    first = _convert(p, lim, pol)
    assert first == _convert(p, lim, pol)
    for d in first.drafts:
        assert d.length <= lim.max_characters
        assert not TCO.search(d.text)
        assert not [m for m in mastodon_mention_re().finditer(d.text) if not m.group(2)]
