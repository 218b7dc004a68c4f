"""The Mastodon renderer: a ``Message`` (what to say, ``bridge.convert.say``) as Mastodon drafts.

``convert`` runs both steps for one neutral ``Post``. Pure: no I/O, no clock,
no network; the same inputs give the same drafts. The rules are those of
docs/conversion-rules.md (issue 3, "Conversion engine"); each is cited where it
is applied. What is Mastodon's here: how it counts (a URL 23), how it reads
mentions, its media, poll and per-status limits, native quotes, edits.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace

from bridge.convert.counting import (
    WORD_JOINER,
    cut_description,
    cut_graphemes,
    mastodon_mention_re,
    status_length,
)
from bridge.convert.say import Message, Skip, say
from bridge.convert.split import split_text
from bridge.convert.tokens import extract_urls
from bridge.model import BridgedToot, Draft, MediaDraft, MediaItem, PollDraft, Post
from bridge.policy import InstanceLimits, Policy

# ISO 639-1 (Mastodon accepts these as `language`; X also sends BCP 47 tags and
# special codes like und, zxx, qme, qht, qam, qst, art that mean "no language").
ISO_639_1 = frozenset(
    "aa ab ae af ak am an ar as av ay az ba be bg bh bi bm bn bo br bs ca ce ch co cr cs cu cv cy da de dv dz ee "
    "el en eo es et eu fa ff fi fj fo fr fy ga gd gl gn gu gv ha he hi ho hr ht hu hy hz ia id ie ig ii ik io is "
    "it iu ja jv ka kg ki kj kk kl km kn ko kr ks ku kv kw ky la lb lg li ln lo lt lu lv mg mh mi mk ml mn mr ms "
    "mt my na nb nd ne ng nl nn no nr nv ny oc oj om or os pa pi pl ps pt qu rm rn ro ru rw sa sc sd se sg si sk "
    "sl sm sn so sq sr ss st su sv sw ta te tg th ti tk tl tn to tr ts tt tw ty ug uk ur uz ve vi vo wa wo xh yi "
    "yo za zh zu".split()
)
# Deprecated codes X still sends (ISO 639-1 replaced them).
_LANG_ALIASES = {"in": "id", "iw": "he", "ji": "yi"}

DEFAULT_POLL_SECONDS = 24 * 3600


@dataclass(frozen=True)
class Conversion:
    """The result of converting one source post."""

    drafts: tuple[Draft, ...] = ()  # in posting order; empty when skipped
    skipped: str | None = None  # why nothing is posted, when policy says so
    notes: tuple[str, ...] = field(default=())  # what could not be bridged, and why


def mastodon_language(lang: str | None) -> str | None:
    """A source's BCP 47 ``lang`` to Mastodon ``language``: an ISO 639-1 code, or None (und, zxx, qme, art...)."""
    if not lang:
        return None
    primary = lang.strip().lower().replace("_", "-").split("-")[0]
    primary = _LANG_ALIASES.get(primary, primary)
    return primary if primary in ISO_639_1 else None


# --- text --------------------------------------------------------------------------------


class _Accounts(Mapping[str, str]):
    """``first`` over ``second`` (lowercased handles), looked up without copying either."""

    def __init__(self, first: Mapping[str, str], second: Mapping[str, str]) -> None:
        self.first, self.second = first, second

    def __getitem__(self, handle: str) -> str:
        found = self.first.get(handle)
        return found if found is not None else self.second[handle]

    def __iter__(self) -> Iterator[str]:
        return iter({**self.second, **self.first})

    def __len__(self) -> int:
        return len({**self.second, **self.first})


@dataclass
class _Ctx:
    post: Post
    limits: InstanceLimits
    policy: Policy
    accounts: Mapping[str, str]  # lowercased source handle -> "user@instance"
    bridged: Callable[[str], BridgedToot | None]
    notes: list[str] = field(default_factory=list)
    link_original: bool = False  # something could not be bridged: link the original post


def _neutral_mention(username: str, mode: str, home: str, profile_url: str = "") -> str:
    """An unmapped handle, written so Mastodon cannot read it as a (local) mention.

    plain: "@" + WORD JOINER + handle; Mastodon's MENTION_RE needs [a-z0-9_]
    right after "@", so this is provably no mention and still reads as @handle.
    domain and link name the source network's web domain ``home``; a network whose
    handles are no addresses (``profile_url`` set: Bluesky) gets its profile link for both.
    """
    if profile_url and mode in ("domain", "link"):
        return profile_url.replace("{handle}", username)
    if mode == "domain":
        return f"@{username}@{home}"
    if mode == "link":
        return f"https://{home}/{username}"
    return f"@{WORD_JOINER}{username}"


def rewrite_mentions(text: str, accounts: Mapping[str, str], mode: str, home: str, profile_url: str = "") -> str:
    """Map or neutralise every bare ``@name`` that Mastodon would read as a mention.

    Remote mentions the author wrote (``@user@domain``) stay. Inside a URL a bare
    match (e.g. after ``&``) gets its ``@`` percent-encoded: same link, no mention.
    """
    regex = mastodon_mention_re()
    url_spans = [(t.start, t.end) for t in extract_urls(text)]
    out: list[str] = []
    last = 0
    for m in regex.finditer(text):
        if m.group(2):  # has a domain: a real remote mention
            continue
        at = m.start()
        name = m.group(1)
        if any(a <= at < b for a, b in url_spans):
            replacement = "%40" + name
        elif name.lower() in accounts:
            replacement = "@" + accounts[name.lower()].lstrip("@")
        else:
            replacement = _neutral_mention(name, mode, home, profile_url)
        out.append(text[last:at])
        out.append(replacement)
        last = m.end()
    out.append(text[last:])
    return "".join(out)


def _quote_target(ctx: _Ctx, post: Post) -> tuple[str | None, str | None]:
    """(replacement for the quote link in the text or None to keep it, native quote id)."""
    qid = post.quote_of.id if post.quote_of else None
    if not qid:
        return None, None
    toot = ctx.bridged(qid)
    if toot is None:
        return None, None
    if ctx.limits.supports_quotes and ctx.policy.quotes == "auto":
        return "", qid
    return toot.url, None


def _body(ctx: _Ctx, post: Post) -> tuple[str, list[str], str | None]:
    """The text of ``post`` with its quote link written for Mastodon; also tail links and a native quote id.

    Rule 11: a quote of a bridged post is a native quote (the link removed) where
    the instance has quotes, else a link to the bridged toot; a quote of a post
    that is not bridged keeps the link to the original, added after the text
    when the text does not hold it. (Rule 2, links expanded, is the source's.)
    """
    text = post.text
    qid = post.quote_of.id if post.quote_of else None
    quote_replacement, native_quote = _quote_target(ctx, post)
    quote_in_text = False
    tails: list[str] = []
    pieces: list[str] = []
    last = 0
    for link in post.links:
        if not qid or link.post_id != qid:
            continue
        quote_in_text = True
        if quote_replacement is not None:
            pieces.append(text[last : link.start])
            pieces.append(quote_replacement)
            last = link.end
    pieces.append(text[last:])
    body = "".join(pieces)
    if qid and not quote_in_text and post.quote_of is not None:
        if quote_replacement is None:
            tails.append(post.quote_of.url)
        elif quote_replacement:
            tails.append(quote_replacement)
    return _tidy(body), tails, native_quote


def _tidy(text: str) -> str:
    """Strip the ends and the spaces a removed link leaves at line ends."""
    text = re.sub(r"[ \t]+\n", "\n", text)
    return text.strip()


# --- media ------------------------------------------------------------------------------


def _mime_ok(limits: InstanceLimits, mime: str) -> bool:
    return not limits.supported_mime_types or mime in limits.supported_mime_types


def _mb(n: float) -> str:
    return f"{n / 1024 / 1024:.1f} MB"


def _media_draft(ctx: _Ctx, post: Post, m: MediaItem) -> MediaDraft | None:
    """Rule 7: the best candidate that fits the instance, or None with a note."""
    limits = ctx.limits
    description = None
    if m.alt_text:
        description = cut_description(m.alt_text, limits.description_limit)
        if description != m.alt_text:
            ctx.notes.append(f"post {post.id}: media {m.key}: description cut to {limits.description_limit} characters")
    where = f"post {post.id}: media {m.key} ({m.type})"
    if m.type == "photo":
        mime = m.mime_type or "image/jpeg"
        if not _mime_ok(limits, mime):
            ctx.notes.append(f"{where}: {mime} not accepted by the instance; original post linked")
            return None
        remote = list(m.candidates)
        too_big = m.size_bytes is not None and m.size_bytes > limits.image_size_limit
        if m.local_path and not too_big:
            fallbacks = () if m.size_bytes is not None else tuple(remote[1:])
            return MediaDraft("photo", m.local_path, description, fallbacks)
        if too_big:
            remote = remote[1:]  # "orig" (or the archive file) is known to be too big
        if not remote:
            reason = f"larger than {_mb(limits.image_size_limit)}" if too_big else "no file or URL"
            ctx.notes.append(f"{where}: {reason}; original post linked")
            return None
        return MediaDraft("photo", remote[0], description, tuple(remote[1:]))
    # video and animated_gif: mp4 variants, highest bitrate that fits (HLS playlists cannot be uploaded)
    if not _mime_ok(limits, "video/mp4"):
        ctx.notes.append(f"{where}: video/mp4 not accepted by the instance; original post linked")
        return None
    mp4 = sorted(
        (v for v in m.variants if v.content_type == "video/mp4"),
        key=lambda v: (-(v.bit_rate or 0), v.url),
    )

    def estimate(bit_rate: int | None) -> float | None:
        if m.duration_ms is None or bit_rate is None:
            return None
        return bit_rate * m.duration_ms / 1000 / 8

    fitting = [v for v in mp4 if (estimate(v.bit_rate) or 0) <= limits.video_size_limit]
    if m.local_path:
        if m.size_bytes is None or m.size_bytes <= limits.video_size_limit:
            top = mp4[0].bit_rate or 0 if mp4 else 0
            lower = tuple(v.url for v in fitting if (v.bit_rate or 0) < top)
            return MediaDraft(m.type, m.local_path, description, lower)
        top = mp4[0].bit_rate or 0 if mp4 else 0
        fitting = [v for v in fitting if (v.bit_rate or 0) < top]
    if not fitting:
        if mp4:
            smallest = estimate(mp4[-1].bit_rate)
            reason = f"smallest variant about {_mb(smallest or 0)} exceeds {_mb(limits.video_size_limit)}"
        else:
            reason = "no mp4 variant"
        ctx.notes.append(f"{where}: {reason}; original post linked")
        return None
    return MediaDraft(m.type, fitting[0].url, description, tuple(v.url for v in fitting[1:]))


def _group_media(items: list[MediaDraft], max_per_status: int) -> list[tuple[MediaDraft, ...]]:
    """Mastodon refuses video (or GIF) mixed with other media and more than the maximum per status."""
    groups: list[list[MediaDraft]] = []
    for item in items:
        alone = item.type != "photo"
        cur = groups[-1] if groups else None
        if cur is None or alone or cur[0].type != "photo" or len(cur) >= max(1, max_per_status):
            groups.append([item])
        else:
            cur.append(item)
    return [tuple(g) for g in groups]


# --- polls ------------------------------------------------------------------------------


def _poll(ctx: _Ctx, post: Post) -> PollDraft | None:
    """Rule 13: options cut to the instance's number and length, duration clamped."""
    if post.poll is None:
        return None
    lim = ctx.limits
    options: list[str] = []
    for opt in post.poll.options[: lim.poll_max_options]:
        cut = cut_graphemes(opt, lambda s: len(s) <= lim.poll_max_characters_per_option)
        if cut != opt:
            ctx.notes.append(f"post {post.id}: poll option {opt!r} cut to {cut!r}")
        if cut in options:
            ctx.notes.append(f"post {post.id}: poll option {opt!r} duplicates another after cutting; dropped")
            continue
        options.append(cut)
    if len(post.poll.options) > lim.poll_max_options:
        dropped = ", ".join(repr(o) for o in post.poll.options[lim.poll_max_options:])
        ctx.notes.append(f"post {post.id}: poll options over the instance maximum of {lim.poll_max_options} dropped: {dropped}")
    if len(options) < 2:
        ctx.notes.append(f"post {post.id}: poll has fewer than 2 usable options; not bridged, original post linked")
        ctx.link_original = True
        return None
    seconds = (post.poll.duration_minutes * 60) if post.poll.duration_minutes else DEFAULT_POLL_SECONDS
    seconds = min(max(seconds, lim.poll_min_expiration), lim.poll_max_expiration)
    return PollDraft(tuple(options), seconds)


# --- drafts -----------------------------------------------------------------------------


def _counter(i: int, n: int) -> str:
    return f"\n\n{i}/{n}"


def _build_statuses(
    ctx: _Ctx,
    *,
    body: str,
    tails: list[str],
    media_posts: list[Post],
    language: str | None,
    sensitive: bool,
    visibility: str,
    in_reply_to: str | None,
    quote_of: str | None,
    poll: PollDraft | None,
) -> list[Draft]:
    post = ctx.post
    policy, limits = ctx.policy, ctx.limits
    media: list[MediaDraft] = []
    for src in media_posts:
        for m in src.media:
            d = _media_draft(ctx, src, m)
            if d is None:
                ctx.link_original = True
            else:
                media.append(d)
    link = post.permalink
    if ctx.link_original and link not in body and link not in tails:
        tails = [*tails, link]
    protected: list[tuple[int, int]] = []
    text = body
    for tail in tails:
        text = f"{text}\n\n{tail}" if text else tail
    footer = policy.footer.replace("{url}", link).strip() if policy.footer else ""
    spoiler = policy.content_warning or post.content_warning
    limit = limits.max_characters
    if status_length("", spoiler) > limit // 2:
        spoiler = cut_graphemes(spoiler, lambda s: status_length("", s) <= limit // 2)
        ctx.notes.append(f"post {post.id}: content warning cut to half the {limit}-character limit")
    if footer:
        start = len(text) + 2 if text else 0
        text = f"{text}\n\n{footer}" if text else footer
        if status_length(footer, spoiler) <= limit // 2:
            protected.append((start, len(text)))
    text = text.strip()
    groups = _group_media(media, limits.max_media_attachments)
    first_media: tuple[MediaDraft, ...] = ()
    if groups and poll is None:
        first_media = groups.pop(0)
    if not text and not first_media and poll is None:
        text = link  # Mastodon refuses an empty status
        ctx.notes.append(f"post {post.id}: nothing postable left; the status links the original post")

    parts: list[str]
    room = max(1, policy.max_thread_parts - len(groups))  # media follow-ups are parts of the thread too
    n_guess = 1
    while True:
        suffix = _counter(n_guess, n_guess) if policy.thread_counters else ""  # the longest counter of n_guess parts
        spans = split_text(text, lambda s: status_length(s + suffix, spoiler) <= limit, protected,  # noqa: B023 (used at once)
                           max_parts=room + 1)
        n = len(spans)
        if not policy.thread_counters or n == 1 or len(str(n)) <= len(str(n_guess)):
            break
        n_guess = n
    if len(spans) > room:
        parts = _capped_parts(ctx, text, spans, room, footer, spoiler)
    else:
        parts = [text[a:b] for a, b in spans]
    if policy.thread_counters and len(parts) > 1:
        parts = [p + _counter(i + 1, len(parts)) for i, p in enumerate(parts)]

    drafts: list[Draft] = []
    common = dict(spoiler_text=spoiler, language=language, sensitive=sensitive, visibility=visibility)
    for i, part in enumerate(parts):
        drafts.append(
            Draft(
                post_id=post.id,
                part=i,
                text=part,
                media=first_media if i == 0 else (),
                in_reply_to=in_reply_to if i == 0 else None,
                reply_to_part=None if i == 0 else i - 1,
                quote_of=quote_of if i == 0 else None,
                poll=poll if i == 0 else None,
                length=status_length(part, spoiler),
                **common,  # type: ignore[arg-type]
            )
        )
    for group in groups:  # media that did not fit the first status: follow-up replies
        i = len(drafts)
        drafts.append(
            Draft(post_id=post.id, part=i, text="", media=group, reply_to_part=i - 1,
                  length=status_length("", spoiler), **common)  # type: ignore[arg-type]
        )
    if len(groups):
        ctx.notes.append(f"post {post.id}: {sum(len(g) for g in groups)} media item(s) posted as follow-up replies "
                         "(Mastodon allows video only alone and at most "
                         f"{limits.max_media_attachments} attachments per status)")
    return drafts


def _capped_parts(
    ctx: _Ctx, text: str, spans: list[tuple[int, int]], room: int, footer: str, spoiler: str
) -> list[str]:
    """A text longer than ``max_thread_parts`` toots: the first ``room`` parts, the last cut and linking the original.

    Issue 12: a 400,000-character post must not become hundreds of toots. The
    last part ends in "…" and the original post's link (the footer, when it
    already holds the link), so nothing is lost to a reader.
    """
    post, policy, limit = ctx.post, ctx.policy, ctx.limits.max_characters
    link = post.permalink
    if footer and link in footer:
        tail = footer
    else:
        tail = f"{link}\n\n{footer}" if footer else link
    ending = f"…\n\n{tail}"
    counter = _counter(room, room) if policy.thread_counters else ""
    parts = [text[a:b] for a, b in spans[: room - 1]]
    # The last part, with its ending, is shorter than the part the split found there: cut within that.
    rest = text[spans[room - 1][0] : spans[room - 1][1]]
    if footer and rest.endswith(footer):
        rest = rest[: -len(footer)].rstrip()
    a, b = split_text(rest, lambda s: status_length(s + ending + counter, spoiler) <= limit, max_parts=1)[0]
    parts.append(rest[a:b].rstrip() + ending)
    ctx.notes.append(
        f"post {post.id}: the text needs more than {room} toots; cut after {room} "
        f"(max_thread_parts: {policy.max_thread_parts}), the last one links the original post"
    )
    return parts


def convert(
    post: Post,
    limits: InstanceLimits,
    policy: Policy,
    *,
    mentions: Mapping[str, str] | None = None,
    bridged: Callable[[str], BridgedToot | None] = lambda _id: None,
    backfill: bool = False,
) -> Conversion:
    """The Mastodon drafts for one neutral post, or why it is skipped: ``say``, then ``render``.

    ``mentions`` maps lowercased source handles to ``user@instance`` (linked
    organisations and the configured mention map); ``policy.mention_map`` is
    merged in. ``bridged`` answers which source posts already have a toot.
    """
    message = say(post, policy, bridged=bridged, backfill=backfill)
    if isinstance(message, Skip):
        return Conversion(skipped=message.reason, notes=message.notes)
    return render(message, limits, policy, mentions=mentions, bridged=bridged)


def render(
    message: Message,
    limits: InstanceLimits,
    policy: Policy,
    *,
    mentions: Mapping[str, str] | None = None,
    bridged: Callable[[str], BridgedToot | None] = lambda _id: None,
) -> Conversion:
    """A ``Message`` written for Mastodon: its mentions, quotes, media, polls, lengths and threads."""
    # Looked up, never copied: the pipeline's map answers per handle from the ledger (issue 18).
    accounts = _Accounts(mentions if mentions is not None else {}, {k.lower(): v for k, v in policy.mention_map})
    ctx = _Ctx(message.post, limits, policy, accounts, bridged, list(message.notes), message.link_original)
    post = message.post
    if message.kind == "boost":
        boost = Draft(post_id=post.id, part=0, kind="boost", boost_of=message.boost_of,
                      visibility=message.visibility)  # type: ignore[arg-type]
        return _finish(ctx, [boost], message.edit_of)
    if message.body_of is not None:
        body, tails, native_quote = _body(ctx, message.body_of)
    else:
        body, tails, native_quote = "", [], None
    if message.relation == "repost":
        native_quote = None  # a repost says the original's words; its quote is linked, never made ours
    if message.link_tail is not None and message.link_tail not in body and message.link_tail not in tails:
        tails = [*tails, message.link_tail]
    home = post.home
    header = message.header
    if message.repost_author:
        header += f"RT @{message.repost_author}: "  # rule 10: a link-repost credits the author first
    body = rewrite_mentions(header + body, ctx.accounts, policy.mentions_unmapped, home, post.profile_url)
    if message.relation == "repost":
        body = body.strip()
    tails = [rewrite_mentions(t, ctx.accounts, policy.mentions_unmapped, home, post.profile_url)
             for t in [*tails, *message.tails]]
    drafts = _build_statuses(
        ctx,
        body=body,
        tails=tails,
        media_posts=list(message.media_of),
        language=mastodon_language(message.language),
        sensitive=message.sensitive,
        visibility=message.visibility,
        in_reply_to=message.in_reply_to,
        quote_of=native_quote,
        poll=_poll(ctx, post) if message.poll is not None else None,
    )
    return _finish(ctx, drafts, message.edit_of)


def _finish(ctx: _Ctx, drafts: list[Draft], edit_of: str | None) -> Conversion:
    # Edits: a later version of a post that already went out edits its toot(s).
    if edit_of is not None:
        drafts = [
            replace(d, kind="edit", edit_of=edit_of) if d.kind == "status" else d
            for d in drafts
        ]
    notes = tuple(dict.fromkeys(ctx.notes))
    if drafts and notes:
        drafts[0] = replace(drafts[0], notes=notes)
    return Conversion(drafts=tuple(drafts), notes=notes)
