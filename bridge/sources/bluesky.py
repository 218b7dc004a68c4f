"""A Bluesky account as a source: public reads from its PDS, no credentials (issue 15).

An account is named by its DID (a handle resolves to one through
``com.atproto.identity.resolveHandle``); the DID document (PLC directory for
``did:plc``, ``https://HOST/.well-known/did.json`` for ``did:web``) names the
account's PDS and handle. Posts are read from the PDS with
``com.atproto.repo.listRecords`` (``app.bsky.feed.post`` and
``app.bsky.feed.repost``), newest first. Lexicons:
https://github.com/bluesky-social/atproto/tree/main/lexicons

Ids are record keys, which for these collections are TIDs (https://atproto.com/specs/tid):
13 base32-sortable characters holding microseconds since 1970 and a clock id, so
they sort by time. The cursor (``BlueskyCursor``, JSON) holds the repository
revision at the last read (``com.atproto.sync.getLatestCommit``), itself a TID no
older than any record key the PDS made before it, and the record keys of the
newest posts and reposts read (``TRACKED`` per collection), to see them deleted.
An idle poll is that one request; a bare TID is accepted as a cursor too.

Deletes (issue 15): a tracked record is reported in ``ReadResult.deleted`` once a
listing that must contain it does not: it is missing between records the listing
returned, or the listing reached the end of the collection, confirmed by an empty
page. A failed read reports nothing, and a key older than everything a read listed
(many new posts pushed it past the pages read) stays tracked, unjudged.

The ``SourcePost`` a Bluesky post is stored as: ``id`` the rkey, ``author_id``
the DID, ``text`` as written, ``urls``/``mentions``/``hashtags`` the facets with
their UTF-8 byte offsets, ``media`` the images (``url`` the getBlob URL), and
references (reply parent, quote, repost subject) as the rkey when the post is
the account's own, else its ``at://`` URI.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx

from bridge.config import Config
from bridge.errors import PermanentError, SourceError, TransientError
from bridge.logs import get_logger
from bridge.model import (
    Handle,
    Hashtag,
    Link,
    Media,
    MediaItem,
    MediaVariant,
    Mention,
    Post,
    PostRef,
    SourcePost,
    UrlEntity,
)
from bridge.sources.base import MediaTooSlow, ReadResult, SourceCapabilities, Unreadable

__all__ = ["BlueskySource", "BlueskyAccount", "bluesky_source", "tid_at", "tid_micros", "bsky_permalink"]

NETWORK = "bluesky"
HOME = "bsky.app"
POST = "app.bsky.feed.post"
REPOST = "app.bsky.feed.repost"
PAGE_SIZE = 100  # listRecords: limit 1..100
MAX_PAGES = 10  # per collection and read: 1,000 records newer than the cursor at most
# Record keys remembered per collection to see deletes: fewer than a page, so that a read after a few new
# posts still covers every tracked key with one page per collection.
TRACKED = 50
MAX_ACCOUNTS = 2000  # DID documents kept per source (the organisations' and the authors of reposted posts)
# DID documents kept by the sources of the daemon's workers, shared: one X key's 10,000 organisations and as many
# reposted authors. Re-read after ACCOUNT_TTL seconds, so an account that moved its PDS is followed.
MAX_SHARED_ACCOUNTS = 20_000
ACCOUNT_TTL = 6 * 3600
MAX_LOOKUPS = 20  # DIDs of reposted authors resolved per read; the rest keep their DID (a later read resolves them)
PROFILE_URL = "https://bsky.app/profile/{handle}"
CAPABILITIES = SourceCapabilities(edits=False, deletes=True, reposts=True, quotes=True, alt_text=True)
# Self-labels that mark a post's media as adult or graphic (app.bsky.feed.post "labels",
# com.atproto.label.defs#selfLabels; https://docs.bsky.app/docs/advanced-guides/moderation).
SENSITIVE_LABELS = {"porn": "adult content", "sexual": "sexual content", "nudity": "nudity",
                    "graphic-media": "graphic media"}
TID_ALPHABET = "234567abcdefghijklmnopqrstuvwxyz"
TID_RE = re.compile(r"^[234567abcdefghij][234567abcdefghijklmnopqrstuvwxyz]{12}$")
DID_RE = re.compile(r"^did:(plc:[a-z2-7]{24}|web:[A-Za-z0-9.\-%:]+)$")
HANDLE_RE = re.compile(r"^([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\.)+[a-zA-Z]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$")
AT_URI_RE = re.compile(r"^at://([^/]+)/([^/]+)/([^/?#]+)$")
MAX_REDIRECTS = 5
MEDIA_DEADLINE = 600.0

log = get_logger("bridge.sources.bluesky")


def tid_micros(rkey: str) -> int | None:
    """Microseconds since 1970 a TID holds, or None if ``rkey`` is no TID."""
    if not TID_RE.match(rkey):
        return None
    n = 0
    for ch in rkey:
        n = (n << 5) | TID_ALPHABET.index(ch)
    return n >> 10


def _tid_value(rkey: str) -> int:
    n = 0
    for ch in rkey:
        n = (n << 5) | TID_ALPHABET.index(ch)
    return n


def tid_at(when: datetime, clock_id: int = 0) -> str:
    """The TID of a moment (clock id 0 unless given)."""
    micros = int(when.timestamp() * 1_000_000)
    n = (micros << 10) | (clock_id & 1023)
    return "".join(TID_ALPHABET[(n >> (5 * i)) & 31] for i in reversed(range(13)))


def bsky_permalink(handle: str | None, rkey: str) -> str:
    """bsky.app's URL of a post; a DID stands in for an unknown handle (bsky.app accepts both)."""
    return f"https://bsky.app/profile/{handle or 'unknown'}/post/{rkey}"


@dataclass
class BlueskyCursor:
    """Where an account was left: its repository revision and the newest record keys read, per collection."""

    rev: str = ""
    keys: dict[str, list[str]] = field(default_factory=dict)  # collection -> record keys, newest first
    valid: bool = True  # False: the stored cursor was not ours (read nothing as new, start again)

    @classmethod
    def load(cls, text: str | None) -> BlueskyCursor:
        if not text:
            return cls()
        if TID_RE.match(text):
            return cls(rev=text)  # a bare revision: an older cursor, or ``cursor_at``
        try:
            raw = json.loads(text)
        except ValueError:
            return cls(valid=False)
        if not isinstance(raw, dict) or not isinstance(raw.get("rev"), str) or not TID_RE.match(raw["rev"]):
            return cls(valid=False)
        keys = {c: [k for k in raw.get(name) or [] if isinstance(k, str) and TID_RE.match(k)][:TRACKED]
                for c, name in ((POST, "posts"), (REPOST, "reposts"))}
        return cls(rev=raw["rev"], keys={c: k for c, k in keys.items() if k})

    def dump(self) -> str:
        raw: dict[str, Any] = {"rev": self.rev}
        for c, name in ((POST, "posts"), (REPOST, "reposts")):
            if self.keys.get(c):
                raw[name] = self.keys[c][:TRACKED]
        return json.dumps(raw, separators=(",", ":"), sort_keys=True)


@dataclass
class _Listing:
    """One collection listed newest first: the records newer than the cursor, and the tracked keys found gone."""

    new: list[dict[str, Any]] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # tracked keys still there, or not judged
    complete: bool = True


class BlueskyAccount:
    """A resolved account: DID, handle (verified both ways when the DID document names it), PDS URL."""

    def __init__(self, did: str, handle: str, pds: str) -> None:
        self.did, self.handle, self.pds = did, handle, pds

    def __repr__(self) -> str:
        return f"BlueskyAccount({self.did!r}, {self.handle!r}, {self.pds!r})"


class AccountCache:
    """DID documents read (a DID's handle and PDS): at most ``limit``, the least recently used dropped first,
    each read again after ``ttl`` seconds. Thread-safe, so the daemon's workers share one (``bluesky_source``):
    with one per worker, each of 16 workers read every organisation's document again, and past ``limit``
    organisations per worker (10,000 at one X key's capacity) an idle poll cost two requests, not one (issue 18)."""

    def __init__(self, limit: int = MAX_ACCOUNTS, ttl: float = ACCOUNT_TTL) -> None:
        self.limit = limit
        self.ttl = ttl
        self._items: OrderedDict[tuple[str, str], tuple[float, BlueskyAccount]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, plc_url: str, did: str) -> BlueskyAccount | None:
        with self._lock:
            item = self._items.get((plc_url, did))
            if item is None:
                return None
            if time.monotonic() - item[0] > self.ttl:
                del self._items[(plc_url, did)]
                return None
            self._items.move_to_end((plc_url, did))
            return item[1]

    def put(self, plc_url: str, account: BlueskyAccount) -> None:
        with self._lock:
            self._items[(plc_url, account.did)] = (time.monotonic(), account)
            self._items.move_to_end((plc_url, account.did))
            while len(self._items) > self.limit:
                self._items.popitem(last=False)


_SHARED_ACCOUNTS = AccountCache(MAX_SHARED_ACCOUNTS)


class BlueskySource:
    """Reads a Bluesky account's posts and reposts from its PDS: the ``Source`` "bluesky"."""

    kind = "bluesky"
    name = "Bluesky"
    capabilities = CAPABILITIES

    def __init__(
        self,
        plc_url: str = "https://plc.directory",
        appview_url: str = "https://public.api.bsky.app",
        timeout: float = 30.0,
        max_media_bytes: int | None = None,
        media_deadline: float = MEDIA_DEADLINE,
        page_size: int = PAGE_SIZE,
        max_pages: int = MAX_PAGES,
        accounts: AccountCache | None = None,
    ) -> None:
        self.page_size = page_size  # listRecords' limit (tests use small pages to reach past one)
        self.max_pages = max_pages  # pages per collection and read
        self.plc_url = plc_url.rstrip("/")
        self.appview_url = appview_url.rstrip("/")
        self.timeout = timeout
        self.max_media_bytes = max_media_bytes
        self.media_deadline = media_deadline
        self.requests = 0
        self._http = httpx.Client(timeout=timeout, follow_redirects=False)
        self._accounts = accounts if accounts is not None else AccountCache()  # DID documents read
        self._lookups = 0  # DID lookups for reposted authors in the current read

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> BlueskySource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ HTTP

    def _get(self, url: str, params: dict[str, Any] | None, where: str) -> Any:
        """GET a JSON answer; every failure becomes an error naming ``where`` and the problem."""
        self.requests += 1
        try:
            response = self._http.get(url, params=params)
        except httpx.TimeoutException:
            raise TransientError(f"{where}: no answer within {self.timeout:g} s") from None
        except httpx.TransportError as exc:
            raise TransientError(f"{where}: connection failed ({type(exc).__name__})") from None
        status = response.status_code
        if status != 200:
            detail = _xrpc_detail(response)
            message = f"{where}: HTTP {status}" + (f": {detail}" if detail else "")
            if status == 429 or status >= 500:
                raise TransientError(message)
            raise SourceError(message)
        try:
            return response.json()
        except (ValueError, RecursionError):
            raise TransientError(f"{where}: the answer is not valid JSON (cut off?)") from None

    # ------------------------------------------------------------------ identity

    def resolve(self, name: str) -> BlueskyAccount:
        """A handle (``@`` optional) or DID as the account it names, with its PDS."""
        name = name.strip().removeprefix("@")
        if name.startswith("did:"):
            return self.account(name)
        if not HANDLE_RE.match(name):
            raise PermanentError(f"Bluesky handle {name!r} is not valid: a domain name such as alice.bsky.social")
        where = f"Bluesky account {name}: resolving the handle (com.atproto.identity.resolveHandle)"
        body = self._get(f"{self.appview_url}/xrpc/com.atproto.identity.resolveHandle", {"handle": name}, where)
        did = body.get("did") if isinstance(body, dict) else None
        if not isinstance(did, str) or not DID_RE.match(did):
            raise SourceError(f"{where}: no valid DID in the answer ({str(body)[:100]})")
        account = self.account(did)
        if account.handle.lower() != name.lower():
            raise SourceError(
                f"Bluesky account {name}: its DID {did} names the handle {account.handle!r}, not {name!r}"
            )
        return account

    def account(self, did: str) -> BlueskyAccount:
        """The DID's document, read once per source: its handle and PDS."""
        cached = self._accounts.get(self.plc_url, did)
        if cached is not None:
            return cached
        if not DID_RE.match(did):
            raise PermanentError(f"Bluesky account {did!r}: not a did:plc or did:web DID")
        if did.startswith("did:plc:"):
            url = f"{self.plc_url}/{did}"  # https://web.plc.directory/spec/v0.1/did-plc
        else:
            if ":" in did.removeprefix("did:web:"):
                raise PermanentError(f"Bluesky account {did}: atproto accepts a did:web only for a whole host, without"
                                     " a path (https://atproto.com/specs/did)")
            host = did.removeprefix("did:web:").replace("%3A", ":")
            url = f"https://{host}/.well-known/did.json"  # https://w3c-ccg.github.io/did-method-web/
        where = f"Bluesky account {did}: reading its DID document ({url})"
        doc = self._get(url, None, where)
        if not isinstance(doc, dict) or doc.get("id") != did:
            raise SourceError(f"{where}: the document is not about {did}")
        handle = next(
            (a.removeprefix("at://") for a in doc.get("alsoKnownAs") or [] if isinstance(a, str) and a.startswith("at://")),
            did,
        )
        pds = None
        for service in doc.get("service") or []:
            if isinstance(service, dict) and str(service.get("id", "")).endswith("#atproto_pds"):
                pds = service.get("serviceEndpoint")
        parts = urlsplit(pds) if isinstance(pds, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise SourceError(f"{where}: no usable #atproto_pds service endpoint ({pds!r})")
        account = BlueskyAccount(did, handle, str(pds).rstrip("/"))
        self._accounts.put(self.plc_url, account)
        return account

    def handle_of(self, did: str) -> str:
        """The handle a DID's document names, or the DID itself when it cannot be read now (bounded per read)."""
        cached = self._accounts.get(self.plc_url, did)
        if cached is not None:
            return cached.handle
        if self._lookups >= MAX_LOOKUPS:
            return did
        self._lookups += 1
        try:
            return self.account(did).handle
        except (SourceError, TransientError, PermanentError) as exc:
            log.info("handle_unresolved", did=did, error=str(exc))
            return did

    def _original(self, did: str, uri: str) -> SourcePost | None:
        """Another account's reposted post, read from its PDS (so a link-repost says its words and media);
        None when it cannot be read now or the read's lookups are spent (the repost still credits and links it)."""
        m = AT_URI_RE.match(uri)
        if m is None or self._lookups >= MAX_LOOKUPS:
            return None
        self._lookups += 1
        try:
            author = self.account(did)
            where = f"Bluesky post {uri}: com.atproto.repo.getRecord"
            body = self._get(f"{author.pds}/xrpc/com.atproto.repo.getRecord",
                             {"repo": did, "collection": POST, "rkey": m.group(3)}, where)
            value = body.get("value") if isinstance(body, dict) else None
            if not isinstance(value, dict):
                return None
            return _post(author, m.group(3), value)
        except (SourceError, TransientError, PermanentError, ValueError, TypeError, KeyError, AttributeError) as exc:
            log.info("repost_original_unread", uri=uri, error=str(exc))
            return None

    def start_cursor(self, account: str) -> tuple[str, dict[str, Any]]:
        """Linking: the cursor that makes every post the account has now old, and its newest post (if any).

        Two requests: the repository's revision, and the newest post (what the
        operator is told). Raises when the PDS cannot be reached: nothing is stored.
        """
        acct = self.account(account)
        rev = self._latest_rev(acct)
        where = f"Bluesky account {acct.handle} ({acct.did}): com.atproto.repo.listRecords {POST}"
        body = self._get(f"{acct.pds}/xrpc/com.atproto.repo.listRecords",
                         {"repo": acct.did, "collection": POST, "limit": 1}, where)
        records = body.get("records") if isinstance(body, dict) else None
        newest = None
        if isinstance(records, list) and records and isinstance(records[0], dict):
            value = _dict(records[0].get("value"))
            newest = {"rkey": _rkey(records[0]), "text": str(value.get("text") or "")[:80]}
        newest_key = newest["rkey"] if newest and TID_RE.match(newest["rkey"]) else rev
        start = max(rev, newest_key, key=self.sort_key)
        return BlueskyCursor(rev=start).dump(), {"did": acct.did, "handle": acct.handle, "pds": acct.pds,
                                                 "newest": newest}

    # ------------------------------------------------------------------ reading

    def _latest_rev(self, acct: BlueskyAccount) -> str:
        where = f"Bluesky account {acct.handle} ({acct.did}): com.atproto.sync.getLatestCommit"
        body = self._get(f"{acct.pds}/xrpc/com.atproto.sync.getLatestCommit", {"did": acct.did}, where)
        rev = body.get("rev") if isinstance(body, dict) else None
        if not isinstance(rev, str) or not TID_RE.match(rev):
            raise SourceError(f"{where}: no valid rev in the answer ({str(body)[:100]})")
        return rev

    def read_new(self, account: str, cursor: str | None) -> ReadResult:
        """Posts and reposts of ``account`` (a DID) newer than ``cursor``, and tracked ones deleted: idle, one request.

        When the repository's revision has not moved, nothing is listed;
        otherwise both collections are listed newest first down to the cursor
        and the oldest tracked key. With no cursor, one page of each.
        """
        before = self.requests
        self._lookups = 0
        acct = self.account(account)
        result = ReadResult()
        state = BlueskyCursor.load(cursor)
        rev = self._latest_rev(acct)
        if not state.valid:
            # Not a cursor of ours: posting everything the account has would flood; start again from now.
            log.warning("cursor_replaced", account=acct.did, reason="not a Bluesky cursor")
            result.cursor = BlueskyCursor(rev=rev).dump()
            result.requests = self.requests - before
            return result
        if cursor is not None and self.sort_key(rev) <= self.sort_key(state.rev):
            result.requests = self.requests - before
            return result
        records: list[tuple[str, dict[str, Any]]] = []
        keys: dict[str, list[str]] = {}
        for collection in (POST, REPOST):
            if cursor is None:
                listing = _Listing(new=list(self._list(acct, collection, None, result)))
            else:
                listing = self._scan(acct, collection, state.rev, state.keys.get(collection, []))
                result.complete = result.complete and listing.complete
                result.deleted.extend(listing.gone)
            records.extend((collection, r) for r in listing.new)
            fresh = [k for k in (_rkey(r) for r in listing.new) if TID_RE.match(k)] if cursor is not None else []
            keys[collection] = sorted(set(fresh) | set(listing.kept), key=self.sort_key, reverse=True)[:TRACKED]
        records.sort(key=lambda cr: self.sort_key(_rkey(cr[1])), reverse=True)
        for collection, record in records:
            result.entries.append(self._normalise(acct, collection, record))
        newest = max([rev, *(r for r in (_rkey(rec) for _, rec in records) if TID_RE.match(r))], key=self.sort_key)
        result.cursor = BlueskyCursor(rev=newest, keys={c: k for c, k in keys.items() if k}).dump()
        ids = [e.id if isinstance(e, SourcePost) else e.post_id for e in result.entries]
        ids = [i for i in ids if i]
        result.oldest_id = min(ids, key=self.sort_key) if ids else None
        result.requests = self.requests - before
        if result.deleted:
            log.info("posts_deleted_at_source", account=acct.did, deleted=result.deleted)
        return result

    def _page(self, acct: BlueskyAccount, collection: str, page_cursor: str | None, limit: int) -> tuple[list[Any], str | None]:
        where = f"Bluesky account {acct.handle} ({acct.did}): com.atproto.repo.listRecords {collection}"
        params: dict[str, Any] = {"repo": acct.did, "collection": collection, "limit": limit}
        if page_cursor:
            params["cursor"] = page_cursor
        body = self._get(f"{acct.pds}/xrpc/com.atproto.repo.listRecords", params, where)
        records = body.get("records") if isinstance(body, dict) else None
        if not isinstance(records, list):
            raise SourceError(f"{where}: `records` must be a list ({str(body)[:100]})")
        next_cursor = body.get("cursor") if isinstance(body.get("cursor"), str) else None
        return records, next_cursor

    def _scan(self, acct: BlueskyAccount, collection: str, rev: str, tracked: list[str]) -> _Listing:
        """List ``collection`` newest first down to the revision ``rev`` and the oldest tracked key.

        A tracked key is gone when the listing passed its place without it, or when the
        listing reached the end of the collection (a short page, then an empty one). A key
        older than everything listed when the pages ran out is kept, unjudged.
        """
        out = _Listing()
        tracked_keys = [k for k in tracked if TID_RE.match(k)]
        low = min([self.sort_key(rev), *(self.sort_key(k) for k in tracked_keys)])
        listed: set[str] = set()
        floor: int | None = None  # the oldest key listed
        page_cursor: str | None = None
        ended = False  # the collection's end was seen: nothing is older than ``floor``
        reached = False
        for _page in range(self.max_pages):
            records, page_cursor = self._page(acct, collection, page_cursor, self.page_size)
            for record in records:
                rkey = _rkey(record)
                if not TID_RE.match(rkey):
                    out.new.append(record)  # no TID: read, and reported as unreadable
                    continue
                key = self.sort_key(rkey)
                if key > self.sort_key(rev):
                    out.new.append(record)
                listed.add(rkey)
                floor = key if floor is None else min(floor, key)
                reached = reached or key <= low
            if reached:
                break
            if len(records) < self.page_size:
                # The end, says the page; before a tracked key is called deleted for it, an empty page must agree.
                unjudged = [k for k in tracked_keys if k not in listed and (floor is None or self.sort_key(k) < floor)]
                if not records:
                    ended = True
                elif unjudged:
                    after = page_cursor or _rkey(records[-1])
                    more, _ = self._page(acct, collection, after, 1)
                    ended = not more
                break
        else:
            # The pages ran out before the cursor: posts between are lost to this read (and untracked ones unjudged).
            out.complete = floor is None or floor <= self.sort_key(rev)
        for k in tracked_keys:
            if k in listed:
                out.kept.append(k)
            elif ended or (floor is not None and self.sort_key(k) > floor):
                out.gone.append(k)
            else:
                out.kept.append(k)
        return out

    def _list(
        self, acct: BlueskyAccount, collection: str, cursor: str | None, result: ReadResult, pages: int | None = None
    ) -> Iterator[dict[str, Any]]:
        """Records newer than ``cursor``, newest first; stops on a short page (the PDS gives a cursor on
        its last page too) or at the cursor."""
        page_cursor: str | None = None
        if pages is None:
            pages = self.max_pages if cursor is not None else 1  # no cursor: the newest page only (linking never floods)
        for _page in range(pages):
            records, page_cursor = self._page(acct, collection, page_cursor, self.page_size)
            for record in records:
                rkey = _rkey(record)
                if cursor is not None and TID_RE.match(rkey) and self.sort_key(rkey) <= self.sort_key(cursor):
                    return
                yield record
            if len(records) < self.page_size or page_cursor is None:
                return
        result.complete = False

    def _normalise(self, acct: BlueskyAccount, collection: str, record: Any) -> SourcePost | Unreadable:
        rkey = _rkey(record)
        try:
            if not TID_RE.match(rkey):
                raise SourceError(f"record key {rkey!r} is not a TID")
            value = record.get("value")
            if not isinstance(value, dict):
                raise SourceError("the record has no value")
            if collection == REPOST:
                post = _repost(acct, rkey, value)
                author = post.retweet_of_username or ""
                if author.startswith("did:"):  # another account's post: credit it by handle (one cached lookup)
                    post = replace(post, retweet_of_username=self.handle_of(author),
                                   retweet_of=self._original(author, post.retweet_of_id or ""))
                return post
            return _post(acct, rkey, value)
        except (SourceError, ValueError, TypeError, KeyError, AttributeError) as exc:
            reason = f"unreadable Bluesky record of {acct.handle} ({acct.did}) {collection}/{rkey}: {exc}"
            log.warning("post_unreadable", account=acct.did, rkey=rkey, error=str(exc))
            raw = record if isinstance(record, dict) else {"raw": str(record)[:1000]}
            return Unreadable(rkey if TID_RE.match(rkey) else "", raw, reason)

    def read_range(
        self,
        account: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = None,
        around: str | None = None,
    ) -> Iterator[SourcePost]:
        """Posts created in [since, until), newest first (record keys give the time); or the one post ``around``.

        ``account`` is a DID, or a handle (resolved: ``bridge preview --bluesky HANDLE``)."""
        acct = self.account(account) if account.startswith("did:") else self.resolve(account)
        if around is not None:
            if not TID_RE.match(around):
                return
            where = f"Bluesky account {acct.handle} ({acct.did}): com.atproto.repo.getRecord {around}"
            for collection in (POST, REPOST):
                try:
                    body = self._get(f"{acct.pds}/xrpc/com.atproto.repo.getRecord",
                                     {"repo": acct.did, "collection": collection, "rkey": around}, where)
                except SourceError:
                    continue
                entry = self._normalise(acct, collection, body)
                if isinstance(entry, SourcePost):
                    yield entry
                return
            return
        low = tid_at(since) if since else None
        high = self.sort_key(tid_at(until)) if until else None
        dummy = ReadResult()
        records = [(c, r) for c in (POST, REPOST) for r in self._list(acct, c, low, dummy, pages=self.max_pages)]
        records.sort(key=lambda cr: self.sort_key(_rkey(cr[1])), reverse=True)
        count = 0
        for collection, record in records:
            if high is not None and self.sort_key(_rkey(record)) >= high:
                continue
            entry = self._normalise(acct, collection, record)
            if isinstance(entry, SourcePost):
                yield entry
                count += 1
                if limit is not None and count >= limit:
                    return

    def sort_key(self, post_id: str) -> int:
        """A TID's value (microseconds, then clock id): record keys sort oldest first. Not a TID: 0."""
        return _tid_value(post_id) if TID_RE.match(post_id) else 0

    def cursor_at(self, when: datetime) -> str:
        return tid_at(when)

    def permalink(self, handle: str | None, post_id: str) -> str:
        return bsky_permalink(handle, post_id)

    def neutral(self, post: SourcePost, account: str) -> Post:
        return neutral_post(post, account)

    # ------------------------------------------------------------------ media

    def open_media(self, ref: str, dest: Path, max_bytes: int) -> tuple[Path, str | None]:
        """Download a blob through com.atproto.sync.getBlob on the PDS of the DID it names, only there."""
        if self.max_media_bytes is not None:
            max_bytes = min(max_bytes, self.max_media_bytes)
        parts = urlsplit(ref)
        did = (parse_qs(parts.query).get("did") or [""])[0]
        if parts.scheme not in ("http", "https") or not parts.path.endswith("/xrpc/com.atproto.sync.getBlob") or not did:
            raise PermanentError(f"Bluesky media {ref}: not a com.atproto.sync.getBlob URL")
        acct = self.account(did)
        if not ref.startswith(acct.pds + "/"):
            raise PermanentError(f"Bluesky media {ref}: not on the PDS of {did} ({acct.pds})")
        deadline = time.monotonic() + self.media_deadline
        with open(dest, "wb") as fh:
            current = ref
            for _ in range(MAX_REDIRECTS + 1):
                left = self._time_left(deadline, current)
                self.requests += 1
                try:
                    with self._http.stream("GET", current, timeout=min(self.timeout, left)) as response:
                        if response.is_redirect and response.headers.get("location"):
                            current = str(response.url.join(response.headers["location"]))
                            continue
                        status = response.status_code
                        if status != 200:
                            gone = " (gone)" if status in (400, 404, 410) else ""
                            error = TransientError if status == 429 or status >= 500 else PermanentError
                            raise error(f"Bluesky media {current}: HTTP {status}{gone}")
                        declared = response.headers.get("content-length")
                        if declared and declared.isdigit() and int(declared) > max_bytes:
                            raise PermanentError(f"Bluesky media {current} is {declared} bytes, over the {max_bytes}-byte limit")
                        total = 0
                        for chunk in response.iter_bytes():
                            total += len(chunk)
                            if total > max_bytes:
                                raise PermanentError(f"Bluesky media {current} is over the {max_bytes}-byte limit")
                            fh.write(chunk)
                            self._time_left(deadline, current)
                        mime = response.headers.get("content-type", "").split(";", 1)[0].strip()
                        return dest, mime or None
                except httpx.TimeoutException:
                    self._time_left(deadline, current)
                    raise TransientError(f"Bluesky media {current}: no answer within {self.timeout:g} s") from None
                except httpx.TransportError as exc:
                    raise TransientError(f"Bluesky media {current}: connection failed ({type(exc).__name__})") from None
        raise PermanentError(f"Bluesky media {ref}: more than {MAX_REDIRECTS} redirects")

    def _time_left(self, deadline: float, url: str) -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise MediaTooSlow(
                f"Bluesky media {url}: not downloaded within {self.media_deadline:g} s"
                " (bluesky.media_download_deadline); the server sends too slowly"
            )
        return left


# ---------------------------------------------------------------------- records -> SourcePost


def _xrpc_detail(response: httpx.Response) -> str:
    """The XRPC error body's ``error``/``message``, or the start of the text."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200].strip()
    if isinstance(body, dict):
        return ": ".join(str(body[k]) for k in ("error", "message") if body.get(k))
    return str(body)[:200]


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _rkey(record: Any) -> str:
    uri = record.get("uri") if isinstance(record, dict) else None
    return uri.rsplit("/", 1)[-1] if isinstance(uri, str) else ""


def _created(value: dict[str, Any], rkey: str) -> datetime:
    raw = value.get("createdAt")
    if isinstance(raw, str):
        try:
            when = datetime.fromisoformat(raw.replace("Z", "+00:00"))
            if when.tzinfo is not None:
                return when.astimezone(timezone.utc)
        except ValueError:
            pass
    micros = tid_micros(rkey) or 0
    return datetime.fromtimestamp(micros / 1_000_000, tz=timezone.utc)


def _ref(acct: BlueskyAccount, uri: Any, what: str) -> tuple[str, str]:
    """(id, author DID) of a referenced post: its rkey when it is the account's own, else its at:// URI."""
    m = AT_URI_RE.match(uri) if isinstance(uri, str) else None
    if m is None or m.group(2) != POST:
        raise SourceError(f"{what} {uri!r} is not an at:// URI of a post")
    return (m.group(3) if m.group(1) == acct.did else uri), m.group(1)


def _blob_url(acct: BlueskyAccount, blob: Any) -> tuple[str, str, int | None]:
    """(getBlob URL, cid, size) of a blob reference."""
    if not isinstance(blob, dict):
        raise SourceError("an image has no blob")
    ref = blob.get("ref")
    cid = ref.get("$link") if isinstance(ref, dict) else blob.get("cid")  # "cid": the legacy blob shape
    if not isinstance(cid, str) or not cid:
        raise SourceError("an image blob has no CID")
    url = f"{acct.pds}/xrpc/com.atproto.sync.getBlob?" + urlencode({"did": acct.did, "cid": cid})
    size = blob.get("size")
    return url, cid, size if isinstance(size, int) else None


def _post(acct: BlueskyAccount, rkey: str, value: dict[str, Any]) -> SourcePost:
    text = value.get("text", "")
    if not isinstance(text, str):
        raise SourceError("text is not a string")
    raw = text.encode("utf-8")
    urls: list[UrlEntity] = []
    mentions: list[Mention] = []
    tags: list[Hashtag] = []
    for facet in value.get("facets") or []:
        index = facet.get("index") if isinstance(facet, dict) else None
        start = index.get("byteStart") if isinstance(index, dict) else None
        end = index.get("byteEnd") if isinstance(index, dict) else None
        if not (isinstance(start, int) and isinstance(end, int) and 0 <= start < end <= len(raw)):
            continue  # a facet outside the text: the text stays as written
        try:
            shown = raw[start:end].decode("utf-8")
        except UnicodeDecodeError:
            continue  # not on character boundaries
        for feature in facet.get("features") or []:
            kind = feature.get("$type") if isinstance(feature, dict) else None
            if kind == "app.bsky.richtext.facet#link" and isinstance(feature.get("uri"), str):
                urls.append(UrlEntity(url=shown, expanded_url=feature["uri"], start=start, end=end))
            elif kind == "app.bsky.richtext.facet#mention" and isinstance(feature.get("did"), str):
                mentions.append(Mention(username=shown.removeprefix("@"), user_id=feature["did"], start=start, end=end))
            elif kind == "app.bsky.richtext.facet#tag" and isinstance(feature.get("tag"), str):
                tags.append(Hashtag(tag=feature["tag"], start=start, end=end))
    media: list[Media] = []
    quote_id: str | None = None
    embed = value.get("embed")
    if isinstance(embed, dict):
        kind = embed.get("$type")
        images = None
        record = None
        video: dict[str, Any] | None = None
        if kind == "app.bsky.embed.images":
            images = embed.get("images")
        elif kind == "app.bsky.embed.external":
            external = _dict(embed.get("external"))
            uri = external.get("uri")
            if isinstance(uri, str) and not any(u.expanded_url == uri for u in urls):
                # A link card: its URL, marked by start None (it is not in the text; neutral appends it).
                urls.append(UrlEntity(url=uri, expanded_url=uri, display_url=str(external.get("title") or "")))
        elif kind == "app.bsky.embed.video":
            video = embed
        elif kind == "app.bsky.embed.record":
            record = embed.get("record")
        elif kind == "app.bsky.embed.recordWithMedia":
            record = _dict(embed.get("record")).get("record")
            inner = embed.get("media")
            if isinstance(inner, dict) and inner.get("$type") == "app.bsky.embed.images":
                images = inner.get("images")
            elif isinstance(inner, dict) and inner.get("$type") == "app.bsky.embed.video":
                video = inner
        if isinstance(record, dict):
            quote_id, _ = _ref(acct, record.get("uri"), "the quoted post")
        if video is not None:
            # app.bsky.embed.video: one video blob (video/mp4), its alt text and aspect ratio.
            url, cid, size = _blob_url(acct, video.get("video"))
            ratio = _dict(video.get("aspectRatio"))
            alt = video.get("alt")
            media.append(Media(key=cid, type="video", url=url, alt_text=alt if isinstance(alt, str) and alt else None,
                               width=ratio.get("width"), height=ratio.get("height"), size_bytes=size))
        for image in images or []:
            if not isinstance(image, dict):
                continue
            url, cid, size = _blob_url(acct, image.get("image"))
            ratio = _dict(image.get("aspectRatio"))
            alt = image.get("alt")
            media.append(Media(key=cid, type="photo", url=url, alt_text=alt if isinstance(alt, str) and alt else None,
                               width=ratio.get("width"), height=ratio.get("height"), size_bytes=size))
    reply_id = reply_user = root_id = None
    reply = value.get("reply")
    if isinstance(reply, dict):
        parent, root = _dict(reply.get("parent")), _dict(reply.get("root"))
        reply_id, reply_user = _ref(acct, parent.get("uri"), "the parent post")
        root_id = _ref(acct, root.get("uri"), "the thread's first post")[0] if root.get("uri") else reply_id
    labels = value.get("labels")
    label_values = tuple(
        str(v.get("val")) for v in (labels.get("values") or [] if isinstance(labels, dict) else []) if isinstance(v, dict)
    )
    langs = value.get("langs")
    return SourcePost(
        id=rkey,
        author_id=acct.did,
        author_username=acct.handle,
        created_at=_created(value, rkey),
        text=text,
        urls=tuple(urls),
        mentions=tuple(mentions),
        hashtags=tuple(tags),
        media=tuple(media),
        in_reply_to_post_id=reply_id,
        in_reply_to_user_id=reply_user,
        conversation_id=root_id,
        quote_of_id=quote_id,
        lang=langs[0] if isinstance(langs, list) and langs and isinstance(langs[0], str) else None,
        sensitive=any(v in SENSITIVE_LABELS for v in label_values),
    )


def _repost(acct: BlueskyAccount, rkey: str, value: dict[str, Any]) -> SourcePost:
    subject = value.get("subject")
    uri = subject.get("uri") if isinstance(subject, dict) else None
    rid, author = _ref(acct, uri, "the reposted post")
    return SourcePost(
        id=rkey,
        author_id=acct.did,
        author_username=acct.handle,
        created_at=_created(value, rkey),
        text="",
        retweet_of_id=rid,
        retweet_of_username=acct.handle if author == acct.did else author,
    )


# ---------------------------------------------------------------------- SourcePost -> neutral Post


def _ref_url(ref_id: str, handle: str) -> tuple[str, str | None, bool]:
    """(permalink, author, own) of a stored reference: an rkey is the account's own post."""
    m = AT_URI_RE.match(ref_id)
    if m is None:
        return bsky_permalink(handle, ref_id), handle, True
    return bsky_permalink(m.group(1), m.group(3)), m.group(1), False


def _ref_key(ref_id: str) -> str:
    """The id the converter asks ``bridged`` about: the record key, as the ledger keeps every Bluesky post,
    so a repost or quote of another linked organisation's bridged post finds its toot (a TID holds the
    microsecond and a random clock id: two accounts' posts do not share one)."""
    m = AT_URI_RE.match(ref_id)
    return m.group(3) if m is not None else ref_id


def neutral_post(post: SourcePost, account: str) -> Post:
    """A stored Bluesky post as the neutral ``Post``: facets at UTF-8 byte offsets become links (with the
    full URI in the text), mentions (network "bluesky") and tags; images, link cards, quotes, replies,
    reposts and self-labels become what the converter reads."""
    handle = post.author_username
    raw = post.text.encode("utf-8")
    pieces: list[str] = []
    links: list[Link] = []
    length = 0
    at = 0
    inline = sorted((u for u in post.urls if u.start is not None and u.end is not None), key=lambda u: u.start or 0)
    for u in inline:
        start, end = u.start or 0, u.end or 0
        if start < at:
            continue  # overlapping facets: the first wins
        before = raw[at:start].decode("utf-8", errors="replace")
        pieces.append(before)
        length += len(before)
        pieces.append(u.expanded_url)
        links.append(Link(u.expanded_url, length, length + len(u.expanded_url)))
        length += len(u.expanded_url)
        at = end
    rest = raw[at:].decode("utf-8", errors="replace")
    pieces.append(rest)
    length += len(rest)
    text = "".join(pieces)
    for u in post.urls:
        if u.start is None:  # a link card: not in the text
            sep = "\n\n" if text else ""
            text += sep + u.expanded_url
            links.append(Link(u.expanded_url, len(text) - len(u.expanded_url), len(text)))
    quote = None
    if post.quote_of_id:
        url, author, own = _ref_url(post.quote_of_id, handle)
        quote = PostRef(_ref_key(post.quote_of_id), url, author, own)
        sep = "\n\n" if text else ""
        text += sep + url
        links.append(Link(url, len(text) - len(url), len(text), post_id=_ref_key(post.quote_of_id)))
    reply = None
    if post.in_reply_to_post_id:
        url, author, own = _ref_url(post.in_reply_to_post_id, handle)
        reply = PostRef(post.in_reply_to_post_id, url, author, own)
    repost = None
    if post.retweet_of_id:
        url, author, own = _ref_url(post.retweet_of_id, handle)
        original = neutral_post(post.retweet_of, post.retweet_of.author_id) if post.retweet_of is not None else None
        repost = PostRef(_ref_key(post.retweet_of_id), url, author if own else (post.retweet_of_username or author),
                         own, post=original)
    return Post(
        id=post.id,
        author=handle,
        created_at=post.created_at,
        text=text,
        permalink=bsky_permalink(handle, post.id),
        network=NETWORK,
        home=HOME,
        profile_url=PROFILE_URL,  # a handle is a domain, no fediverse address: unmapped mentions link here
        links=tuple(links),
        mentions=tuple(Handle(NETWORK, m.username) for m in post.mentions),
        tags=tuple(h.tag for h in post.hashtags),
        media=tuple(
            MediaItem(key=m.key, type=m.type, alt_text=m.alt_text, candidates=(m.url,) if m.url else (),
                      size_bytes=m.size_bytes, mime_type="video/mp4" if m.type == "video" else None,
                      # a video is one mp4 blob (app.bsky.embed.video), offered as the renderer's one variant
                      variants=(MediaVariant(m.url, "video/mp4"),) if m.type == "video" and m.url else ())
            for m in post.media
        ),
        reply_to=reply,
        quote_of=quote,
        repost_of=repost,
        lang=post.lang,
        sensitive=post.sensitive,
        # SourcePost keeps only the flag, and only self-labels set it (SENSITIVE_LABELS).
        content_warning="Sensitive media (self-labelled on Bluesky)" if post.sensitive else "",
    )


def bluesky_source(config: Config) -> BlueskySource:
    """The Bluesky reader as the configuration says: PLC directory, AppView, timeout, media caps."""
    b = config.bluesky
    return BlueskySource(b.plc_url, b.appview_url, timeout=b.timeout, max_media_bytes=b.max_media_bytes,
                         media_deadline=b.media_download_deadline, accounts=_SHARED_ACCOUNTS)

