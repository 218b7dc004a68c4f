"""A website's feed (RSS, Atom, JSON Feed) as a source of posts (issue 14).

One conditional GET per poll (RFC 9110 §13: ``If-None-Match``/``If-Modified-Since``;
304 means nothing new and no body), read under a byte cap, a decompression cap
and one overall deadline. RSS and Atom are parsed with feedparser (their many
dialects, encodings and date formats); JSON Feed (https://jsonfeed.org/version/1.1)
is plain JSON.

An entry is its ``guid``/``id``, else its link. Feeds are a window of recent
entries that sites reorder, re-date and re-publish, so no date or position can
say what is new. The cursor is therefore this source's own token (a JSON
object, see ``FeedCursor``): the validators of the last answer, the feed's URL
after a permanent redirect, and the hashes of the ids already seen (the window
at link time and every entry read since, the newest ``SEEN_CAP`` kept). An
entry is new when its id was never seen: a re-dated or re-ordered entry is not.
The ledger's (organisation, source, id) key is the second guard: an entry read
twice is recorded once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import json
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from bridge.config import FEED_POST_MODES as POST_MODES
from bridge.config import Config
from bridge.config import FeedConfig as FeedSettings  # the `feed:` section of the configuration
from bridge.errors import PermanentError, SourceError, SourceGone, TransientError
from bridge.logs import get_logger
from bridge.model import Article, Link, Media, MediaItem, Post, SourcePost, UrlEntity, article_text
from bridge.sources.base import ReadResult, SourceCapabilities, Unreadable
from bridge.sources.media import is_remote, open_local_file

log = get_logger("bridge.sources.feed")

CAPABILITIES = SourceCapabilities(edits=True, alt_text=True, reach=None)
SEEN_CAP = 1000  # ids remembered per feed: far more than any feed's window (WordPress: 10, Ghost: 15)
VERSIONS_CAP = 100  # entries whose content is remembered, to see an edit (those bridged, newest first)
MAX_REDIRECTS = 5
MAX_MEDIA = 4  # Mastodon's limit of attachments per post
SUMMARY_CHARS = 280  # how much of an article the title_link policy quotes
FUTURE_SLACK_S = 24 * 3600  # a date further in the future than this is taken as "now" (a wrong clock or a typo)
USER_AGENT = "geno-bridge feed reader (+https://github.com/geno-bridge)"


class FeedGone(SourceGone):
    """The feed answered 404 or 410: the organisation's source needs a new URL (``status`` shows it)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class FeedCursor:
    """Where a feed was left: its validators, its URL after a permanent redirect, the ids seen."""

    url: str | None = None
    etag: str | None = None
    modified: str | None = None
    seen: list[str] = field(default_factory=list)  # hashes of entry ids, newest first
    after: str | None = None  # ISO time: entries dated before it are old (a feed linked while empty)
    versions: dict[str, str] = field(default_factory=dict)  # id hash -> content hash, of entries bridged

    @classmethod
    def load(cls, text: str | None) -> FeedCursor:
        if not text:
            return cls()
        try:
            raw = json.loads(text)
        except ValueError:
            return cls()  # not ours (an older cursor): start over as at link time
        if not isinstance(raw, dict):
            return cls()
        return cls(url=raw.get("url"), etag=raw.get("etag"), modified=raw.get("modified"),
                   seen=[str(s) for s in raw.get("seen") or []], after=raw.get("after"),
                   versions={str(k): str(v) for k, v in (raw.get("versions") or {}).items()})

    def dump(self) -> str:
        raw: dict[str, Any] = {k: v for k, v in (("url", self.url), ("etag", self.etag),
                                                 ("modified", self.modified), ("after", self.after)) if v}
        raw["seen"] = self.seen[:SEEN_CAP]
        if self.versions:
            raw["versions"] = dict(list(self.versions.items())[-VERSIONS_CAP:])
        return json.dumps(raw, separators=(",", ":"), sort_keys=True)


def content_hash(raw: dict[str, Any]) -> str:
    """What an entry says (title, text, media), not when: a new date alone is no edit."""
    said = json.dumps([raw.get("title"), raw.get("content") or raw.get("summary"), raw.get("media")], ensure_ascii=False)
    return hashlib.sha256(said.encode("utf-8")).hexdigest()[:12]


def id_hash(entry_id: str) -> str:
    """A short stable hash of an entry id (the cursor keeps these, not the ids: GUIDs can be long URLs)."""
    return hashlib.sha256(entry_id.encode("utf-8")).hexdigest()[:16]


@dataclass
class Fetched:
    status: int  # 200 or 304
    url: str  # where the body came from (after redirects)
    body: bytes = b""
    content_type: str = ""
    etag: str | None = None
    modified: str | None = None
    moved_to: str | None = None  # the new URL after a permanent redirect (301/308)
    requests: int = 0
    wire_bytes: int = 0


# ------------------------------------------------------------------ HTML to text


_BLOCKS = {"p", "div", "br", "li", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "figure", "tr",
           "section", "article", "ul", "ol", "hr", "figcaption"}


class _Text(HTMLParser):
    """Plain text of an HTML fragment: links kept as URLs after their words, images collected with alt text."""

    def __init__(self, base: str, drop: str = "") -> None:
        super().__init__(convert_charrefs=True)
        self.base = base
        self.drop = drop
        self.out: list[str] = []
        self.images: list[tuple[str, str | None]] = []
        self._href: list[str | None] = []
        self._anchor_start: list[int] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag in ("script", "style"):
            self._skip += 1
        elif tag == "a":
            href = a.get("href")
            self._href.append(urljoin(self.base, href) if href else None)
            self._anchor_start.append(len(self.out))
        elif tag == "img" and a.get("src"):
            self.images.append((urljoin(self.base, a["src"] or ""), a.get("alt") or None))
        elif tag in _BLOCKS:
            self.out.append("\n\n" if tag not in ("br", "li", "tr") else "\n")
        if tag == "li":
            self.out.append("• ")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._skip = max(0, self._skip - 1)
        elif tag == "a" and self._href:
            href, start = self._href.pop(), self._anchor_start.pop()
            words = "".join(self.out[start:]).strip()
            if href and self.drop and href == self.drop:
                del self.out[start:]  # "Read more" to the entry itself: the post links it once, at its end
                return
            # Mastodon's own hashtag and mention links, and links whose words are the URL, stay as words.
            if href and urlsplit(href).scheme in ("http", "https") and not words.startswith(("#", "@")) \
                    and words.rstrip("/") not in (href.rstrip("/"), href.split("://", 1)[-1].rstrip("/")):
                self.out.append(f" {href}" if words else href)
        elif tag in _BLOCKS:
            self.out.append("\n\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.out.append(data)

    def text(self) -> str:
        text = "".join(self.out).replace("\xa0", " ")
        text = re.sub(r"[ \t\r\f\v]+", " ", text)
        text = re.sub(r" *\n *", "\n", text)
        return re.sub(r"\n{3,}", "\n\n", text).strip()


def html_to_text(html: str, base: str = "", drop: str = "") -> tuple[str, list[tuple[str, str | None]]]:
    """``html`` as plain text with its links kept (but links to ``drop``), and its images (URL, alt text)."""
    parser = _Text(base, drop)
    parser.feed(html)
    parser.close()
    return parser.text(), parser.images


def shorten(text: str, limit: int) -> str:
    """``text`` cut at a word boundary to at most ``limit`` characters, "…" marking the cut."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1].rsplit(" ", 1)[0].rstrip(" ,;:.")
    return cut + "…"


_URL_RE = re.compile(r"https?://[^\s<>\"]+[^\s<>\".,;:!?)\]]")


def url_entities(text: str) -> tuple[UrlEntity, ...]:
    return tuple(UrlEntity(m.group(0), m.group(0), m.group(0), m.start(), m.end()) for m in _URL_RE.finditer(text))


# ------------------------------------------------------------------ the source


class FeedSource:
    """Feeds over HTTP(S). ``account`` is the feed's URL. Not thread-safe: one per worker."""

    kind = "feed"
    name = "website feed"
    capabilities = CAPABILITIES

    def __init__(self, settings: FeedSettings | None = None, *, clock: Any = None) -> None:
        self.settings = settings or FeedSettings()
        if self.settings.post not in POST_MODES:
            raise ValueError(f"feed.post must be one of {', '.join(POST_MODES)}, not {self.settings.post!r}")
        self._http: httpx.Client | None = None
        self._keys: dict[str, int] = {}  # entry id -> order, from the last read
        self._links: dict[str, str] = {}  # entry id -> its link, from the last read
        self._own_hosts: set[str] = set()  # hosts of the feeds (and entries) read: their media may be on any address
        self.clock = clock or (lambda: datetime.now(timezone.utc))

    # -- HTTP
    def _client(self) -> httpx.Client:
        if self._http is None:
            self._http = httpx.Client(timeout=self.settings.timeout, follow_redirects=False,
                                      headers={"User-Agent": USER_AGENT})
        return self._http

    def fetch(self, url: str, *, etag: str | None = None, modified: str | None = None,
              max_bytes: int | None = None, accept: str = "", check: Any = None) -> Fetched:
        """GET ``url`` (conditional when validators are given) under the caps and the deadline.

        Raises FeedGone (404/410), SourceError (other refusals, over a cap, not HTTP),
        TransientError (the site is down, 5xx, too slow).
        """
        cap = max_bytes or self.settings.max_bytes
        decoded_cap = self.settings.max_decoded_bytes if max_bytes is None else cap
        deadline = time.monotonic() + self.settings.deadline
        current, moved_to, requests, permanent = url, None, 0, True
        headers = {"Accept": accept or "application/rss+xml, application/atom+xml, application/feed+json,"
                   " application/json;q=0.9, application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5"}
        if etag:
            headers["If-None-Match"] = etag
        if modified:
            headers["If-Modified-Since"] = modified
        for _ in range(MAX_REDIRECTS + 1):
            if urlsplit(current).scheme not in ("http", "https"):
                raise SourceError(f"feed {url}: {current} is not an http(s) URL")
            if check is not None:
                check(current)  # every hop, redirects included
            left = deadline - time.monotonic()
            if left <= 0:
                raise TransientError(f"feed {url}: no whole answer within {self.settings.deadline:g} s")
            requests += 1
            try:
                with self._client().stream("GET", current, headers=headers,
                                           timeout=min(self.settings.timeout, left)) as response:
                    status = response.status_code
                    if response.is_redirect and response.headers.get("location"):
                        target = urljoin(current, response.headers["location"])
                        # Only a chain of permanent redirects moves the feed (RFC 9110 §15.4.2, §15.4.9).
                        permanent = permanent and status in (301, 308)
                        if permanent:
                            moved_to = target
                        current = target
                        continue
                    if status == 304:
                        # A 304 has no body (RFC 9110 §15.4.5), but its end must be read for the connection to go
                        # back to the pool: closed unread, every idle poll opened a new one (a TLS handshake each).
                        response.read()
                        return Fetched(304, current, etag=response.headers.get("etag") or etag,
                                       modified=response.headers.get("last-modified") or modified,
                                       moved_to=moved_to, requests=requests)
                    if status in (404, 410):
                        what = "is gone (HTTP 410)" if status == 410 else "was not found (HTTP 404)"
                        raise FeedGone(f"feed {url} {what}: check the address on the site and link it again", status)
                    if status == 429 or status >= 500:
                        raise TransientError(f"feed {url}: the site answered HTTP {status}; trying again next cycle")
                    if status != 200:
                        raise SourceError(f"feed {url}: the site answered HTTP {status}")
                    declared = response.headers.get("content-length")
                    if declared and declared.isdigit() and int(declared) > cap:
                        raise SourceError(f"feed {url} is {int(declared)} bytes, over the limit of {cap}")
                    chunks, size = [], 0
                    for chunk in response.iter_bytes():
                        size += len(chunk)
                        if response.num_bytes_downloaded > cap:
                            raise SourceError(f"feed {url} is over the limit of {cap} bytes")
                        if size > decoded_cap:
                            raise SourceError(f"feed {url} unpacks to more than {decoded_cap} bytes"
                                              f" ({response.headers.get('content-encoding', 'no')} encoding): refused")
                        if time.monotonic() > deadline:
                            raise TransientError(f"feed {url}: no whole answer within {self.settings.deadline:g} s")
                        chunks.append(chunk)
                    return Fetched(200, current, b"".join(chunks), response.headers.get("content-type", ""),
                                   response.headers.get("etag"), response.headers.get("last-modified"), moved_to,
                                   requests, response.num_bytes_downloaded)
            except httpx.DecodingError:
                raise SourceError(f"feed {url}: its {response.headers.get('content-encoding')} encoding is broken") from None
            except httpx.TimeoutException:
                raise TransientError(f"feed {url}: no answer within {self.settings.timeout:g} s") from None
            except httpx.HTTPError as exc:
                raise TransientError(f"feed {url}: connection failed ({type(exc).__name__})") from None
        raise SourceError(f"feed {url}: more than {MAX_REDIRECTS} redirects")

    # -- parsing
    def parse(self, url: str, fetched: Fetched) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The feed (title, language, link) and its entries in a neutral dict shape. SourceError if it is no feed."""
        body, ctype = fetched.body, fetched.content_type.lower()
        head = body.lstrip()[:1]
        if "json" in ctype or head == b"{":
            return _json_feed(url, body)
        import feedparser  # imported here: only feed organisations pay for it

        parsed = feedparser.parse(body, response_headers={"content-type": fetched.content_type or "application/xml",
                                                          "content-location": fetched.url})
        if not parsed.get("version"):
            if _is_html(fetched):
                raise SourceError(f"feed {url} is an HTML page, not a feed (link the feed, or the homepage so it is found)")
            if parsed.get("bozo"):
                raise SourceError(f"feed {url} is not well-formed XML: {_bozo(parsed)}")
            raise SourceError(f"feed {url} is not an RSS, Atom or JSON feed")
        if parsed.get("bozo") and not _harmless(parsed.get("bozo_exception")):
            raise SourceError(f"feed {url} is not well-formed XML: {_bozo(parsed)}")
        info = parsed.get("feed", {})
        lang = info.get("language") or (parsed.get("namespaces") and info.get("xml_lang")) or None
        meta = {"title": info.get("title") or "", "link": info.get("link") or url, "language": lang}
        entries = [_rss_entry(e, meta) for e in parsed.get("entries", [])]
        return meta, entries

    # -- the Source interface
    def read_new(self, account: str, cursor: str | None) -> ReadResult:
        """Entries not seen before, oldest first; an idle poll is one conditional request and no body."""
        state = FeedCursor.load(cursor)
        url = state.url or account
        self._own(account, url)
        fetched = self.fetch(url, etag=state.etag if cursor else None, modified=state.modified if cursor else None)
        if fetched.status == 304:
            if fetched.moved_to and fetched.moved_to != state.url:
                state.url = fetched.moved_to
                return ReadResult(cursor=state.dump(), requests=fetched.requests)
            return ReadResult(cursor=None, requests=fetched.requests)
        meta, entries = self.parse(url, fetched)
        seen = set(state.seen)
        after = _parse_iso(state.after)
        result = ReadResult(requests=fetched.requests)
        now = self.clock()
        fresh: list[str] = []
        for raw in entries:
            entry_id = raw["id"]
            if not entry_id:
                result.entries.append(Unreadable("", {"title": raw.get("title")},
                                                 f"feed {url}: an entry has no id and no link: skipped"))
                continue
            h = id_hash(entry_id)
            if h in fresh:
                continue  # the same id twice in one feed: the first one is the entry
            fresh.append(h)
            if cursor is None:
                continue
            if h in seen:
                # Same id: old, unless an entry this bridge posted now says something else (an edit).
                version = content_hash(raw)
                if state.versions.get(h, version) != version:
                    state.versions[h] = version
                    edited = self._edit(raw, meta, account, url, version)
                    if edited is not None:
                        result.entries.append(edited)
                continue
            created = raw["date"] or now
            if (created - now).total_seconds() > FUTURE_SLACK_S:
                log.warning("feed_future_date", feed=url, entry=entry_id, date=created.isoformat())
                created = now
            if after is not None and raw["date"] is not None and raw["date"] <= after:
                continue
            try:
                post = self.to_post(raw, meta, account, created)
            except Exception as exc:  # noqa: BLE001 - one odd entry never blocks the others
                result.entries.append(Unreadable(entry_id, {"id": entry_id, "link": raw.get("link")},
                                                 f"feed {url}: entry {entry_id} could not be read ({exc})"))
                continue
            result.entries.append(post)
            state.versions.pop(h, None)
            state.versions[h] = content_hash(raw)
        # Oldest first by date, ties in reverse feed order (feeds list the newest first).
        posts = [e for e in result.entries if isinstance(e, SourcePost)]
        order = {p.id: i for i, p in enumerate(reversed(posts))}
        posts.sort(key=lambda p: (p.created_at, order[p.id]))
        for i, p in enumerate(posts):
            self._keys[p.id] = int(p.created_at.timestamp() * 1_000_000) + i
        result.entries = [*posts, *result.unreadable]
        new_state = FeedCursor(url=fetched.moved_to or state.url, etag=fetched.etag, modified=fetched.modified,
                               seen=fresh + [s for s in state.seen if s not in set(fresh)], after=state.after,
                               versions=state.versions)
        dumped = new_state.dump()
        result.cursor = dumped if dumped != cursor else None
        return result

    def _edit(self, raw: dict[str, Any], meta: dict[str, Any], account: str, url: str,
              version: str) -> SourcePost | Unreadable | None:
        """A later version of a bridged entry: its own id (the ledger keeps each version once), naming the first."""
        try:
            post = self.to_post(raw, meta, account, raw.get("updated") or self.clock())
        except Exception as exc:  # noqa: BLE001 - one odd entry never blocks the others
            return Unreadable(raw["id"], {"id": raw["id"]}, f"feed {url}: entry {raw['id']} could not be read ({exc})")
        edit_id = f"{raw['id']}#v{version}"
        return dataclasses.replace(post, id=edit_id, edit_history_ids=(raw["id"], edit_id),
                                   created_at=min(post.created_at, self.clock()))

    def to_post(self, raw: dict[str, Any], meta: dict[str, Any], account: str, created: datetime) -> SourcePost:
        """An entry as the ``SourcePost`` the ledger keeps, its text written by the ``feed.post`` policy."""
        link = raw.get("link") or (raw["id"] if is_remote(raw["id"]) else "")
        base = link or meta.get("link") or account
        content_text, images = html_to_text(raw.get("content") or raw.get("summary") or "", base, link)
        summary_text = html_to_text(raw.get("summary") or "", base, link)[0] if raw.get("summary") else content_text
        title = " ".join((raw.get("title") or "").split())
        categories: list[str] = []
        for c in raw.get("categories") or []:
            tag = re.sub(r"[^\w]", "", c.title() if " " in c else c)
            if tag and not tag.isdigit() and tag not in categories:
                categories.append(tag)
        # The parts, for each organisation's feed policy (bridge.convert.say); the text, as the feed section says.
        article = Article(title=title, summary=shorten(summary_text, SUMMARY_CHARS), body=content_text, link=link,
                          categories=tuple(categories))
        text = article_text(article, self.settings.post, self.settings.categories_as_hashtags)
        media: list[Media] = []
        for url, alt in [*raw.get("media", []), *images]:
            if len(media) >= MAX_MEDIA or any(m.url == url for m in media):
                continue
            media.append(Media(key=url, type="photo", url=url, alt_text=alt))
        if link:
            self._links[raw["id"]] = link
        return SourcePost(
            id=raw["id"], author_id=account, author_username=meta.get("title") or urlsplit(account).hostname or "feed",
            created_at=created, text=text, urls=url_entities(text), media=tuple(media),
            lang=raw.get("language") or meta.get("language"), conversation_id=link or None, article=article,
        )

    def read_range(
        self, account: str, *, since: datetime | None = None, until: datetime | None = None,
        limit: int | None = None, around: str | None = None,
    ) -> Iterator[SourcePost]:
        """The entries still in the feed in [since, until) (a feed holds only its recent window)."""
        fetched = self.fetch(account)
        self._own(account, fetched.url)
        meta, entries = self.parse(account, fetched)
        n = 0
        for i, raw in enumerate(entries):
            if not raw["id"] or (around is not None and raw["id"] != around):
                continue
            created = raw["date"] or self.clock()
            if (since is None or created >= since) and (until is None or created < until):
                # The order a backfill posts in: by date, ties in reverse feed order (feeds list the newest first).
                self._keys[raw["id"]] = int(created.timestamp() * 1_000_000) + len(entries) - i
                yield self.to_post(raw, meta, account, created)
                n += 1
                if limit is not None and n >= limit:
                    return

    def sort_key(self, post_id: str) -> int:
        """The order of the last read (dates, then feed order); ids themselves have no order."""
        return self._keys.get(post_id, 0)

    def cursor_at(self, when: datetime) -> str:
        return FeedCursor(after=when.isoformat()).dump()

    def start_cursor(self, account: str) -> tuple[str, dict[str, Any]]:
        """The cursor that marks everything in the feed now as old (linking), and the feed's description."""
        fetched = self.fetch(account)
        meta, entries = self.parse(account, fetched)
        seen = [id_hash(e["id"]) for e in entries if e["id"]]
        cursor = FeedCursor(url=fetched.moved_to, etag=fetched.etag, modified=fetched.modified, seen=seen,
                            after=None if seen else self.clock().isoformat())
        return cursor.dump(), {**meta, "entries": len(entries), "url": fetched.moved_to or account}

    def open_media(self, ref: str, dest: Path, max_bytes: int) -> tuple[Path, str | None]:
        """An image of an entry, downloaded under the size cap and the deadline."""
        if not is_remote(ref):
            return open_local_file(ref, max_bytes)
        fetched = self.fetch(ref, max_bytes=min(max_bytes, self.settings.max_media_bytes), accept="image/*",
                             check=lambda hop: self._media_host_allowed(ref, hop))
        dest.write_bytes(fetched.body)
        mime = fetched.content_type.split(";", 1)[0].strip() or None
        if mime is not None and not mime.startswith(("image/", "video/")):
            raise PermanentError(f"media {ref} is {mime}, not an image")
        return dest, mime

    def _media_host_allowed(self, ref: str, url: str) -> None:
        """An image named in a feed's content is fetched from a public address, or from the site's own host.

        Without this a feed could make the bridge fetch an address only it can reach
        (a cloud metadata service, an intranet page) and post what it got.
        """
        host = (urlsplit(url).hostname or "").lower()
        if host in self._own_hosts:
            return
        try:
            addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
        except OSError:
            raise TransientError(f"media {ref}: its host {host or '(none)'} cannot be resolved") from None
        for address in addresses:
            if not ipaddress.ip_address(str(address).split("%", 1)[0]).is_global:
                raise PermanentError(f"media {ref}: {host} is a private address ({address}) and not the feed's own"
                                     " host: not fetched")

    def _own(self, *urls: str | None) -> None:
        for u in urls:
            host = urlsplit(u or "").hostname
            if host:
                self._own_hosts.add(host.lower())

    def permalink(self, handle: str | None, post_id: str) -> str:
        return self._links.get(post_id) or post_id

    def neutral(self, post: SourcePost, account: str) -> Post:
        """The entry as written at read time: its text already holds the title, the words and the link."""
        link = post.conversation_id or self.permalink(None, post.id)
        host = urlsplit(link).hostname or ""
        self._own(account, link)
        return Post(
            id=post.id, author=post.author_username, created_at=post.created_at, text=post.text, permalink=link,
            network="feed", home=host,
            links=tuple(Link(u.expanded_url, u.start or 0, u.end or 0) for u in post.urls),
            media=tuple(MediaItem(m.key, m.type, m.alt_text, candidates=(m.url or m.key,)) for m in post.media),
            lang=post.lang,
            edit_of=post.edit_history_ids[0] if post.edit_history_ids and post.edit_history_ids[0] != post.id else None,
            article=post.article,
        )

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None


# ------------------------------------------------------------------ shapes


def _is_html(fetched: Fetched) -> bool:
    head = fetched.body[:2000].lower()
    return "html" in fetched.content_type.lower() or b"<html" in head or b"<!doctype html" in head


def _harmless(exc: object) -> bool:
    """feedparser's bozo exceptions that still leave a well-read feed (a charset it had to guess)."""
    name = type(exc).__name__
    return name in ("CharacterEncodingOverride", "NonXMLContentType", "CharacterEncodingUnknown")


def _bozo(parsed: Any) -> str:
    exc = parsed.get("bozo_exception")
    line = getattr(exc, "getLineNumber", lambda: None)()
    message = getattr(exc, "getMessage", lambda: str(exc))()
    return f"line {line}: {message}" if line else str(message or exc)


def _when(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        year, month, day, hour, minute, second = value[:6]
        return datetime(year, month, day, hour, minute, second, tzinfo=timezone.utc)
    except (TypeError, ValueError):
        return None


def _parse_iso(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        d = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return d if d.tzinfo else d.replace(tzinfo=timezone.utc)


def _rss_entry(e: Any, meta: dict[str, Any]) -> dict[str, Any]:
    """A feedparser entry (RSS or Atom) in the neutral dict shape."""
    link = e.get("link") or ""
    media_items = [m for m in e.get("media_content") or [] if m.get("url")]
    # feedparser files a <media:description> (alt text, Mastodon's feed) under ``content`` as text/plain:
    # with media present, plain-text contents are those descriptions, in the order of the media.
    contents = [c for c in e.get("content") or [] if c.get("value")]
    alts = [c["value"] for c in contents if media_items and c.get("type") == "text/plain"]
    bodies = [c["value"] for c in contents if not (media_items and c.get("type") == "text/plain")]
    content = bodies[0] if bodies else ""
    media: list[tuple[str, str | None]] = []
    for i, m in enumerate(media_items):
        kind = (m.get("type") or "") + (m.get("medium") or "")
        if "image" in kind or not kind:
            media.append((m["url"], alts[i] if i < len(alts) else None))
    for enc in e.get("enclosures") or []:
        if enc.get("href") and (enc.get("type") or "").startswith("image/"):
            media.append((enc["href"], None))
    return {
        "id": (e.get("id") or link or "").strip(),
        "link": link,
        "title": e.get("title") or "",
        "summary": e.get("summary") or "",
        "content": content,
        # dict.get: feedparser's own get maps a missing updated_parsed to published_parsed, with a warning
        "date": _when(dict.get(e, "published_parsed")) or _when(dict.get(e, "updated_parsed")),
        "updated": _when(dict.get(e, "updated_parsed")),
        "categories": [t.get("term") for t in e.get("tags") or [] if t.get("term")],
        "media": media,
        "language": e.get("language") or None,
    }


def _json_feed(url: str, body: bytes) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """JSON Feed 1.0/1.1 (https://jsonfeed.org/version/1.1)."""
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise SourceError(f"feed {url} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or not str(doc.get("version", "")).startswith("https://jsonfeed.org/version/"):
        raise SourceError(f"feed {url} is JSON but not a JSON Feed (no jsonfeed.org version)")
    items = doc.get("items")
    if not isinstance(items, list):
        raise SourceError(f"feed {url}: its items are missing")
    meta = {"title": str(doc.get("title") or ""), "link": doc.get("home_page_url") or url, "language": doc.get("language")}
    entries = []
    for item in items:
        if not isinstance(item, dict):
            continue
        link = str(item.get("url") or "")
        media = []
        if item.get("image"):
            media.append((str(item["image"]), None))
        for a in item.get("attachments") or []:
            if isinstance(a, dict) and str(a.get("mime_type", "")).startswith("image/") and a.get("url"):
                media.append((str(a["url"]), a.get("title") or None))
        text = item.get("content_html") or ""
        if not text and item.get("content_text"):
            text = "<p>" + str(item["content_text"]).replace("&", "&amp;").replace("<", "&lt;") + "</p>"
        entries.append({
            "id": str(item.get("id") or link).strip(),
            "link": link,
            "title": str(item.get("title") or ""),
            "summary": str(item.get("summary") or ""),
            "content": text,
            "date": _parse_iso(item.get("date_published")) or _parse_iso(item.get("date_modified")),
            "updated": _parse_iso(item.get("date_modified")),
            "categories": [str(t) for t in item.get("tags") or []],
            "media": media,
            "language": item.get("language"),
        })
    return meta, entries


# ------------------------------------------------------------------ discovery


class _Alternates(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, str, str]] = []  # (href, type, title)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        rels = a.get("rel", "").lower().split()
        kind = a.get("type", "").lower()
        if tag == "link" and "alternate" in rels and a.get("href") and (
            kind in ("application/rss+xml", "application/atom+xml", "application/feed+json", "application/json")
        ):
            self.found.append((a["href"], kind, a.get("title", "")))


def discover(source: FeedSource, url: str) -> list[tuple[str, str]]:
    """The feeds ``url`` offers: itself if it is a feed, else the ``<link rel="alternate">`` of its page
    (https://www.rssboard.org/rss-autodiscovery). Returns (feed URL, title) pairs; empty if none."""
    fetched = source.fetch(url)
    try:
        meta, _ = source.parse(url, fetched)
        return [(fetched.moved_to or url, meta.get("title") or "")]
    except SourceError:
        if not _is_html(fetched):
            raise  # a broken feed, not a page: say what is wrong with it
    parser = _Alternates()
    parser.feed(fetched.body.decode("utf-8", "replace"))
    seen, out = set(), []
    for href, _kind, title in parser.found:
        full = urljoin(fetched.url, href)
        if full not in seen:
            seen.add(full)
            out.append((full, title))
    return out


def feed_source(config: Config) -> FeedSource:
    return FeedSource(config.feed)


__all__ = ["FeedSource", "FeedSettings", "FeedCursor", "FeedGone", "discover", "html_to_text"]
