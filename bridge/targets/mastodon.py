"""The Mastodon side: one thin adapter over Mastodon.py, with every error mapped in one place.

Why an adapter and not Mastodon.py directly:
- Mastodon.py raises its own exceptions; the pipeline decides by kind
  (``bridge.errors``), so ``map_mastodon_error`` is the single translation.
- Request economy: construction sends no request, the media upload is polled by
  us with a timeout (``media_post(synchronous=True)`` polls forever), and every
  HTTP request is counted in ``request_count``.
- A Mastodon.py client is not thread-safe: make one ``MastodonTarget`` per
  organisation or worker.

Tokens never appear in messages: every message passes through ``_redact``.
"""

from __future__ import annotations

import mimetypes
import os
import re
import time
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser
from typing import Any, TypeVar

import requests  # Mastodon.py's own HTTP stack: its session
from mastodon import (
    Mastodon,
    MastodonAPIError,
    MastodonError,
    MastodonIllegalArgumentError,
    MastodonIOError,
    MastodonNetworkError,
    MastodonRatelimitError,
    MastodonVersionError,
)

from bridge.convert.counting import status_length
from bridge.errors import AuthError, BridgeError, PermanentError, RateLimited, TransientError
from bridge.http import host_session
from bridge.model import Draft
from bridge.policy import InstanceLimits
from bridge.targets.base import Copy, Pace, Published, TargetCapabilities, UnsureOutcome
from bridge.targets.base import limits_from_dict as limits_from_dict  # re-exported: callers import it from here
from bridge.targets.base import limits_to_dict as limits_to_dict

T = TypeVar("T")

# Mastodon.py detects the server version lazily with two extra requests (GET
# /api/v1/instance and /api/v2/instance) the first time a method asks for it
# (media_post does). Declaring the version we need avoids those requests: the
# bridge needs /api/v2/instance and /api/v2/media, i.e. Mastodon 4.0 or newer.
# With version_check_mode="created" Mastodon.py only refuses endpoints created
# after this version; every endpoint used here exists since 4.0 or earlier.
ASSUMED_MASTODON_VERSION = "4.0.0"

# Quote posts (POST /api/v1/statuses quoted_status_id) exist from Mastodon API
# version 7 (Mastodon 4.5): Mastodon docs, "Implementing quote posts".
QUOTES_API_VERSION = 7

USER_AGENT = "geno-bridge (+https://geno.social)"

# Mastodon docs, "Rate limits": per account, 300 statuses per 3 hours and 30 media
# uploads per 30 minutes. The pipeline stays inside them instead of running into 429s.
STATUS_PACE = Pace(300, timedelta(hours=3))
MEDIA_PACE = Pace(30, timedelta(minutes=30))
# Mastodon docs, "Rate limits": DELETE /api/v1/statuses/:id, 30 per 30 minutes per account.
DELETE_PACE = Pace(30, timedelta(minutes=30))
# Mastodon docs, statuses: an Idempotency-Key is kept 1 hour per account.
IDEMPOTENCY_WINDOW = timedelta(hours=1)
# A 422 that names a limit suggests the instance changed its limits since we cached them.
LIMITS_422 = re.compile(r"422.*(too long|characters|too high|maximum|size|limit)", re.I | re.S)
CAPABILITIES = TargetCapabilities(edits=True, quotes=True, polls=True, boosts=True, deletes=True, max_parts=None)


@dataclass(frozen=True)
class Account:
    """The Mastodon account a token acts for (GET /api/v1/accounts/verify_credentials)."""

    id: str
    acct: str  # "name" for a local account, as Mastodon reports it
    url: str  # profile page
    username: str


@dataclass(frozen=True)
class PostedStatus(Copy):
    """A status as Mastodon answered: a ``Copy`` with its creation time."""

    created_at: datetime  # timezone-aware UTC


@dataclass(frozen=True)
class InstanceInfo:
    """What linking and the converter need from GET /api/v2/instance."""

    domain: str  # LOCAL_DOMAIN: the part after "@" in a full handle
    version: str
    api_version: int  # api_versions.mastodon, 0 when absent (Mastodon < 4.3)
    limits: InstanceLimits


class MediaProcessingTimeout(TransientError):
    """The server kept the upload "processing" past ``media_poll_timeout``.

    ``media_id`` is kept so a later attempt can resume with
    ``MastodonTarget.wait_for_media`` instead of uploading again.
    """

    def __init__(self, message: str, media_id: str) -> None:
        super().__init__(message)
        self.media_id = media_id


MALFORMED_ANSWER = "sent a malformed answer"  # in every MalformedAnswer message; a deferred post's reason keeps it


class MalformedAnswer(UnsureOutcome):
    """A 2xx answer that is not the entity asked for (a JSON list, an object without ``id``).

    The write may have happened all the same (a proxy mangled the answer, the
    server broke after committing), so the post is not finished and nothing is
    recorded: the next attempt looks among the account's statuses first.
    """


# -- instance limits ----------------------------------------------------------


def limits_from_instance(data: Mapping[str, Any]) -> InstanceLimits:
    """Build ``InstanceLimits`` from a GET /api/v2/instance body.

    Field names: Mastodon docs, "Instance" entity, ``configuration``. A missing
    field keeps the stock-Mastodon default of ``InstanceLimits`` (mastodon-mock,
    for one, sends no ``description_limit``).
    """
    defaults = InstanceLimits()
    config = _mapping(data.get("configuration"))
    statuses = _mapping(config.get("statuses"))
    media = _mapping(config.get("media_attachments"))
    polls = _mapping(config.get("polls"))
    api_version = _int(_mapping(data.get("api_versions")).get("mastodon"), 0)
    mime_types = media.get("supported_mime_types")
    return InstanceLimits(
        max_characters=_int(statuses.get("max_characters"), defaults.max_characters),
        max_media_attachments=_int(statuses.get("max_media_attachments"), defaults.max_media_attachments),
        characters_reserved_per_url=_int(statuses.get("characters_reserved_per_url"), defaults.characters_reserved_per_url),
        image_size_limit=_int(media.get("image_size_limit"), defaults.image_size_limit),
        video_size_limit=_int(media.get("video_size_limit"), defaults.video_size_limit),
        description_limit=_int(media.get("description_limit"), defaults.description_limit),
        poll_max_options=_int(polls.get("max_options"), defaults.poll_max_options),
        poll_max_characters_per_option=_int(polls.get("max_characters_per_option"), defaults.poll_max_characters_per_option),
        poll_min_expiration=_int(polls.get("min_expiration"), defaults.poll_min_expiration),
        poll_max_expiration=_int(polls.get("max_expiration"), defaults.poll_max_expiration),
        supports_quotes=api_version >= QUOTES_API_VERSION,
        supported_mime_types=tuple(str(m) for m in mime_types) if isinstance(mime_types, list) else (),
    )


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _int(value: Any, default: int) -> int:
    if isinstance(value, bool):
        return default
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return default


# -- error mapping ---------------------------------------------------------------


def parse_ratelimit_reset(value: str | None) -> datetime | None:
    """Parse ``X-RateLimit-Reset``: ISO-8601 on Mastodon (Mastodon docs, "Rate limits"),
    epoch seconds on some other servers (mastodon-mock, GoToSocial). None if unusable."""
    if not value:
        return None
    text = value.strip()
    try:
        return datetime.fromtimestamp(float(text), tz=timezone.utc)
    except (ValueError, OverflowError, OSError):
        pass
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


def _redact(message: str, secrets: Iterable[str | None]) -> str:
    for secret in secrets:
        if secret:
            message = message.replace(secret, "[redacted]")
    return message


def map_mastodon_error(
    exc: BaseException,
    *,
    instance: str,
    action: str,
    status: int | None = None,
    headers: Mapping[str, str] | None = None,
    not_found: str | None = None,
    secrets: Iterable[str | None] = (),
    now: datetime | None = None,
) -> BridgeError:
    """Translate a Mastodon.py exception into a ``bridge.errors`` class. The one place that does.

    ``status`` and ``headers`` are those of the last HTTP response (Mastodon.py's
    ``MastodonRatelimitError`` carries neither). ``action`` says what we were
    doing ("posting status for post 123"), ``not_found`` what a 404 means there.
    """
    headers = headers or {}
    secrets = list(secrets)
    api_status: int | None = None
    server_text = ""
    if isinstance(exc, MastodonAPIError) and len(exc.args) >= 4 and isinstance(exc.args[1], int):
        # Mastodon.py raises ('Mastodon API returned error', status, reason, error text)
        api_status = exc.args[1]
        server_text = str(exc.args[3] or exc.args[2] or "")
    code = api_status if api_status is not None else status

    def msg(text: str) -> str:
        return _redact(text, secrets)

    if isinstance(exc, MastodonRatelimitError) or code == 429:
        if code not in (None, 429):
            # Mastodon.py also raises this when it cannot parse a rate-limit header.
            return TransientError(msg(f"{instance}: unusable rate-limit headers while {action}: {exc}"))
        retry_at = parse_ratelimit_reset(headers.get("X-RateLimit-Reset"))
        if retry_at is None and (headers.get("Retry-After") or "").strip().isdigit():
            retry_at = (now or datetime.now(timezone.utc)) + timedelta(seconds=int(headers["Retry-After"]))
        if retry_at is None:
            return TransientError(msg(f"rate limited by {instance} while {action} (no reset time given)"))
        return RateLimited(msg(f"rate limited by {instance} while {action}; retry at {retry_at.isoformat()}"), retry_at)
    if isinstance(exc, MastodonNetworkError):
        return TransientError(msg(f"network error talking to {instance} while {action}: {exc}"))
    if isinstance(exc, MastodonAPIError):
        if code in (401, 403):
            return AuthError(msg(f"token refused by {instance} ({code} while {action}): the organisation needs relinking"))
        if code == 404:
            return PermanentError(msg(not_found or f"{instance}: not found (404) while {action}"))
        if code == 422:
            return PermanentError(msg(f"{instance} refused {action} (422): {server_text or 'validation failed'}"))
        if code is not None and (code >= 500 or code in (408, 425)):
            return TransientError(msg(f"{instance} answered {code} while {action}: {server_text or 'server error'}"))
        if code is None or code < 400:
            # A 2xx whose body is not JSON: a proxy page or a cut connection.
            return MalformedAnswer(msg(f"{instance} {MALFORMED_ANSWER} while {action}"))
        return PermanentError(msg(f"{instance} answered {code} while {action}: {server_text or 'request refused'}"))
    if isinstance(exc, (MastodonIllegalArgumentError, MastodonVersionError, MastodonIOError)):
        return PermanentError(msg(f"cannot do {action} on {instance}: {exc}"))
    return TransientError(msg(f"unexpected Mastodon.py error from {instance} while {action}: {exc}"))


# -- status text -------------------------------------------------------------------


class _TextExtractor(HTMLParser):
    """Status ``content`` HTML to plain text: paragraphs become blank lines, <br> newlines.

    A link keeps all its text, the ``invisible`` spans included: Mastodon shows
    ``https://`` and the part past 30 characters in hidden spans and adds the
    "…" with CSS (``TextFormatter.shortened_link``), so the spans together are the
    URL that was sent. A link whose text itself ends in "…" (a server that cuts
    the display) becomes its ``href``.
    """

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._links: list[tuple[str, int]] = []  # (href, index of its first part) of each open <a>

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "br":
            self.parts.append("\n")
        elif tag == "p" and self.parts:
            self.parts.append("\n\n")
        elif tag == "a":
            self._links.append((dict(attrs).get("href") or "", len(self.parts)))

    def handle_endtag(self, tag: str) -> None:
        if tag != "a" or not self._links:
            return
        href, start = self._links.pop()
        shown = "".join(self.parts[start:])
        stem = shown.rstrip()
        for ellipsis in ("…", "..."):
            stem = stem.removesuffix(ellipsis)
        if href and stem != shown.rstrip() and stem.strip() and stem.strip() in href:
            self.parts[start:] = [href]

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def html_to_text(content: str) -> str:
    parser = _TextExtractor()
    parser.feed(content or "")
    parser.close()
    return "".join(parser.parts).strip()


# "@user@domain" (a port allowed, as on a test server): Mastodon shows a known
# account's mention as "@user" (TextFormatter#link_to_mention; the recorded
# test_status_reply.json shows "@<span>mastodonpy_test_2</span>").
_MENTION_DOMAIN = re.compile(r"(?<![\w/=@])@([a-z0-9_]+(?:[.-]+[a-z0-9_]+)*)@[\w-]+(?:\.[\w-]+)*(?::\d+)?", re.IGNORECASE)
# Emphasis marks a server with Markdown formatting (glitch-soc, mastodon-mock) turns into tags.
_MARKUP = frozenset("*~`")


def comparable_text(text: str) -> str:
    """The form in which a text the bridge sent and the server's rendering of it are equal.

    For finding a toot again after a crash (``Pipeline._reconcile``). Mentions lose
    their domain, whitespace and line breaks go (paragraphs and ``<br>`` are
    whitespace either way), and so do invisible format characters (the bridge's
    WORD JOINER) and Markdown emphasis marks. Both sides go through it: pass
    ``html_to_text(content)`` for the server's side.
    """
    text = _MENTION_DOMAIN.sub(r"@\1", unicodedata.normalize("NFC", text))
    return "".join(c for c in text if not c.isspace() and c not in _MARKUP and unicodedata.category(c) != "Cf")


def matches_status(draft: Draft, status: Mapping[str, Any], boost_status_id: str | None, parent_id: str | None = None) -> bool:
    """Whether ``status`` (an item of ``own_statuses_since``) is the toot ``draft`` became.

    A boost must boost ``boost_status_id``; a thread part must also reply to its
    recorded parent part; a text compares in ``comparable_text`` form.
    """
    if draft.kind == "boost":
        return boost_status_id is not None and status.get("reblog_of_id") == boost_status_id
    if status.get("reblog_of_id"):
        return False
    if parent_id is not None and status.get("in_reply_to_id") != parent_id:
        return False
    wanted = comparable_text(draft.text)
    rendered = comparable_text(html_to_text(status.get("content") or ""))
    return rendered == wanted or comparable_text(status.get("text") or "") == wanted


def _utc(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
    if isinstance(value, str):
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return _utc(parsed)
    return datetime.now(timezone.utc)


def _entity(value: Any, instance: str, action: str) -> Mapping[str, Any]:
    """The answer as an entity with an ``id``, or ``MalformedAnswer``: never a status id ``None``."""
    if isinstance(value, Mapping):
        ident = value.get("id")
        if isinstance(ident, (str, int)) and not isinstance(ident, bool) and str(ident).strip():
            return value
        problem = "an object without an id"
    else:
        problem = "a JSON list" if isinstance(value, list) else "an empty body" if value is None else "not a JSON object"
    raise MalformedAnswer(f"{instance} {MALFORMED_ANSWER} while {action}: {problem}, not the expected entity")


def _id_key(status_id: str) -> tuple[int, str]:
    """Mastodon ids are numeric strings: order them as numbers."""
    return (len(status_id), status_id)


def _posted(status: Mapping[str, Any]) -> PostedStatus:
    url = status.get("url") or status.get("uri") or ""
    reblog = status.get("reblog")
    if not url and isinstance(reblog, Mapping):
        url = reblog.get("url") or reblog.get("uri") or ""
    return PostedStatus(id=str(status["id"]), url=str(url), created_at=_utc(status.get("created_at")))


# -- the adapter -------------------------------------------------------------------


class MastodonTarget:
    """One Mastodon account on one instance: the ``Target`` of ``bridge.targets.base``.

    Not thread-safe: one per organisation or worker.

    ``session``: a ``requests`` session for this instance to use and leave open,
    shared by the targets a worker makes one after another (keep-alive and TLS
    reuse across organisations on the same instance). Only one target may use a
    session at a time: the target counts requests with the session's hook.
    Without it the target has a session of its own, closed by ``close()``.
    """

    def __init__(
        self,
        instance_url: str,
        access_token: str,
        *,
        timeout: float = 30.0,
        media_poll_timeout: float = 120.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        session: requests.Session | None = None,
    ) -> None:
        self.instance_url = instance_url.rstrip("/")
        self.timeout = timeout
        self.media_poll_timeout = media_poll_timeout
        self._token = access_token
        self._clock = clock
        self._sleep = sleep
        self.request_count = 0  # every HTTP request sent, for request-economy checks
        self._last_status: int | None = None
        self._last_headers: Mapping[str, str] = {}
        self._owns_session = session is None
        self._session = session if session is not None else host_session(self.instance_url)
        self._session.hooks["response"] = [self._remember_response]
        # No request here: ratelimit "throw" (the pipeline defers on 429 itself),
        # and a declared version so Mastodon.py never probes the server.
        self._api = Mastodon(
            access_token=access_token,
            api_base_url=self.instance_url,
            ratelimit_method="throw",
            request_timeout=timeout,
            mastodon_version=ASSUMED_MASTODON_VERSION,
            version_check_mode="created",
            session=self._session,
            user_agent=USER_AGENT,
        )

    kind = "mastodon"
    capabilities = CAPABILITIES
    status_pace = STATUS_PACE
    media_pace = MEDIA_PACE
    idempotency_window = IDEMPOTENCY_WINDOW

    def __repr__(self) -> str:  # never show the token
        return f"MastodonTarget({self.instance_url!r})"

    def close(self) -> None:
        if self._owns_session:
            self._session.close()

    def _remember_response(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        self.request_count += 1
        self._last_status = response.status_code
        self._last_headers = response.headers

    def _call(self, action: str, fn: Callable[[], T], *, not_found: str | None = None, secret: str | None = None) -> T:
        """Run one Mastodon.py call; any failure leaves as a ``bridge.errors`` class."""
        self._last_status = None
        self._last_headers = {}
        try:
            return fn()
        except MastodonError as exc:
            raise map_mastodon_error(
                exc,
                instance=self.instance_url,
                action=action,
                status=self._last_status,
                headers=self._last_headers,
                not_found=not_found,
                secrets=(self._token, secret),
            ) from exc

    # -- reading ------------------------------------------------------------------
    def instance_info(self) -> InstanceInfo:
        """GET /api/v2/instance (1 request). Cache the result: it changes rarely."""
        data = self._call("reading the instance configuration", self._api.instance_v2)
        return InstanceInfo(
            domain=str(data.get("domain") or ""),
            version=str(data.get("version") or ""),
            api_version=_int(_mapping(data.get("api_versions")).get("mastodon"), 0),
            limits=limits_from_instance(data),
        )

    def instance_limits(self) -> InstanceLimits:
        return self.instance_info().limits

    def verify(self) -> Account:
        """GET /api/v1/accounts/verify_credentials (1 request). Linking only, never per cycle."""
        me = self._call("verifying the token", self._api.account_verify_credentials)
        return Account(id=str(me["id"]), acct=str(me["acct"]), url=str(me.get("url") or ""), username=str(me["username"]))

    def own_statuses_since(
        self,
        account_id: str,
        since_id: str | None,
        limit: int = 40,
        *,
        not_before: datetime | None = None,
        max_pages: int = 25,
        oldest_first: bool = False,
    ) -> list[dict[str, Any]]:
        """The account's statuses newer than ``since_id``, oldest first, following pagination.

        For crash reconciliation: a status whose Idempotency-Key has expired (1 h)
        is found here before anything is posted again. Each item has id, url,
        created_at (UTC datetime), text (plain), content (HTML), in_reply_to_id
        and reblog_of_id.

        By default pages run newest to oldest, so the bounds drop the oldest
        statuses first: ``not_before`` stops at statuses created before it,
        ``max_pages`` (40 statuses each) keeps an account with a long history
        from costing hundreds of requests when ``since_id`` is None. With
        ``oldest_first`` (and a ``since_id``) pages run upwards from ``since_id``
        (Mastodon's ``min_id``: "results immediately newer than this ID"), so the
        bound drops the newest instead: what was posted right after ``since_id``
        is always read, however much came later.
        """
        action = f"listing statuses of account {account_id}"
        upwards = oldest_first and since_id is not None
        out: list[dict[str, Any]] = []
        cursor: str | None = since_id if upwards else None

        def read_page() -> Any:
            if upwards:
                return self._api.account_statuses(account_id, min_id=cursor, limit=limit)
            return self._api.account_statuses(account_id, since_id=since_id, max_id=cursor, limit=limit)

        for _ in range(max(1, max_pages)):
            page = self._call(action, read_page, not_found=f"{self.instance_url}: account {account_id} not found (404)")
            if not isinstance(page, list):
                raise MalformedAnswer(f"{self.instance_url} {MALFORMED_ANSWER} while {action}: not a list")
            reached_old = False
            for item in page:
                status = _entity(item, self.instance_url, action)
                try:
                    created_at = _utc(status.get("created_at"))
                except ValueError as exc:
                    raise MalformedAnswer(f"{self.instance_url} {MALFORMED_ANSWER} while {action}: {exc}") from exc
                if not_before is not None and created_at < not_before:
                    reached_old = True
                    continue
                reblog = status.get("reblog")
                out.append(
                    {
                        "id": str(status["id"]),
                        "url": str(status.get("url") or status.get("uri") or ""),
                        "created_at": created_at,
                        "text": html_to_text(str(status.get("content") or "")),
                        "content": str(status.get("content") or ""),
                        "in_reply_to_id": str(status["in_reply_to_id"]) if status.get("in_reply_to_id") else None,
                        "reblog_of_id": str(reblog["id"]) if isinstance(reblog, Mapping) and reblog.get("id") else None,
                    }
                )
            if len(page) < limit or reached_old:
                break
            ids = sorted((str(st["id"]) for st in page), key=_id_key)
            cursor = ids[-1] if upwards else ids[0]
        out.sort(key=lambda st: _id_key(st["id"]))
        return out

    # -- media --------------------------------------------------------------------
    def upload_media(self, path: str, mime_type: str | None = None, description: str | None = None) -> str:
        """POST /api/v2/media, then poll GET /api/v1/media/:id while the server answers 202/206.

        1 request when the server processes at once (200, images usually).
        Raises ``MediaProcessingTimeout`` after ``media_poll_timeout`` seconds.
        """
        name = os.path.basename(path)
        mime = mime_type or mimetypes.guess_type(path)[0]
        if mime is None:
            raise PermanentError(f"cannot tell the media type of {path}; pass mime_type")
        if not os.path.splitext(name)[1]:
            name += mimetypes.guess_extension(mime) or ""
        try:
            handle = open(path, "rb")
        except OSError as exc:
            raise PermanentError(f"cannot read media file {path}: {exc.strerror or exc}") from exc
        action = f"uploading media {name}"
        with handle:
            media = _entity(
                self._call(
                    action,
                    lambda: self._api.media_post(handle, mime_type=mime, description=description, file_name=name),
                ),
                self.instance_url,
                action,
            )
        media_id = str(media["id"])
        if media.get("url"):
            return media_id
        return self.wait_for_media(media_id)

    def wait_for_media(self, media_id: str) -> str:
        """Poll GET /api/v1/media/:id (206 processing, 200 done) with backoff, bounded in time."""
        deadline = self._clock() + self.media_poll_timeout
        delay = 0.5
        while True:
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise MediaProcessingTimeout(
                    f"{self.instance_url}: media {media_id} still processing after {self.media_poll_timeout:g}s", media_id
                )
            self._sleep(min(delay, remaining))
            action = f"checking media {media_id}"
            media = _entity(
                self._call(
                    action,
                    lambda: self._api.media(media_id),
                    not_found=f"{self.instance_url}: media {media_id} is gone (404): upload it again",
                ),
                self.instance_url,
                action,
            )
            if media.get("url"):
                return media_id
            delay = min(delay * 2, 8.0)

    # -- writing ------------------------------------------------------------------
    def post_status(
        self,
        draft: Draft,
        *,
        idempotency_key: str,
        in_reply_to_id: str | None = None,
        media_ids: list[str] | None = None,
        quote_id: str | None = None,
    ) -> PostedStatus:
        """POST /api/v1/statuses (1 request).

        The Idempotency-Key makes a retry within 1 hour return the status already
        created instead of a second one (Mastodon docs, statuses: "Idempotency-Key",
        kept 1 hour per account). Replies use ``in_reply_to_id`` only: Mastodon.py's
        ``status_reply`` would prefix "@acct". ``quote_id`` is sent as
        ``quoted_status_id`` (Mastodon 4.5+, API version 7).
        """
        referenced = [f"status {i}" for i in (in_reply_to_id, quote_id) if i]
        gone = (
            f"parent gone: {' / '.join(referenced)} no longer exists on {self.instance_url} (post {draft.post_id} part {draft.part})"
            if referenced
            else None
        )
        body: dict[str, Any] = {"status": draft.text, "visibility": draft.visibility, "sensitive": draft.sensitive}
        optional = {"in_reply_to_id": in_reply_to_id, "media_ids": list(media_ids) if media_ids else None,
                    "spoiler_text": draft.spoiler_text or None, "language": draft.language, "quoted_status_id": quote_id,
                    "poll": {"options": list(draft.poll.options), "expires_in": draft.poll.expires_in} if draft.poll else None}
        body.update({k: v for k, v in optional.items() if v is not None})
        action = f"posting post {draft.post_id} part {draft.part}"
        status = self._post_json(action, "/api/v1/statuses", body, {"Idempotency-Key": idempotency_key}, not_found=gone)
        return _posted(_entity(status, self.instance_url, action))

    def _post_json(self, action: str, path: str, body: Mapping[str, Any], headers: Mapping[str, str], *,
                   not_found: str | None) -> Any:
        """POST a JSON body and return the parsed JSON answer as plain dicts and lists.

        Mastodon.py's ``status_post`` casts every answer into its typed ``Status``
        (a recursive walk with a date parse per field): 2.5-8 ms of CPU per status,
        more than the bridge's whole own work for it (bench/poll_scale.py, issue 18),
        for fields we never read. This sends the same request through the same
        session (so ``request_count`` and the last status and headers are kept) and
        raises Mastodon.py's own exceptions, run by ``_call`` as every other call is:
        one error mapping, as before.
        """
        return self._call(action, lambda: self._send_json(path, body, headers), not_found=not_found)

    def _send_json(self, path: str, body: Mapping[str, Any], headers: Mapping[str, str]) -> Any:
        """``_post_json``'s request; failures as Mastodon.py's exceptions."""
        try:
            # auth=no-op: requests must never replace the Bearer header with a .netrc login (as Mastodon.py does).
            response = self._session.post(
                self.instance_url + path, json=body, timeout=self.timeout, auth=lambda r: r,
                headers={"Authorization": f"Bearer {self._token}", "User-Agent": USER_AGENT, **headers},
            )
        except requests.RequestException as exc:
            raise MastodonNetworkError(f"Could not complete request: {exc}") from exc
        if response.status_code == 429:
            raise MastodonRatelimitError("Hit rate limit.")
        if not response.ok:
            try:
                answer = response.json()
            except ValueError:
                answer = None
            error = answer.get("error") if isinstance(answer, dict) else answer if isinstance(answer, str) else None
            raise MastodonAPIError("Mastodon API returned error", response.status_code, response.reason, error)
        try:
            return response.json()
        except ValueError as exc:
            raise MastodonAPIError(f"Could not parse response as JSON, response code was {response.status_code}",
                                   f"Exception was: {exc}") from exc

    def boost(self, status_id: str) -> PostedStatus:
        """POST /api/v1/statuses/:id/reblog (1 request). Mastodon returns the existing
        reblog when the status is already boosted, so a retry creates no duplicate."""
        action = f"boosting status {status_id}"
        status = self._call(
            action,
            lambda: self._api.status_reblog(status_id),
            not_found=f"parent gone: status {status_id} to boost no longer exists on {self.instance_url}",
        )
        return _posted(_entity(status, self.instance_url, action))

    def edit_status(self, status_id: str, draft: Draft, media_ids: list[str] | None = None) -> PostedStatus:
        """PUT /api/v1/statuses/:id (1 request). ``media_ids`` None keeps the current media."""
        poll = self._api.make_poll(list(draft.poll.options), draft.poll.expires_in) if draft.poll else None
        action = f"editing status {status_id} for post {draft.post_id} part {draft.part}"
        status = self._call(
            action,
            lambda: self._api.status_update(
                status_id,
                draft.text,
                spoiler_text=draft.spoiler_text,
                sensitive=draft.sensitive,
                media_ids=list(media_ids) if media_ids else None,
                poll=poll,
            ),
            not_found=f"status {status_id} to edit no longer exists on {self.instance_url} (post {draft.post_id})",
        )
        return _posted(_entity(status, self.instance_url, action))

    def delete(self, copy_id: str) -> None:
        """DELETE /api/v1/statuses/:id (1 request). A status already gone (404) counts as deleted."""
        try:
            self._call(f"deleting status {copy_id}", lambda: self._api.status_delete(copy_id))
        except PermanentError:
            if self._last_status == 404:
                return
            raise

    # -- the Target interface (bridge.targets.base) ----------------------------------
    def limits(self) -> InstanceLimits:
        return self.instance_limits()

    def length(self, text: str, spoiler_text: str = "") -> int:
        """Mastodon's count: a URL counts 23, a remote mention its local part (``status_length``)."""
        return status_length(text, spoiler_text)

    def mention(self, handle: str) -> str:
        """``user@instance`` written as Mastodon links it: ``@user@instance``."""
        return "@" + handle.lstrip("@")

    def is_limit_refusal(self, error: Exception) -> bool:
        return bool(LIMITS_422.search(str(error)))

    def publish(
        self,
        draft: Draft,
        *,
        idempotency_key: str,
        in_reply_to: str | None = None,
        media_ids: list[str] | None = None,
        quote_of: str | None = None,
    ) -> Copy:
        posted = self.post_status(
            draft, idempotency_key=idempotency_key, in_reply_to_id=in_reply_to, media_ids=media_ids, quote_id=quote_of
        )
        return Copy(posted.id, posted.url)

    def find_published(
        self,
        account_id: str,
        since_id: str | None,
        *,
        not_before: datetime | None = None,
        max_pages: int = 25,
        oldest_first: bool = False,
    ) -> list[Published]:
        return [
            Published(id=s["id"], url=s["url"], text=s["text"], boost_of=s["reblog_of_id"], in_reply_to=s["in_reply_to_id"])
            for s in self.own_statuses_since(
                account_id, since_id, not_before=not_before, max_pages=max_pages, oldest_first=oldest_first
            )
        ]

    def same_text(self, sent: str, item: Published) -> bool:
        """Compared in ``comparable_text`` form: Mastodon renders mentions, line breaks and Markdown its own way."""
        return comparable_text(item.text) == comparable_text(sent)

    def left_unsure(self, error: str | None) -> bool:
        return MALFORMED_ANSWER in (error or "")

    def edit(self, copy_id: str, draft: Draft, media_ids: list[str] | None = None) -> Copy:
        posted = self.edit_status(copy_id, draft, media_ids)
        return Copy(posted.id, posted.url)

    def revoke(self, client_id: str, client_secret: str) -> None:
        """POST /oauth/revoke for this token (unlink). The token answers 401 afterwards."""
        self._api.client_id = client_id
        self._api.client_secret = client_secret
        allow_http = self.instance_url.startswith("http://")  # link.check_instance allows it for loopback only
        # Mastodon.py first reads /.well-known/oauth-authorization-server for the
        # revocation endpoint: 2 requests, once per unlink.
        self._call("revoking the token", lambda: self._api.revoke_access_token(allow_http=allow_http), secret=client_secret)
