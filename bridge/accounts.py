"""Linking, relinking and unlinking organisations: the ledger side of `bridge link`.

``bridge.link`` talks OAuth to the instance; this module decides what is stored
and keeps the rules: a linked X account appears once, relinking keeps the
ledger and cursor, and a fresh link starts at the newest existing post so old
posts never flood the timeline.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bridge.config import Config
from bridge.errors import ConfigError
from bridge.ledger import X_SOURCE, Ledger, OrgRecord, SourceAccount
from bridge.link import LinkedAccount
from bridge.sources.x_api import XUser, x_source
from bridge.sources.x_v2 import snowflake_at
from bridge.targets.mastodon import MastodonTarget, limits_to_dict


@dataclass(frozen=True)
class LinkOutcome:
    org: OrgRecord
    updated: bool  # an existing organisation was updated, not created
    cursor: str | None
    backfillable: int  # older posts that `bridge backfill --api` could bring over (X reaches 3,200)


@dataclass(frozen=True)
class StartPoint:
    """Where a new organisation's cursor starts: its newest post, or the moment of linking when it has none."""

    cursor: str
    has_posts: bool


def start_point(config: Config, x_user_id: str, now: datetime) -> StartPoint:
    """Read the account's newest post from X (one request); raises when X cannot be reached."""
    with x_source(config) as source:
        newest = source.newest_post_id(x_user_id)
    return StartPoint(newest, True) if newest is not None else StartPoint(snowflake_at(now), False)


def resolve_x_user(config: Config, username: str, user_id: str | None) -> XUser:
    handle = username.lstrip("@")
    if user_id:
        if not user_id.isdigit():
            raise ConfigError(f"--x-user-id: expected the numeric X user id, got {user_id!r}")
        return XUser(id=user_id, username=handle, name=handle)
    with x_source(config) as source:
        return source.lookup_user(handle)


def store_link(
    ledger: Ledger,
    config: Config,
    name: str,
    x_user: XUser,
    instance: str,
    token: str,
    account: LinkedAccount,
    now: datetime,
    start: StartPoint | None = None,
) -> LinkOutcome:
    """Save (or update) the organisation; set the cursor to the newest post on a first link.

    X is asked first (or ``start`` was read from it before the OAuth exchange):
    when it cannot be reached, nothing is stored, so no organisation is active
    without a cursor. An account with no post yet starts at the moment of linking.
    """
    existing = ledger.get_org(name)
    other = ledger.org_by_x_user(x_user.id)
    if other is not None and other.name != name:
        raise ConfigError(f"the X account @{x_user.username} is already linked as organisation {other.name!r}")
    cursor = ledger.get_cursor(name)
    if cursor is None and start is None:
        start = start_point(config, x_user.id, now)
    org = OrgRecord(
        name=name,
        x_user_id=x_user.id,
        x_username=x_user.username,
        instance=instance,
        account_id=account.account_id,
        acct=account.full_acct,
        account_url=account.url,
        token=token,
        state="active",
        state_reason=None,
        limits=limits_to_dict(account.limits),
        limits_fetched_at=now,
        created_at=existing.created_at if existing else None,
    )
    ledger.save_org(org, now)
    backfillable = 0
    if cursor is None and start is not None:
        cursor = start.cursor
        ledger.set_cursor(name, cursor, now)
        backfillable = 3200 if start.has_posts else 0
    return LinkOutcome(org=ledger.get_org(name) or org, updated=existing is not None, cursor=cursor, backfillable=backfillable)


def store_feed_link(
    ledger: Ledger,
    name: str,
    feed_url: str,
    title: str,
    instance: str,
    token: str,
    account: LinkedAccount,
    now: datetime,
    cursor: str,
) -> LinkOutcome:
    """Save (or update) an organisation whose posts come from its website's feed.

    The pipeline polls an organisation's primary source (the ledger's source "x",
    the one ``OrgRecord`` describes); for a feed organisation that source is of
    kind "feed" and its account is the feed's URL. ``cursor`` (every entry in the
    feed now, as old) is set on a first link only: a relink keeps what was seen.
    """
    for other in ledger.list_orgs():
        src = ledger.get_source(other.name)
        if other.name != name and src is not None and src.kind == "feed" and src.account_id == feed_url:
            raise ConfigError(f"the feed {feed_url} is already linked as organisation {other.name!r}")
    existing = ledger.get_org(name)
    previous = ledger.get_source(name)
    if existing is not None and previous is not None and previous.kind != "feed":
        raise ConfigError(f"organisation {name!r} reads X @{existing.x_username}; unlink it first to read a feed instead")
    org = OrgRecord(
        name=name, x_user_id=feed_url, x_username=title, instance=instance, account_id=account.account_id,
        acct=account.full_acct, account_url=account.url, token=token, state="active", state_reason=None,
        limits=limits_to_dict(account.limits), limits_fetched_at=now,
        created_at=existing.created_at if existing else None,
    )
    ledger.save_org(org, now)  # writes the source as X's: made a feed again just below
    ledger.add_source(SourceAccount(name, X_SOURCE, "feed", feed_url, title), now)
    kept = ledger.get_cursor(name)
    if kept is None or previous is None or previous.account_id != feed_url:
        ledger.set_cursor(name, cursor, now)  # a new feed (or a new address for it): what it holds now is old
        kept = None
    return LinkOutcome(org=ledger.get_org(name) or org, updated=existing is not None, cursor=kept or cursor,
                       backfillable=0)


def unlink(ledger: Ledger, config: Config, name: str, *, keep_history: bool, now: datetime) -> bool:
    """Revoke the token at the instance (best effort) and forget the organisation. Returns whether revoked."""
    org = ledger.get_org(name)
    if org is None:
        raise ConfigError(f"no organisation named {name!r} (see: bridge orgs)")
    revoked = False
    app = ledger.get_app(org.instance)
    if org.token and app is not None:
        target = MastodonTarget(org.instance, org.token, timeout=config.mastodon.timeout)
        try:
            target.revoke(app.client_id, app.client_secret)
            revoked = True
        except Exception:  # noqa: BLE001 - an unreachable instance must not keep a token we want gone
            revoked = False
        finally:
            target.close()
    ledger.remove_org(name, keep_history=keep_history, now=now)
    return revoked
