"""The data model: what sources record, the neutral post the converter reads, and what it emits.

Three shapes, each for one job:
- ``SourcePost``: a post as its source read it and the ledger stores it (JSON
  via ``post_to_dict``), so a later run sees exactly what was read. Its fields
  follow the sources we have (X API v2, the X archive).
- ``Post``: the same post as any network would describe it, made by the
  source's ``Source.neutral``: plain text with links already expanded and the
  source's addressing removed, entities as data, media with the candidates to
  open them by, references (reply to, quote of, repost of) with permalinks.
  The converter reads only this, so it knows no source's shapes.
- ``Draft``: one action for one part on a target, as the converter emits it.

This module imports nothing of ours, so it can be shared by every layer without cycles.

Conventions every source keeps for ``SourcePost``:
- ``SourcePost.text`` is plain text: HTML entities already unescaped exactly
  once (X sends ``&amp;``), t.co links still in place (the converter expands them
  from ``urls``), the full text (``note_tweet`` for long posts).
- Entities are matched by their t.co ``url`` string and handles, not by index:
  X's indices are code points of a differently escaped text and differ between
  v1.1 and v2, so indices are kept only as hints.
- ids are decimal strings; compare them with ``post_id_key``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, TypeGuard

MediaType = Literal["photo", "video", "animated_gif"]
Visibility = Literal["public", "unlisted", "private", "direct"]
DraftKind = Literal["status", "boost", "edit"]


# X post ids are 64-bit snowflakes (X docs, "Twitter IDs"); the ledger sorts them as SQLite INTEGER (signed 64 bits).
MAX_POST_ID = 2**63 - 1


def is_post_id(post_id: object) -> TypeGuard[str]:
    """Whether ``post_id`` can be an X post id: ASCII decimal digits up to ``MAX_POST_ID``.

    ``str.isdigit`` alone also accepts "²" and other digits ``int()`` refuses.
    """
    return (
        isinstance(post_id, str)
        and 0 < len(post_id) <= 19
        and post_id.isascii()
        and post_id.isdigit()
        and int(post_id) <= MAX_POST_ID
    )


def post_id_key(post_id: str) -> tuple[int, str]:
    """Sort key for X snowflake ids: numeric, then textual; anything else sorts first and never raises."""
    return (int(post_id), post_id) if is_post_id(post_id) else (0, post_id)


@dataclass(frozen=True)
class UrlEntity:
    """A t.co link in the text and what it stands for."""

    url: str  # the t.co link as it appears in the text
    expanded_url: str
    display_url: str = ""
    start: int | None = None
    end: int | None = None
    media_key: str | None = None  # set when this link is the trailing link of attached media


@dataclass(frozen=True)
class Mention:
    username: str  # without "@", as written
    user_id: str | None = None
    start: int | None = None
    end: int | None = None


@dataclass(frozen=True)
class Hashtag:
    tag: str  # without "#" or "$"
    cashtag: bool = False
    start: int | None = None
    end: int | None = None


@dataclass(frozen=True)
class MediaVariant:
    """One encoding of a video or GIF (X ``variants``)."""

    url: str
    content_type: str
    bit_rate: int | None = None  # bits per second; None for HLS playlists


@dataclass(frozen=True)
class Media:
    key: str  # X media_key (v2) or media id_str (archive)
    type: MediaType
    url: str | None = None  # photo URL (without size suffix) or video preview image
    variants: tuple[MediaVariant, ...] = ()
    alt_text: str | None = None
    duration_ms: int | None = None
    width: int | None = None
    height: int | None = None
    local_path: str | None = None  # archive: file inside the archive; never downloaded
    size_bytes: int | None = None  # known size (archive files), else None


@dataclass(frozen=True)
class Poll:
    options: tuple[str, ...]
    duration_minutes: int | None = None


@dataclass(frozen=True)
class Article:
    """What a website feed's entry is made of, so each organisation's policy can say it its way (issue 14):
    ``title_link`` says the title, the summary and the link; ``full`` the whole body and the link."""

    title: str
    summary: str  # plain text, already cut to a short length
    body: str  # the whole text, plain, links kept
    link: str  # the entry's own page ("" if none)
    categories: tuple[str, ...] = ()  # as hashtag words (no "#")


def article_text(article: Article, post: str, categories: bool) -> str:
    """An article as a post's words: ``title_link`` (title, summary, link) or ``full`` (the whole body, link),
    its categories as hashtags after the words when ``categories``. The one rule the feed source and the
    converter share."""
    title = article.title
    if post == "full" or not title:
        body = article.body or title
    else:
        body = title + (f"\n\n{article.summary}" if article.summary and not article.summary.startswith(title) else "")
    if categories:
        tags = [t for t in article.categories if f"#{t.lower()}" not in body.lower()]
        if tags:
            body += "\n\n" + " ".join("#" + t for t in tags)
    return body + (f"\n\n{article.link}" if article.link and not body.endswith(article.link) else "")


@dataclass(frozen=True)
class SourcePost:
    """A post as read from X, in one shape whatever the source."""

    id: str
    author_id: str
    author_username: str
    created_at: datetime  # timezone-aware UTC
    text: str
    urls: tuple[UrlEntity, ...] = ()
    mentions: tuple[Mention, ...] = ()
    hashtags: tuple[Hashtag, ...] = ()
    media: tuple[Media, ...] = ()
    in_reply_to_post_id: str | None = None
    in_reply_to_user_id: str | None = None
    conversation_id: str | None = None
    quote_of: SourcePost | None = None  # the quoted post when the source included it
    quote_of_id: str | None = None
    retweet_of: SourcePost | None = None  # the original, with its full text and media
    retweet_of_id: str | None = None
    retweet_of_username: str | None = None  # archive retweets name the author only in "RT @user:"
    truncated: bool = False  # text is cut and the source has no whole text (archive retweets; long posts without their note)
    lang: str | None = None
    sensitive: bool = False
    edit_history_ids: tuple[str, ...] = ()  # oldest first, includes ``id`` (X puts the newest last)
    poll: Poll | None = None
    source: Literal["api", "archive"] = "api"
    article: Article | None = None  # a feed entry's parts (``text`` is then the feed section's default shape)

    @property
    def is_retweet(self) -> bool:
        return self.retweet_of is not None or self.retweet_of_id is not None or self.retweet_of_username is not None

    @property
    def original_id(self) -> str:
        """The id of the first version of an edited post (X ``edit_history_tweet_ids[0]``)."""
        return self.edit_history_ids[0] if self.edit_history_ids else self.id

    @property
    def permalink(self) -> str:
        return f"https://x.com/{self.author_username}/status/{self.id}"


# --- The neutral post (what the converter reads) ----------------------------------


@dataclass(frozen=True)
class Link:
    """A link in ``Post.text``: ``text[start:end] == url``. ``post_id`` is set when the link is the
    permalink of a post of the same source (e.g. of the quoted post)."""

    url: str
    start: int
    end: int
    post_id: str | None = None


@dataclass(frozen=True)
class Handle:
    """An account mentioned in a post: on which network, and its handle there (without "@")."""

    network: str
    handle: str


@dataclass(frozen=True)
class MediaItem:
    """One media item and how to open it (``Source.open_media`` takes the references).

    Photos: ``candidates`` are URLs best first (e.g. largest size first) and
    ``mime_type`` what they are; videos and GIFs: ``variants`` (encodings with
    bit rates). ``local_path`` is a file the source already holds (an archive's).
    """

    key: str
    type: MediaType
    alt_text: str | None = None
    candidates: tuple[str, ...] = ()
    mime_type: str | None = None
    variants: tuple[MediaVariant, ...] = ()
    duration_ms: int | None = None
    local_path: str | None = None
    size_bytes: int | None = None


@dataclass(frozen=True)
class PostRef:
    """Another post this one refers to (replied to, quoted, reposted), as a source reference."""

    id: str | None  # None when the source names the post but not its id
    url: str  # its permalink on the source
    author: str | None = None  # handle, when known
    own: bool = False  # by the same account as the referring post
    post: Post | None = None  # the whole post, when the source included it (reposts: its text and media)


@dataclass(frozen=True)
class Post:
    """A post as any network would describe it: what the converter reads (see the module doc)."""

    id: str
    author: str  # handle
    created_at: datetime  # timezone-aware UTC
    text: str  # plain text, links expanded, media links and the source's reply addressing removed
    permalink: str
    network: str = ""
    home: str = ""  # the network's web domain: an unmapped handle is written @handle@home or https://home/handle
    # The network's profile page of a handle ("{handle}" in it), when its handles are no fediverse addresses
    # (Bluesky: alice.bsky.social): an unmapped handle is then linked there, never written @handle@home.
    profile_url: str = ""
    links: tuple[Link, ...] = ()
    mentions: tuple[Handle, ...] = ()
    tags: tuple[str, ...] = ()
    media: tuple[MediaItem, ...] = ()
    reply_to: PostRef | None = None
    quote_of: PostRef | None = None
    repost_of: PostRef | None = None
    lang: str | None = None  # BCP 47 as the source gives it
    sensitive: bool = False
    content_warning: str = ""  # the source's own warning (Bluesky self-labels); the policy's content_warning wins
    poll: Poll | None = None
    edit_of: str | None = None  # a later version of this post: the id of the first version
    superseded_by: str | None = None  # a newer version of this post exists: its id
    truncated: bool = False  # the source has only a cut text (no whole text anywhere)
    incomplete: bool = False  # something in the text could not be carried over: link the original
    notes: tuple[str, ...] = ()  # what the source could not carry over, and why
    article: Article | None = None  # a feed entry's parts: the converter says it as the policy's feed_post asks


@dataclass(frozen=True)
class BridgedToot:
    """What the ledger knows about a source post that already went out."""

    status_id: str
    url: str
    account_acct: str = ""


@dataclass(frozen=True)
class MediaDraft:
    """Media to upload: ``source`` is an http(s) URL or a local file path (archive)."""

    type: MediaType
    source: str
    description: str | None = None
    fallbacks: tuple[str, ...] = ()  # lower-bitrate URLs to try if ``source`` is too big


@dataclass(frozen=True)
class PollDraft:
    options: tuple[str, ...]
    expires_in: int  # seconds


FacetKind = Literal["link", "mention", "tag"]


@dataclass(frozen=True)
class Facet:
    """A rich-text span of a draft's text, in UTF-8 bytes (Bluesky's ``app.bsky.richtext.facet``).

    ``text.encode()[byte_start:byte_end]`` is what the reader sees: a link as
    shortened for display (``value`` is the whole URL), ``@handle`` for a
    mention (``value`` the handle; the target resolves it to a DID), ``#tag``
    (``value`` the tag without "#").
    """

    byte_start: int
    byte_end: int
    kind: FacetKind
    value: str


@dataclass(frozen=True)
class Draft:
    """One target action for one part of a source post.

    ``part`` numbers the drafts of one source post from 0. ``reply_to_part``
    says "reply to the toot of part N of this same post" (thread splits, media
    follow-ups); ``in_reply_to`` says "reply to the toot of that source post".
    The pipeline resolves both to status ids through the ledger.

    The fields after ``notes`` are filled by renderers that need them (Bluesky)
    and keep their defaults elsewhere.
    """

    post_id: str
    part: int
    kind: DraftKind = "status"
    text: str = ""
    spoiler_text: str = ""
    language: str | None = None
    sensitive: bool = False
    visibility: Visibility = "public"
    media: tuple[MediaDraft, ...] = ()
    in_reply_to: str | None = None  # source post id whose toot this replies to
    reply_to_part: int | None = None
    quote_of: str | None = None  # source post id whose bridged toot is quoted natively
    boost_of: str | None = None  # source post id whose bridged toot is boosted (kind "boost")
    edit_of: str | None = None  # source post id whose toot (same part) is edited (kind "edit")
    poll: PollDraft | None = None
    length: int = 0  # as the target counts it (Mastodon: characters, URLs 23; Bluesky: graphemes)
    notes: tuple[str, ...] = field(default=())  # what could not be bridged, and why
    facets: tuple[Facet, ...] = ()  # links, mentions, tags in UTF-8 byte offsets (Bluesky)
    created_at: datetime | None = None  # the source post's time: Bluesky derives the record key from it
    backdate: bool = False  # keep ``created_at`` as the copy's own date (backfill), else the time of posting
    labels: tuple[str, ...] = ()  # self-labels (Bluesky: "graphic-media" for sensitive media)


# --- Ledger serialisation of SourcePost ---------------------------------------
# The ledger stores posts as JSON so a later run (retry, edit, boost) sees exactly
# what was read. JSON has no tuples or datetimes: tuples become lists and
# ``created_at`` an ISO-8601 string with its UTC offset. ``post_from_dict``
# rebuilds equal objects (``post_from_dict(post_to_dict(p)) == p``).


def _url_to_dict(u: UrlEntity) -> dict[str, Any]:
    return {
        "url": u.url,
        "expanded_url": u.expanded_url,
        "display_url": u.display_url,
        "start": u.start,
        "end": u.end,
        "media_key": u.media_key,
    }


def _url_from_dict(d: dict[str, Any]) -> UrlEntity:
    return UrlEntity(
        url=d["url"],
        expanded_url=d["expanded_url"],
        display_url=d.get("display_url", ""),
        start=d.get("start"),
        end=d.get("end"),
        media_key=d.get("media_key"),
    )


def _mention_to_dict(m: Mention) -> dict[str, Any]:
    return {"username": m.username, "user_id": m.user_id, "start": m.start, "end": m.end}


def _mention_from_dict(d: dict[str, Any]) -> Mention:
    return Mention(username=d["username"], user_id=d.get("user_id"), start=d.get("start"), end=d.get("end"))


def _hashtag_to_dict(h: Hashtag) -> dict[str, Any]:
    return {"tag": h.tag, "cashtag": h.cashtag, "start": h.start, "end": h.end}


def _hashtag_from_dict(d: dict[str, Any]) -> Hashtag:
    return Hashtag(tag=d["tag"], cashtag=bool(d.get("cashtag", False)), start=d.get("start"), end=d.get("end"))


def _media_to_dict(m: Media) -> dict[str, Any]:
    return {
        "key": m.key,
        "type": m.type,
        "url": m.url,
        "variants": [{"url": v.url, "content_type": v.content_type, "bit_rate": v.bit_rate} for v in m.variants],
        "alt_text": m.alt_text,
        "duration_ms": m.duration_ms,
        "width": m.width,
        "height": m.height,
        "local_path": m.local_path,
        "size_bytes": m.size_bytes,
    }


def _media_from_dict(d: dict[str, Any]) -> Media:
    return Media(
        key=d["key"],
        type=d["type"],
        url=d.get("url"),
        variants=tuple(
            MediaVariant(url=v["url"], content_type=v["content_type"], bit_rate=v.get("bit_rate"))
            for v in d.get("variants", ())
        ),
        alt_text=d.get("alt_text"),
        duration_ms=d.get("duration_ms"),
        width=d.get("width"),
        height=d.get("height"),
        local_path=d.get("local_path"),
        size_bytes=d.get("size_bytes"),
    )


def post_to_dict(post: SourcePost) -> dict[str, Any]:
    """A JSON-safe dict of ``post`` (nested quoted/retweeted posts included) for the ledger."""
    return {
        "id": post.id,
        "author_id": post.author_id,
        "author_username": post.author_username,
        "created_at": post.created_at.isoformat(),
        "text": post.text,
        "urls": [_url_to_dict(u) for u in post.urls],
        "mentions": [_mention_to_dict(m) for m in post.mentions],
        "hashtags": [_hashtag_to_dict(h) for h in post.hashtags],
        "media": [_media_to_dict(m) for m in post.media],
        "in_reply_to_post_id": post.in_reply_to_post_id,
        "in_reply_to_user_id": post.in_reply_to_user_id,
        "conversation_id": post.conversation_id,
        "quote_of": post_to_dict(post.quote_of) if post.quote_of is not None else None,
        "quote_of_id": post.quote_of_id,
        "retweet_of": post_to_dict(post.retweet_of) if post.retweet_of is not None else None,
        "retweet_of_id": post.retweet_of_id,
        "retweet_of_username": post.retweet_of_username,
        "truncated": post.truncated,
        "lang": post.lang,
        "sensitive": post.sensitive,
        "edit_history_ids": list(post.edit_history_ids),
        "poll": (
            {"options": list(post.poll.options), "duration_minutes": post.poll.duration_minutes}
            if post.poll is not None
            else None
        ),
        "source": post.source,
        **({"article": _article_to_dict(post.article)} if post.article is not None else {}),
    }


def _article_to_dict(a: Article) -> dict[str, Any]:
    return {"title": a.title, "summary": a.summary, "body": a.body, "link": a.link, "categories": list(a.categories)}


def _article_from_dict(d: Any) -> Article | None:
    if not isinstance(d, dict):
        return None
    return Article(title=str(d.get("title") or ""), summary=str(d.get("summary") or ""), body=str(d.get("body") or ""),
                   link=str(d.get("link") or ""), categories=tuple(str(c) for c in d.get("categories") or ()))


def post_from_dict(d: dict[str, Any]) -> SourcePost:
    """Rebuild the ``SourcePost`` that ``post_to_dict`` wrote; missing optional keys take defaults."""
    poll = d.get("poll")
    quote_of = d.get("quote_of")
    retweet_of = d.get("retweet_of")
    return SourcePost(
        id=d["id"],
        author_id=d["author_id"],
        author_username=d["author_username"],
        created_at=datetime.fromisoformat(d["created_at"]),
        text=d["text"],
        urls=tuple(_url_from_dict(u) for u in d.get("urls", ())),
        mentions=tuple(_mention_from_dict(m) for m in d.get("mentions", ())),
        hashtags=tuple(_hashtag_from_dict(h) for h in d.get("hashtags", ())),
        media=tuple(_media_from_dict(m) for m in d.get("media", ())),
        in_reply_to_post_id=d.get("in_reply_to_post_id"),
        in_reply_to_user_id=d.get("in_reply_to_user_id"),
        conversation_id=d.get("conversation_id"),
        quote_of=post_from_dict(quote_of) if quote_of is not None else None,
        quote_of_id=d.get("quote_of_id"),
        retweet_of=post_from_dict(retweet_of) if retweet_of is not None else None,
        retweet_of_id=d.get("retweet_of_id"),
        retweet_of_username=d.get("retweet_of_username"),
        truncated=bool(d.get("truncated", False)),
        lang=d.get("lang"),
        sensitive=bool(d.get("sensitive", False)),
        edit_history_ids=tuple(d.get("edit_history_ids", ())),
        poll=(
            Poll(options=tuple(poll["options"]), duration_minutes=poll.get("duration_minutes"))
            if poll is not None
            else None
        ),
        source=d.get("source", "api"),
        article=_article_from_dict(d.get("article")),
    )
