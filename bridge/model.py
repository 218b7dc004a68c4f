"""The normalised data model: what every source produces and what the converter emits.

Sources (X API v2, the X archive) are the only code that knows source formats;
they normalise into ``SourcePost``. The converter turns a ``SourcePost`` into
``Draft`` objects. This module imports nothing of ours, so it can be shared by
every layer without cycles.

Conventions every source must keep:
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
from typing import Literal

MediaType = Literal["photo", "video", "animated_gif"]
Visibility = Literal["public", "unlisted", "private", "direct"]
DraftKind = Literal["status", "boost", "edit"]


def post_id_key(post_id: str) -> tuple[int, str]:
    """Sort key for X snowflake ids: numeric, then textual for safety."""
    return (int(post_id), post_id) if post_id.isdigit() else (0, post_id)


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
    truncated: bool = False  # archive retweets: text is cut and no original is shipped
    lang: str | None = None
    sensitive: bool = False
    edit_history_ids: tuple[str, ...] = ()  # oldest first, includes ``id`` (X puts the newest last)
    poll: Poll | None = None
    source: Literal["api", "archive"] = "api"

    @property
    def is_retweet(self) -> bool:
        return self.retweet_of is not None or self.retweet_of_id is not None

    @property
    def original_id(self) -> str:
        """The id of the first version of an edited post (X ``edit_history_tweet_ids[0]``)."""
        return self.edit_history_ids[0] if self.edit_history_ids else self.id

    @property
    def permalink(self) -> str:
        return f"https://x.com/{self.author_username}/status/{self.id}"


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


@dataclass(frozen=True)
class Draft:
    """One Mastodon action for one part of a source post.

    ``part`` numbers the drafts of one source post from 0. ``reply_to_part``
    says "reply to the toot of part N of this same post" (thread splits, media
    follow-ups); ``in_reply_to`` says "reply to the toot of that source post".
    The pipeline resolves both to status ids through the ledger.
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
    length: int = 0  # as Mastodon counts it
    notes: tuple[str, ...] = field(default=())  # what could not be bridged, and why
