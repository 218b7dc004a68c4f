"""The X API v2 client the bridge reads posts with.

Built on ``tweepy.Client`` (dict return type) for parameter handling and
``tweepy.Paginator`` for paging. tweepy hard-codes ``https://api.twitter.com``
and sends with no timeout (shared/fixtures/README.md), which would hang a
daemon forever; ``_TweepyClient`` overrides tweepy's public ``request`` hook to
send to ``api_base_url`` with a timeout and to map every failure to
``bridge.errors`` at this edge. Pages come back raw (``data``, ``includes``,
``meta``, ``errors``); ``bridge.sources.x_v2`` normalises them.

Not thread-safe: one ``XApiSource`` per worker (it keeps the last response's
rate-limit headers).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urljoin, urlsplit

import httpx
import tweepy

from bridge.config import Config
from bridge.errors import PermanentError, RateLimited, SourceError, TransientError, XAuthError
from bridge.http import Answer, ConnectionFailed, LeanClient, NoAnswer, TooLarge
from bridge.logs import get_logger
from bridge.model import Post, SourcePost, is_post_id, post_id_key
from bridge.sources.base import MediaTooSlow as MediaTooSlow  # re-exported: callers import it from here
from bridge.sources.base import ReadResult, SourceCapabilities, Unreadable
from bridge.sources.media import is_remote, open_local_file
from bridge.sources.x_post import neutral_post
from bridge.sources.x_v2 import (
    X_TIMELINE_REACH,
    Index,
    normalise_page,
    normalise_tweet,
    snowflake_at,
    x_permalink,
    x_sort_key,
)

__all__ = [
    "TWEET_FIELDS",
    "EXPANSIONS",
    "MEDIA_FIELDS",
    "USER_FIELDS",
    "POLL_FIELDS",
    "X_MEDIA_HOSTS",
    "FetchResult",
    "XUser",
    "XApiSource",
    "MediaTooSlow",
]

# What the converter (bridge.sources.x_v2) needs; X returns only requested fields.
TWEET_FIELDS = [
    "created_at", "author_id", "conversation_id", "in_reply_to_user_id", "referenced_tweets",
    "entities", "attachments", "lang", "possibly_sensitive", "note_tweet",
    "edit_history_tweet_ids", "edit_controls",
]
EXPANSIONS = [
    "attachments.media_keys", "referenced_tweets.id", "referenced_tweets.id.author_id",
    "author_id", "attachments.poll_ids",
]
MEDIA_FIELDS = [
    "media_key", "type", "url", "preview_image_url", "alt_text", "duration_ms", "width",
    "height", "variants",
]
USER_FIELDS = ["username", "name"]
POLL_FIELDS = ["options", "duration_minutes", "end_datetime"]
X_MEDIA_HOSTS = ("pbs.twimg.com", "video.twimg.com")  # where X serves photos and videos
PAGE_SIZE = 100  # X maximum for GET /2/users/:id/tweets (max_results 5..100)
USERNAME_RE = re.compile(r"^[A-Za-z0-9_]{1,15}$")  # X handle rule, as its 400 for /users/by/username says
MAX_REDIRECTS = 5
MAX_FETCH_PAGES = X_TIMELINE_REACH // PAGE_SIZE  # 32 pages of 100: all X serves of a user timeline
CAPABILITIES = SourceCapabilities(edits=True, deletes=False, reposts=True, quotes=True, alt_text=True,
                                  reach=X_TIMELINE_REACH)
# Python's JSON parser recurses once per nesting level and gives up near 1,000 levels.
NESTED_TOO_DEEPLY = "the answer is nested too deeply to read (a malformed page)"

MEDIA_DEADLINE = 600.0  # seconds a whole media download may take (x.media_download_deadline)

log = get_logger("bridge.sources.x_api")


@dataclass(frozen=True)
class XUser:
    id: str
    username: str
    name: str


@dataclass
class FetchResult:
    """Raw timeline pages, newest first, as X sent them.

    ``complete`` is False when ``max_pages`` stopped paging before reaching
    ``since_id``: the posts between ``since_id`` and ``oldest_id`` were not
    read, so the cursor must not jump to ``newest_id`` (fill the gap with
    ``fetch_range(since_id=..., until_id=oldest_id)``).
    """

    pages: list[dict[str, Any]] = field(default_factory=list)
    newest_id: str | None = None
    oldest_id: str | None = None
    request_count: int = 0
    complete: bool = True
    rate_limit_remaining: int | None = None
    rate_limit_reset: datetime | None = None

    @property
    def post_count(self) -> int:
        return sum(len(page.get("data") or []) for page in self.pages)


def _epoch(value: str | None) -> datetime | None:
    if value is None or not value.strip().isdigit():
        return None
    return datetime.fromtimestamp(int(value), tz=timezone.utc)


def _newest_read(page: dict[str, Any]) -> str | None:
    """The newest id on a page: ``meta.newest_id`` or any post in ``data``, whichever is newer.

    Only ids X can take back as ``since_id`` count, so a post with a broken id is
    read (and failed) once and the cursor still moves past the page.
    """
    meta = page.get("meta") or {}
    read = [post.get("id") for post in page.get("data") or [] if isinstance(post, dict)]
    ids = [str(i) for i in (meta.get("newest_id"), *read) if is_post_id(i)]
    return max(ids, key=post_id_key) if ids else None


def _x_detail(response: Answer) -> str:
    """X's own explanation from an error body (problem ``detail`` and ``errors[].message``)."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200].strip() or response.reason or ""
    if not isinstance(body, dict):
        return str(body)[:200]
    parts = [str(e.get("message") or e.get("detail")) for e in body.get("errors") or [] if isinstance(e, dict)]
    if body.get("detail") and not parts:
        parts.append(str(body["detail"]))
    return "; ".join(p for p in parts if p and p != "None")


class _TweepyClient(tweepy.Client):
    """tweepy's v2 client, sending to our base URL with a timeout and our error classes.

    Overrides ``BaseClient.request`` (tweepy 4.17), the single place tweepy
    sends from; everything else (parameter joining, Paginator) is tweepy's.
    """

    def __init__(self, bearer_token: str, api_base_url: str, timeout: float) -> None:
        super().__init__(bearer_token=bearer_token, return_type=dict, wait_on_rate_limit=False)
        self.api_base_url = api_base_url.rstrip("/")
        self.timeout = timeout
        self.request_count = 0
        self.last_headers: Mapping[str, str] = {}
        self.http = LeanClient(self.api_base_url, timeout=timeout)  # not tweepy's requests session: see LeanClient

    def request(
        self, method: str, route: str, params: Any = None, json: Any = None, user_auth: bool = False
    ) -> Answer:
        """tweepy only reads ``.json()`` of what this returns (``return_type=dict``)."""
        where = f"{method} {route}"
        headers = {"User-Agent": self.user_agent, "Authorization": f"Bearer {self.bearer_token}"}
        self.request_count += 1
        try:
            response = self.http.request(method, route, params=params, json_body=json, headers=headers)
        except NoAnswer:
            raise TransientError(f"X API {where}: no answer within {self.timeout:g} s") from None
        except ConnectionFailed as exc:
            raise TransientError(f"X API {where}: connection failed ({exc})") from None
        except TooLarge as exc:
            raise TransientError(f"X API {where}: {exc}") from None
        self.last_headers = response.headers
        status = response.status_code
        if 200 <= status < 300:
            return response
        detail = self._redact(_x_detail(response))
        if status == 429:
            reset = _epoch(response.headers.get("x-rate-limit-reset"))
            message = f"X API {where}: rate limited (HTTP 429)"
            if reset is None:
                raise TransientError(message + ", no reset time given")
            raise RateLimited(f"{message}, resets at {reset.isoformat()}", retry_at=reset)
        if status == 401:
            raise XAuthError(
                f"X API {where}: the X bearer token was refused (HTTP 401)" + (f": {detail}" if detail else "")
                + "; fix x.bearer_token (or x.bearer_token_file) in the configuration; relinking an organisation"
                " cannot help"
            )
        if status == 403:
            # https://developer.x.com/en/support/x-api/error-troubleshooting: a 403 is an app the endpoint
            # is not open to (its project or access level), not a problem of one organisation.
            raise XAuthError(
                f"X API {where}: X refused the app's access (HTTP 403)" + (f": {detail}" if detail else "")
                + "; check the X developer app behind x.bearer_token (its project and access level);"
                " relinking an organisation cannot help"
            )
        if status >= 500:
            raise TransientError(f"X API {where}: server error HTTP {status}" + (f": {detail}" if detail else ""))
        raise SourceError(f"X API {where}: HTTP {status}" + (f": {detail}" if detail else ""))

    def _redact(self, text: str) -> str:
        token = self.bearer_token or ""
        return text.replace(token, "[redacted]") if token else text


class XApiSource:
    """Reads organisations' posts from X API v2 (app-only bearer token): the ``Source`` "x"."""

    kind = "x"
    name = "X API"
    capabilities = CAPABILITIES

    def __init__(
        self,
        bearer_token: str,
        api_base_url: str = "https://api.x.com",
        timeout: float = 30.0,
        media_hosts: tuple[str, ...] = X_MEDIA_HOSTS,
        max_media_bytes: int | None = None,
        media_deadline: float = MEDIA_DEADLINE,
    ) -> None:
        self._client = _TweepyClient(bearer_token, api_base_url, timeout)
        self.timeout = timeout
        self.media_deadline = media_deadline
        self.media_hosts = tuple(h.lower() for h in media_hosts)
        self.max_media_bytes = max_media_bytes  # this source's own cap on one media file (config x.max_media_bytes)
        self._http: httpx.Client | None = None

    def close(self) -> None:
        self._client.http.close()
        self._client.session.close()
        if self._http is not None:
            self._http.close()
            self._http = None

    def __enter__(self) -> XApiSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- API calls

    def _timeline_params(self) -> dict[str, Any]:
        return {
            "tweet_fields": TWEET_FIELDS,
            "expansions": EXPANSIONS,
            "media_fields": MEDIA_FIELDS,
            "user_fields": USER_FIELDS,
            "poll_fields": POLL_FIELDS,
        }

    def _pages(self, user_id: str, pages: int | float, **params: Any) -> Iterator[dict[str, Any]]:
        """tweepy's Paginator over GET /2/users/:id/tweets, with our checks on each page."""
        route = f"/2/users/{user_id}/tweets"
        paginator = tweepy.Paginator(self._client.get_users_tweets, user_id, limit=pages, **params)
        iterator = iter(paginator)
        while True:
            try:
                page = next(iterator)
            except StopIteration:
                return
            except json.JSONDecodeError:
                raise TransientError(f"X API GET {route}: the answer is not valid JSON (cut off?)") from None
            except RecursionError:
                raise TransientError(f"X API GET {route}: {NESTED_TOO_DEEPLY}") from None
            yield self._check_page(page, user_id, route)

    @staticmethod
    def _check_page(page: Any, user_id: str, route: str) -> dict[str, Any]:
        if not isinstance(page, dict):
            raise SourceError(f"X API GET {route}: expected a JSON object, got {type(page).__name__}")
        if "data" not in page and "meta" not in page and page.get("errors"):
            # X reports a missing, suspended or protected user as HTTP 200 with only `errors`.
            details = "; ".join(str(e.get("detail") or e.get("title")) for e in page["errors"] if isinstance(e, dict))
            raise SourceError(f"X API GET {route}: user {user_id} cannot be read: {details}")
        if not isinstance(page.get("data", []), list) or not isinstance(page.get("meta", {}), dict):
            raise SourceError(f"X API GET {route}: `data` must be a list and `meta` an object")
        return page

    def _rate_info(self) -> tuple[int | None, datetime | None]:
        headers = self._client.last_headers
        remaining = headers.get("x-rate-limit-remaining")
        return (
            int(remaining) if remaining is not None and remaining.isdigit() else None,
            _epoch(headers.get("x-rate-limit-reset")),
        )

    def fetch_since(self, user_id: str, since_id: str | None, max_pages: int = 10) -> FetchResult:
        """Everything newer than ``since_id``, newest first; an idle poll costs one request.

        With ``since_id=None`` (the first poll ever) only one page is read, so
        linking an account never floods the target with its history.
        """
        before = self._client.request_count
        result = FetchResult()
        pages = 1 if since_id is None else max(1, max_pages)
        params = self._timeline_params()
        params["max_results"] = PAGE_SIZE
        if since_id is not None:
            params["since_id"] = since_id
        try:
            for page in self._pages(user_id, pages, **params):
                result.pages.append(page)
                meta = page.get("meta", {})
                newest = _newest_read(page)
                if newest and (result.newest_id is None or post_id_key(newest) > post_id_key(result.newest_id)):
                    result.newest_id = newest
                oldest = meta.get("oldest_id")
                if is_post_id(oldest) and (result.oldest_id is None or post_id_key(oldest) < post_id_key(result.oldest_id)):
                    result.oldest_id = oldest
            last_meta = result.pages[-1].get("meta", {}) if result.pages else {}
            result.complete = since_id is None or not last_meta.get("next_token")
        finally:
            result.request_count = self._client.request_count - before
        result.rate_limit_remaining, result.rate_limit_reset = self._rate_info()
        return result

    def fetch_range(
        self,
        user_id: str,
        *,
        since_id: str | None = None,
        until_id: str | None = None,
        start_time: datetime | None = None,
        end_time: datetime | None = None,
        limit: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Pages for an API backfill, newest first, until X has no more (it stops at 3,200).

        ``limit`` stops after that many posts (whole pages are yielded).
        """
        params = self._timeline_params()
        params["max_results"] = PAGE_SIZE if limit is None else max(5, min(PAGE_SIZE, limit))
        for name, value in (("since_id", since_id), ("until_id", until_id),
                            ("start_time", start_time), ("end_time", end_time)):
            if value is not None:
                params[name] = value
        seen = 0
        for page in self._pages(user_id, float("inf"), **params):
            yield page
            seen += len(page.get("data") or [])
            if limit is not None and seen >= limit:
                return

    # ---------------------------------------------------------------- the Source interface

    def read_new(self, account: str, cursor: str | None) -> ReadResult:
        """Posts newer than ``cursor``, normalised one by one: a malformed post is reported
        as ``Unreadable`` and never blocks the others. At most X's 3,200-post reach."""
        fetch = self.fetch_since(account, cursor, max_pages=MAX_FETCH_PAGES)
        result = read_pages(fetch.pages)
        result.cursor, result.complete = fetch.newest_id, fetch.complete
        result.requests, result.oldest_id = fetch.request_count, fetch.oldest_id
        return result

    def read_range(
        self,
        account: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = None,
        around: str | None = None,
    ) -> Iterator[SourcePost]:
        """Posts created in [since, until), newest first, as far back as X serves (3,200);
        or just the post ``around`` names (one request)."""
        if around is not None:
            if not around.isdigit():
                return
            # since_id and until_id are exclusive: this window holds exactly the one post.
            pages = self.fetch_range(account, since_id=str(int(around) - 1), until_id=str(int(around) + 1), limit=5)
            for page in pages:
                yield from (p for p in normalise_page(page) if p.id == around)
            return
        for page in self.fetch_range(account, start_time=since, end_time=until, limit=limit):
            yield from normalise_page(page)

    def sort_key(self, post_id: str) -> int:
        return x_sort_key(post_id)

    def cursor_at(self, when: datetime) -> str:
        return snowflake_at(when)

    def permalink(self, handle: str | None, post_id: str) -> str:
        return x_permalink(handle, post_id)

    def neutral(self, post: SourcePost, account: str) -> Post:
        return neutral_post(post, account)

    def open_media(self, ref: str, dest: Path, max_bytes: int) -> tuple[Path, str | None]:
        """Download from X's media hosts only (size-capped), or take a file an archive gave."""
        if self.max_media_bytes is not None:
            max_bytes = min(max_bytes, self.max_media_bytes)
        if not is_remote(ref):
            return open_local_file(ref, max_bytes)
        with open(dest, "wb") as fh:
            mime = self.download_media(ref, fh, max_bytes)
        return dest, mime

    def newest_post_id(self, user_id: str) -> str | None:
        """The id of the account's newest post (one request), to start the cursor there."""
        for page in self._pages(user_id, 1, max_results=5):
            return _newest_read(page)
        return None

    def lookup_user(self, username: str) -> XUser:
        """Resolve a handle to X's stable user id."""
        handle = username.strip().removeprefix("@")
        if not USERNAME_RE.match(handle):
            raise PermanentError(
                f"X handle {username!r} is not valid: 1-15 letters, digits or underscores expected"
            )
        route = f"/2/users/by/username/{handle}"
        try:
            body = self._client.get_user(username=handle, user_fields=USER_FIELDS)
        except json.JSONDecodeError:
            raise TransientError(f"X API GET {route}: the answer is not valid JSON (cut off?)") from None
        except RecursionError:
            raise TransientError(f"X API GET {route}: {NESTED_TOO_DEEPLY}") from None
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, dict):
            errors = body.get("errors") if isinstance(body, dict) else None
            details = "; ".join(str(e.get("detail") or e.get("title")) for e in errors or [] if isinstance(e, dict))
            raise PermanentError(f"X account @{handle} cannot be used (GET {route}): {details or 'no data returned'}")
        try:
            return XUser(id=str(data["id"]), username=str(data["username"]), name=str(data.get("name", "")))
        except KeyError as exc:
            raise SourceError(f"X API GET {route}: data.{exc.args[0]} is missing") from None

    # ---------------------------------------------------------------- media

    def _host_allowed(self, url: str) -> None:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        netloc = parts.netloc.lower().rsplit("@", 1)[-1]
        if parts.scheme not in ("http", "https") or not (host in self.media_hosts or netloc in self.media_hosts):
            raise PermanentError(
                f"media URL {url} is not on an allowed media host ({netloc or 'no host'} not in "
                f"{', '.join(self.media_hosts) or 'an empty list'})"
            )

    def download_media(self, url: str, dest: BinaryIO, max_bytes: int) -> str:
        """Stream ``url`` into ``dest``; returns its content type.

        Only X's media hosts (``media_hosts``) are fetched, redirects included;
        larger than ``max_bytes`` is a PermanentError, read no further than
        that. ``dest`` holds partial data after an error.

        ``timeout`` bounds each read only; a server sending a byte now and then
        would keep the download (and its delivery thread) busy for good. So the
        whole download, redirects included, has ``media_deadline`` seconds: past
        it, MediaTooSlow. No read waits longer than what is left of the deadline
        when its request starts, so it ends at most that much late.
        """
        if self._http is None:
            self._http = httpx.Client(timeout=self.timeout, follow_redirects=False)
        deadline = time.monotonic() + self.media_deadline
        current = url
        for _ in range(MAX_REDIRECTS + 1):
            self._host_allowed(current)
            left = self._time_left(deadline, current)
            try:
                with self._http.stream("GET", current, timeout=min(self.timeout, left)) as response:
                    if response.is_redirect and response.headers.get("location"):
                        current = urljoin(current, response.headers["location"])
                        continue
                    self._check_media_status(response, current)
                    declared = response.headers.get("content-length")
                    if declared and declared.isdigit() and int(declared) > max_bytes:
                        raise PermanentError(
                            f"media {current} is {int(declared)} bytes, over the {max_bytes}-byte limit"
                        )
                    total = 0
                    for chunk in response.iter_bytes():
                        total += len(chunk)
                        if total > max_bytes:
                            raise PermanentError(f"media {current} is over the {max_bytes}-byte limit")
                        dest.write(chunk)
                        self._time_left(deadline, current)
                    content_type = response.headers.get("content-type", "application/octet-stream")
                    return content_type.split(";", 1)[0].strip() or "application/octet-stream"
            except httpx.TimeoutException:
                self._time_left(deadline, current)
                raise TransientError(f"media {current}: no answer within {self.timeout:g} s") from None
            except httpx.TransportError as exc:
                raise TransientError(f"media {current}: connection failed ({type(exc).__name__})") from None
        raise PermanentError(f"media {url}: more than {MAX_REDIRECTS} redirects")

    def _time_left(self, deadline: float, url: str) -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise MediaTooSlow(
                f"media {url}: not downloaded within {self.media_deadline:g} s (x.media_download_deadline);"
                " the server sends too slowly"
            )
        return left

    @staticmethod
    def _check_media_status(response: httpx.Response, url: str) -> None:
        status = response.status_code
        if status == 200:
            return
        if status == 429 or status >= 500:
            raise TransientError(f"media {url}: HTTP {status}, try again later")
        raise PermanentError(f"media {url}: HTTP {status}" + (" (gone)" if status in (404, 410) else ""))


def read_pages(pages: list[dict[str, Any]]) -> ReadResult:
    """X API v2 timeline pages as a ``ReadResult`` (entries only), post by post in page order: a post
    that fails to normalise is ``Unreadable`` with its reason and never blocks the ones after it."""
    result = ReadResult()
    for page in pages:
        index = Index.from_includes(page.get("includes"))
        for position, tweet in enumerate(page.get("data") or []):
            try:
                result.entries.append(normalise_tweet(tweet, index))
            except Exception as exc:  # noqa: BLE001 - any post X sends fails alone
                reason = f"unreadable X post: {exc}" if isinstance(exc, SourceError) else (
                    f"the bridge could not read this X post ({type(exc).__name__}: {exc})")
                if not isinstance(exc, SourceError):
                    log.exception("post_unreadable", position=position, error=str(exc))
                # A post is recorded failed under whatever id it carries (even one X would never
                # send, like "²"); only a post with no usable id at all is left out, logged.
                result.entries.append(Unreadable(_recordable_id(tweet) or "", _raw(tweet), reason))
    return result


def _recordable_id(tweet: object) -> str | None:
    """The id to record a failed post under: a short printable one, else None."""
    value = tweet.get("id") if isinstance(tweet, dict) else None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if isinstance(value, str) and 0 < len(value) <= 64 and value.isprintable() and not any(c.isspace() for c in value):
        return value
    return None


def _raw(tweet: object) -> dict[str, Any]:
    """A failed post as X sent it, kept as text: a value nested deeply enough fails to encode, never to store."""
    try:
        return {"raw_json": json.dumps(tweet, ensure_ascii=False)}
    except (RecursionError, ValueError, TypeError) as exc:
        return {"raw_json": None, "raw_error": f"not kept: {type(exc).__name__}"}


def x_source(config: Config) -> XApiSource:
    """The X client as the configuration says: base URL, timeout, allowed media hosts."""
    x = config.x
    return XApiSource(x.bearer_token, x.api_base_url, timeout=x.timeout, media_hosts=x.media_hosts,
                      max_media_bytes=x.max_media_bytes, media_deadline=x.media_download_deadline)
