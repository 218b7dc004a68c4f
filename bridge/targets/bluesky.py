"""A Bluesky account as a target: plain XRPC over httpx against the account's PDS (issue 16).

Why plain XRPC and not the ``atproto`` SDK: the SDK is 0.0.x and says its API may change, and the
bridge needs eight calls (createSession, refreshSession, createRecord, getRecord, deleteRecord,
uploadBlob, resolveHandle, and the DID document for another account's PDS), each of whose errors it
must map itself (a failed create may have succeeded: see ``publish``). httpx is already the Bluesky
source's client. Lexicons: https://github.com/bluesky-social/atproto/tree/main/lexicons

Exactly once without reconciliation: every part is created with ``com.atproto.repo.createRecord``
under a record key derived from the source post's time, id and part (``record_key``: a TID,
https://atproto.com/specs/tid). A second create under the same key cannot make a second record; the
reference PDS answers it with HTTP 500 (not a conflict), so after any failed create the record is
read back (``getRecord``) and, when it is there, returned as the copy. ``idempotency_window`` is
therefore ``timedelta.max`` and ``find_published`` is never needed.

Authentication: an app password (never the account password) makes a session once
(``createSession`` is limited to 30 per 5 minutes and 300 per day per account); the session's access
token is reused and refreshed with its refresh token (``refreshSession``), and every new session is
handed to ``save_credentials`` so the next process reuses it. A refused app password (revoked or
changed) raises ``AuthError``: only this target needs relinking.

Rate limits (https://docs.bsky.app/docs/advanced-guides/rate-limits): a PDS allows an account 5,000
write points per hour and 35,000 per day, a create costing 3 points; ``STATUS_PACE`` keeps the
bridge under both with room for the people who post by hand. A 429 and the ``ratelimit-*`` headers
become ``RateLimited`` with the reset time.

Secrets (the app password, the tokens) never appear in a message: every message passes ``_redact``.
"""

from __future__ import annotations

import hashlib
import io
import json
import mimetypes
import os
import re
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx

from bridge.convert.bluesky import fits_post, grapheme_length
from bridge.convert.bluesky_lexicon import IMAGE_MAX_BYTES, IMAGES_PER_POST, POST, POST_MAX_GRAPHEMES, REPOST
from bridge.errors import AuthError, BridgeError, PermanentError, RateLimited, TransientError
from bridge.logs import get_logger, masker
from bridge.model import Draft, Facet
from bridge.policy import InstanceLimits
from bridge.targets.base import Copy, Pace, Published, TargetCapabilities, UnsureOutcome

log = get_logger("bridge.targets.bluesky")

# An at:// URI names its repository (the DID), so another organisation's record on another PDS can be reposted
# or quoted by its URI and CID (atproto docs, "URI scheme" and "repository").
CAPABILITIES = TargetCapabilities(edits=False, quotes=True, polls=False, boosts=True, deletes=True, max_parts=None,
                                  shared_ids=True)
# 5,000 points per hour and 35,000 per day, a create 3 points (Bluesky docs, "Rate Limits"): at most
# 1,666 creates an hour and 11,666 a day. 400 an hour is 28,800 points a day when sustained, leaving
# the account's people and the bridge's deletes (1 point each) more than 6,000 points a day.
STATUS_PACE = Pace(400, timedelta(hours=1))
# uploadBlob writes no record and has no per-account limit of its own; the PDS's per-IP limit
# (3,000 requests per 5 minutes) is shared by every account the bridge serves, so stay far below it.
MEDIA_PACE = Pace(600, timedelta(hours=1))
TID_ALPHABET = "234567abcdefghijklmnopqrstuvwxyz"
AT_URI_RE = re.compile(r"^at://([^/]+)/([^/]+)/([^/?#]+)$")
# Largest image file the bridge takes to recompress (a photo of any camera); the blob it uploads stays
# within the lexicon's IMAGE_MAX_BYTES.
MAX_IMAGE_INPUT_BYTES = 50 * 1024 * 1024
# Videos go to the PDS with uploadBlob, which takes what the PDS's blobUploadLimit allows (the
# reference PDS: 5 MiB by default; the lexicon: 300 MB). A bigger one is refused (HTTP 413) and its
# post fails with that reason.
DEFAULT_MAX_VIDEO_BYTES = 50 * 1024 * 1024
ALT_TEXT_LIMIT = 2000  # Bluesky's app caps alt text at 2,000 characters; the lexicon sets no maximum
LONGEST_IMAGE_SIDE = 2000  # what Bluesky's app resizes an image to before uploading it
JPEG_QUALITIES = (85, 75, 65)
IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp")
# Errors of an access token that a refreshed session cures.
TOKEN_ERRORS = {"ExpiredToken", "InvalidToken", "AuthenticationRequired", "AuthMissing", "InvalidAuth"}
SESSION_FIELDS = ("accessJwt", "refreshJwt", "did", "handle")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def tid(micros: int, clock_id: int) -> str:
    """A TID: 53 bits of microseconds since 1970 and a 10-bit clock id, base32-sortable
    (https://atproto.com/specs/tid)."""
    n = ((micros & ((1 << 53) - 1)) << 10) | (clock_id & 1023)
    return "".join(TID_ALPHABET[(n >> (5 * i)) & 31] for i in reversed(range(13)))


def _tid_micros(rkey: str) -> int | None:
    if len(rkey) != 13 or any(c not in TID_ALPHABET for c in rkey):
        return None
    n = 0
    for ch in rkey:
        n = (n << 5) | TID_ALPHABET.index(ch)
    return n >> 10


def _clock_id(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:2], "big") & 1023


def record_key(draft: Draft) -> str:
    """The record key of a part: a TID of the source post's time, from its id and part number.

    Microseconds: the post's time to the millisecond, plus the part in milliseconds (parts sort in
    order), plus 0-999 µs from a hash of the post id; the clock id is 10 more bits of that hash.
    Sources often give whole seconds (X), so posts of the same second differ by their hash: two
    posts collide about once in a million pairs of the same second. The same part of the same post
    always gets the same key.
    """
    when = draft.created_at
    if when is None:
        raise PermanentError(f"post {draft.post_id} part {draft.part}: no source time to derive its record key from")
    digest = int.from_bytes(hashlib.sha256(draft.post_id.encode()).digest()[:4], "big")
    millis = int(when.timestamp() * 1000) + draft.part
    return tid(millis * 1000 + (digest >> 10) % 1000, digest & 1023)


def repost_key(subject_uri: str) -> str:
    """The record key of a repost of ``subject_uri``: derived from the subject, so reposting twice
    gives the same repost (``Target.boost`` is idempotent)."""
    rkey = subject_uri.rsplit("/", 1)[-1]
    micros = _tid_micros(rkey)
    if micros is None:
        micros = int.from_bytes(hashlib.sha256(subject_uri.encode()).digest()[:6], "big")
    return tid(micros, _clock_id(subject_uri))


def parse_at_uri(uri: str) -> tuple[str, str, str]:
    m = AT_URI_RE.match(uri or "")
    if m is None:
        raise PermanentError(f"{uri!r} is not a Bluesky record address (at://DID/COLLECTION/RKEY)")
    return m.group(1), m.group(2), m.group(3)


def permalink(handle: str, rkey: str) -> str:
    """bsky.app's page of a post (a DID stands in for a handle)."""
    return f"https://bsky.app/profile/{handle}/post/{rkey}"


def credentials_json(app_password: str, session: Mapping[str, Any] | None = None) -> str:
    """What the ledger stores for a Bluesky target (``targets.credentials``, mode 0600)."""
    data: dict[str, Any] = {"app_password": app_password}
    if session:
        data["session"] = {k: session[k] for k in SESSION_FIELDS if k in session}
    return json.dumps(data)


def _error_of(response: httpx.Response) -> tuple[str, str]:
    try:
        body = response.json()
    except ValueError:
        return "", ""
    if not isinstance(body, dict):
        return "", ""
    return str(body.get("error") or ""), str(body.get("message") or "")[:300]


def _reset_time(headers: Mapping[str, str], now: datetime) -> datetime | None:
    """``ratelimit-reset`` (epoch seconds, the IETF draft the PDS follows) or ``Retry-After`` (seconds)."""
    value = (headers.get("ratelimit-reset") or "").strip()
    if value.isdigit():
        return datetime.fromtimestamp(int(value), tz=timezone.utc)
    value = (headers.get("retry-after") or "").strip()
    if value.isdigit():
        return now + timedelta(seconds=int(value))
    return None


class BlueskyTarget:
    """One Bluesky account on its PDS: the ``Target`` "bluesky". Not thread-safe: one per organisation or worker."""

    kind = "bluesky"
    capabilities = CAPABILITIES
    status_pace = STATUS_PACE
    media_pace = MEDIA_PACE
    idempotency_window = timedelta.max  # deterministic record keys: a retry never makes a second record

    def __init__(
        self,
        base_url: str,
        credentials: str,
        *,
        account_id: str = "",
        handle: str = "",
        timeout: float = 30.0,
        session: Any = None,
        save_credentials: Callable[[str], None] | None = None,
        plc_url: str = "https://plc.directory",
        max_video_bytes: int = DEFAULT_MAX_VIDEO_BYTES,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.account_id = account_id
        self.handle = handle
        self.timeout = timeout
        self.plc_url = plc_url.rstrip("/")
        self.max_video_bytes = max_video_bytes
        self.request_count = 0
        self.session_creations = 0  # createSession calls made by this target (request economy, tests)
        self._clock = clock
        self._save = save_credentials
        self._app_password, self._session = self._read_credentials(credentials)
        masker.register(self._app_password, *(self._session or {}).get("accessJwt", "").split(),
                        *(self._session or {}).get("refreshJwt", "").split())
        self._owns_http = not isinstance(session, httpx.Client)
        self._http: httpx.Client = session if isinstance(session, httpx.Client) else httpx.Client(timeout=timeout)
        self._records: dict[str, tuple[str, dict[str, Any]]] = {}  # uri -> (cid, value) of records seen
        self._dids: dict[str, str | None] = {}  # handle -> DID (None: does not resolve)
        self._hosts: dict[str, str] = {}  # DID -> its PDS
        self._rate_until: dict[str, datetime] = {}  # XRPC method -> the PDS said none are left until then

    def __repr__(self) -> str:  # never show the credentials
        return f"BlueskyTarget({self.base_url!r}, {self.handle or self.account_id!r})"

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    @staticmethod
    def _read_credentials(credentials: str) -> tuple[str, dict[str, Any] | None]:
        try:
            data = json.loads(credentials)
        except ValueError:
            return credentials, None  # a bare app password
        if not isinstance(data, dict):
            raise AuthError("the stored Bluesky credentials are unreadable: link the account again")
        session = data.get("session")
        if isinstance(session, dict) and all(isinstance(session.get(k), str) for k in ("accessJwt", "refreshJwt")):
            return str(data.get("app_password") or ""), dict(session)
        return str(data.get("app_password") or ""), None

    @property
    def did(self) -> str:
        if self.account_id:
            return self.account_id
        if self._session is None:
            self._create_session()
        assert self._session is not None
        return str(self._session.get("did") or "")

    # ------------------------------------------------------------------ HTTP
    def _redact(self, text: str) -> str:
        session = self._session or {}
        for secret in (self._app_password, session.get("accessJwt"), session.get("refreshJwt")):
            if secret:
                text = text.replace(secret, "[redacted]")
        return text

    def _send(
        self, method: str, nsid: str, action: str, *, token: str | None = None, base: str | None = None,
        params: Mapping[str, Any] | None = None, body: Any = None, content: bytes | None = None,
        content_type: str | None = None,
    ) -> httpx.Response:
        """One XRPC request; a network failure becomes ``TransientError`` naming ``action``."""
        headers: dict[str, str] = {}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if content_type:
            headers["Content-Type"] = content_type
        self.request_count += 1
        host = base or self.base_url
        try:
            response = self._http.request(method, f"{host}/xrpc/{nsid}", params=params, json=body, content=content,
                                          headers=headers)
        except httpx.TimeoutException:
            raise TransientError(f"{host}: no answer within {self.timeout:g} s while {action}") from None
        except httpx.TransportError as exc:
            raise TransientError(f"{host}: connection failed while {action} ({type(exc).__name__})") from None
        # The ratelimit-* headers describe the limit of this method (per route on a PDS).
        if (response.headers.get("ratelimit-remaining") or "").strip() == "0":
            until = _reset_time(response.headers, self._clock())
            if until is not None:
                self._rate_until[nsid] = until
        return response

    def _fail(self, response: httpx.Response, action: str) -> BridgeError:
        """The ``bridge.errors`` class for a refused request. The one place that maps them."""
        status = response.status_code
        error, message = _error_of(response)
        detail = self._redact(": ".join(x for x in (error, message) if x) or response.reason_phrase or "")
        where = f"Bluesky ({self.base_url}) answered {status} while {action}" + (f": {detail}" if detail else "")
        if status == 429:
            now = self._clock()
            until = _reset_time(response.headers, now) or now + timedelta(minutes=5)
            return RateLimited(f"rate limited by Bluesky ({self.base_url}) while {action}; retry at {until.isoformat()}",
                               until)
        if status in (401, 403) or error in TOKEN_ERRORS or error in ("AccountTakedown", "AccountDeactivated"):
            return AuthError(f"{where}: the Bluesky account needs relinking")
        if status >= 500 or status in (408, 425):
            return TransientError(where)
        return PermanentError(where)

    def _honour_limit(self, nsid: str, action: str) -> None:
        """Send nothing the PDS already said it would refuse (ratelimit-remaining 0 until the reset)."""
        until = self._rate_until.get(nsid)
        if until is None:
            return
        if until > self._clock():
            raise RateLimited(f"Bluesky ({self.base_url}): no {nsid} calls left until {until.isoformat()}"
                              f" (ratelimit-remaining 0) while {action}", until)
        del self._rate_until[nsid]

    def _call(self, method: str, nsid: str, action: str, **kwargs: Any) -> dict[str, Any]:
        """An authenticated XRPC call: the session made once, refreshed once when its token expired."""
        self._honour_limit(nsid, action)
        if self._session is None:
            self._create_session()
        assert self._session is not None
        response = self._send(method, nsid, action, token=self._session["accessJwt"], **kwargs)
        if response.status_code in (400, 401) and _error_of(response)[0] in TOKEN_ERRORS:
            self._refresh_session()
            response = self._send(method, nsid, action, token=self._session["accessJwt"], **kwargs)
        if response.status_code != 200:
            raise self._fail(response, action)
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise UnsureOutcome(f"Bluesky ({self.base_url}) sent a malformed answer while {action}")
        return data

    # ------------------------------------------------------------------ session
    def _create_session(self) -> None:
        """com.atproto.server.createSession with the app password (limited: 30 per 5 minutes, 300 a day)."""
        who = self.account_id or self.handle
        action = f"logging in as {self.handle or who} (com.atproto.server.createSession)"
        if not self._app_password or not who:
            raise AuthError(f"no Bluesky app password stored for {self.handle or who or 'this target'}: link the account again")
        self._honour_limit("com.atproto.server.createSession", action)
        self.session_creations += 1
        response = self._send("POST", "com.atproto.server.createSession", action,
                              body={"identifier": who, "password": self._app_password})
        if response.status_code in (400, 401):
            error, _ = _error_of(response)
            if response.status_code == 401 or error in ("AuthenticationRequired", "AuthFactorTokenRequired",
                                                         "AccountTakedown", "InvalidPassword"):
                raise AuthError(
                    f"Bluesky refused the app password of {self.handle or who} ({error or response.status_code}):"
                    " it was revoked or changed; make a new app password and link the account again"
                )
        if response.status_code != 200:
            raise self._fail(response, action)
        self._take_session(response, action)

    def _refresh_session(self) -> None:
        """com.atproto.server.refreshSession with the refresh token; when that is refused, a new session."""
        assert self._session is not None
        action = "refreshing the session (com.atproto.server.refreshSession)"
        response = self._send("POST", "com.atproto.server.refreshSession", action, token=self._session["refreshJwt"])
        if response.status_code == 200:
            self._take_session(response, action)
            return
        if response.status_code == 429 or response.status_code >= 500:
            raise self._fail(response, action)
        log.info("bluesky_session_renewed", handle=self.handle, reason=_error_of(response)[0] or response.status_code)
        self._session = None
        self._create_session()

    def _take_session(self, response: httpx.Response, action: str) -> None:
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict) or not all(isinstance(data.get(k), str) for k in ("accessJwt", "refreshJwt", "did")):
            raise TransientError(f"Bluesky ({self.base_url}) sent a malformed session while {action}")
        if self.account_id and data["did"] != self.account_id:
            raise AuthError(f"the app password logs in as {data['did']}, not the linked account {self.account_id}:"
                            " link the account again")
        self._session = {k: data[k] for k in SESSION_FIELDS if k in data}
        masker.register(self._session["accessJwt"], self._session["refreshJwt"])  # never in a log line
        if self._save is not None:
            self._save(credentials_json(self._app_password, self._session))

    def login(self) -> None:
        """A new session now (linking: proves the app password once)."""
        self._create_session()

    def session_credentials(self) -> str:
        """The credentials to store now: the app password and the current session."""
        return credentials_json(self._app_password, self._session)

    # ------------------------------------------------------------------ records
    def _host_of(self, did: str) -> str:
        """The PDS that holds ``did``'s repository: ours, or the one its DID document names."""
        if did == self.did:
            return self.base_url
        if did not in self._hosts:
            from bridge.sources.bluesky import BlueskySource  # the same DID-document resolution as the source's

            with BlueskySource(self.plc_url, timeout=self.timeout) as resolver:
                try:
                    self._hosts[did] = resolver.account(did).pds
                except BridgeError as exc:
                    raise TransientError(f"cannot find the PDS of {did}: {exc}") from None
        return self._hosts[did]

    def get_record(self, uri: str) -> tuple[str, dict[str, Any]] | None:
        """(cid, value) of a record, from the cache or com.atproto.repo.getRecord; None when it does not exist."""
        cached = self._records.get(uri)
        if cached is not None:
            return cached
        repo, collection, rkey = parse_at_uri(uri)
        action = f"reading {uri} (com.atproto.repo.getRecord)"
        response = self._send("GET", "com.atproto.repo.getRecord", action, base=self._host_of(repo),
                              params={"repo": repo, "collection": collection, "rkey": rkey})
        if response.status_code == 400 and _error_of(response)[0] in ("RecordNotFound", "InvalidRequest", ""):
            return None
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self._fail(response, action)
        data = response.json()
        if not isinstance(data, dict) or not isinstance(data.get("cid"), str) or not isinstance(data.get("value"), dict):
            raise TransientError(f"Bluesky ({self.base_url}) sent a malformed record while {action}")
        self._records[uri] = (data["cid"], data["value"])
        return self._records[uri]

    def _strong_ref(self, uri: str, what: str) -> dict[str, str]:
        found = self.get_record(uri)
        if found is None:
            raise PermanentError(f"parent gone: {what} {uri} no longer exists on Bluesky")
        return {"uri": uri, "cid": found[0]}

    def _create(self, collection: str, rkey: str, record: dict[str, Any], action: str,
                same: Callable[[dict[str, Any]], bool]) -> tuple[str, str]:
        """createRecord under ``rkey``; after any failure but a refusal of our credentials or a rate
        limit, the record is read back: when it is there (made by an earlier try), it is the answer."""
        uri = f"at://{self.did}/{collection}/{rkey}"
        try:
            data = self._call("POST", "com.atproto.repo.createRecord", action,
                              body={"repo": self.did, "collection": collection, "rkey": rkey, "record": record})
        except (AuthError, RateLimited):
            raise
        except BridgeError as exc:
            found = self.get_record(uri)
            if found is None:
                raise
            if not same(found[1]):
                raise PermanentError(f"record key {rkey} of {self.handle or self.did} already holds another record"
                                     f" ({collection}); not overwritten") from exc
            log.info("bluesky_record_found", uri=uri, reason=str(exc))
            return uri, found[0]
        if data.get("uri") != uri or not isinstance(data.get("cid"), str):
            found = self.get_record(uri)
            if found is None:
                raise UnsureOutcome(f"Bluesky ({self.base_url}) sent a malformed answer while {action}")
            return uri, found[0]
        self._records[uri] = (str(data["cid"]), record)
        return uri, str(data["cid"])

    # ------------------------------------------------------------------ the Target interface
    def limits(self) -> InstanceLimits:
        """The lexicon's limits (``bluesky_lexicon``); a PDS publishes none of its own, so no request."""
        return InstanceLimits(
            max_characters=POST_MAX_GRAPHEMES,
            max_media_attachments=IMAGES_PER_POST,
            characters_reserved_per_url=0,
            image_size_limit=MAX_IMAGE_INPUT_BYTES,
            video_size_limit=self.max_video_bytes,
            description_limit=ALT_TEXT_LIMIT,
            supports_quotes=True,
        )

    def length(self, text: str, spoiler_text: str = "") -> int:
        """Graphemes, as the PDS counts them (there is no content-warning text on Bluesky)."""
        return grapheme_length(text)

    def mention(self, handle: str) -> str:
        return "@" + handle.lstrip("@")

    def is_limit_refusal(self, error: Exception) -> bool:
        return bool(re.search(r"grapheme|too long|too big|too large", str(error), re.I))

    def upload_media(self, path: str, mime_type: str | None = None, description: str | None = None) -> str:
        """com.atproto.repo.uploadBlob (1 request). An image over the lexicon's size (or of a type Bluesky
        shows poorly) is resized and recompressed as JPEG, never dropped. Returns the embed entry as
        JSON: the blob, its alt text and aspect ratio."""
        mime = mime_type or mimetypes.guess_type(path)[0] or ""
        name = os.path.basename(path)
        if mime.startswith("image/"):
            data, mime, ratio = prepare_image(path, mime)
            kind = "image"
        elif mime == "video/mp4":
            try:
                size = os.path.getsize(path)
            except OSError as exc:
                raise PermanentError(f"cannot read media file {path}: {exc.strerror or exc}") from exc
            if size > self.max_video_bytes:
                raise PermanentError(f"video {name} has {size:,} bytes, more than the {self.max_video_bytes:,}"
                                     " this Bluesky target uploads")
            with open(path, "rb") as handle:
                data = handle.read()
            ratio = None
            kind = "video"
        else:
            raise PermanentError(f"media {name}: Bluesky takes images and MP4 videos, not {mime or 'this file'}")
        action = f"uploading {name} ({len(data):,} bytes, com.atproto.repo.uploadBlob)"
        answer = self._call("POST", "com.atproto.repo.uploadBlob", action, content=data, content_type=mime)
        blob = answer.get("blob")
        if not isinstance(blob, dict) or not isinstance(blob.get("ref"), dict):
            raise TransientError(f"Bluesky ({self.base_url}) sent a malformed answer while {action}")
        entry: dict[str, Any] = {"kind": kind, "blob": blob, "alt": description or ""}
        if ratio is not None:
            entry["aspectRatio"] = {"width": ratio[0], "height": ratio[1]}
        return json.dumps(entry)

    def publish(
        self,
        draft: Draft,
        *,
        idempotency_key: str,
        in_reply_to: str | None = None,
        media_ids: list[str] | None = None,
        quote_of: str | None = None,
    ) -> Copy:
        """One post (one createRecord; a reply reads its parent once when not seen yet)."""
        if draft.kind == "boost":
            raise PermanentError(f"post {draft.post_id}: a repost goes through boost(), not publish()")
        if not fits_post(draft.text):
            raise PermanentError(f"post {draft.post_id} part {draft.part}: the text is over Bluesky's"
                                 f" {POST_MAX_GRAPHEMES} graphemes or 3,000 bytes")
        rkey = record_key(draft)
        action = f"posting post {draft.post_id} part {draft.part} (com.atproto.repo.createRecord {rkey})"
        record = self._post_record(draft, in_reply_to, media_ids or [], quote_of)
        uri, _cid = self._create(POST, rkey, record, action, lambda value: value.get("text") == draft.text)
        return Copy(uri, permalink(self.handle or self.did, rkey))

    def _post_record(self, draft: Draft, in_reply_to: str | None, media_ids: list[str],
                     quote_of: str | None) -> dict[str, Any]:
        when = draft.created_at if draft.backdate and draft.created_at is not None else self._clock()
        record: dict[str, Any] = {"$type": POST, "text": draft.text, "createdAt": _datetime(when)}
        facets = [f for f in (self._facet(f) for f in draft.facets) if f is not None]
        if facets:
            record["facets"] = facets
        if draft.language:
            record["langs"] = [draft.language]
        if draft.labels:
            record["labels"] = {"$type": "com.atproto.label.defs#selfLabels", "values": [{"val": v} for v in draft.labels]}
        if in_reply_to:
            parent = self._strong_ref(in_reply_to, "the post it replies to")
            parent_value = self._records[in_reply_to][1]
            reply = parent_value.get("reply")
            root = reply.get("root") if isinstance(reply, dict) else None
            if not (isinstance(root, dict) and isinstance(root.get("uri"), str) and isinstance(root.get("cid"), str)):
                root = parent
            record["reply"] = {"root": {"uri": root["uri"], "cid": root["cid"]}, "parent": parent}
        media = self._media_embed(draft, media_ids)
        if quote_of:
            quoted = {"$type": "app.bsky.embed.record", "record": self._strong_ref(quote_of, "the quoted post")}
            record["embed"] = quoted if media is None else {
                "$type": "app.bsky.embed.recordWithMedia", "record": quoted, "media": media}
        elif media is not None:
            record["embed"] = media
        return record

    def _media_embed(self, draft: Draft, media_ids: list[str]) -> dict[str, Any] | None:
        if not media_ids:
            return None
        entries = []
        for media_id in media_ids:
            try:
                entry = json.loads(media_id)
            except ValueError:
                raise PermanentError(f"post {draft.post_id}: media id {media_id[:40]!r} is not a Bluesky upload") from None
            entries.append(entry)
        videos = [(i, e) for i, e in enumerate(entries) if e.get("kind") == "video"]
        if videos:
            i, video = videos[0]
            embed: dict[str, Any] = {"$type": "app.bsky.embed.video", "video": video["blob"]}
            if video.get("alt"):
                embed["alt"] = video["alt"]
            if i < len(draft.media) and draft.media[i].type == "animated_gif":
                embed["presentation"] = "gif"  # app.bsky.embed.video: played looped and muted, as a GIF
            return embed
        images = []
        for entry in entries[:IMAGES_PER_POST]:
            image: dict[str, Any] = {"image": entry["blob"], "alt": entry.get("alt") or ""}
            if entry.get("aspectRatio"):
                image["aspectRatio"] = entry["aspectRatio"]
            images.append(image)
        return {"$type": "app.bsky.embed.images", "images": images}

    def _facet(self, facet: Facet) -> dict[str, Any] | None:
        index = {"byteStart": facet.byte_start, "byteEnd": facet.byte_end}
        if facet.kind == "link":
            feature = {"$type": "app.bsky.richtext.facet#link", "uri": facet.value}
        elif facet.kind == "tag":
            feature = {"$type": "app.bsky.richtext.facet#tag", "tag": facet.value}
        else:
            did = self.resolve_handle(facet.value)
            if did is None:
                return None  # the text still says @handle; nobody is notified
            feature = {"$type": "app.bsky.richtext.facet#mention", "did": did}
        return {"index": index, "features": [feature]}

    def resolve_handle(self, handle: str) -> str | None:
        """com.atproto.identity.resolveHandle on our PDS (once per handle and target); None if it does not resolve."""
        handle = handle.lstrip("@").lower()
        if handle not in self._dids:
            action = f"resolving @{handle} (com.atproto.identity.resolveHandle)"
            response = self._send("GET", "com.atproto.identity.resolveHandle", action, params={"handle": handle})
            did = None
            if response.status_code == 200:
                value = response.json().get("did") if isinstance(response.json(), dict) else None
                did = value if isinstance(value, str) and value.startswith("did:") else None
            elif response.status_code >= 500 or response.status_code == 429:
                raise self._fail(response, action)
            self._dids[handle] = did
        return self._dids[handle]

    def boost(self, copy_id: str) -> Copy:
        """An app.bsky.feed.repost of ``copy_id`` under a key derived from it: reposting twice gives one repost."""
        subject = self._strong_ref(copy_id, "the post to repost")
        rkey = repost_key(copy_id)
        record = {"$type": REPOST, "subject": subject, "createdAt": _datetime(self._clock())}
        action = f"reposting {copy_id} (com.atproto.repo.createRecord {rkey})"
        uri, _cid = self._create(REPOST, rkey, record, action,
                                 lambda value: isinstance(value.get("subject"), dict) and value["subject"].get("uri") == copy_id)
        repo, _, subject_rkey = parse_at_uri(copy_id)
        return Copy(uri, permalink(repo, subject_rkey))

    def edit(self, copy_id: str, draft: Draft, media_ids: list[str] | None = None) -> Copy:
        raise PermanentError(f"post {draft.post_id}: Bluesky posts cannot be edited; the edit is not propagated")

    def delete(self, copy_id: str) -> None:
        """com.atproto.repo.deleteRecord (1 request). A record already gone counts as deleted."""
        repo, collection, rkey = parse_at_uri(copy_id)
        if repo != self.did:
            raise PermanentError(f"{copy_id} is not a record of {self.handle or self.did}; not deleted")
        self._call("POST", "com.atproto.repo.deleteRecord", f"deleting {copy_id} (com.atproto.repo.deleteRecord)",
                   body={"repo": repo, "collection": collection, "rkey": rkey})
        self._records.pop(copy_id, None)

    def find_published(
        self,
        account_id: str,
        since_id: str | None,
        *,
        not_before: datetime | None = None,
        max_pages: int = 25,
        oldest_first: bool = False,
    ) -> list[Published]:
        """Never needed: a retried create finds its own record by its key (``idempotency_window`` is max)."""
        return []

    def same_text(self, sent: str, item: Published) -> bool:
        return sent == item.text

    def left_unsure(self, error: str | None) -> bool:
        return False  # an unclear create is resolved by reading its record back, in the same attempt


def _datetime(when: datetime) -> str:
    """createdAt as the lexicon's datetime format wants it: RFC 3339 in UTC with milliseconds."""
    utc = when.astimezone(timezone.utc)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def prepare_image(path: str, mime: str) -> tuple[bytes, str, tuple[int, int]]:
    """The bytes to upload, their type and the aspect ratio (width, height) as shown.

    Kept as it is when it fits the lexicon's size, is a JPEG, PNG or WebP and needs no rotation;
    else turned upright (EXIF orientation), resized to at most 2,000 pixels a side and saved as
    JPEG at falling quality, halving the size until it fits. An unreadable image is a permanent error.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_IMAGE_INPUT_BYTES + 1)
    except OSError as exc:
        raise PermanentError(f"cannot read media file {path}: {exc.strerror or exc}") from exc
    name = os.path.basename(path)
    if len(data) > MAX_IMAGE_INPUT_BYTES:
        raise PermanentError(f"image {name} is larger than {MAX_IMAGE_INPUT_BYTES:,} bytes")
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise PermanentError(f"image {name} cannot be read: {exc}") from None
    upright = ImageOps.exif_transpose(image) or image
    ratio = upright.size
    rotated = upright.size != image.size or image.getexif().get(0x0112, 1) not in (None, 1)
    if len(data) <= IMAGE_MAX_BYTES and mime in IMAGE_TYPES and not rotated:
        return data, mime, ratio
    rgb = upright
    if rgb.mode in ("RGBA", "LA", "P"):
        rgba = rgb.convert("RGBA")
        rgb = Image.new("RGB", rgba.size, (255, 255, 255))
        rgb.paste(rgba, mask=rgba.getchannel("A"))
    elif rgb.mode != "RGB":
        rgb = rgb.convert("RGB")
    rgb.thumbnail((LONGEST_IMAGE_SIDE, LONGEST_IMAGE_SIDE))
    while True:
        for quality in JPEG_QUALITIES:
            out = io.BytesIO()
            rgb.save(out, "JPEG", quality=quality, optimize=True)
            if out.tell() <= IMAGE_MAX_BYTES:
                return out.getvalue(), "image/jpeg", ratio
        if min(rgb.size) <= 64:
            raise PermanentError(f"image {name} cannot be made smaller than {IMAGE_MAX_BYTES:,} bytes")
        rgb = rgb.resize((max(1, rgb.width // 2), max(1, rgb.height // 2)))


def bluesky_target(
    config: Any,
    *,
    base_url: str,
    credentials: str,
    account_id: str = "",
    handle: str = "",
    session: Any = None,
    save_credentials: Callable[[str], None] | None = None,
) -> BlueskyTarget:
    """The registry's factory (contract: the keyword arguments of ``make_target``)."""
    b = config.bluesky
    return BlueskyTarget(
        base_url, credentials, account_id=account_id, handle=handle, timeout=b.timeout, session=session,
        save_credentials=save_credentials, plc_url=b.plc_url,
    )
