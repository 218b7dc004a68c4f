"""A fake X API v2 server on 127.0.0.1, answering in X's own shapes.

Used by ``bridge demo`` as the built-in local stand-in and by the tests. It is
a real HTTP server (stdlib ``ThreadingHTTPServer`` in a daemon thread), so the
real client (``bridge.sources.x_api``) runs against it unchanged.

Shapes follow the recorded real exchanges in ``shared/fixtures/x-api/v2`` and
the X API v2 data dictionary (docs.x.com, "Data Dictionary"; developer.x.com,
"Example payloads", "Media object"). Behaviour it reproduces on purpose:

- ``GET /2/users/:id/tweets`` is newest first, pages with ``pagination_token``
  / ``meta.next_token``, reaches only the 3,200 most recent posts (800 with
  ``exclude=replies``), and answers an empty page as ``{"meta":
  {"result_count": 0}}`` with no ``data`` key (X docs, "User Tweet timeline").
- Only requested fields are returned; ``id``, ``text`` and
  ``edit_history_tweet_ids`` are the defaults. ``includes`` holds only what
  the ``expansions`` asked for.
- A missing, suspended or protected user is HTTP **200** with an ``errors``
  list, not 404 (X docs, "Response codes and errors").
- ``max_results`` outside 5..100 is a 400 with X's ``invalid-request`` body.
- Every API answer carries ``x-rate-limit-limit/remaining/reset`` (epoch s).
"""

from __future__ import annotations

import hashlib
import html
import json
import re
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

__all__ = [
    "DEFAULT_TOKEN",
    "FakeXServer",
    "RecordedRequest",
    "Fault",
    "make_tweet",
    "make_media",
    "make_poll",
    "x_time",
]

DEFAULT_TOKEN = "fake-x-bearer-token"
PROBLEMS = "https://api.twitter.com/2/problems"
TIMELINE_CAP = 3200  # X docs, "User Tweet timeline": the 3,200 most recent posts
TIMELINE_CAP_NO_REPLIES = 800  # ... or 800 with exclude=replies
RATE_WINDOW_SECONDS = 15 * 60  # X rate limits are per 15-minute window

TWEET_DEFAULT_FIELDS = ("id", "text", "edit_history_tweet_ids")
TWEET_FIELDS = frozenset(
    {
        "attachments", "author_id", "context_annotations", "conversation_id", "created_at",
        "edit_controls", "edit_history_tweet_ids", "entities", "geo", "id", "in_reply_to_user_id",
        "lang", "note_tweet", "possibly_sensitive", "public_metrics", "referenced_tweets",
        "reply_settings", "source", "text", "withheld",
    }
)
USER_DEFAULT_FIELDS = ("id", "name", "username")
USER_FIELDS = frozenset(
    {
        "created_at", "description", "entities", "id", "location", "name", "pinned_tweet_id",
        "profile_image_url", "protected", "public_metrics", "url", "username", "verified", "withheld",
    }
)
MEDIA_DEFAULT_FIELDS = ("media_key", "type")
MEDIA_FIELDS = frozenset(
    {
        "alt_text", "duration_ms", "height", "media_key", "preview_image_url", "public_metrics",
        "type", "url", "variants", "width",
    }
)
POLL_DEFAULT_FIELDS = ("id", "options")
POLL_FIELDS = frozenset({"duration_minutes", "end_datetime", "id", "options", "voting_status"})
TIMELINE_EXPANSIONS = frozenset(
    {
        "attachments.media_keys", "attachments.poll_ids", "author_id", "edit_history_tweet_ids",
        "entities.mentions.username", "geo.place_id", "in_reply_to_user_id", "referenced_tweets.id",
        "referenced_tweets.id.author_id",
    }
)
USERNAME_RE = re.compile(r"^[A-Za-z0-9_]{1,15}$")  # the pattern X's 400 quotes for /users/by/username
FAULT_KINDS = ("429", "500", "503", "slow", "malformed", "body")


def x_time(value: datetime | str) -> str:
    """X's timestamp format: ISO-8601 UTC with milliseconds, e.g. 2022-10-07T22:43:18.000Z."""
    if isinstance(value, str):
        return value
    if value.tzinfo is None:
        raise ValueError(f"created_at {value!r} must be timezone-aware")
    value = value.astimezone(timezone.utc)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def _parse_x_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _id_key(post_id: str) -> int:
    return int(post_id)


# --------------------------------------------------------------------------- builders


def _tco(seed: str) -> str:
    """A deterministic t.co link: X wraps every link in text as https://t.co/<10 chars>."""
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    number = int.from_bytes(hashlib.sha256(seed.encode()).digest()[:8], "big")
    chars = []
    for _ in range(10):
        number, rest = divmod(number, len(alphabet))
        chars.append(alphabet[rest])
    return "https://t.co/" + "".join(chars)


def _display_url(expanded: str) -> str:
    """X's display_url: no scheme, no www., cut with an ellipsis when long."""
    shown = re.sub(r"^https?://(www\.)?", "", expanded)
    return shown if len(shown) <= 25 else shown[:22] + "…"


def _fake_user_id(username: str) -> str:
    return str(int.from_bytes(hashlib.sha256(username.lower().encode()).digest()[:6], "big"))


def _media_kind(media_key: str) -> str:
    """Media keys start with a type number: 3_ photo, 7_ video, 16_ animated GIF."""
    prefix = media_key.split("_", 1)[0]
    return {"7": "video", "16": "video"}.get(prefix, "photo")


def _find_all(text: str, needle: str, *, word: bool) -> list[int]:
    positions: list[int] = []
    start = 0
    while True:
        at = text.find(needle, start)
        if at < 0:
            return positions
        end = at + len(needle)
        if not word or end == len(text) or not (text[end].isalnum() or text[end] == "_"):
            positions.append(at)
        start = end


def _entities(
    text: str,
    links: Sequence[tuple[str, str]],
    mentions: Sequence[tuple[str, str]],
    hashtags: Sequence[str],
    cashtags: Sequence[str],
    media_link: tuple[str, Sequence[tuple[str, str]]] | None,
    *,
    strict: bool,
) -> dict[str, list[dict[str, Any]]]:
    """Entities of ``text`` (unescaped, t.co links in place).

    ``start``/``end`` are code-point offsets into the unescaped text; the
    model keeps them only as hints (bridge/model.py), matching is by string.
    """
    found: dict[str, list[dict[str, Any]]] = {}

    def missing(what: str) -> None:
        if strict:
            raise ValueError(f"make_tweet: {what} does not occur in text {text!r}")

    for tco, expanded in links:
        spots = _find_all(text, tco, word=False)
        if not spots:
            missing(f"link {expanded!r}")
        for at in spots:
            found.setdefault("urls", []).append(
                {"start": at, "end": at + len(tco), "url": tco, "expanded_url": expanded,
                 "display_url": _display_url(expanded)}
            )
    if media_link is not None:
        tco, items = media_link
        spots = _find_all(text, tco, word=False)
        for at in spots[-1:]:
            for media_key, expanded in items:
                found.setdefault("urls", []).append(
                    {"start": at, "end": at + len(tco), "url": tco, "expanded_url": expanded,
                     "display_url": "pic.x.com/" + tco.rsplit("/", 1)[1], "media_key": media_key}
                )
    for username, user_id in mentions:
        spots = _find_all(text, "@" + username, word=True)
        if not spots:
            missing(f"mention @{username}")
        for at in spots:
            found.setdefault("mentions", []).append(
                {"start": at, "end": at + 1 + len(username), "username": username, "id": user_id}
            )
    for kind, sign, tags in (("hashtags", "#", hashtags), ("cashtags", "$", cashtags)):
        for tag in tags:
            spots = _find_all(text, sign + tag, word=True)
            if not spots:
                missing(f"{sign}{tag}")
            for at in spots:
                found.setdefault(kind, []).append({"start": at, "end": at + 1 + len(tag), "tag": tag})
    for entities in found.values():
        entities.sort(key=lambda item: item["start"])
    return found


def make_tweet(
    id: str,
    author_id: str,
    text: str,
    *,
    created_at: datetime | str,
    media_keys: Sequence[str] = (),
    urls: Sequence[str] = (),
    mentions: Sequence[str | tuple[str, str]] = (),
    hashtags: Sequence[str] = (),
    cashtags: Sequence[str] = (),
    in_reply_to: str | None = None,
    replied_user_id: str | None = None,
    quoted: str | None = None,
    retweeted: str | None = None,
    note_tweet: str | None = None,
    lang: str = "en",
    possibly_sensitive: bool = False,
    edit_history: Sequence[str] | None = None,
    poll: str | None = None,
    conversation_id: str | None = None,
    author_username: str = "i",
) -> dict[str, Any]:
    """A v2 post exactly as X sends it, built from what the author typed.

    ``text`` is the plain text the author wrote: each of ``urls`` must occur in
    it literally and is replaced by a t.co link; ``@mention``/``#tag`` must
    occur as written. Attached media add one trailing t.co link (one url
    entity per media key, with ``media_key``). The result is HTML-escaped
    (``&`` ``<`` ``>``, as X does). ``note_tweet`` is the full text of a long
    post; ``text`` is then X's cut version (pass "" to cut it here). ``mentions``
    items are a username or ``(username, user_id)``. ``poll`` is a poll id
    (build the poll with ``make_poll``).
    """
    post_id = str(id)
    links = [(_tco(f"{post_id}:{url}"), url) for url in urls]
    mention_pairs = [(m, _fake_user_id(m)) if isinstance(m, str) else (m[0], str(m[1])) for m in mentions]

    def wrap(plain: str) -> str:
        for tco, expanded in links:
            plain = plain.replace(expanded, tco)
        return plain

    media_link = None
    media_suffix = ""
    if media_keys:
        tco = _tco(f"{post_id}:media")
        counters: dict[str, int] = {}
        items = []
        for key in media_keys:
            kind = _media_kind(key)
            counters[kind] = counters.get(kind, 0) + 1
            items.append((key, f"https://x.com/{author_username}/status/{post_id}/{kind}/{counters[kind]}"))
        media_link = (tco, items)
        media_suffix = tco

    if note_tweet is not None and not text:
        text = note_tweet[:270].rstrip() + "…"
    body = wrap(text)
    if media_suffix:
        body = f"{body} {media_suffix}" if body else media_suffix

    tweet: dict[str, Any] = {
        "id": post_id,
        "text": html.escape(body, quote=False),
        "edit_history_tweet_ids": list(edit_history) if edit_history else [post_id],
        "author_id": str(author_id),
        "created_at": x_time(created_at),
        "conversation_id": str(conversation_id or in_reply_to or post_id),
        "lang": lang,
        "possibly_sensitive": possibly_sensitive,
    }
    entities = _entities(
        body, links, mention_pairs, hashtags, cashtags, media_link, strict=note_tweet is None
    )
    if entities:
        tweet["entities"] = entities
    attachments: dict[str, list[str]] = {}
    if media_keys:
        attachments["media_keys"] = list(media_keys)
    if poll:
        attachments["poll_ids"] = [str(poll)]
    if attachments:
        tweet["attachments"] = attachments
    referenced = []
    if in_reply_to:
        referenced.append({"type": "replied_to", "id": str(in_reply_to)})
    if quoted:
        referenced.append({"type": "quoted", "id": str(quoted)})
    if retweeted:
        referenced.append({"type": "retweeted", "id": str(retweeted)})
    if referenced:
        tweet["referenced_tweets"] = referenced
    if in_reply_to:
        tweet["in_reply_to_user_id"] = str(replied_user_id or author_id)
    if note_tweet is not None:
        full = wrap(note_tweet)
        note: dict[str, Any] = {"text": html.escape(full, quote=False)}
        note_entities = _entities(full, links, mention_pairs, hashtags, cashtags, None, strict=True)
        if note_entities:
            note["entities"] = note_entities
        tweet["note_tweet"] = note
    created = _parse_x_time(tweet["created_at"])
    edits_done = len(tweet["edit_history_tweet_ids"]) - 1
    # X: a post can be edited 5 times within 1 hour (edit_controls, data dictionary).
    tweet["edit_controls"] = {
        "edits_remaining": max(0, 5 - edits_done),
        "is_edit_eligible": not (retweeted or poll),
        "editable_until": x_time(created + timedelta(hours=1)),
    }
    return tweet


def make_media(
    media_key: str,
    type: str,
    *,
    base_url: str,
    name: str | None = None,
    width: int = 1200,
    height: int = 675,
    alt_text: str | None = None,
    duration_ms: int = 4000,
    variants: Sequence[Mapping[str, Any]] | None = None,
    preview_name: str | None = None,
) -> dict[str, Any]:
    """A v2 media object (X data dictionary, "Media object") whose URLs point at the fake.

    ``name`` is the file name under ``{base_url}/media/``; serve its bytes with
    ``FakeXServer.put_media``. Photos get ``url``; videos and GIFs get
    ``preview_image_url`` and ``variants`` (mp4 with ``bit_rate``, plus an HLS
    playlist without one for video, as X sends them).
    """
    if type not in ("photo", "video", "animated_gif"):
        raise ValueError(f"make_media: type {type!r} is not photo, video or animated_gif")
    base = base_url.rstrip("/") + "/media/"
    media: dict[str, Any] = {"media_key": media_key, "type": type, "width": width, "height": height}
    if type == "photo":
        media["url"] = base + (name or f"{media_key}.jpg")
    else:
        media["preview_image_url"] = base + (preview_name or f"{media_key}-preview.jpg")
        if variants is None:
            mp4 = base + (name or f"{media_key}.mp4")
            if type == "animated_gif":
                variants = [{"bit_rate": 0, "content_type": "video/mp4", "url": mp4}]
            else:
                variants = [
                    {"bit_rate": 2176000, "content_type": "video/mp4", "url": mp4},
                    {"content_type": "application/x-mpegURL", "url": base + f"{media_key}.m3u8"},
                ]
        media["variants"] = [dict(v) for v in variants]
        if type == "video":
            media["duration_ms"] = duration_ms
    if alt_text is not None:
        media["alt_text"] = alt_text
    return media


def make_poll(
    id: str,
    options: Sequence[str],
    *,
    duration_minutes: int = 1440,
    end_datetime: datetime | str | None = None,
    voting_status: str = "open",
) -> dict[str, Any]:
    """A v2 poll object (X data dictionary, "Poll object")."""
    end = end_datetime or (datetime.now(timezone.utc) + timedelta(minutes=duration_minutes))
    return {
        "id": str(id),
        "options": [{"position": n, "label": label, "votes": 0} for n, label in enumerate(options, 1)],
        "duration_minutes": duration_minutes,
        "end_datetime": x_time(end),
        "voting_status": voting_status,
    }


# --------------------------------------------------------------------------- server state


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    status: int = 0
    client_port: int = 0  # one per TCP connection: shows whether a client keeps its connection alive


@dataclass
class Fault:
    """An injected failure for the next ``count`` requests whose path starts with ``prefix``."""

    prefix: str | None
    kind: str
    count: int
    delay: float = 0.0
    reset_at: int | None = None
    body: bytes = b""  # kind "body": the exact 200 answer (hostile or malformed pages)


@dataclass
class _User:
    id: str
    username: str
    name: str
    protected: bool = False
    suspended: bool = False


@dataclass
class _Reply:
    status: int
    body: bytes
    content_type: str = "application/json; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


def _problem(title: str, status: int, detail: str | None = None) -> dict[str, Any]:
    return {"title": title, "detail": detail or title, "type": "about:blank", "status": status}


def _invalid_request(parameter: str, value: str, message: str) -> dict[str, Any]:
    """X's 400 body, e.g. "The `max_results` query parameter value [4] is not between 5 and 100"."""
    return {
        "errors": [{"parameters": {parameter: [value]}, "message": message}],
        "title": "Invalid Request",
        "detail": "One or more parameters to your request was invalid.",
        "type": f"{PROBLEMS}/invalid-request",
    }


def _user_error(user: _User | None, value: str, parameter: str) -> dict[str, Any] | None:
    """X's in-band error for a user that cannot be read (HTTP 200, ``errors`` list)."""
    label = "id" if parameter == "id" else "username"
    base = {"value": value, "resource_type": "user", "parameter": parameter, "resource_id": value}
    if user is None:
        return {**base, "detail": f"Could not find user with {label}: [{value}].",
                "title": "Not Found Error", "type": f"{PROBLEMS}/resource-not-found"}
    if user.suspended:
        return {**base, "detail": f"User has been suspended: [{value}].",
                "title": "Forbidden", "type": f"{PROBLEMS}/resource-not-found"}
    if user.protected and parameter == "id":
        return {**base, "detail": f"Sorry, you are not authorized to see the user with id: [{value}].",
                "title": "Authorization Error", "type": f"{PROBLEMS}/not-authorized-for-resource"}
    return None


class _HTTPServer(ThreadingHTTPServer):
    request_queue_size = 128  # socketserver's 5 drops connections when 16 workers poll at once
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, fake: FakeXServer) -> None:
        self.fake = fake
        super().__init__(("127.0.0.1", 0), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients hanging up (their timeout, a stopped server) are expected; report the rest."""
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real API; every answer has Content-Length
    timeout = 10  # idle keep-alive connections are dropped, so stopped servers do not pin threads
    # Headers and body go out in two writes; with Nagle on, a kept-alive connection waits
    # for the client's delayed ACK (40 ms on Linux) before the body. Real servers set TCP_NODELAY.
    disable_nagle_algorithm = True
    server: _HTTPServer

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        self.server.fake._handle(self)

    def do_POST(self) -> None:  # noqa: N802
        self.server.fake._handle(self)

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read .requests instead
        return


class FakeXServer:
    """The X API v2 endpoints the bridge reads, plus the media hosts, on one port.

    State is set through plain methods (``add_user``, ``add_tweet``,
    ``put_media``); failures through ``inject``. Everything is thread-safe.
    """

    def __init__(
        self,
        token: str = DEFAULT_TOKEN,
        *,
        latency: float = 0.0,
        rate_limit: int = 10000,
    ) -> None:
        self.token = token
        self.latency = latency  # seconds added to every request (benchmarks)
        self.rate_limit = rate_limit  # X 2026: 10,000 requests / 15 min per app on the timeline
        self.requests: list[RecordedRequest] = []
        self.posts_served = 0  # sum of result_count over timeline pages served
        self.served_post_ids: list[str] = []
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._users: dict[str, _User] = {}
        self._by_name: dict[str, str] = {}
        self._timeline: dict[str, dict[str, dict[str, Any]]] = {}  # author id -> post id -> post
        self._tweets: dict[str, dict[str, Any]] = {}  # every known post, for includes.tweets
        self._media: dict[str, dict[str, Any]] = {}
        self._polls: dict[str, dict[str, Any]] = {}
        self._files: dict[str, tuple[bytes, str]] = {}
        self._faults: list[Fault] = []
        self._windows: dict[str, tuple[int, int]] = {}  # endpoint -> (window reset epoch, used)
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> FakeXServer:
        if self._httpd is not None:
            return self
        self._stopping.clear()
        self._httpd = _HTTPServer(self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-x", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; wakes any request sleeping in a ``slow`` fault or ``latency``."""
        self._stopping.set()
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeXServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("FakeXServer is not started")
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def media_host(self) -> str:
        """The host[:port] media URLs point at, for ``XApiSource(media_hosts=...)``."""
        return f"127.0.0.1:{self.port}"

    def media_url(self, name: str) -> str:
        return f"{self.base_url}/media/{name}"

    # ---------------------------------------------------------------- state

    def add_user(
        self, id: str, username: str, name: str = "", *, protected: bool = False, suspended: bool = False
    ) -> None:
        with self._lock:
            user = _User(str(id), username, name or username, protected, suspended)
            self._users[user.id] = user
            self._by_name[username.lower()] = user.id
            self._timeline.setdefault(user.id, {})

    def set_user(self, id: str, *, protected: bool | None = None, suspended: bool | None = None) -> None:
        with self._lock:
            user = self._users[str(id)]
            if protected is not None:
                user.protected = protected
            if suspended is not None:
                user.suspended = suspended

    def add_tweet(
        self,
        tweet: Mapping[str, Any],
        media: Iterable[Mapping[str, Any]] = (),
        referenced: Iterable[Mapping[str, Any]] = (),
        polls: Iterable[Mapping[str, Any]] = (),
    ) -> None:
        """Publish ``tweet`` on its author's timeline.

        ``referenced`` posts (quoted, retweeted, replied-to) become available to
        ``includes.tweets`` without entering anyone's timeline.
        """
        with self._lock:
            post = json.loads(json.dumps(tweet))
            self._tweets[post["id"]] = post
            self._timeline.setdefault(post["author_id"], {})[post["id"]] = post
            for item in referenced:
                self._tweets.setdefault(item["id"], json.loads(json.dumps(item)))
            for item in media:
                self._media[item["media_key"]] = dict(item)
            for item in polls:
                self._polls[item["id"]] = dict(item)

    def add_media(self, media: Mapping[str, Any]) -> None:
        with self._lock:
            self._media[media["media_key"]] = dict(media)

    def remove_tweet(self, post_id: str) -> None:
        """Delete a post (it leaves the timeline and includes)."""
        with self._lock:
            post = self._tweets.pop(str(post_id), None)
            if post is not None:
                self._timeline.get(post.get("author_id", ""), {}).pop(str(post_id), None)

    def put_media(self, name: str, data: bytes, content_type: str = "image/jpeg") -> str:
        """Serve ``data`` at ``/media/<name>``; returns its URL."""
        with self._lock:
            self._files[name] = (bytes(data), content_type)
        return self.media_url(name) if self._httpd is not None else f"/media/{name}"

    # ---------------------------------------------------------------- faults and counters

    def inject(
        self,
        path_prefix: str | None,
        kind: str,
        count: int = 1,
        *,
        delay: float = 5.0,
        reset_at: int | datetime | None = None,
        body: bytes | str = b"",
    ) -> None:
        """Fail the next ``count`` requests whose path starts with ``path_prefix`` (None: any).

        kinds: "429" (remaining 0, ``reset_at`` epoch seconds or datetime,
        default now + 15 min), "500", "503", "slow" (wait ``delay`` seconds,
        then answer normally; stop() interrupts), "malformed" (200 with a
        truncated JSON body), "body" (200 with exactly ``body``: a page no
        builder makes, e.g. nested too deeply to encode).
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"inject: kind {kind!r} is not one of {FAULT_KINDS}")
        if isinstance(reset_at, datetime):
            reset_at = int(reset_at.timestamp())
        with self._lock:
            raw = body.encode("utf-8") if isinstance(body, str) else bytes(body)
            self._faults.append(Fault(path_prefix, kind, count, delay, reset_at, raw))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def faults_pending(self) -> int:
        """Injected failures not yet fired (a taken ``slow`` fault is no longer pending)."""
        with self._lock:
            return sum(fault.count for fault in self._faults)

    def count(self, path_prefix: str | None = None) -> int:
        """How many requests reached the server (optionally only under ``path_prefix``)."""
        with self._lock:
            return sum(1 for r in self.requests if path_prefix is None or r.path.startswith(path_prefix))

    def reset_counts(self) -> None:
        with self._lock:
            self.requests.clear()
            self.posts_served = 0
            self.served_post_ids.clear()

    # ---------------------------------------------------------------- request handling

    def _take_fault(self, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.prefix is None or path.startswith(fault.prefix):
                    fault.count -= 1
                    if fault.count <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def _rate_headers(self, endpoint: str, *, exhausted_until: int | None = None) -> tuple[dict[str, str], bool]:
        """Count one call against ``endpoint``'s 15-minute window; True when over the limit."""
        now = int(time.time())
        with self._lock:
            reset, used = self._windows.get(endpoint, (now + RATE_WINDOW_SECONDS, 0))
            if now >= reset:
                reset, used = now + RATE_WINDOW_SECONDS, 0
            used += 1
            self._windows[endpoint] = (reset, used)
        remaining = max(0, self.rate_limit - used)
        over = used > self.rate_limit
        if exhausted_until is not None:
            remaining, reset = 0, exhausted_until
        headers = {
            "x-rate-limit-limit": str(self.rate_limit),
            "x-rate-limit-remaining": str(remaining),
            "x-rate-limit-reset": str(reset),
        }
        return headers, over

    def _handle(self, handler: _Handler) -> None:
        parts = urlsplit(handler.path)
        path = parts.path
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        length = int(handler.headers.get("Content-Length") or 0)
        if length:
            handler.rfile.read(length)
        reply = self._answer(handler.command, path, query, handler.headers.get("Authorization"))
        with self._lock:
            self.requests.append(RecordedRequest(handler.command, path, query, reply.status if reply else 0,
                                                 handler.client_address[1]))
        if reply is None:  # stopped while waiting
            handler.close_connection = True
            return
        try:
            handler.send_response(reply.status)
            handler.send_header("content-type", reply.content_type)
            handler.send_header("Content-Length", str(len(reply.body)))
            for name, value in reply.headers.items():
                handler.send_header(name, value)
            handler.end_headers()
            handler.wfile.write(reply.body)
            handler.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (its timeout)
            handler.close_connection = True

    def _answer(self, method: str, path: str, query: dict[str, str], auth: str | None) -> _Reply | None:
        if self._stopping.is_set():  # a kept-alive connection outlived stop(): the server is down
            return None
        if self.latency and self._stopping.wait(self.latency):
            return None
        fault = self._take_fault(path)
        if fault is not None and fault.kind == "slow":
            if self._stopping.wait(fault.delay):
                return None
            fault = None
        is_media = path.startswith("/media/")
        endpoint = self._endpoint(path)
        if fault is not None and fault.kind in ("500", "503"):
            status = int(fault.kind)
            title = "Internal Server Error" if status == 500 else "Service Unavailable"
            headers = {} if is_media else self._rate_headers(endpoint)[0]
            return _Reply(status, json.dumps(_problem(title, status)).encode(), headers=headers)
        if fault is not None and fault.kind == "429":
            reset = fault.reset_at if fault.reset_at is not None else int(time.time()) + RATE_WINDOW_SECONDS
            headers = self._rate_headers(endpoint, exhausted_until=reset)[0]
            return _Reply(429, json.dumps(_problem("Too Many Requests", 429)).encode(), headers=headers)
        if fault is not None and fault.kind == "body":
            return _Reply(200, fault.body, headers={} if is_media else self._rate_headers(endpoint)[0])

        if is_media:
            reply = self._serve_media(method, path)
        else:
            reply = self._serve_api(method, path, query, auth, endpoint)
        if fault is not None and fault.kind == "malformed":
            reply = _Reply(200, reply.body[: max(1, len(reply.body) // 2)], reply.content_type, reply.headers)
        return reply

    @staticmethod
    def _endpoint(path: str) -> str:
        if re.fullmatch(r"/2/users/[^/]+/tweets", path):
            return "/2/users/:id/tweets"
        if path.startswith("/2/users/by/username/"):
            return "/2/users/by/username/:username"
        return path

    def _serve_media(self, method: str, path: str) -> _Reply:
        name = path[len("/media/"):]
        with self._lock:
            found = self._files.get(name)
        if found is None or method != "GET":
            return _Reply(404, b"Not Found", "text/plain")
        data, content_type = found
        return _Reply(200, data, content_type)

    def _serve_api(
        self, method: str, path: str, query: dict[str, str], auth: str | None, endpoint: str
    ) -> _Reply:
        if auth != f"Bearer {self.token}":
            # X v2 answers a missing or refused bearer token with this problem body.
            return _Reply(401, json.dumps(_problem("Unauthorized", 401)).encode())
        headers, over = self._rate_headers(endpoint)
        if over:
            return _Reply(429, json.dumps(_problem("Too Many Requests", 429)).encode(), headers=headers)
        match = re.fullmatch(r"/2/users/([^/]+)/tweets", path)
        if method == "GET" and match:
            status, body = self._users_tweets(match.group(1), query)
        elif method == "GET" and path.startswith("/2/users/by/username/"):
            status, body = self._user_by_username(path.rsplit("/", 1)[1], query)
        else:
            status, body = 404, _problem("Not Found Error", 404, f"No route for {method} {path}")
        return _Reply(status, json.dumps(body, ensure_ascii=False).encode(), headers=headers)

    # ---------------------------------------------------------------- endpoints

    @staticmethod
    def _fields(query: dict[str, str], name: str, allowed: frozenset[str]) -> tuple[list[str] | None, dict | None]:
        raw = query.get(name)
        if not raw:
            return [], None
        values = raw.split(",")
        for value in values:
            if value not in allowed:
                message = (f"The `{name}` query parameter value [{value}] is not one of "
                           f"[{','.join(sorted(allowed))}]")
                return None, _invalid_request(name, value, message)
        return values, None

    @staticmethod
    def _project(obj: Mapping[str, Any], defaults: Sequence[str], requested: Sequence[str]) -> dict[str, Any]:
        keep = list(defaults) + [f for f in requested if f not in defaults]
        return {key: obj[key] for key in keep if key in obj}

    def _user_json(self, user: _User, requested: Sequence[str]) -> dict[str, Any]:
        full = {"id": user.id, "name": user.name, "username": user.username, "protected": user.protected}
        return self._project(full, USER_DEFAULT_FIELDS, requested)

    def _user_by_username(self, username: str, query: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if not USERNAME_RE.match(username):
            return 400, _invalid_request(
                "username", username,
                f"The `username` query parameter value [{username}] does not match ^[A-Za-z0-9_]{{1,15}}$",
            )
        user_fields, error = self._fields(query, "user.fields", USER_FIELDS)
        if error:
            return 400, error
        with self._lock:
            user_id = self._by_name.get(username.lower())
            user = self._users.get(user_id) if user_id else None
            problem = _user_error(user, username, "username")
            if problem is not None:
                return 200, {"errors": [problem]}
            assert user is not None
            return 200, {"data": self._user_json(user, user_fields or [])}

    def _users_tweets(self, user_id: str, query: dict[str, str]) -> tuple[int, dict[str, Any]]:
        raw_max = query.get("max_results", "10")
        if not raw_max.isdigit() or not 5 <= int(raw_max) <= 100:
            return 400, _invalid_request(
                "max_results", raw_max,
                f"The `max_results` query parameter value [{raw_max}] is not between 5 and 100",
            )
        max_results = int(raw_max)
        for name in ("since_id", "until_id"):
            value = query.get(name)
            if value is not None and not value.isdigit():
                return 400, _invalid_request(
                    name, value, f"The `{name}` query parameter value [{value}] is not a valid Tweet ID"
                )
        exclude = [e for e in query.get("exclude", "").split(",") if e]
        for value in exclude:
            if value not in ("replies", "retweets"):
                return 400, _invalid_request(
                    "exclude", value, f"The `exclude` query parameter value [{value}] is not one of [replies,retweets]"
                )
        times: dict[str, datetime] = {}
        for name in ("start_time", "end_time"):
            if query.get(name):
                try:
                    times[name] = _parse_x_time(query[name])
                except ValueError:
                    return 400, _invalid_request(
                        name, query[name], f"Invalid '{name}':'{query[name]}'. '{name}' must be a valid RFC 3339 date"
                    )
        tweet_fields, error = self._fields(query, "tweet.fields", TWEET_FIELDS)
        if error:
            return 400, error
        user_fields, error = self._fields(query, "user.fields", USER_FIELDS)
        if error:
            return 400, error
        media_fields, error = self._fields(query, "media.fields", MEDIA_FIELDS)
        if error:
            return 400, error
        poll_fields, error = self._fields(query, "poll.fields", POLL_FIELDS)
        if error:
            return 400, error
        expansions, error = self._fields(query, "expansions", TIMELINE_EXPANSIONS)
        if error:
            return 400, error
        assert tweet_fields is not None and user_fields is not None and media_fields is not None
        assert poll_fields is not None and expansions is not None

        with self._lock:
            problem = _user_error(self._users.get(user_id), user_id, "id")
            if problem is not None:
                return 200, {"errors": [problem]}
            posts = sorted(self._timeline.get(user_id, {}).values(), key=lambda p: _id_key(p["id"]), reverse=True)
            posts = posts[:TIMELINE_CAP]
            if "retweets" in exclude:
                posts = [p for p in posts if not _ref_id(p, "retweeted")]
            if "replies" in exclude:
                posts = [p for p in posts if not _ref_id(p, "replied_to")][:TIMELINE_CAP_NO_REPLIES]
            if "since_id" in query:
                posts = [p for p in posts if _id_key(p["id"]) > int(query["since_id"])]
            if "until_id" in query:
                posts = [p for p in posts if _id_key(p["id"]) < int(query["until_id"])]
            if "start_time" in times:
                posts = [p for p in posts if _parse_x_time(p["created_at"]) >= times["start_time"]]
            if "end_time" in times:
                posts = [p for p in posts if _parse_x_time(p["created_at"]) <= times["end_time"]]
            token = query.get("pagination_token")
            if token:
                after = _token_id(token)
                if after is None:
                    return 400, _invalid_request(
                        "pagination_token", token,
                        f"The `pagination_token` query parameter value [{token}] is not a valid token",
                    )
                posts = [p for p in posts if _id_key(p["id"]) < after]
            page = posts[:max_results]
            more = len(posts) > max_results
            if not page:
                self._served([])
                return 200, {"meta": {"result_count": 0}}
            body: dict[str, Any] = {
                "data": [self._project(p, TWEET_DEFAULT_FIELDS, tweet_fields) for p in page]
            }
            includes, errors = self._includes(page, expansions, tweet_fields, user_fields, media_fields, poll_fields)
            if includes:
                body["includes"] = includes
            if errors:
                body["errors"] = errors
            meta: dict[str, Any] = {
                "result_count": len(page),
                "newest_id": page[0]["id"],
                "oldest_id": page[-1]["id"],
            }
            if more:
                meta["next_token"] = _make_token(page[-1]["id"])
            if token:
                meta["previous_token"] = _make_token(page[0]["id"], previous=True)
            body["meta"] = meta
            self._served(page)
            return 200, body

    def _served(self, page: list[dict[str, Any]]) -> None:
        self.posts_served += len(page)
        self.served_post_ids.extend(p["id"] for p in page)

    def _includes(
        self,
        page: list[dict[str, Any]],
        expansions: Sequence[str],
        tweet_fields: Sequence[str],
        user_fields: Sequence[str],
        media_fields: Sequence[str],
        poll_fields: Sequence[str],
    ) -> tuple[dict[str, list[dict[str, Any]]], list[dict[str, Any]]]:
        """``includes`` for the expansions asked for, and in-band errors for what is gone."""
        includes: dict[str, list[dict[str, Any]]] = {}
        errors: list[dict[str, Any]] = []
        seen: dict[str, set[str]] = {}

        def add(kind: str, key: str, obj: dict[str, Any]) -> None:
            if key not in seen.setdefault(kind, set()):
                seen[kind].add(key)
                includes.setdefault(kind, []).append(obj)

        def not_found(kind: str, parameter: str, value: str) -> None:
            errors.append({
                "value": value, "detail": f"Could not find {kind} with {parameter}: [{value}].",
                "title": "Not Found Error", "resource_type": kind, "parameter": parameter,
                "resource_id": value, "type": f"{PROBLEMS}/resource-not-found",
            })

        def add_user(user_id: str | None, parameter: str) -> None:
            if not user_id:
                return
            user = self._users.get(user_id)
            if user is None or user.suspended:
                not_found("user", parameter, user_id)
            else:
                add("users", user_id, self._user_json(user, user_fields))

        referenced: list[dict[str, Any]] = []
        if "referenced_tweets.id" in expansions:
            for post in page:
                for ref in post.get("referenced_tweets", []):
                    found = self._tweets.get(ref["id"])
                    if found is None:
                        not_found("tweet", "referenced_tweets.id", ref["id"])
                        continue
                    add("tweets", found["id"], self._project(found, TWEET_DEFAULT_FIELDS, tweet_fields))
                    referenced.append(found)
        if "edit_history_tweet_ids" in expansions:
            for post in page:
                for old_id in post.get("edit_history_tweet_ids", []):
                    if old_id != post["id"] and old_id in self._tweets:
                        add("tweets", old_id, self._project(self._tweets[old_id], TWEET_DEFAULT_FIELDS, tweet_fields))
        if "author_id" in expansions:
            for post in page:
                add_user(post.get("author_id"), "author_id")
        if "in_reply_to_user_id" in expansions:
            for post in page:
                add_user(post.get("in_reply_to_user_id"), "in_reply_to_user_id")
        if "entities.mentions.username" in expansions:
            for post in page:
                for mention in post.get("entities", {}).get("mentions", []):
                    user_id = self._by_name.get(mention["username"].lower())
                    if user_id:
                        add_user(user_id, "entities.mentions.username")
        if "referenced_tweets.id.author_id" in expansions:
            for post in referenced:
                add_user(post.get("author_id"), "referenced_tweets.id.author_id")
        # Media and polls of included posts come along too (a retweet's media lives on the original).
        carriers = page + referenced
        if "attachments.media_keys" in expansions:
            for post in carriers:
                for key in post.get("attachments", {}).get("media_keys", []):
                    media = self._media.get(key)
                    if media is None:
                        not_found("media", "attachments.media_keys", key)
                    else:
                        add("media", key, self._project(media, MEDIA_DEFAULT_FIELDS, media_fields))
        if "attachments.poll_ids" in expansions:
            for post in carriers:
                for poll_id in post.get("attachments", {}).get("poll_ids", []):
                    poll = self._polls.get(poll_id)
                    if poll is None:
                        not_found("poll", "attachments.poll_ids", poll_id)
                    else:
                        add("polls", poll_id, self._project(poll, POLL_DEFAULT_FIELDS, poll_fields))
        return includes, errors


def _ref_id(post: Mapping[str, Any], kind: str) -> str | None:
    for ref in post.get("referenced_tweets", []):
        if ref.get("type") == kind:
            return ref.get("id")
    return None


def _make_token(post_id: str, *, previous: bool = False) -> str:
    """An opaque-looking pagination token (X's are lowercase base-36 strings)."""
    number = int(post_id)
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while number:
        number, rest = divmod(number, 36)
        out = digits[rest] + out
    return ("7140dibdnow9" if not previous else "77qp8") + (out or "0")


def _token_id(token: str) -> int | None:
    prefix = "7140dibdnow9"
    if not token.startswith(prefix):
        return None
    try:
        return int(token[len(prefix):], 36)
    except ValueError:
        return None
