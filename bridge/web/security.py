"""What keeps `bridge web` safe: signed invitation tokens, CSRF tokens, rate limits, response headers.

Invitation tokens are HMAC-SHA256 signed (key derived from ``web.secret``),
carry their organisation and expiry, and hold 128 random bits, so they can be
neither forged nor guessed; the ledger stores only their SHA-256 hash, so a
copy of the ledger does not give working links.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send


def derive_key(secret: str, purpose: str) -> bytes:
    """One key per use (invitations, cookies) from the operator's one secret."""
    return hmac.new(secret.encode("utf-8"), purpose.encode("ascii"), hashlib.sha256).digest()


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class InviteClaim:
    org: str
    expires_at: datetime


def make_invite_token(secret: str, org: str, expires_at: datetime) -> str:
    payload = f"{int(expires_at.timestamp())}:{secrets.token_hex(16)}:{org}".encode()
    sig = hmac.new(derive_key(secret, "invite"), payload, hashlib.sha256).digest()
    return f"{_b64(payload)}.{_b64(sig)}"


def read_invite_token(secret: str, token: str) -> InviteClaim | None:
    """The organisation and expiry a token was signed for; None when it is malformed or not ours."""
    if len(token) > 300 or token.count(".") != 1:
        return None
    body, sig = token.split(".")
    try:
        payload = _unb64(body)
        given = _unb64(sig)
    except (ValueError, TypeError):
        return None
    want = hmac.new(derive_key(secret, "invite"), payload, hashlib.sha256).digest()
    if not hmac.compare_digest(want, given):
        return None
    try:
        expires, _nonce, org = payload.decode("utf-8").split(":", 2)
        return InviteClaim(org=org, expires_at=datetime.fromtimestamp(int(expires), timezone.utc))
    except (ValueError, UnicodeDecodeError):
        return None


def csrf_token(session: dict[str, Any]) -> str:
    token = session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return token


def csrf_ok(session: dict[str, Any], given: object) -> bool:
    want = session.get("csrf")
    return isinstance(want, str) and isinstance(given, str) and hmac.compare_digest(want, given)


def safe_next(path: str | None) -> str:
    """A redirect target from a query: only a path on this site ("/..."), never "//host" or "https://host"."""
    if not path or not path.startswith("/") or path.startswith("//") or "\\" in path or any(c < " " for c in path):
        return "/"
    return path


class RateLimiter:
    """At most ``limit`` requests per ``window`` seconds per (address, group), in memory.

    The table is bounded: past ``max_keys`` addresses the oldest are forgotten,
    so a flood of addresses cannot grow it without end.
    """

    def __init__(self, limit: int, window: float = 600.0, max_keys: int = 10_000) -> None:
        self.limit = limit
        self.window = window
        self.max_keys = max_keys
        self._hits: dict[tuple[str, str], deque[float]] = {}

    def allow(self, address: str, group: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        key = (address, group)
        hits = self._hits.pop(key, None) or deque()
        while hits and hits[0] <= now - self.window:
            hits.popleft()
        allowed = len(hits) < self.limit
        if allowed:
            hits.append(now)
        self._hits[key] = hits  # re-inserted: dict order is least recently used first
        while len(self._hits) > self.max_keys:
            self._hits.pop(next(iter(self._hits)))
        return allowed


class SecurityHeaders:
    """Headers on every response: no framing, no sniffing, no referrer leaking the invitation token, a CSP.

    The CSP allows no script at all (every page works without JavaScript) and
    only this site's own style sheet. ``form-action`` must include the instances
    a form's redirect goes to (the OAuth authorize page): https in general, and
    loopback http when the bridge itself is tested on loopback.
    """

    def __init__(self, app: ASGIApp, *, loopback_http: bool) -> None:
        self.app = app
        extra = " http://127.0.0.1:* http://localhost:*" if loopback_http else ""
        self.csp = (
            "default-src 'none'; style-src 'self'; img-src 'self' data:; base-uri 'none'; "
            f"frame-ancestors 'none'; form-action 'self' https:{extra}"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (b"content-security-policy", self.csp.encode()),
                    (b"x-frame-options", b"DENY"),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"cache-control", b"no-store"),
                ]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)
