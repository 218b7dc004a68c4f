"""Read the official X account archive (a .zip or its extracted folder) as ``SourcePost``.

The export is a set of JavaScript files, each ``window.YTD.<name>.partN = [...]``
(X-archive README, "tweets.js"; fixtures/x-archive/sample-coop/EXPECTED.md):
``data/tweets.js`` (older exports: ``data/tweet.js``), split into
``tweets-part1.js``, ``tweets-part2.js``... for big accounts, each item
``{"tweet": {...}}`` in the v1.1 shape with every number as a string. Media sit
in ``data/tweets_media/`` (older: ``tweet_media``) as ``<post id>-<file name>``.

Big accounts have 100,000+ posts in a file of hundreds of MB, so the tweets
files are parsed item by item from a buffered text stream (never the whole
array at once). A zip is never extracted as a whole: the JSON is streamed from
its entries and a media file is copied to a private temp dir only when asked
for (``Archive.media_path``). Zip entries are checked against path escapes and
against size caps, by their declared sizes and by counting bytes while reading.

Posts come in file order, which is not time order (the export is newest-first
runs): callers sort by ``post_id_key``.
"""

from __future__ import annotations

import html
import io
import json
import os
import re
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path, PurePosixPath
from typing import IO, Any
from urllib.parse import urlparse

from bridge.errors import SourceError
from bridge.model import Hashtag, Media, MediaVariant, Mention, Post, SourcePost, UrlEntity, post_id_key
from bridge.sources.base import DEFAULT_MAX_ENTRY_BYTES as DEFAULT_MAX_ENTRY_BYTES  # re-exported
from bridge.sources.base import DEFAULT_MAX_TOTAL_BYTES as DEFAULT_MAX_TOTAL_BYTES
from bridge.sources.base import ReadResult, SourceAccount, SourceCapabilities
from bridge.sources.media import is_remote, open_local_file
from bridge.sources.x_post import neutral_post
from bridge.sources.x_v2 import snowflake_at, x_permalink, x_sort_key

_CHUNK_CHARS = 1 << 20
_MAX_ITEM_CHARS = 64 << 20  # one tweet is a few KB; past this a parse error is an error, not a short read
_PREFIX_SCAN_CHARS = 512

_PREFIX = re.compile(r"window\.YTD\.([A-Za-z0-9_]+)\.part(\d+)\s*=\s*")
_TWEETS_FILE = re.compile(r"^(tweets?)(?:-part(\d+))?\.js$")
_STATUS_LINK = re.compile(r"^https?://(?:www\.|mobile\.)?(?:twitter|x)\.com/([A-Za-z0-9_]{1,15})/status(?:es)?/(\d+)(/[^?#]*)?")
_RETWEET_PREFIX = re.compile(r"^RT @([A-Za-z0-9_]{1,15}): ")
_MONTHS = {m: i for i, m in enumerate(("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}
_CREATED_AT = re.compile(r"^[A-Z][a-z]{2} ([A-Z][a-z]{2}) (\d{2}) (\d{2}):(\d{2}):(\d{2}) ([+-])(\d{2})(\d{2}) (\d{4})$")
_MEDIA_TYPES = ("photo", "video", "animated_gif")
_WS = " \t\r\n"
_TCO_LINK = re.compile(r"https?://t\.co/[A-Za-z0-9]+")
_TRAILING_TCO_LINKS = re.compile(r"(?:\s*https?://t\.co/[A-Za-z0-9]+)+\s*$")
_LEADING_MENTIONS = re.compile(r"^(?:[@＠][A-Za-z0-9_]{1,15}(?:\s+|$))+")
_CUT_MIN_WEIGHT = 140  # half of X's 280: see _looks_cut
_MAX_ROOT_DEPTH = 3  # folders around the archive's data/ (re-zipped exports: see _pick_root)
_MAX_ROOT_SCAN = 500  # folders listed at most while looking for data/ in a folder
_ROOT_ENTRY = re.compile(rf"^((?:[^/]+/){{0,{_MAX_ROOT_DEPTH}}})data/([^/]+)$")
_ROOT_MARKER = re.compile(r"^(?:account|tweets?(?:-part\d+)?)\.js$")


@dataclass(frozen=True)
class ArchiveAccount:
    account_id: str
    username: str


def open_archive(
    path: str | Path,
    *,
    max_entry_bytes: int = DEFAULT_MAX_ENTRY_BYTES,
    max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
) -> Archive:
    """Open an archive .zip or extracted folder; raises SourceError if it is not one."""
    p = Path(path)
    if p.is_dir():
        return Archive(_FolderStore(p), p)
    if not p.exists():
        raise SourceError(f"{p}: no such file or folder (expected an X archive .zip or its extracted folder)")
    if not zipfile.is_zipfile(p):
        raise SourceError(f"{p}: not an X archive: neither a zip file nor a folder with data/")
    return Archive(_ZipStore(p, max_entry_bytes, max_total_bytes), p)


class Archive:
    """An opened archive: the ``ArchiveSource`` "x-archive" of ``bridge.sources.base``.

    Use as a context manager, or call ``close()`` to delete extracted media.
    """

    kind = "x-archive"
    name = "X archive"
    # The export has every post (no reach limit), edits as separate entries, retweets
    # only as "RT @user:" text, and media descriptions are not exported.
    capabilities = SourceCapabilities(edits=True, deletes=False, reposts=True, quotes=True, alt_text=False)

    def __init__(self, store: _Store, path: Path) -> None:
        self.path = path
        self._store = store
        self._account: ArchiveAccount | None = None
        self._notes: dict[datetime, list[bytes]] | None = None
        try:
            self._tweets_files = _tweets_files(store.data_names(), store.describe("data/"))
            self._media_dirs = [d for d in ("tweets_media", "tweet_media") if store.has_dir(f"data/{d}")]
        except BaseException:
            store.close()
            raise

    @property
    def is_zip(self) -> bool:
        return isinstance(self._store, _ZipStore)

    @property
    def tweets_files(self) -> list[str]:
        """The tweets files read, in order (``data/tweets.js``, ``data/tweets-part1.js``, ...)."""
        return [f"data/{name}" for name in self._tweets_files]

    def account(self) -> ArchiveAccount:
        """Whose archive this is, from ``data/account.js`` (the author of every post in it)."""
        if self._account is None:
            where = self._store.describe("data/account.js")
            if not self._store.has_file("data/account.js"):
                raise SourceError(f"{where}: missing; the archive's account file is needed to know the author")
            items = list(self._read_array("data/account.js", ("account",)))
            if not items or not isinstance(items[0][1], dict) or not isinstance(items[0][1].get("account"), dict):
                raise SourceError(f"{where}: expected [{{\"account\": {{...}}}}], found no account object")
            acc = items[0][1]["account"]
            account_id, username = acc.get("accountId"), acc.get("username")
            if not isinstance(account_id, str) or not account_id:
                raise SourceError(f"{where}: item #0 account.accountId is missing or not a string")
            if not isinstance(username, str) or not username:
                raise SourceError(f"{where}: item #0 account.username is missing or not a string")
            self._account = ArchiveAccount(account_id=account_id, username=username)
        return self._account

    def count_posts(self) -> int | None:
        """Entries in the tweets files as ``data/manifest.js`` declares them (edit versions included); None if unknown."""
        if not self._store.has_file("data/manifest.js"):
            return None
        try:
            with self._store.open_text("data/manifest.js") as stream:
                text = stream.read(4 * 1024 * 1024)
            manifest = json.loads(text[text.index("=") + 1 :])
            data_types = manifest["dataTypes"]
            tweets = data_types.get("tweets") or data_types.get("tweet")
            return sum(int(f["count"]) for f in tweets["files"])
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
            return None

    def iter_posts(self) -> Iterator[SourcePost]:
        """Every entry of the tweets files as a SourcePost, in file order, one at a time."""
        account = self.account()
        notes = self._note_tweets()
        for name in self._tweets_files:
            rel = f"data/{name}"
            where = self._store.describe(rel)
            for index, item in self._read_array(rel, ("tweets", "tweet")):
                post = normalise_archive_tweet(item, account, place=f"{where} item #{index}", notes=notes)
                yield self._with_local_media(post)

    def media_path(self, post_id: str, media: Media, *, into: str | Path | None = None) -> Path | None:
        """A real file for ``media`` of post ``post_id``, or None if the archive lacks it.

        Folder archives give the file in place. Zip archives copy the one entry
        to ``into`` (kept; an existing copy of the right size is reused) or, without
        it, to a private temp dir removed by ``close()``.
        """
        return self._local_file(self._find_media(post_id, media), into)

    def _local_file(self, rel: str | None, into: str | Path | None) -> Path | None:
        """The archive's file ``rel`` (as ``_find_media`` found it, None: missing) as a real file."""
        if rel is None:
            return None
        return self._store.local_file(rel, Path(into) if into is not None else None)

    def with_media_files(
        self, post: SourcePost, *, into: str | Path | None = None, max_bytes: Mapping[str, int] | None = None
    ) -> SourcePost:
        """``post`` with every ``Media.local_path`` a real file (see ``media_path``), for upload later.

        ``max_bytes`` maps a media type to the most bytes it may have (the smaller of
        ``x.max_media_bytes`` and the instance's limit). Every file's declared size is
        checked before any is extracted: one too big raises SourceError naming it, and
        nothing of the post is written (a small zip can declare a huge entry).
        """
        if not post.media:
            return post
        rels = [self._find_media(post.id, m) for m in post.media]  # once per file: the check, then the copy
        if max_bytes is not None:
            for m, rel in zip(post.media, rels):
                cap = max_bytes.get(m.type)
                size = self._store.size(rel) if rel is not None else None
                if cap is not None and size is not None and size > cap:
                    raise SourceError(
                        f"{self._store.describe(rel or '')}: {m.type} of post {post.id} is {size} bytes, over the limit "
                        f"of {cap} (x.max_media_bytes or the instance's {m.type} size limit); not extracted"
                    )
        media = []
        for m, rel in zip(post.media, rels):
            path = self._local_file(rel, into)
            media.append(replace(m, local_path=str(path) if path is not None else None))
        return replace(post, media=tuple(media))

    # --- the Source interface ---------------------------------------------------------

    def owner(self) -> SourceAccount:
        account = self.account()
        return SourceAccount(id=account.account_id, handle=account.username)

    def read_new(self, account: str, cursor: str | None) -> ReadResult:
        """Every post newer than ``cursor`` (an export is read whole: one pass, no requests)."""
        key = x_sort_key(cursor) if cursor else -1
        posts = [p for p in self.iter_posts() if x_sort_key(p.id) > key]
        newest = max((p.id for p in posts), key=x_sort_key, default=None)
        return ReadResult(entries=list(posts), cursor=newest, complete=True, requests=0)

    def read_range(
        self,
        account: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = None,
        around: str | None = None,
    ) -> Iterator[SourcePost]:
        """Posts created in [since, until) in file order (not time order), or the one ``around`` names.
        ``limit`` is not applied here: the export is not in time order."""
        for post in self.iter_posts():
            if around is not None:
                if post.id == around:
                    yield post
                    return
                continue
            if (since is None or post.created_at >= since) and (until is None or post.created_at < until):
                yield post

    def sort_key(self, post_id: str) -> int:
        return x_sort_key(post_id)

    def cursor_at(self, when: datetime) -> str:
        return snowflake_at(when)

    def permalink(self, handle: str | None, post_id: str) -> str:
        return x_permalink(handle, post_id)

    def neutral(self, post: SourcePost, account: str) -> Post:
        return neutral_post(post, account)

    def open_media(self, ref: str, dest: Path, max_bytes: int) -> tuple[Path, str | None]:
        """Files of the archive only (see ``with_local_media``): an archive downloads nothing."""
        if is_remote(ref):
            raise SourceError(f"{self.path}: media {ref} is not a file of the archive")
        return open_local_file(ref, max_bytes)

    def with_local_media(
        self, post: SourcePost, into: Path | None, max_bytes: Mapping[str, int] | None = None
    ) -> SourcePost:
        """Media as files (zip entries copied into ``into``, checked against ``max_bytes`` first;
        None copies nothing) and X's URLs dropped, so nothing is ever downloaded for an archive post."""
        if not post.media:
            return post
        if self.is_zip and into is not None:
            post = self.with_media_files(post, into=into, max_bytes=max_bytes)
        media = tuple(replace(m, url=None, variants=()) for m in post.media)
        return replace(post, media=media)

    def check_media(self, post: SourcePost, max_bytes: int) -> None:
        """A zip entry over the cap is refused before anything is recorded (zip bomb)."""
        if not self.is_zip:
            return
        for m in post.media:
            if m.local_path is not None and m.size_bytes is not None and m.size_bytes > max_bytes:
                raise SourceError(
                    f"{self.path}:{m.local_path}: entry declares {m.size_bytes} bytes uncompressed, over the cap of "
                    f"{max_bytes} (zip bomb?); nothing was recorded or posted"
                )

    def close(self) -> None:
        self._store.close()

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- internals -----------------------------------------------------------------

    def _read_array(self, rel: str, expected: tuple[str, ...]) -> Iterator[tuple[int, Any]]:
        with self._store.open_text(rel) as stream:
            yield from _JsArrayReader(stream, self._store.describe(rel), expected).items()

    def _note_tweets(self) -> dict[datetime, list[bytes]]:
        """Long posts' whole text (``data/note-tweet.js``), keyed by creation second for the join.

        Every note is held for the whole read (the join needs them), so each is kept
        as compact UTF-8 JSON, not as parsed objects: a str with one emoji takes 4
        bytes per character, nested dicts far more (bench/archive.py, flat memory).
        """
        if self._notes is None:
            self._notes = {}
            rel = "data/note-tweet.js"
            if self._store.has_file(rel):
                where = self._store.describe(rel)
                for index, item in self._read_array(rel, ("note_tweet", "noteTweet")):
                    note = item.get("noteTweet") if isinstance(item, dict) else None
                    if not isinstance(note, dict):
                        raise SourceError(f"{where} item #{index}: expected {{\"noteTweet\": {{...}}}}")
                    created = note.get("createdAt")
                    core = note.get("core")
                    if not isinstance(created, str) or not isinstance(core, dict) or not isinstance(core.get("text"), str):
                        raise SourceError(f"{where} item #{index}: noteTweet needs createdAt and core.text")
                    try:
                        second = datetime.fromisoformat(created.replace("Z", "+00:00")).replace(microsecond=0)
                    except ValueError:
                        raise SourceError(f"{where} item #{index}: noteTweet.createdAt is not ISO-8601: {created!r}") from None
                    try:
                        compact = json.dumps(core, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
                    except RecursionError:
                        raise SourceError(f"{where} item #{index}: noteTweet.core is nested too deeply") from None
                    self._notes.setdefault(second.astimezone(timezone.utc), []).append(compact)
        return self._notes

    def _find_media(self, post_id: str, media: Media) -> str | None:
        names = [f"{post_id}-{n}" for n in _media_file_names(media)]
        for directory in self._media_dirs:
            for n in names:
                rel = f"data/{directory}/{n}"
                if self._store.has_file(rel):
                    return rel
        return None

    def _with_local_media(self, post: SourcePost) -> SourcePost:
        if not post.media:
            return post
        media = []
        for m in post.media:
            rel = self._find_media(post.id, m)
            if rel is None:
                media.append(m)
            else:
                media.append(replace(m, local_path=self._store.local_name(rel), size_bytes=self._store.size(rel)))
        return replace(post, media=tuple(media))


def _tweets_files(names: set[str], where: str) -> list[str]:
    """``tweets.js`` then ``tweets-part1.js``... (or the older ``tweet*.js``) in part order."""
    found: dict[str, list[tuple[int, str]]] = {"tweets": [], "tweet": []}
    for name in names:
        m = _TWEETS_FILE.match(name)
        if m:
            found[m.group(1)].append((int(m.group(2) or 0), name))
    files = found["tweets"] or found["tweet"]
    if not files:
        raise SourceError(f"{where}: no tweets file (expected data/tweets.js, or data/tweet.js in older exports)")
    return [name for _, name in sorted(files)]


def _media_file_names(media: Media) -> list[str]:
    """File names X gives this media in the archive: the photo's own name; for video and GIF the
    best mp4 variant's name (query dropped), then the other variants' (EXPECTED.md, "Media files")."""
    names = []
    if media.type == "photo":
        if media.url:
            names.append(_basename(media.url))
    else:
        mp4 = sorted(
            (v for v in media.variants if v.content_type == "video/mp4"),
            key=lambda v: v.bit_rate if v.bit_rate is not None else -1,
            reverse=True,
        )
        names.extend(_basename(v.url) for v in mp4)
        names.extend(_basename(v.url) for v in media.variants if v.content_type != "video/mp4")
    return [n for n in dict.fromkeys(names) if n]


def _basename(url: str) -> str:
    return PurePosixPath(urlparse(url).path).name


# --- normalisation --------------------------------------------------------------------


def normalise_archive_tweet(
    item: Any,
    account: ArchiveAccount,
    *,
    place: str = "archive item",
    notes: Mapping[datetime, list[bytes]] | None = None,
) -> SourcePost:
    """One tweets.js item (``{"tweet": {...}}``, v1.1 shape, numbers as strings) as a SourcePost.

    ``notes`` maps a creation second to note-tweet.js ``core`` objects (as UTF-8 JSON): a long
    post's whole text lives there, joined on ``createdAt`` (the note id is not
    the post id) and checked by the cut text being its prefix (EXPECTED.md, "Long posts").
    """
    tweet = item.get("tweet") if isinstance(item, dict) and "tweet" in item else item  # pre-2020 exports are flat
    if not isinstance(tweet, dict):
        raise SourceError(f"{place}: expected {{\"tweet\": {{...}}}}, found {type(item).__name__}")
    post_id = tweet.get("id_str", tweet.get("id"))
    if not isinstance(post_id, str) or not post_id.isdigit():
        raise SourceError(f"{place}: tweet has no id_str (found {post_id!r})")
    f = _Fields(f"{place} (tweet id {post_id})")

    raw_text = tweet.get("full_text", tweet.get("text"))
    if not isinstance(raw_text, str):
        raise SourceError(f"{f.place}: missing full_text")
    text = html.unescape(raw_text)  # the export escapes & < > only; unescape exactly once
    created_at = _parse_created_at(tweet.get("created_at"), f)

    entities = f.dict_at(tweet, "entities")
    extended = f.dict_at(tweet, "extended_entities")
    media_items = f.list_at(extended, "media", "extended_entities") or f.list_at(entities, "media", "entities")
    media = [_media(m, f, f"extended_entities.media[{i}]") for i, m in enumerate(media_items)]

    urls = [_url(u, f, f"entities.urls[{i}]") for i, u in enumerate(f.list_at(entities, "urls", "entities"))]
    mentions = [
        Mention(
            username=f.str_at(m, "screen_name", f"entities.user_mentions[{i}]"),
            user_id=f.opt_str(m, "id_str", f"entities.user_mentions[{i}]"),
            start=f.index(m, 0, f"entities.user_mentions[{i}]"),
            end=f.index(m, 1, f"entities.user_mentions[{i}]"),
        )
        for i, m in enumerate(f.list_at(entities, "user_mentions", "entities"))
    ]
    hashtags = [
        Hashtag(
            tag=f.str_at(h, "text", f"entities.{kind}[{i}]"),
            cashtag=kind == "symbols",
            start=f.index(h, 0, f"entities.{kind}[{i}]"),
            end=f.index(h, 1, f"entities.{kind}[{i}]"),
        )
        for kind in ("hashtags", "symbols")
        for i, h in enumerate(f.list_at(entities, kind, "entities"))
    ]
    # The trailing media link is a media entity, not a url entity; all items share it.
    for i, m in enumerate(media_items):
        link = f.opt_str(m, "url", f"extended_entities.media[{i}]")
        if link and all(u.url != link for u in urls):
            urls.append(
                UrlEntity(
                    url=link,
                    expanded_url=f.opt_str(m, "expanded_url", f"extended_entities.media[{i}]") or link,
                    display_url=f.opt_str(m, "display_url", f"extended_entities.media[{i}]") or "",
                    start=f.index(m, 0, f"extended_entities.media[{i}]"),
                    end=f.index(m, 1, f"extended_entities.media[{i}]"),
                    media_key=media[i].key,
                )
            )

    tweet_urls = urls
    rt = _RETWEET_PREFIX.match(text)
    note = None if rt is not None else _find_note(notes, created_at, text)
    if note is not None:
        text, urls, mentions, hashtags = _joined_note(note, text, urls, mentions, f)

    retweet_of_username = None
    retweet_of_id = None
    truncated = False
    if rt is not None:
        # The export ships no original: only "RT @user: " and a text cut to 140 code points.
        retweet_of_username = rt.group(1)
        truncated = text.endswith("…")
        sources = {f.opt_str(m, "source_status_id_str", "extended_entities.media") for m in media_items}
        sources.discard(None)
        if len(sources) == 1:
            retweet_of_id = sources.pop()  # the media of a retweet names the original post
    elif note is None and _looks_cut(text):
        truncated = True  # a long post whose note is missing: never posted as if whole

    quote_of_id = f.opt_str(tweet, "quoted_status_id_str", "")
    if quote_of_id is None:
        # a long post's quote link sits after the ellipsis of the cut text, not in the note
        for u in [*reversed(urls), *reversed(tweet_urls)]:
            status = _STATUS_LINK.match(u.expanded_url)
            if status and status.group(2) != post_id and u.media_key is None and not (status.group(3) or "").strip("/"):
                quote_of_id = status.group(2)
                break

    edit_ids: list[str] = []
    edit_info = f.dict_at(tweet, "edit_info")
    if edit_info is not None:
        control = f.dict_at(edit_info, "initial", "edit_info")
        if control is None:
            edit = f.dict_at(edit_info, "edit", "edit_info")
            control = f.dict_at(edit, "editControlInitial", "edit_info.edit") if edit else None
        if control is not None:
            edit_ids = [f.id_value(v, f"edit_info.editTweetIds[{i}]") for i, v in enumerate(f.list_at(control, "editTweetIds", "edit_info"))]

    sensitive = tweet.get("possibly_sensitive", False)
    return SourcePost(
        id=post_id,
        author_id=account.account_id,
        author_username=account.username,
        created_at=created_at,
        text=text,
        urls=tuple(urls),
        mentions=tuple(mentions),
        hashtags=tuple(hashtags),
        media=tuple(media),
        in_reply_to_post_id=f.opt_str(tweet, "in_reply_to_status_id_str", ""),
        in_reply_to_user_id=f.opt_str(tweet, "in_reply_to_user_id_str", ""),
        quote_of_id=quote_of_id,
        retweet_of_id=retweet_of_id,
        retweet_of_username=retweet_of_username,
        truncated=truncated,
        lang=f.opt_str(tweet, "lang", ""),
        sensitive=sensitive is True or sensitive == "true",
        edit_history_ids=tuple(sorted(set(edit_ids), key=post_id_key)),
        source="archive",
    )


def _media(m: Any, f: _Fields, at: str) -> Media:
    if not isinstance(m, dict):
        raise SourceError(f"{f.place}: {at} must be an object")
    media_type = f.str_at(m, "type", at)
    if media_type not in _MEDIA_TYPES:
        raise SourceError(f"{f.place}: {at}.type is {media_type!r}, expected one of {_MEDIA_TYPES}")
    video_info = f.dict_at(m, "video_info", at)
    variants = []
    duration = None
    if video_info is not None:
        for i, v in enumerate(f.list_at(video_info, "variants", f"{at}.video_info")):
            vat = f"{at}.video_info.variants[{i}]"
            variants.append(
                MediaVariant(
                    url=f.str_at(v, "url", vat),
                    content_type=f.opt_str(v, "content_type", vat) or "",
                    bit_rate=f.opt_int(v, "bitrate", vat),
                )
            )
        duration = f.opt_int(video_info, "duration_millis", f"{at}.video_info")
    sizes = f.dict_at(m, "sizes", at) or {}
    large = sizes.get("large") if isinstance(sizes.get("large"), dict) else None
    alt = m.get("ext_alt_text")
    return Media(
        key=f.str_at(m, "id_str", at),
        type=media_type,  # type: ignore[arg-type]  # checked against _MEDIA_TYPES above
        url=f.opt_str(m, "media_url_https", at) or f.opt_str(m, "media_url", at),
        variants=tuple(variants),
        alt_text=alt if isinstance(alt, str) and alt else None,
        duration_ms=duration,
        width=f.opt_int(large, "w", f"{at}.sizes.large") if large else None,
        height=f.opt_int(large, "h", f"{at}.sizes.large") if large else None,
    )


def _url(u: Any, f: _Fields, at: str) -> UrlEntity:
    if not isinstance(u, dict):
        raise SourceError(f"{f.place}: {at} must be an object")
    link = f.str_at(u, "url", at)
    return UrlEntity(
        url=link,
        expanded_url=f.opt_str(u, "expanded_url", at) or link,
        display_url=f.opt_str(u, "display_url", at) or "",
        start=f.index(u, 0, at),
        end=f.index(u, 1, at),
    )


def _find_note(notes: Mapping[datetime, list[bytes]] | None, created_at: datetime, text: str) -> dict | None:
    """The note holding the whole text of this (cut) post: same creation second, and the cut text is a prefix of it.

    Both sides are compared after ``_join_form``: real exports cut the text before
    a media, quote or "show more" link (``… https://t.co/…``), start a reply's cut
    text with ``@name `` that the note lacks, and give the two texts different t.co
    codes. ``text`` is the cut text unescaped once; the note text is raw
    (``>``, not ``&gt;``), so it is never unescaped (issue 12, seven real exports).
    """
    if not notes:
        return None
    candidates = notes.get(created_at.replace(microsecond=0), ())
    if not candidates:
        return None
    cut, had_ellipsis = _join_form(text)
    if not cut:
        return None
    for compact in candidates:
        core = json.loads(compact)
        whole, _ = _join_form(core["text"])
        if whole.startswith(cut) and (len(whole) > len(cut) or had_ellipsis):
            return core
    return None


def _join_form(text: str) -> tuple[str, bool]:
    """``text`` without leading mentions, t.co links and a trailing ellipsis, whitespace runs as one space.

    Also says whether a trailing ellipsis was removed.
    """
    t = " ".join(_TCO_LINK.sub(" ", text).split())
    cut = t.endswith("…")
    t = t.removesuffix("…").rstrip()
    return _LEADING_MENTIONS.sub("", t), cut


def _looks_cut(text: str) -> bool:
    """A text X cut for length: it ends in "…" (before any trailing t.co links) and is long.

    X cuts only a text over 280 weighted characters, so the kept part weighs far
    more than 140 (twitter-text config v3: code points in its ranges weigh 1, all
    others 2, a URL 23); the length check keeps short posts that end in "…" by
    choice from being flagged.
    """
    body = _TRAILING_TCO_LINKS.sub("", text).rstrip()
    if not body.endswith("…"):
        return False
    weight = 23 * len(_TCO_LINK.findall(text))
    for ch in _TCO_LINK.sub("", text):
        cp = ord(ch)
        weight += 1 if cp <= 4351 or 8192 <= cp <= 8205 or 8208 <= cp <= 8223 or 8242 <= cp <= 8247 else 2
    return weight >= _CUT_MIN_WEIGHT


def _joined_note(
    core: dict, cut_text: str, tweet_urls: list[UrlEntity], tweet_mentions: list[Mention], f: _Fields
) -> tuple[str, list[UrlEntity], list[Mention], list[Hashtag]]:
    """The post's text and entities from its note, keeping what only the tweet has.

    A reply's cut text starts with the ``@name`` run X addresses it with; the note
    may lack it, so it is put back in front (the converter treats it as a reply's
    addressing), with the tweet's mention entities, which carry the user ids.
    """
    note_text = core["text"]
    lead_match = _LEADING_MENTIONS.match(cut_text)
    lead = lead_match.group(0) if lead_match else ""
    if lead and _LEADING_MENTIONS.match(note_text) is None:
        lead = lead if lead.endswith((" ", "\n")) else lead + " "
    else:
        lead = ""
    text, urls, mentions, hashtags = _note_content(core, tweet_urls, f, offset=len(lead))
    ids = {m.username.lower(): m.user_id for m in tweet_mentions if m.user_id}
    mentions = [replace(m, user_id=m.user_id or ids.get(m.username.lower())) for m in mentions]
    if lead:
        names = {n.lower() for n in re.findall(r"[@＠]([A-Za-z0-9_]{1,15})", lead)}
        mentions = [m for m in tweet_mentions if m.username.lower() in names] + mentions
    return lead + text, urls, mentions, hashtags


def _note_content(
    core: dict, media_urls: list[UrlEntity], f: _Fields, offset: int = 0
) -> tuple[str, list[UrlEntity], list[Mention], list[Hashtag]]:
    """Text and entities of a note (best-effort shape: EXPECTED.md, "Long posts"), keeping media links.

    The note text is raw, never HTML-escaped: it is used as it is (issue 12).
    """
    text = core["text"]
    urls = []
    for i, u in enumerate(f.list_at(core, "urls", "note.core")):
        at = f"note.core.urls[{i}]"
        link = f.str_at(u, "shortUrl", at)
        urls.append(
            UrlEntity(
                url=link,
                expanded_url=f.opt_str(u, "expandedUrl", at) or link,
                display_url=f.opt_str(u, "displayUrl", at) or "",
                start=_shift(f.opt_int(u, "fromIndex", at), offset),
                end=_shift(f.opt_int(u, "toIndex", at), offset),
            )
        )
    urls.extend(u for u in media_urls if u.media_key is not None and all(u.url != x.url for x in urls))
    mentions = []
    for i, m in enumerate(f.list_at(core, "mentions", "note.core")):
        at = f"note.core.mentions[{i}]"
        name = m.get("screenName") or m.get("screen_name") or m.get("username") or m.get("text") if isinstance(m, dict) else None
        if not isinstance(name, str):
            raise SourceError(f"{f.place}: {at} has no screenName")
        mentions.append(Mention(username=name, start=_shift(f.opt_int(m, "fromIndex", at), offset), end=_shift(f.opt_int(m, "toIndex", at), offset)))
    hashtags = []
    for kind in ("hashtags", "cashtags"):
        for i, h in enumerate(f.list_at(core, kind, "note.core")):
            at = f"note.core.{kind}[{i}]"
            hashtags.append(
                Hashtag(
                    tag=f.str_at(h, "text", at),
                    cashtag=kind == "cashtags",
                    start=_shift(f.opt_int(h, "fromIndex", at), offset),
                    end=_shift(f.opt_int(h, "toIndex", at), offset),
                )
            )
    return text, urls, mentions, hashtags


def _shift(index: int | None, offset: int) -> int | None:
    return None if index is None else index + offset


def _parse_created_at(raw: Any, f: _Fields) -> datetime:
    """``Fri Feb 20 09:10:58 +0000 2026`` as aware UTC, without locale-dependent strptime."""
    if raw is None:
        raise SourceError(f"{f.place}: missing created_at")
    m = _CREATED_AT.match(raw) if isinstance(raw, str) else None
    if m is None or m.group(1) not in _MONTHS:
        raise SourceError(f"{f.place}: created_at is not like 'Fri Feb 20 09:10:58 +0000 2026': {raw!r}")
    month, day, hh, mm, ss, sign, oh, om, year = m.groups()
    offset = timedelta(hours=int(oh), minutes=int(om)) * (1 if sign == "+" else -1)
    try:
        local = datetime(int(year), _MONTHS[month], int(day), int(hh), int(mm), int(ss), tzinfo=timezone(offset))
    except ValueError:
        raise SourceError(f"{f.place}: created_at is not a valid date: {raw!r}") from None
    return local.astimezone(timezone.utc)


class _Fields:
    """Typed access to archive fields (numbers are strings there); errors name the place and field."""

    def __init__(self, place: str) -> None:
        self.place = place

    def _path(self, parent: str, key: str) -> str:
        return f"{parent}.{key}" if parent else key

    def dict_at(self, obj: dict | None, key: str, parent: str = "") -> dict | None:
        value = obj.get(key) if obj is not None else None
        if value is not None and not isinstance(value, dict):
            raise SourceError(f"{self.place}: {self._path(parent, key)} must be an object")
        return value

    def list_at(self, obj: dict | None, key: str, parent: str = "") -> list:
        value = obj.get(key) if isinstance(obj, dict) else None
        if value is None:
            return []
        if not isinstance(value, list):
            raise SourceError(f"{self.place}: {self._path(parent, key)} must be a list")
        return value

    def str_at(self, obj: Any, key: str, parent: str) -> str:
        value = obj.get(key) if isinstance(obj, dict) else None
        if not isinstance(value, str):
            what = "missing" if value is None else "not a string"
            raise SourceError(f"{self.place}: {self._path(parent, key)} is {what}")
        return value

    def opt_str(self, obj: Any, key: str, parent: str) -> str | None:
        value = obj.get(key) if isinstance(obj, dict) else None
        if value is not None and not isinstance(value, str):
            raise SourceError(f"{self.place}: {self._path(parent, key)} is not a string")
        return value

    def opt_int(self, obj: Any, key: str, parent: str) -> int | None:
        value = obj.get(key) if isinstance(obj, dict) else None
        if value is None:
            return None
        return self._int(value, self._path(parent, key))

    def index(self, obj: dict, position: int, parent: str) -> int | None:
        indices = obj.get("indices")
        if not isinstance(indices, list) or len(indices) != 2:
            return None
        return self._int(indices[position], f"{parent}.indices[{position}]")

    def id_value(self, value: Any, path: str) -> str:
        if not isinstance(value, str) or not value.isdigit():
            raise SourceError(f"{self.place}: {path} is not a numeric id string: {value!r}")
        return value

    def _int(self, value: Any, path: str) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lstrip("-").isdigit():
            return int(value)
        raise SourceError(f"{self.place}: {path} is not a number: {value!r}")


# --- streaming JS array parser ------------------------------------------------------------


class _JsArrayReader:
    """Items of ``window.YTD.<name>.partN = [ ... ]`` one at a time, from a text stream.

    ``json.JSONDecoder.raw_decode`` parses one item from a buffer that holds
    about a chunk; when an item runs past the buffer end, more is read (doubling,
    up to ``_MAX_ITEM_CHARS``) and the item is parsed again.
    """

    def __init__(self, stream: IO[str], where: str, expected: tuple[str, ...]) -> None:
        self.stream = stream
        self.where = where
        self.expected = expected
        self.decoder = json.JSONDecoder()
        self.buf = ""
        self.pos = 0
        self.eof = False
        self.line = 1  # position of buf[0] in the file
        self.col = 1
        self.offset = 0

    def items(self) -> Iterator[tuple[int, Any]]:
        self._prefix()
        if self._peek() != "[":
            raise SourceError(f"{self.where}: expected '[' after the prefix at {self._at(self.pos)}, found {self._found()}")
        self.pos += 1
        index = 0
        while True:
            c = self._peek()
            if c == "]":
                self.pos += 1
                break
            if c == "":
                raise SourceError(f"{self.where}: truncated: the file ends at {self._at(self.pos)} inside the array, after {index} items")
            if index > 0:
                if c != ",":
                    raise SourceError(f"{self.where}: expected ',' or ']' after item #{index - 1} at {self._at(self.pos)}, found {self._found()}")
                self.pos += 1
                if self._peek() == "":
                    raise SourceError(f"{self.where}: truncated: the file ends at {self._at(self.pos)} after item #{index - 1}")
            yield index, self._decode(index)
            index += 1
        c = self._peek()
        if c == ";":
            self.pos += 1
            c = self._peek()
        if c != "":
            raise SourceError(f"{self.where}: unexpected data after the closing ']' at {self._at(self.pos)}: {self._found()}")

    def _prefix(self) -> None:
        while "=" not in self.buf and len(self.buf) < _PREFIX_SCAN_CHARS and self._fill(_PREFIX_SCAN_CHARS):
            pass
        self.buf = self.buf.removeprefix("\ufeff")
        m = _PREFIX.match(self.buf)
        if m is None:
            shown = self.buf[:60].split("\n", 1)[0]
            raise SourceError(f"{self.where}: expected 'window.YTD.{self.expected[0]}.part0 = ' at the start, found {shown!r}")
        if m.group(1) not in self.expected:
            raise SourceError(
                f"{self.where}: expected 'window.YTD.{self.expected[0]}.partN = ' at the start, "
                f"found 'window.YTD.{m.group(1)}.part{m.group(2)} ='"
            )
        self.pos = m.end()

    def _decode(self, index: int) -> Any:
        while True:
            try:
                value, end = self.decoder.raw_decode(self.buf, self.pos)
            except RecursionError:
                raise SourceError(
                    f"{self.where}: item #{index} (which starts at {self._at(self.pos)}) is nested too deeply "
                    "(thousands of [ or {) to be a post; refusing the file"
                ) from None
            except json.JSONDecodeError as err:
                if not self.eof and len(self.buf) - self.pos < _MAX_ITEM_CHARS:
                    self._compact()
                    self._fill(max(_CHUNK_CHARS, len(self.buf)))
                    continue
                if self.eof and (err.msg.startswith("Unterminated string") or err.pos >= len(self.buf.rstrip())):
                    raise SourceError(
                        f"{self.where}: truncated: the file ends at {self._at(len(self.buf))} inside item #{index} "
                        f"(which starts at {self._at(self.pos)})"
                    ) from None
                raise SourceError(f"{self.where}: invalid JSON in item #{index} at {self._at(err.pos)}: {err.msg}") from None
            if end == len(self.buf) and not self.eof and not isinstance(value, (dict, list, str)):
                self._compact()  # a bare number at the buffer end may continue in the next chunk
                self._fill(_CHUNK_CHARS)
                continue
            self.pos = end
            return value

    def _peek(self) -> str:
        """The next non-whitespace character, or "" at the end of the file."""
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in _WS:
                self.pos += 1
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if self.eof:
                return ""
            self._compact()
            self._fill(_CHUNK_CHARS)

    def _fill(self, size: int) -> bool:
        try:
            chunk = self.stream.read(size)
        except UnicodeDecodeError as err:
            raise SourceError(f"{self.where}: not UTF-8 text after {self._at(len(self.buf))}: {err.reason}") from None
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def _compact(self) -> None:
        """Drop what was parsed, keeping track of where the buffer starts in the file."""
        done = self.buf[: self.pos]
        newlines = done.count("\n")
        if newlines:
            self.line += newlines
            self.col = len(done) - done.rindex("\n")
        else:
            self.col += len(done)
        self.offset += len(done)
        self.buf = self.buf[self.pos :]
        self.pos = 0

    def _at(self, i: int) -> str:
        newlines = self.buf.count("\n", 0, i)
        col = i - self.buf.rindex("\n", 0, i) if newlines else self.col + i
        return f"line {self.line + newlines} column {col} (character {self.offset + i})"

    def _found(self) -> str:
        return repr(self.buf[self.pos : self.pos + 20]) if self.pos < len(self.buf) else "the end of the file"


# --- where the files are: a folder or a zip ------------------------------------------------


class _Store:
    """Files of the archive by path relative to its root (``data/tweets.js``)."""

    def data_names(self) -> set[str]:
        raise NotImplementedError

    def has_file(self, rel: str) -> bool:
        raise NotImplementedError

    def has_dir(self, rel: str) -> bool:
        raise NotImplementedError

    def open_text(self, rel: str) -> IO[str]:
        raise NotImplementedError

    def size(self, rel: str) -> int | None:
        raise NotImplementedError

    def local_name(self, rel: str) -> str:
        raise NotImplementedError

    def local_file(self, rel: str, into: Path | None = None) -> Path:
        raise NotImplementedError

    def describe(self, rel: str) -> str:
        raise NotImplementedError

    def close(self) -> None:
        pass


class _FolderStore(_Store):
    def __init__(self, path: Path) -> None:
        self.path = path
        self.root = _folder_root(path)
        self._listing: dict[str, set[str]] = {}

    def _names_in(self, rel_dir: str) -> set[str]:
        if rel_dir not in self._listing:
            d = self.root / rel_dir
            self._listing[rel_dir] = set(os.listdir(d)) if d.is_dir() else set()
        return self._listing[rel_dir]

    def data_names(self) -> set[str]:
        return {n for n in self._names_in("data") if (self.root / "data" / n).is_file()}

    def has_file(self, rel: str) -> bool:
        parent, _, name = rel.rpartition("/")
        return name in self._names_in(parent) and (self.root / rel).is_file()

    def has_dir(self, rel: str) -> bool:
        return (self.root / rel).is_dir()

    def open_text(self, rel: str) -> IO[str]:
        return open(self._inside(rel, "file"), encoding="utf-8-sig", newline="")

    def size(self, rel: str) -> int | None:
        return self._inside(rel, "media file").stat().st_size

    def _inside(self, rel: str, what: str) -> Path:
        """The real file of ``rel``, refused if a symlink leads it out of the archive or it is no regular file.

        The message names the archive's path only, never the target nor a byte of it:
        a crafted archive must not make the bridge read or show some other file
        of this machine (``data/account.js`` -> ``/etc/shadow``).
        """
        try:
            target: Path | None = (self.root / rel).resolve()
        except (OSError, RuntimeError):  # a symlink loop
            target = None
        if target is None or not target.is_relative_to(self.root.resolve()) or not target.is_file():
            raise SourceError(f"{self.root / rel}: {what} points outside the archive or is not a regular file; refusing it")
        return target

    def local_name(self, rel: str) -> str:
        return str(self.local_file(rel))

    def local_file(self, rel: str, into: Path | None = None) -> Path:
        """The file itself (``into`` is not needed: it is a file already); a symlink out of the archive is refused, so a crafted archive
        cannot make the bridge upload some other file of this machine."""
        return self._inside(rel, "media file")

    def describe(self, rel: str) -> str:
        return str(self.root / rel)


def _folder_root(path: Path) -> Path:
    """The folder holding ``data/``: the given one, or one up to ``_MAX_ROOT_DEPTH`` folders down (see ``_pick_root``).

    Symlinked folders are not followed, so the root cannot be outside ``path``.
    """
    if (path / "data").is_dir():
        return path
    names: list[str] = []
    level = [("", path)]
    scanned = 0
    for _ in range(_MAX_ROOT_DEPTH + 1):
        below = []
        for rel, folder in level[: max(0, _MAX_ROOT_SCAN - scanned)]:  # a home folder given by mistake stays cheap
            scanned += 1
            try:
                entries = sorted(os.scandir(folder), key=lambda e: e.name)
            except OSError:
                continue
            for e in entries:
                if e.name.startswith(".") or e.name == "__MACOSX" or not e.is_dir(follow_symlinks=False):
                    continue
                if e.name == "data":
                    names.extend(f"{rel}data/{n}" for n in _listdir(Path(e.path)))
                else:
                    below.append((f"{rel}{e.name}/", Path(e.path)))
        level = below
    try:
        prefix = _pick_root(names)
    except _TwoArchives as two:
        raise SourceError(f"{path}: the folder holds more than one X archive ({', '.join(two.roots)}): give one of them") from None
    if prefix is None:
        raise SourceError(f"{path}: not an X archive folder: no data/ folder in it (looked {_MAX_ROOT_DEPTH} folders deep)")
    return path / prefix


def _listdir(folder: Path) -> list[str]:
    try:
        return os.listdir(folder)
    except OSError:
        return []


def _pick_root(names: list[str]) -> str | None:
    """The one folder prefix (``""``, ``"twitter-2024/"``...) holding the archive's ``data/``, or None.

    People re-pack exports: macOS Finder adds ``__MACOSX/`` (AppleDouble ``._*`` copies)
    beside the folder, other tools wrap it in one or two more folders. A ``data/`` with
    an account or tweets file wins over one without; the shallowest wins; two at the
    same depth are two archives, which is refused.
    """
    marked: set[str] = set()
    plain: set[str] = set()
    for name in names:
        if name.startswith("__MACOSX/") or "/._" in "/" + name:
            continue
        m = _ROOT_ENTRY.match(name)
        if m is None:
            continue
        (marked if _ROOT_MARKER.match(m.group(2)) else plain).add(m.group(1))
    roots = marked or plain
    if not roots:
        return None
    depth = min(r.count("/") for r in roots)
    shallowest = sorted(r for r in roots if r.count("/") == depth)
    if len(shallowest) > 1:
        raise _TwoArchives(shallowest)
    return shallowest[0]


class _TwoArchives(Exception):
    def __init__(self, roots: list[str]) -> None:
        super().__init__(", ".join(roots))
        self.roots = roots


class _ZipStore(_Store):
    def __init__(self, path: Path, max_entry_bytes: int, max_total_bytes: int) -> None:
        self.path = path
        self.max_entry = max_entry_bytes
        self.max_total = max_total_bytes
        self.read_total = 0
        self._tmp: Path | None = None
        self._extracted: dict[str, Path] = {}
        try:
            self.zip = zipfile.ZipFile(path)
            infos = self.zip.infolist()
        except (zipfile.BadZipFile, OSError) as err:
            raise SourceError(f"{path}: not a readable zip archive: {err}") from None
        except UnicodeDecodeError as err:
            # zipfile decodes a name flagged UTF-8 (general purpose bit 11) strictly
            raise SourceError(
                f"{path}: zip entry name {bytes(err.object[:200])!r} is flagged as UTF-8 but is not UTF-8 "
                f"({err.reason} at byte {err.start}); the zip is damaged or was made by a tool that mislabels "
                "names: re-pack the archive, or extract it and give the folder"
            ) from None
        try:
            declared = 0
            for info in infos:
                _check_member_name(path, info.filename)
                declared += info.file_size
            if declared > max_total_bytes:
                raise SourceError(
                    f"{path}: zip declares {declared} bytes uncompressed in total, over the cap of {max_total_bytes} "
                    "(zip bomb?)"
                )
            # Windows tools may write "data\\tweets.js": a backslash is a folder separator here (APPNOTE 4.4.17 says "/")
            unified = [(i.filename.replace("\\", "/"), i) for i in infos]
            self.prefix = _zip_root(path, [name for name, _ in unified])
            self.infos = {
                name[len(self.prefix) :]: i for name, i in unified if name.startswith(self.prefix) and not name.endswith("/")
            }
        except BaseException:
            self.zip.close()
            raise

    def data_names(self) -> set[str]:
        return {rel[5:] for rel in self.infos if rel.startswith("data/") and "/" not in rel[5:]}

    def has_file(self, rel: str) -> bool:
        return rel in self.infos

    def has_dir(self, rel: str) -> bool:
        prefix = rel.rstrip("/") + "/"
        return any(name.startswith(prefix) for name in self.infos)

    def _open_binary(self, rel: str) -> IO[bytes]:
        info = self.infos[rel]
        where = self.describe(rel)
        if info.file_size > self.max_entry:
            raise SourceError(
                f"{where}: entry declares {info.file_size} bytes uncompressed, over the cap of {self.max_entry} (zip bomb?)"
            )
        try:
            raw = self.zip.open(info)
        except (zipfile.BadZipFile, NotImplementedError, RuntimeError, OSError) as err:
            raise SourceError(f"{where}: cannot open zip entry: {err}") from None
        return io.BufferedReader(_CountingReader(raw, self, where, min(info.file_size, self.max_entry)))

    def open_text(self, rel: str) -> IO[str]:
        return io.TextIOWrapper(self._open_binary(rel), encoding="utf-8-sig", newline="")

    def size(self, rel: str) -> int | None:
        return self.infos[rel].file_size

    def local_name(self, rel: str) -> str:
        return self.prefix + rel  # the entry inside the zip; Archive.media_path makes a real file of it

    def local_file(self, rel: str, into: Path | None = None) -> Path:
        if into is None:
            if rel in self._extracted:
                return self._extracted[rel]
            if self._tmp is None:
                self._tmp = Path(tempfile.mkdtemp(prefix="bridge-archive-"))
            base = self._tmp
        else:
            base = into
        target = (base / rel).resolve()
        if not target.is_relative_to(base.resolve()):
            raise SourceError(f"{self.describe(rel)}: entry path escapes the extraction folder {base}")
        if into is not None and target.is_file() and target.stat().st_size == self.infos[rel].file_size:
            return target  # extracted by an earlier run
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            with self._open_binary(rel) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        except BaseException:
            target.unlink(missing_ok=True)
            raise
        os.chmod(target, stat.S_IRUSR | stat.S_IWUSR)
        if into is None:
            self._extracted[rel] = target
        return target

    def describe(self, rel: str) -> str:
        return f"{self.path}:{self.prefix}{rel}"

    def close(self) -> None:
        self.zip.close()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
            self._extracted.clear()


def _check_member_name(path: Path, name: str) -> None:
    """Refuse entries that would land outside an extraction folder (zip slip)."""
    unified = name.replace("\\", "/")
    parts = unified.split("/")
    if unified.startswith("/") or re.match(r"^[A-Za-z]:", unified) or ".." in parts or "\x00" in name:
        raise SourceError(f"{path}: zip entry {name!r} has an unsafe path (absolute or with '..'): refusing the archive")


def _zip_root(path: Path, names: list[str]) -> str:
    try:
        prefix = _pick_root(names)
    except _TwoArchives as two:
        raise SourceError(f"{path}: the zip holds more than one X archive ({', '.join(two.roots)}): give one of them") from None
    if prefix is None:
        raise SourceError(
            f"{path}: not an X archive: the zip has no data/ folder (looked {_MAX_ROOT_DEPTH} folders deep)"
        )
    return prefix


class _CountingReader(io.RawIOBase):
    """Counts bytes read from a zip entry, against the entry's cap and the archive's total cap."""

    def __init__(self, raw: IO[bytes], store: _ZipStore, where: str, limit: int) -> None:
        self.raw = raw
        self.store = store
        self.where = where
        self.limit = limit
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        try:
            data = self.raw.read(len(b))
        except (zipfile.BadZipFile, OSError, EOFError) as err:
            raise SourceError(f"{self.where}: corrupt zip entry after {self.count} bytes: {err}") from None
        n = len(data)
        self.count += n
        self.store.read_total += n
        if self.count > self.limit:
            raise SourceError(f"{self.where}: entry gives more than {self.limit} bytes, over its declared size or the cap (zip bomb?)")
        if self.store.read_total > self.store.max_total:
            raise SourceError(f"{self.where}: reading the archive passed the total cap of {self.store.max_total} bytes (zip bomb?)")
        b[:n] = data
        return n

    def close(self) -> None:
        self.raw.close()
        super().close()
