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


SOURCE_NAMES = {"x": "X", "feed": "feed", "bluesky": "Bluesky"}


def source_label(kind: str, account_id: str, handle: str) -> str:
    """A source as people read it: ``X @name``, ``feed URL``, ``Bluesky @handle``."""
    if kind == "feed":
        return f"feed {account_id}"
    return f"{SOURCE_NAMES.get(kind, kind)} @{handle}"


def _linked_elsewhere(ledger: Ledger, name: str, kind: str, account_id: str) -> str | None:
    """The organisation (other than ``name``) that already reads this account, if any."""
    for other in ledger.list_orgs():
        if other.name == name:
            continue
        for src in ledger.sources(other.name):
            if src.kind == kind and src.account_id == account_id:
                return other.name
    return None


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
    """Save (or update) an organisation whose posts come from its website's feed (see ``store_source_link``)."""
    return store_source_link(ledger, name, "feed", feed_url, title, instance, token, account, now, cursor)


def store_source_link(
    ledger: Ledger,
    name: str,
    kind: str,
    account_id: str,
    handle: str,
    instance: str,
    token: str,
    account: LinkedAccount,
    now: datetime,
    cursor: str,
) -> LinkOutcome:
    """Save (or update) an organisation whose first source is a feed or a Bluesky account, not X.

    An organisation's first source is the ledger's source "x" (the one ``OrgRecord``
    describes); for such an organisation that source is of ``kind`` ("feed": the
    feed's URL; "bluesky": the DID). ``cursor`` (everything the source holds now, as
    old) is set on a first link only: a relink keeps what was seen.
    """
    other = _linked_elsewhere(ledger, name, kind, account_id)
    if other is not None:
        raise ConfigError(f"the {source_label(kind, account_id, handle)} is already linked as organisation {other!r}")
    existing = ledger.get_org(name)
    previous = ledger.get_source(name)
    if existing is not None and previous is not None and previous.kind != kind and previous.state != "unlinked":
        raise ConfigError(f"organisation {name!r} reads {source_label(previous.kind, previous.account_id, previous.handle)};"
                          f" add the {SOURCE_NAMES.get(kind, kind)} source to it with bridge link (it is linked already)")
    org = OrgRecord(
        name=name, x_user_id=account_id, x_username=handle, instance=instance, account_id=account.account_id,
        acct=account.full_acct, account_url=account.url, token=token, state="active", state_reason=None,
        limits=limits_to_dict(account.limits), limits_fetched_at=now,
        created_at=existing.created_at if existing else None,
    )
    ledger.save_org(org, now)  # writes the source as X's: made the right kind again just below
    ledger.add_source(SourceAccount(name, X_SOURCE, kind, account_id, handle), now)
    kept = ledger.get_cursor(name)
    if kept is None or previous is None or previous.account_id != account_id:
        ledger.set_cursor(name, cursor, now)  # a new account (or a new address): what it holds now is old
        kept = None
    return LinkOutcome(org=ledger.get_org(name) or org, updated=existing is not None, cursor=kept or cursor,
                       backfillable=0)


@dataclass(frozen=True)
class AddOutcome:
    source: str  # the source's name in the organisation ("feed", "bluesky"; "x" for a first source of that kind)
    added: bool  # False: the organisation already read this account, nothing changed
    replaced: SourceAccount | None  # the account of the same kind it read before, now replaced


def source_of_kind(ledger: Ledger, name: str, kind: str) -> SourceAccount | None:
    """The organisation's source of ``kind``: the one named after the kind, else its first source if of that kind."""
    own = ledger.get_source(name, kind)
    if own is not None and own.state != "unlinked":
        return own
    first = ledger.get_source(name)
    return first if first is not None and first.kind == kind and first.state != "unlinked" else None


def add_source(
    ledger: Ledger, name: str, kind: str, account_id: str, handle: str, cursor: str, now: datetime
) -> AddOutcome:
    """Add a feed or Bluesky source to a linked organisation (contract 2: its name is its kind), or replace
    the account of its source of that kind. No Mastodon authorisation: the organisation's target stays.

    The new source starts at ``cursor`` (everything it holds now is old: no flood). The caller asks before
    replacing an account (``source_of_kind``).
    """
    if ledger.get_org(name) is None:
        raise ConfigError(f"no organisation named {name!r} (see: bridge orgs)")
    other = _linked_elsewhere(ledger, name, kind, account_id)
    if other is not None:
        raise ConfigError(f"the {source_label(kind, account_id, handle)} is already linked as organisation {other!r}")
    current = source_of_kind(ledger, name, kind)
    if current is not None and current.account_id == account_id:
        return AddOutcome(current.name, added=False, replaced=None)
    slot = current.name if current is not None else kind
    ledger.add_source(SourceAccount(name, slot, kind, account_id, handle, cursor=cursor), now)
    # Also over a cursor kept from an earlier link of that slot: what the account holds now is old.
    ledger.set_cursor(name, cursor, now, source=slot)
    return AddOutcome(slot, added=True, replaced=current)


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
