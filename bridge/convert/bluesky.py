"""The Bluesky renderer: a ``Message`` (what to say, ``bridge.convert.say``) as Bluesky drafts.

``convert`` has the signature of ``bridge.convert.engine.convert`` (registry ``renderer("bluesky")``).
Pure: no I/O, no clock. What is Bluesky's here (https://docs.bsky.app/docs/advanced-guides/post-richtext):
- a post's text is at most 300 graphemes and 3,000 UTF-8 bytes (``bluesky_lexicon``); a longer text
  becomes a reply thread, cut at paragraph, line, sentence or word boundaries (``split_text``);
- links, mentions and tags are facets with UTF-8 byte offsets, not text the server parses. A link is
  shown shortened as Bluesky's app shows it (host and the start of the path) while its facet carries
  the whole URL; only a handle in the ``mentions`` map (a linked organisation's Bluesky account)
  becomes a mention facet, any other ``@name`` stays plain text and notifies nobody;
- up to 4 images per post; a video or GIF is a post's one embed; more media go to the following posts;
- no visibility: every post is public, so a post the policy keeps private or direct is not posted;
- no content warning field: sensitive media get the self-label "graphic-media" (the app blurs them
  behind a warning), and the policy's ``content_warning`` is written as the first line;
- no polls: the options are written as text;
- no edits in the apps: an edit draft is recorded as not propagated by the pipeline.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from urllib.parse import urlsplit

import grapheme  # graphemeu, Mastodon.py's own [grapheme] extra: UAX #29 extended grapheme clusters

from bridge.convert.bluesky_lexicon import (
    IMAGES_PER_POST,
    POST_MAX_BYTES,
    POST_MAX_GRAPHEMES,
    TAG_MAX_BYTES,
    TAG_MAX_GRAPHEMES,
)
from bridge.convert.engine import Conversion, _body, _Ctx, _media_draft
from bridge.convert.say import Message, Skip, say
from bridge.convert.split import split_text
from bridge.convert.tokens import extract_hashtags, extract_urls
from bridge.model import BridgedToot, Draft, Facet, MediaDraft, Post
from bridge.policy import InstanceLimits, Policy

SENSITIVE_LABEL = "graphic-media"  # com.atproto.label.defs self-label the app blurs media for
NOT_PUBLIC = ("private", "direct")
# A mention of a handle: an X username or a Bluesky handle (a domain name); never inside a word or URL.
MENTION_RE = re.compile(r"(?<![\w@/.])@([A-Za-z0-9_](?:[A-Za-z0-9_-]|\.(?=[A-Za-z0-9]))*)")
# BCP 47 as app.bsky.feed.post ``langs`` takes it (format "language"); und, zxx and the private-use
# codes X sends (qme, qht, qam, qst...) say "no language".
_LANG_RE = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$")
_LANG_ALIASES = {"in": "id", "iw": "he", "ji": "yi"}


def grapheme_length(text: str) -> int:
    """Graphemes as the PDS counts them (Intl.Segmenter, UAX #29); ASCII without CR LF needs no segmenting."""
    if text.isascii():
        return len(text) - text.count("\r\n")
    return int(grapheme.length(text))


def fits_post(text: str, max_graphemes: int = POST_MAX_GRAPHEMES) -> bool:
    """Whether ``text`` is a valid post text: within the lexicon's graphemes and bytes."""
    return len(text.encode()) <= POST_MAX_BYTES and grapheme_length(text) <= max_graphemes


def display_url(url: str) -> str:
    """A link as Bluesky's app shows it: host and path, a path over 15 characters cut to 13 and "..."
    (social-app ``toShortUrl``). The facet keeps the whole URL."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return url
    path = ("" if parts.path == "/" else parts.path) + (f"?{parts.query}" if parts.query else "") + (
        f"#{parts.fragment}" if parts.fragment else "")
    if len(path) > 15:
        return parts.netloc + path[:13] + "..."
    return parts.netloc + path


def bluesky_language(lang: str | None) -> str | None:
    """A source's BCP 47 tag as a ``langs`` entry, or None when it names no language."""
    if not lang or not _LANG_RE.match(lang.strip().replace("_", "-")):
        return None
    tag = lang.strip().replace("_", "-")
    primary, _, rest = tag.partition("-")
    primary = _LANG_ALIASES.get(primary.lower(), primary.lower())
    if primary in ("und", "zxx", "mul", "mis") or (len(primary) == 3 and "qaa" <= primary <= "qtz"):
        return None
    return f"{primary}-{rest}" if rest else primary


# --- rich text ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Span:
    """A facet in code points of the assembled text."""

    start: int
    end: int
    kind: str
    value: str


def rich_text(text: str, accounts: Mapping[str, str], mode: str, home: str) -> tuple[str, list[_Span]]:
    """``text`` with links shortened and mapped mentions rewritten, and the facets over it.

    ``accounts``: lowercased source handle -> Bluesky handle. An unmapped ``@name`` is written as the
    policy's ``mentions_unmapped`` says (plain: as is, no facet; domain: ``@name@home``; link: a link
    to its profile on ``home``).
    """
    urls = extract_urls(text)
    tokens: list[tuple[int, int, str, str]] = [(u.start, u.end, "link", u.value) for u in urls]
    tokens += [(t.start, t.end, "tag", t.value) for t in extract_hashtags(text)]
    for m in MENTION_RE.finditer(text):
        if not any(u.start <= m.start() < u.end for u in urls):
            tokens.append((m.start(), m.end(), "mention", m.group(1)))
    tokens.sort(key=lambda t: (t[0], 0 if t[2] == "link" else 1))
    out: list[str] = []
    spans: list[_Span] = []
    pos = length = 0

    def emit(piece: str, kind: str | None = None, value: str = "") -> None:
        nonlocal length
        if kind is not None:
            spans.append(_Span(length, length + len(piece), kind, value))
        out.append(piece)
        length += len(piece)

    for start, end, kind, value in tokens:
        if start < pos:
            continue  # overlaps an earlier token (a tag inside a link)
        emit(text[pos:start])
        if kind == "link":
            emit(display_url(value), "link", value)
        elif kind == "tag":
            tag = value
            if grapheme_length(tag) <= TAG_MAX_GRAPHEMES and len(tag.encode()) <= TAG_MAX_BYTES:
                emit(text[start:end], "tag", tag)
            else:
                emit(text[start:end])
        else:
            handle = accounts.get(value.lower())
            if handle:
                handle = handle.lstrip("@")
                emit(f"@{handle}", "mention", handle)
            elif mode == "domain" and home:
                emit(f"@{value}@{home}")
            elif mode == "link" and home:
                url = f"https://{home}/{value}"
                emit(display_url(url), "link", url)
            else:
                emit(text[start:end])
        pos = end
    emit(text[pos:])
    return "".join(out), spans


def _join(pieces: list[tuple[str, list[_Span]]]) -> tuple[str, list[_Span]]:
    """Paragraphs joined by a blank line, their facets shifted along."""
    text = ""
    spans: list[_Span] = []
    for piece, piece_spans in pieces:
        if not piece:
            continue
        if text:
            text += "\n\n"
        spans += [replace(s, start=s.start + len(text), end=s.end + len(text)) for s in piece_spans]
        text += piece
    return text, spans


def _facets(part: str, spans: list[_Span], offset: int, end: int) -> tuple[tuple[Facet, ...], int]:
    """The facets wholly inside ``[offset, end)`` in UTF-8 bytes of ``part``; how many were cut through."""
    out: list[Facet] = []
    cut = 0
    for s in spans:
        if s.start >= offset and s.end <= end:
            a, b = s.start - offset, s.end - offset
            start_byte = len(part[:a].encode())
            out.append(Facet(start_byte, start_byte + len(part[a:b].encode()), s.kind, s.value))  # type: ignore[arg-type]
        elif s.start < end and s.end > offset:
            cut += 1
    return tuple(out), cut


# --- drafts ------------------------------------------------------------------------------


@dataclass
class _Parts:
    texts: list[str] = field(default_factory=list)
    facets: list[tuple[Facet, ...]] = field(default_factory=list)


def _split(ctx: _Ctx, text: str, spans: list[_Span], protected: list[tuple[int, int]], max_graphemes: int,
           room: int) -> _Parts:
    """``text`` in parts that each fit a post (counters included), at most ``room`` of them."""
    post, policy = ctx.post, ctx.policy
    n_guess = 1
    while True:
        suffix = f"\n\n{n_guess}/{n_guess}" if policy.thread_counters else ""

        def fits(s: str, suffix: str = suffix) -> bool:
            return fits_post(s + suffix, max_graphemes)

        cuts = split_text(text, fits, protected, max_parts=room + 1)
        if not policy.thread_counters or len(cuts) == 1 or len(str(len(cuts))) <= len(str(n_guess)):
            break
        n_guess = len(cuts)
    out = _Parts()
    lost = 0
    ending_text, ending_spans = "", list[_Span]()
    if len(cuts) > room:
        # Issue 12: never hundreds of posts. The last one ends in "…" and links the original.
        ending_text, ending_spans = rich_text(post.permalink, {}, "plain", "")
        ending = "…\n\n" + ending_text
        counter = f"\n\n{room}/{room}" if policy.thread_counters else ""
        rest_start = cuts[room - 1][0]
        rest = text[rest_start:]
        a, b = split_text(rest, lambda s: fits_post(s + ending + counter, max_graphemes), max_parts=1)[0]
        cuts = [*cuts[: room - 1], (rest_start + a, rest_start + len(rest[:b].rstrip()))]
        ctx.notes.append(f"post {post.id}: the text needs more than {room} posts; cut after {room} "
                         f"(max_thread_parts: {policy.max_thread_parts}), the last one links the original post")
    for i, (a, b) in enumerate(cuts):
        part = text[a:b]
        facets, cut = _facets(part, spans, a, b)
        lost += cut
        if ending_text and i == len(cuts) - 1:
            part += "…\n\n"
            base = len(part.encode())
            facets += tuple(
                Facet(base + len(ending_text[: s.start].encode()), base + len(ending_text[: s.end].encode()),
                      s.kind, s.value)  # type: ignore[arg-type]
                for s in ending_spans
            )
            part += ending_text
        out.texts.append(part)
        out.facets.append(facets)
    if lost:
        ctx.notes.append(f"post {post.id}: {lost} link(s), mention(s) or tag(s) were cut between two posts;"
                         " they are shown as plain text")
    if policy.thread_counters and len(out.texts) > 1:
        out.texts = [f"{t}\n\n{i + 1}/{len(out.texts)}" for i, t in enumerate(out.texts)]
    return out


def _groups(items: list[MediaDraft], per_post: int) -> list[tuple[MediaDraft, ...]]:
    """Images up to ``per_post`` together; a video or GIF alone (a post has one embed)."""
    groups: list[list[MediaDraft]] = []
    for item in items:
        cur = groups[-1] if groups else None
        if cur is None or item.type != "photo" or cur[0].type != "photo" or len(cur) >= per_post:
            groups.append([item])
        else:
            cur.append(item)
    return [tuple(g) for g in groups]


def convert(
    post: Post,
    limits: InstanceLimits,
    policy: Policy,
    *,
    mentions: Mapping[str, str] | None = None,
    bridged: Callable[[str], BridgedToot | None] = lambda _id: None,
    backfill: bool = False,
) -> Conversion:
    """The Bluesky drafts for one neutral post, or why it is skipped: ``say``, then ``render``.

    ``mentions`` maps lowercased source handles to Bluesky handles (linked organisations' accounts).
    ``bridged`` answers which source posts already have a copy on Bluesky.
    """
    message = say(post, policy, bridged=bridged, backfill=backfill)
    if isinstance(message, Skip):
        return Conversion(skipped=message.reason, notes=message.notes)
    return render(message, limits, policy, mentions=mentions, bridged=bridged, backfill=backfill)


def render(
    message: Message,
    limits: InstanceLimits,
    policy: Policy,
    *,
    mentions: Mapping[str, str] | None = None,
    bridged: Callable[[str], BridgedToot | None] = lambda _id: None,
    backfill: bool = False,
) -> Conversion:
    """A ``Message`` written for Bluesky: facets, graphemes, threads, image groups, quotes, labels."""
    post = message.post
    if message.visibility in NOT_PUBLIC:
        return Conversion(skipped=f"post {post.id}: visibility {message.visibility} has no Bluesky equivalent"
                                  " (every Bluesky post is public); not posted to Bluesky")
    accounts = mentions if mentions is not None else {}  # looked up, never copied: the pipeline's map answers per handle (issue 18)
    ctx = _Ctx(post, limits, policy, accounts, bridged, list(message.notes), message.link_original)
    common: dict[str, object] = dict(created_at=post.created_at, backdate=backfill)
    if message.kind == "boost":
        boost = Draft(post_id=post.id, part=0, kind="boost", boost_of=message.boost_of, **common)  # type: ignore[arg-type]
        return _finish(ctx, [boost], message.edit_of)
    max_graphemes = min(limits.max_characters, POST_MAX_GRAPHEMES)
    if message.body_of is not None:
        body, tails, native_quote = _body(ctx, message.body_of)
    else:
        body, tails, native_quote = "", [], None
    if message.relation == "repost":
        native_quote = None  # a repost says the original's words; its quote is linked, never made ours
    if message.link_tail is not None and message.link_tail not in body and message.link_tail not in tails:
        tails = [*tails, message.link_tail]
    header = message.header
    if message.repost_author:
        header += f"RT @{message.repost_author}: "  # rule 10: a link-repost credits the author first
    media: list[MediaDraft] = []
    for src in message.media_of:
        for m in src.media:
            d = _media_draft(ctx, src, m)
            if d is None:
                ctx.link_original = True
            else:
                media.append(d)
    if ctx.link_original and post.permalink not in body and post.permalink not in tails:
        tails = [*tails, post.permalink]
    if message.poll is not None:
        body = (body + "\n\n" if body else "") + "\n".join(f"○ {option}" for option in message.poll.options)
        ctx.notes.append(f"post {post.id}: Bluesky has no polls; the options are written as text")
    mode, home = policy.mentions_unmapped, post.home
    pieces = []
    if policy.content_warning:
        pieces.append(rich_text(f"CW: {policy.content_warning}", {}, "plain", home))
    pieces.append(rich_text((header + body).strip(), accounts, mode, home))
    pieces += [rich_text(t, accounts, mode, home) for t in [*tails, *message.tails]]
    text, spans = _join(pieces)
    protected: list[tuple[int, int]] = []
    footer = policy.footer.replace("{url}", post.permalink).strip() if policy.footer else ""
    if footer:
        footer_text, footer_spans = rich_text(footer, accounts, mode, home)
        joined, spans = _join([(text, spans), (footer_text, footer_spans)])
        if grapheme_length(footer_text) <= max_graphemes // 2:
            protected.append((len(joined) - len(footer_text), len(joined)))
        text = joined
    text = text.strip()
    groups = _groups(media, max(1, min(limits.max_media_attachments, IMAGES_PER_POST)))
    if not text and not groups:
        text, spans = rich_text(post.permalink, {}, "plain", "")
        ctx.notes.append(f"post {post.id}: nothing postable left; the post links the original post")
    room = max(1, policy.max_thread_parts)
    parts = _split(ctx, text, spans, protected, max_graphemes, room) if text else _Parts([""], [()])
    if max(len(parts.texts), len(groups)) > room:
        kept = max(room, len(parts.texts))
        dropped = sum(len(g) for g in groups[kept:])
        groups = groups[:kept]
        ctx.notes.append(f"post {post.id}: {dropped} media item(s) over max_thread_parts ({policy.max_thread_parts})"
                         " not posted to Bluesky")
    sensitive = message.sensitive or bool(policy.content_warning and groups)
    shared: dict[str, object] = dict(
        language=bluesky_language(message.language), sensitive=message.sensitive,
        labels=(SENSITIVE_LABEL,) if sensitive else (), **common,
    )
    drafts: list[Draft] = []
    for i, part in enumerate(parts.texts):
        drafts.append(Draft(
            post_id=post.id, part=i, text=part, facets=parts.facets[i],
            media=groups[i] if i < len(groups) else (),
            in_reply_to=message.in_reply_to if i == 0 else None,
            reply_to_part=None if i == 0 else i - 1,
            quote_of=native_quote if i == 0 else None,
            length=grapheme_length(part), **shared,  # type: ignore[arg-type]
        ))
    for group in groups[len(parts.texts):]:
        i = len(drafts)
        drafts.append(Draft(post_id=post.id, part=i, text="", media=group, reply_to_part=i - 1, length=0,
                            **shared))  # type: ignore[arg-type]
    if len(groups) > 1:
        ctx.notes.append(f"post {post.id}: {sum(len(g) for g in groups[1:])} media item(s) posted with the following"
                         f" posts of the thread (Bluesky takes {IMAGES_PER_POST} images or one video per post)")
    return _finish(ctx, drafts, message.edit_of)


def _finish(ctx: _Ctx, drafts: list[Draft], edit_of: str | None) -> Conversion:
    if edit_of is not None:  # recorded as not propagated by the pipeline (Bluesky has no edits)
        drafts = [replace(d, kind="edit", edit_of=edit_of) if d.kind == "status" else d for d in drafts]
    notes = tuple(dict.fromkeys(ctx.notes))
    if drafts and notes:
        drafts[0] = replace(drafts[0], notes=notes)
    return Conversion(drafts=tuple(drafts), notes=notes)
