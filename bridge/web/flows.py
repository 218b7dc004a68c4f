"""The web app's steps as plain functions over the ledger and the linking library (no HTTP framework here).

Each step keeps the rules `bridge link` keeps: X (or the feed) is read before
the volunteer's single-use code is spent, so nothing is stored when a source
cannot be reached and a new organisation never starts without a cursor (no
flood); an invitation is spent only by a link that is stored.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from bridge import accounts, link
from bridge.config import Config
from bridge.errors import BridgeError, ConfigError, SourceError
from bridge.ledger import Ledger, SourceAccount
from bridge.web.security import read_invite_token, token_hash

LOGIN_TTL = timedelta(minutes=30)  # how long an OAuth attempt waits for the instance's answer
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class PageError(Exception):
    """A problem the visitor sees as a page: ``key`` names its title/body texts; ``detail`` adds a sentence."""

    def __init__(self, key: str, detail: str = "", status: int = 400) -> None:
        super().__init__(key)
        self.key = key
        self.detail = detail
        self.status = status


def now() -> datetime:
    return datetime.now(timezone.utc)


def state_hash(state: str) -> str:
    return hashlib.sha256(state.encode("utf-8")).hexdigest()


def callback_url(config: Config) -> str:
    return f"{config.web.base_url.rstrip('/')}/oauth/callback"


# ------------------------------------------------------------------------- invitations


@dataclass(frozen=True)
class Invitation:
    token: str
    url: str
    org: str
    expires_at: datetime


def make_invitation(config: Config, ledger: Ledger, org: str, when: datetime | None = None) -> Invitation:
    """A single-use, signed, expiring link for ``org``; the ledger keeps its hash."""
    from bridge.web.security import make_invite_token

    if not NAME_RE.fullmatch(org):
        raise ConfigError(f"NAME: {org!r} is not a valid organisation name (letters, digits, '-', '_', '.'; up to 64)")
    if not config.web.secret:
        raise ConfigError("web.secret_file: no secret to sign invitations with; create one (README: bridge web)")
    when = when or now()
    expires = when + timedelta(days=config.web.invite_days)
    token = make_invite_token(config.web.secret, org, expires)
    ledger.add_invite(token_hash(token), org, when, expires)
    return Invitation(token, f"{config.web.base_url.rstrip('/')}/invite/{token}", org, expires)


def check_invitation(config: Config, ledger: Ledger, token: str) -> tuple[str, datetime]:
    """The organisation and expiry of a valid, unused invitation; else PageError (invalid, expired, used)."""
    claim = read_invite_token(config.web.secret, token)
    if claim is None:
        raise PageError("invalid", status=404)
    stored = ledger.get_invite(token_hash(token))
    if stored is None:
        raise PageError("invalid", status=404)
    if stored.used_at is not None:
        raise PageError("used", status=410)
    if stored.expires_at <= now():
        raise PageError("expired", status=410)
    return stored.org, stored.expires_at


# ------------------------------------------------------------------------- linking


@dataclass
class LinkForm:
    x_username: str = ""
    feed_url: str = ""
    instance: str = ""
    errors: list[str] = field(default_factory=list)


def begin_link(config: Config, ledger: Ledger, token: str, form: LinkForm) -> tuple[str, str]:
    """Check the sources and the instance, remember the attempt; returns (authorize URL, state hash).

    The X account's newest post (or the feed's entries) is read now, before the
    instance is asked: that is where the bridge starts (nothing old is posted).
    """
    org, _ = check_invitation(config, ledger, token)
    handle = form.x_username.strip().lstrip("@")
    feed = form.feed_url.strip()
    if not handle and not feed:
        raise PageError("problem", "need_source")
    if handle and not re.fullmatch(r"[A-Za-z0-9_]{1,15}", handle):
        raise PageError("problem", f"@{handle[:40]}: an X username has 1 to 15 letters, digits or _.")
    data: dict[str, Any] = {"org": org, "invite": token_hash(token)}
    when = now()
    if handle:
        x_user = accounts.resolve_x_user(config, handle, None)
        start = None if ledger.get_cursor(org) else accounts.start_point(config, x_user.id, when)
        data["x"] = {"id": x_user.id, "username": x_user.username,
                     "start": [start.cursor, start.has_posts] if start else None}
    if feed:
        data["feed"] = _read_feed(config, feed)
    # A Bluesky source: when linking one lands (bridge/link_bluesky.py), read its start here as "bluesky".
    base = link.check_instance(form.instance or config.mastodon.default_instance, timeout=config.mastodon.timeout)
    app = link.ensure_app(base, config.mastodon.client_name, ledger, website=config.mastodon.website or None,
                          timeout=config.mastodon.timeout, redirect_uri=callback_url(config))
    request = link.authorization_request(app, timeout=config.mastodon.timeout, redirect_uri=callback_url(config))
    data.update(instance=base, verifier=request.code_verifier, token_endpoint=request.token_endpoint)
    key = state_hash(request.state)
    ledger.save_login(key, "link", data, when, when + LOGIN_TTL)
    return request.url, key


def _read_feed(config: Config, url: str) -> dict[str, Any]:
    from bridge.sources.feed import FeedSource, discover

    source = FeedSource(config.feed)  # type: ignore[arg-type]
    try:
        found = discover(source, url)
        if not found:
            raise SourceError(f"no feed at {url}: it is not a feed, and its page names none")
        cursor, meta = source.start_cursor(found[0][0])
    finally:
        source.close()
    return {"url": meta["url"], "title": meta["title"] or found[0][1] or meta["url"], "cursor": cursor}


@dataclass(frozen=True)
class Linked:
    org: str
    acct: str
    x_username: str | None
    feed: str | None


def _exchange(config: Config, ledger: Ledger, data: dict[str, Any], code: str) -> tuple[str, link.LinkedAccount]:
    app = ledger.get_app(data["instance"])
    if app is None:
        raise PageError("stale")
    request = link.AuthRequest(url="", state="", code_verifier=data.get("verifier"),
                               token_endpoint=data["token_endpoint"], redirect_uri=callback_url(config))
    token = link.exchange_code(app, code, request, timeout=config.mastodon.timeout)
    return token, link.verify_token(data["instance"], token, timeout=config.mastodon.timeout)


def finish_link(config: Config, ledger: Ledger, data: dict[str, Any], code: str) -> Linked:
    """Spend the invitation, trade the code for a token and store the organisation (or give the invitation back)."""
    from bridge.sources.x_api import XUser

    if not ledger.use_invite(data["invite"], now()):
        raise PageError("used", status=410)
    try:
        token, account = _exchange(config, ledger, data, code)
        org, base, when = data["org"], data["instance"], now()
        x, feed = data.get("x"), data.get("feed")
        if x:
            start = accounts.StartPoint(x["start"][0], x["start"][1]) if x.get("start") else None
            accounts.store_link(ledger, config, org, XUser(x["id"], x["username"], x["username"]), base, token,
                                account, when, start=start)
            if feed:  # a second source, named by its kind (contract 2: the pipeline polls every source)
                ledger.add_source(SourceAccount(org, "feed", "feed", feed["url"], feed["title"], cursor=feed["cursor"]),
                                  when)
        elif feed:
            accounts.store_feed_link(ledger, org, feed["url"], feed["title"], base, token, account, when, feed["cursor"])
    except BaseException:
        ledger.release_invite(data["invite"])
        raise
    return Linked(org, account.full_acct, x["username"] if x else None, feed["url"] if feed else None)


# ------------------------------------------------------------------------- signing in


def begin_signin(config: Config, ledger: Ledger, instance: str) -> tuple[str, str]:
    base = link.check_instance(instance or config.mastodon.default_instance, timeout=config.mastodon.timeout)
    app = link.ensure_app(base, config.mastodon.client_name, ledger, website=config.mastodon.website or None,
                          timeout=config.mastodon.timeout, redirect_uri=callback_url(config))
    request = link.authorization_request(app, timeout=config.mastodon.timeout, redirect_uri=callback_url(config))
    key = state_hash(request.state)
    when = now()
    ledger.save_login(key, "signin", {"instance": base, "verifier": request.code_verifier,
                                      "token_endpoint": request.token_endpoint}, when, when + LOGIN_TTL)
    return request.url, key


def finish_signin(config: Config, ledger: Ledger, data: dict[str, Any], code: str) -> tuple[str | None, str]:
    """The organisation whose Mastodon account signed in (None: not linked), and the account's handle.

    The sign-in token is withdrawn at once: the page needs only to know who it is.
    """
    from bridge.targets.mastodon import MastodonTarget

    token, account = _exchange(config, ledger, data, code)
    app = ledger.get_app(data["instance"])
    target = MastodonTarget(data["instance"], token, timeout=config.mastodon.timeout)
    try:
        if app is not None:
            target.revoke(app.client_id, app.client_secret)
    except BridgeError:
        pass  # the token only says who signed in; an instance that cannot revoke it now keeps an unused token
    finally:
        target.close()
    for org in ledger.list_orgs():
        if org.instance == data["instance"] and org.account_id == account.account_id:
            return org.name, account.full_acct
    return None, account.full_acct

