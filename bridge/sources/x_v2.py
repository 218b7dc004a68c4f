"""Normalise X API v2 response bodies into ``SourcePost``.

This is the only code that knows the v2 shape (X API v2 data dictionary:
docs.x.com/x-api/fundamentals/data-dictionary). A v2 page is
``{"data": [...], "includes": {"media", "tweets", "users", "polls"}, "meta", "errors"}``;
tweets point into ``includes`` by key (media_key, tweet id, author_id, poll id).
Objects X could not include (a deleted original, a protected quoted post) are
simply absent, with an entry in ``errors``: we keep the id and leave the object
``None`` rather than fail the page.

Pure functions over parsed JSON: no HTTP here (that is ``bridge.sources.x_api``).
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from bridge.errors import SourceError
from bridge.model import (
    Hashtag,
    Media,
    MediaVariant,
    Mention,
    Poll,
    SourcePost,
    UrlEntity,
    is_post_id,
    post_id_key,
)

# A post's own media permalink, e.g. https://x.com/user/status/123/photo/1 (v1.1 and v2 use it
# as the expanded_url of the trailing t.co link of attached media).
_OWN_MEDIA_LINK = re.compile(
    r"^https?://(?:www\.|mobile\.)?(?:twitter|x)\.com/[^/]+/status/(\d+)/(?:photo|video)/\d+/?$"
)

_RETWEET_PREFIX = re.compile(r"^RT @([A-Za-z0-9_]{1,15}): ")

# X snowflake ids carry their creation time: (id >> 22) + Twitter epoch in ms
# (X docs, "Twitter IDs"). Used only when created_at was not requested.
_TWITTER_EPOCH_MS = 1288834974657

# Quotes and retweets nest; X includes one level, so more than a few levels means a loop.
_MAX_DEPTH = 3

_MEDIA_TYPES = ("photo", "video", "animated_gif")

# X docs, "User Tweet timeline": only the 3,200 most recent posts of an account are served.
X_TIMELINE_REACH = 3200


def x_permalink(username: str | None, post_id: str) -> str:
    """The public URL of an X post (``i/web`` when the author's handle is unknown)."""
    return f"https://x.com/{username or 'i/web'}/status/{post_id}"


def x_sort_key(post_id: str) -> int:
    """X ids are snowflakes: numerically increasing with time (X docs, "Twitter IDs")."""
    return int(post_id) if post_id.isdigit() else 0


def snowflake_at(when: datetime) -> str:
    """The smallest X post id created at ``when`` (X docs, "Twitter IDs").

    As a ``since_id`` it means "posts made after this moment": the cursor of an
    account that has no posts yet, so its first post is new and nothing older is.
    """
    ms = int(when.timestamp() * 1000) - _TWITTER_EPOCH_MS
    return str(max(ms, 0) << 22)


@dataclass(frozen=True)
class Index:
    """``includes`` of one page, keyed the way tweets refer to them."""

    media: dict[str, dict] = field(default_factory=dict)  # by media_key
    tweets: dict[str, dict] = field(default_factory=dict)  # by id
    users: dict[str, dict] = field(default_factory=dict)  # by id
    polls: dict[str, dict] = field(default_factory=dict)  # by id

    @classmethod
    def from_includes(cls, includes: Any) -> Index:
        """Index a page's ``includes`` object; raises SourceError if it is not the documented shape."""
        if includes is None:
            return cls()
        if not isinstance(includes, dict):
            raise SourceError(f"X API v2 page: field includes must be an object, got {_type(includes)}")
        return cls(
            media=_index_by(includes, "media", "media_key"),
            tweets=_index_by(includes, "tweets", "id"),
            users=_index_by(includes, "users", "id"),
            polls=_index_by(includes, "polls", "id"),
        )


def normalise_page(page: dict) -> list[SourcePost]:
    """All posts in ``data`` of one parsed v2 response body, in the order X sent them.

    ``data`` is a list for timelines and searches and a single object for
    ``GET /2/tweets/:id``; a page with only ``errors`` (user or post not found)
    has no ``data`` and gives an empty list: the HTTP client reports those errors.
    """
    if not isinstance(page, dict):
        raise SourceError(f"X API v2 page: expected a JSON object, got {_type(page)}")
    index = Index.from_includes(page.get("includes"))
    data = page.get("data")
    if data is None:
        return []
    if isinstance(data, dict):
        items = [data]
    elif isinstance(data, list):
        items = data
    else:
        raise SourceError(f"X API v2 page: field data must be a list or an object, got {_type(data)}")
    posts = []
    for position, tweet in enumerate(items):
        if not isinstance(tweet, dict):
            raise SourceError(f"X API v2 page: data[{position}] must be an object, got {_type(tweet)}")
        posts.append(normalise_tweet(tweet, index))
    return posts


def normalise_tweet(tweet: dict, includes: Index | None = None, *, _depth: int = 0) -> SourcePost:
    """One v2 tweet object with its page's ``includes`` as a ``SourcePost``.

    Long posts: ``text`` is cut and ``note_tweet.text`` is whole, with its own
    entities (X docs, "Post fields": note_tweet). Retweets: ``text`` is cut and
    the original comes whole from ``includes.tweets``.
    """
    index = includes if includes is not None else Index()
    if not isinstance(tweet, dict):
        raise SourceError(f"X API v2 post: expected an object, got {_type(tweet)}")
    post_id = tweet.get("id")
    if not isinstance(post_id, str) or not post_id:
        raise SourceError(f"X API v2 post {post_id!r}: field id must be a non-empty string, got {_type(post_id)}")
    if not is_post_id(post_id):
        shown = post_id if len(post_id) <= 40 else post_id[:40] + "…"
        raise SourceError(f"X API v2 post {shown!r}: field id is not an X post id (decimal digits, at most 2^63-1)")
    where = _Where(post_id)

    text = where.req_str(tweet, "text")
    entities = where.opt_dict(tweet, "entities")
    entities_path = "entities"
    note = where.opt_dict(tweet, "note_tweet")
    if note is not None:
        text = where.req_str(note, "text", "note_tweet")
        entities = where.opt_dict(note, "entities", "note_tweet")
        entities_path = "note_tweet.entities"

    author_id = where.opt_str(tweet, "author_id") or ""
    author_username = _username(index, author_id, where)

    media_keys = []
    poll = None
    attachments = where.opt_dict(tweet, "attachments")
    if attachments is not None:
        keys = where.opt_list(attachments, "media_keys", "attachments")
        media_keys = [where.str_at(k, f"attachments.media_keys[{i}]") for i, k in enumerate(keys)]
        poll_ids = where.opt_list(attachments, "poll_ids", "attachments")
        if poll_ids:
            poll = _poll(index, where.str_at(poll_ids[0], "attachments.poll_ids[0]"), where)

    urls, mentions, hashtags = _entities(entities, entities_path, post_id, media_keys, where)

    media = tuple(_media(index.media[key], where, f"includes.media[{key}]") for key in media_keys if key in index.media)

    in_reply_to_post_id = None
    quote_of_id = None
    retweet_of_id = None
    for i, ref in enumerate(where.opt_list(tweet, "referenced_tweets")):
        if not isinstance(ref, dict):
            raise SourceError(f"X API v2 post {post_id}: field referenced_tweets[{i}] must be an object, got {_type(ref)}")
        ref_type = where.req_str(ref, "type", f"referenced_tweets[{i}]")
        ref_id = where.req_str(ref, "id", f"referenced_tweets[{i}]")
        if ref_type == "replied_to":
            in_reply_to_post_id = ref_id
        elif ref_type == "quoted":
            quote_of_id = ref_id
        elif ref_type == "retweeted":
            retweet_of_id = ref_id

    quote_of = _included_post(index, quote_of_id, _depth)
    retweet_of = _included_post(index, retweet_of_id, _depth)
    plain_text = html.unescape(text)  # X escapes & < > in text; unescape exactly once

    retweet_of_username = None
    truncated = False
    if retweet_of is not None:
        retweet_of_username = retweet_of.author_username or None
    elif retweet_of_id is not None:
        # Original deleted or withheld: only the cut "RT @user: …" text is left to name its author.
        rt = _RETWEET_PREFIX.match(plain_text)
        retweet_of_username = rt.group(1) if rt else None
        truncated = plain_text.endswith("…")

    history = where.opt_list(tweet, "edit_history_tweet_ids")
    edit_history_ids = tuple(
        sorted((where.str_at(v, f"edit_history_tweet_ids[{i}]") for i, v in enumerate(history)), key=post_id_key)
    )

    return SourcePost(
        id=post_id,
        author_id=author_id,
        author_username=author_username,
        created_at=_created_at(tweet, where),
        text=plain_text,
        urls=urls,
        mentions=mentions,
        hashtags=hashtags,
        media=media,
        in_reply_to_post_id=in_reply_to_post_id,
        in_reply_to_user_id=where.opt_str(tweet, "in_reply_to_user_id"),
        conversation_id=where.opt_str(tweet, "conversation_id"),
        quote_of=quote_of,
        quote_of_id=quote_of_id,
        retweet_of=retweet_of,
        retweet_of_id=retweet_of_id,
        retweet_of_username=retweet_of_username,
        truncated=truncated,
        lang=where.opt_str(tweet, "lang"),
        sensitive=where.opt_bool(tweet, "possibly_sensitive"),
        edit_history_ids=edit_history_ids,
        poll=poll,
        source="api",
    )


# --- parts --------------------------------------------------------------------------


def _included_post(index: Index, post_id: str | None, depth: int) -> SourcePost | None:
    """The referenced post from ``includes.tweets``, or None when X left it out (deleted, protected)."""
    if post_id is None or depth >= _MAX_DEPTH:
        return None
    included = index.tweets.get(post_id)
    if included is None:
        return None
    return normalise_tweet(included, index, _depth=depth + 1)


def _entities(
    entities: dict | None, path: str, post_id: str, media_keys: list[str], where: _Where
) -> tuple[tuple[UrlEntity, ...], tuple[Mention, ...], tuple[Hashtag, ...]]:
    if entities is None:
        return (), (), ()
    urls = []
    for i, u in enumerate(where.opt_list(entities, "urls", path)):
        at = f"{path}.urls[{i}]"
        where.need_dict(u, at)
        expanded = where.opt_str(u, "expanded_url", at) or where.req_str(u, "url", at)
        media_key = where.opt_str(u, "media_key", at)
        if media_key is None:
            own = _OWN_MEDIA_LINK.match(expanded)
            if own is not None and own.group(1) == post_id and media_keys:
                media_key = media_keys[0]
        urls.append(
            UrlEntity(
                url=where.req_str(u, "url", at),
                expanded_url=expanded,
                display_url=where.opt_str(u, "display_url", at) or "",
                start=where.opt_int(u, "start", at),
                end=where.opt_int(u, "end", at),
                media_key=media_key,
            )
        )
    mentions = []
    for i, m in enumerate(where.opt_list(entities, "mentions", path)):
        at = f"{path}.mentions[{i}]"
        where.need_dict(m, at)
        mentions.append(
            Mention(
                username=where.req_str(m, "username", at),
                user_id=where.opt_str(m, "id", at),
                start=where.opt_int(m, "start", at),
                end=where.opt_int(m, "end", at),
            )
        )
    hashtags = []
    for kind, cashtag in (("hashtags", False), ("cashtags", True)):
        for i, h in enumerate(where.opt_list(entities, kind, path)):
            at = f"{path}.{kind}[{i}]"
            where.need_dict(h, at)
            hashtags.append(
                Hashtag(
                    tag=where.req_str(h, "tag", at),
                    cashtag=cashtag,
                    start=where.opt_int(h, "start", at),
                    end=where.opt_int(h, "end", at),
                )
            )
    return tuple(urls), tuple(mentions), tuple(hashtags)


def _media(item: dict, where: _Where, at: str) -> Media:
    """One ``includes.media`` object: photos have ``url``; videos and GIFs a preview and ``variants``."""
    where.need_dict(item, at)
    media_type = where.req_str(item, "type", at)
    if media_type not in _MEDIA_TYPES:
        raise SourceError(f"X API v2 post {where.post_id}: field {at}.type is {media_type!r}, expected one of {_MEDIA_TYPES}")
    variants = []
    for i, v in enumerate(where.opt_list(item, "variants", at)):
        vat = f"{at}.variants[{i}]"
        where.need_dict(v, vat)
        variants.append(
            MediaVariant(
                url=where.req_str(v, "url", vat),
                content_type=where.opt_str(v, "content_type", vat) or "",
                bit_rate=where.opt_int(v, "bit_rate", vat),
            )
        )
    return Media(
        key=where.req_str(item, "media_key", at),
        type=media_type,  # type: ignore[arg-type]  # checked against _MEDIA_TYPES above
        url=where.opt_str(item, "url", at) or where.opt_str(item, "preview_image_url", at),
        variants=tuple(variants),
        alt_text=where.opt_str(item, "alt_text", at),
        duration_ms=where.opt_int(item, "duration_ms", at),
        width=where.opt_int(item, "width", at),
        height=where.opt_int(item, "height", at),
    )


def _poll(index: Index, poll_id: str, where: _Where) -> Poll | None:
    item = index.polls.get(poll_id)
    if item is None:
        return None
    at = f"includes.polls[{poll_id}]"
    options = []
    for i, o in enumerate(where.opt_list(item, "options", at)):
        oat = f"{at}.options[{i}]"
        where.need_dict(o, oat)
        options.append((where.opt_int(o, "position", oat) or i + 1, where.req_str(o, "label", oat)))
    options.sort(key=lambda pair: pair[0])
    return Poll(options=tuple(label for _, label in options), duration_minutes=where.opt_int(item, "duration_minutes", at))


def _username(index: Index, user_id: str, where: _Where) -> str:
    """Username from ``includes.users``; empty when the author expansion was not requested."""
    if not user_id:
        return ""
    user = index.users.get(user_id)
    if user is None:
        return ""
    return where.req_str(user, "username", f"includes.users[{user_id}]")


def _created_at(tweet: dict, where: _Where) -> datetime:
    """``created_at`` (ISO-8601, "Z") as aware UTC; from the snowflake id when not requested."""
    raw = where.opt_str(tweet, "created_at")
    if raw is None:
        if is_post_id(where.post_id):
            ms = (int(where.post_id) >> 22) + _TWITTER_EPOCH_MS
            try:
                return datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
            except (OverflowError, ValueError, OSError):
                pass  # a time no calendar holds: the id is no snowflake after all
        raise SourceError(f"X API v2 post {where.post_id}: field created_at is missing and the id is not a snowflake")
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise SourceError(f"X API v2 post {where.post_id}: field created_at is not ISO-8601: {raw!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


def _index_by(includes: dict, name: str, key: str) -> dict[str, dict]:
    items = includes.get(name) or []
    if not isinstance(items, list):
        raise SourceError(f"X API v2 page: field includes.{name} must be a list, got {_type(items)}")
    out: dict[str, dict] = {}
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get(key), str):
            raise SourceError(f"X API v2 page: includes.{name}[{i}] must be an object with a string {key}")
        out[item[key]] = item
    return out


def _type(value: object) -> str:
    return "null" if value is None else type(value).__name__


class _Where:
    """Typed field access that names the post id and the field path in every error."""

    def __init__(self, post_id: str) -> None:
        self.post_id = post_id

    def _fail(self, path: str, expected: str, value: object) -> SourceError:
        return SourceError(f"X API v2 post {self.post_id}: field {path} must be {expected}, got {_type(value)}")

    @staticmethod
    def _path(parent: str, key: str) -> str:
        return f"{parent}.{key}" if parent else key

    def req_str(self, obj: dict, key: str, parent: str = "") -> str:
        value = obj.get(key)
        if not isinstance(value, str):
            if value is None:
                raise SourceError(f"X API v2 post {self.post_id}: field {self._path(parent, key)} is missing")
            raise self._fail(self._path(parent, key), "a string", value)
        return value

    def opt_str(self, obj: dict, key: str, parent: str = "") -> str | None:
        value = obj.get(key)
        if value is not None and not isinstance(value, str):
            raise self._fail(self._path(parent, key), "a string", value)
        return value

    def str_at(self, value: object, path: str) -> str:
        if not isinstance(value, str):
            raise self._fail(path, "a string", value)
        return value

    def opt_int(self, obj: dict, key: str, parent: str = "") -> int | None:
        value = obj.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._fail(self._path(parent, key), "an integer", value)
        return value

    def opt_bool(self, obj: dict, key: str, parent: str = "") -> bool:
        value = obj.get(key)
        if value is None:
            return False
        if not isinstance(value, bool):
            raise self._fail(self._path(parent, key), "true or false", value)
        return value

    def opt_dict(self, obj: dict, key: str, parent: str = "") -> dict | None:
        value = obj.get(key)
        if value is not None and not isinstance(value, dict):
            raise self._fail(self._path(parent, key), "an object", value)
        return value

    def need_dict(self, value: object, path: str) -> None:
        if not isinstance(value, dict):
            raise self._fail(path, "an object", value)

    def opt_list(self, obj: dict, key: str, parent: str = "") -> list:
        value = obj.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self._fail(self._path(parent, key), "a list", value)
        return value
