"""The SQLite ledger: the single source of truth for what was fetched and what went out.

Exactly-once delivery rests on three rules kept here:
- fetched posts and the advanced cursor are written in ONE transaction, so a
  crash either loses the fetch (it is re-fetched) or keeps both;
- a post is marked ``posting`` with its idempotency key before any request;
- ``deliveries`` has a unique key per (post, target, part), so a part can be
  recorded only once on each target, whatever the code above does.

An organisation has source accounts (``sources``: where posts are read, each
with its cursor) and target accounts (``targets``: where copies go). A post is
keyed by (organisation, source, source id); each of its copies on a target is
a ``deliveries`` row with the copy's id and URL, like bridgy-fed's
``Object.copies`` (https://github.com/snarfed/bridgy-fed, models.py).

Tables and keys (since m003):
- ``orgs`` (name): state and scheduling of an organisation;
- ``sources`` (org, name): kind ("x", "feed", "bluesky"), account id, handle,
  cursor, state; one active account of a kind and id in the whole ledger;
- ``targets`` (org, name): kind ("mastodon", "bluesky"), base URL, account id,
  handle, URL, credentials, instance limits, state;
- ``posts`` (org, source, post_id): the post, its sort key (the source's own
  order), origin ("poll"/"backfill") and delivery state;
- ``deliveries`` (org, source, post_id, target, part): kind, copy id, URL;
  a copy id is recorded once per (org, target, kind);
- ``uploads`` (org, target, created_at): media uploads, for the target's pace;
- ``apps`` (instance): OAuth clients.
An organisation's source "x" and target "mastodon" are what ``OrgRecord``
shows, so callers written for one X account and one Mastodon account keep working.

No SQL lives outside this module. The ledger knows no API and reads no clock:
callers pass ``now``.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import sqlite_utils
from sqlite_utils.migrations import Migrations

from bridge import __version__
from bridge.crashpoints import crash_point
from bridge.errors import ConfigError, LedgerError

ORG_STATES = ("active", "paused", "needs_relink", "unlinked")
POST_STATES = ("pending", "posting", "delivered", "skipped", "failed")
RECEIVING = ("active", "needs_relink")  # target states whose queue takes new posts (needs_relink: sent after relinking)

migrations = Migrations("geno-bridge")


@migrations()
def m001_initial(db: sqlite_utils.Database) -> None:
    # One statement at a time: executescript() would COMMIT the migration's transaction.
    for statement in _M001.split(";"):
        if statement.strip():
            db.execute(statement)


_M001 = """
        CREATE TABLE apps (
            instance TEXT PRIMARY KEY,
            client_id TEXT NOT NULL,
            client_secret TEXT NOT NULL,
            scopes TEXT NOT NULL,
            redirect_uri TEXT NOT NULL,
            created_at TEXT NOT NULL
        );
        CREATE TABLE orgs (
            name TEXT PRIMARY KEY,
            x_user_id TEXT NOT NULL,
            x_username TEXT NOT NULL,
            instance TEXT NOT NULL,
            account_id TEXT NOT NULL,
            acct TEXT NOT NULL,
            account_url TEXT NOT NULL,
            token TEXT,
            state TEXT NOT NULL DEFAULT 'active'
                CHECK (state IN ('active', 'paused', 'needs_relink', 'unlinked')),
            state_reason TEXT,
            limits_json TEXT,
            limits_fetched_at TEXT,
            last_poll_at TEXT,
            last_success_at TEXT,
            next_poll_at TEXT,
            poll_deferred_until TEXT,
            post_deferred_until TEXT,
            deferrals INTEGER NOT NULL DEFAULT 0,
            last_deferral TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE UNIQUE INDEX orgs_x_user ON orgs (x_user_id) WHERE state != 'unlinked';
        CREATE TABLE cursors (
            org TEXT PRIMARY KEY REFERENCES orgs (name) ON DELETE CASCADE,
            newest_id TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE TABLE posts (
            org TEXT NOT NULL REFERENCES orgs (name) ON DELETE CASCADE,
            post_id TEXT NOT NULL,
            sort_key INTEGER NOT NULL,
            origin TEXT NOT NULL DEFAULT 'poll',
            state TEXT NOT NULL DEFAULT 'pending'
                CHECK (state IN ('pending', 'posting', 'delivered', 'skipped', 'failed')),
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at TEXT,
            last_error TEXT,
            idempotency_key TEXT,
            posting_since TEXT,
            post_json TEXT NOT NULL,
            created_at TEXT NOT NULL,
            fetched_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            PRIMARY KEY (org, post_id)
        );
        CREATE INDEX posts_due ON posts (org, state, sort_key);
        CREATE TABLE deliveries (
            org TEXT NOT NULL,
            post_id TEXT NOT NULL,
            part INTEGER NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('status', 'boost', 'edit')),
            status_id TEXT NOT NULL,
            url TEXT NOT NULL,
            created_at TEXT NOT NULL,
            PRIMARY KEY (org, post_id, part),
            FOREIGN KEY (org, post_id) REFERENCES posts (org, post_id) ON DELETE CASCADE
        );
        CREATE UNIQUE INDEX deliveries_status ON deliveries (org, status_id, kind) WHERE kind != 'edit';
        CREATE TABLE uploads (
            org TEXT NOT NULL REFERENCES orgs (name) ON DELETE CASCADE,
            media_id TEXT NOT NULL,
            created_at TEXT NOT NULL
        );
        CREATE INDEX uploads_recent ON uploads (org, created_at);
        CREATE INDEX deliveries_post ON deliveries (post_id);
"""


@migrations()
def m002_open_posts_index(db: sqlite_utils.Database) -> None:
    # The delivery queue (open posts, oldest first) without a sort over every open post.
    db.execute(
        "CREATE INDEX posts_open ON posts (org, sort_key, post_id) WHERE state IN ('pending', 'posting')"
    )


@migrations()
def m003_sources_targets_copies(db: sqlite_utils.Database) -> None:
    """Sources and targets per organisation; posts keyed by source, deliveries by target.

    SQLite cannot change a primary key in place, so the tables are rebuilt
    (https://sqlite.org/lang_altertable.html#otheralter). This runs inside the
    migration's transaction with foreign keys ON (PRAGMA foreign_keys cannot
    change in a transaction), so the order matters: a DROP TABLE deletes its
    rows first and would cascade into any table still pointing at it. The new
    tables are created under ``*_new`` names pointing at each other, the old
    ones dropped children first, and the renames rewrite the references.
    """
    for statement in _M003.split(";"):
        if statement.strip():
            db.execute(statement)
    problems = db.execute("PRAGMA foreign_key_check").fetchall()
    if problems:  # raising rolls the whole migration back: the old ledger stays as it was
        raise sqlite3.IntegrityError(f"ledger migration m003: rows without their parent: {problems[:5]}")


_M003 = """
        CREATE TABLE orgs_new (
            name TEXT PRIMARY KEY,
            state TEXT NOT NULL DEFAULT 'active'
                CHECK (state IN ('active', 'paused', 'needs_relink', 'unlinked')),
            state_reason TEXT,
            last_poll_at TEXT,
            last_success_at TEXT,
            next_poll_at TEXT,
            poll_deferred_until TEXT,
            post_deferred_until TEXT,
            deferrals INTEGER NOT NULL DEFAULT 0,
            last_deferral TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE TABLE sources (
            org TEXT NOT NULL REFERENCES orgs_new (name) ON DELETE CASCADE,
            name TEXT NOT NULL,
            kind TEXT NOT NULL,
            account_id TEXT NOT NULL,
            handle TEXT NOT NULL,
            cursor TEXT,
            cursor_updated_at TEXT,
            state TEXT NOT NULL DEFAULT 'active'
                CHECK (state IN ('active', 'paused', 'needs_relink', 'unlinked')),
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            PRIMARY KEY (org, name)
        );
        CREATE TABLE targets (
            org TEXT NOT NULL REFERENCES orgs_new (name) ON DELETE CASCADE,
            name TEXT NOT NULL,
            kind TEXT NOT NULL,
            base_url TEXT NOT NULL,
            account_id TEXT NOT NULL,
            handle TEXT NOT NULL,
            account_url TEXT NOT NULL,
            credentials TEXT,
            limits_json TEXT,
            limits_fetched_at TEXT,
            state TEXT NOT NULL DEFAULT 'active'
                CHECK (state IN ('active', 'paused', 'needs_relink', 'unlinked')),
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            PRIMARY KEY (org, name)
        );
        CREATE TABLE posts_new (
            org TEXT NOT NULL,
            source TEXT NOT NULL,
            post_id TEXT NOT NULL,
            sort_key INTEGER NOT NULL,
            origin TEXT NOT NULL DEFAULT 'poll',
            state TEXT NOT NULL DEFAULT 'pending'
                CHECK (state IN ('pending', 'posting', 'delivered', 'skipped', 'failed')),
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at TEXT,
            last_error TEXT,
            idempotency_key TEXT,
            posting_since TEXT,
            post_json TEXT NOT NULL,
            created_at TEXT NOT NULL,
            fetched_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            PRIMARY KEY (org, source, post_id),
            FOREIGN KEY (org, source) REFERENCES sources (org, name) ON DELETE CASCADE
        );
        CREATE TABLE deliveries_new (
            org TEXT NOT NULL,
            source TEXT NOT NULL,
            post_id TEXT NOT NULL,
            target TEXT NOT NULL,
            part INTEGER NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('status', 'boost', 'edit')),
            copy_id TEXT NOT NULL,
            url TEXT NOT NULL,
            created_at TEXT NOT NULL,
            PRIMARY KEY (org, source, post_id, target, part),
            FOREIGN KEY (org, source, post_id) REFERENCES posts_new (org, source, post_id) ON DELETE CASCADE,
            FOREIGN KEY (org, target) REFERENCES targets (org, name) ON DELETE CASCADE
        );
        CREATE TABLE uploads_new (
            org TEXT NOT NULL,
            target TEXT NOT NULL,
            media_id TEXT NOT NULL,
            created_at TEXT NOT NULL,
            FOREIGN KEY (org, target) REFERENCES targets (org, name) ON DELETE CASCADE
        );

        INSERT INTO orgs_new (name, state, state_reason, last_poll_at, last_success_at, next_poll_at,
            poll_deferred_until, post_deferred_until, deferrals, last_deferral, created_at, updated_at)
        SELECT name, state, state_reason, last_poll_at, last_success_at, next_poll_at,
            poll_deferred_until, post_deferred_until, deferrals, last_deferral, created_at, updated_at FROM orgs;
        INSERT INTO sources (org, name, kind, account_id, handle, cursor, cursor_updated_at, state, created_at, updated_at)
        SELECT o.name, 'x', 'x', o.x_user_id, o.x_username, c.newest_id, c.updated_at,
            CASE WHEN o.state = 'unlinked' THEN 'unlinked' ELSE 'active' END, o.created_at, o.updated_at
        FROM orgs o LEFT JOIN cursors c ON c.org = o.name;
        INSERT INTO targets (org, name, kind, base_url, account_id, handle, account_url, credentials,
            limits_json, limits_fetched_at, state, created_at, updated_at)
        SELECT name, 'mastodon', 'mastodon', instance, account_id, acct, account_url, token,
            limits_json, limits_fetched_at, CASE WHEN state = 'unlinked' THEN 'unlinked' ELSE 'active' END,
            created_at, updated_at FROM orgs;
        INSERT INTO posts_new (org, source, post_id, sort_key, origin, state, attempts, next_attempt_at, last_error,
            idempotency_key, posting_since, post_json, created_at, fetched_at, updated_at)
        SELECT org, 'x', post_id, sort_key, origin, state, attempts, next_attempt_at, last_error,
            idempotency_key, posting_since, post_json, created_at, fetched_at, updated_at FROM posts;
        INSERT INTO deliveries_new (org, source, post_id, target, part, kind, copy_id, url, created_at)
        SELECT org, 'x', post_id, 'mastodon', part, kind, status_id, url, created_at FROM deliveries ORDER BY rowid;
        INSERT INTO uploads_new (org, target, media_id, created_at)
        SELECT org, 'mastodon', media_id, created_at FROM uploads ORDER BY rowid;

        DROP TABLE deliveries;
        DROP TABLE uploads;
        DROP TABLE cursors;
        DROP TABLE posts;
        DROP TABLE orgs;
        ALTER TABLE orgs_new RENAME TO orgs;
        ALTER TABLE posts_new RENAME TO posts;
        ALTER TABLE deliveries_new RENAME TO deliveries;
        ALTER TABLE uploads_new RENAME TO uploads;

        CREATE UNIQUE INDEX sources_account ON sources (kind, account_id) WHERE state != 'unlinked';
        CREATE INDEX posts_due ON posts (org, state, sort_key);
        CREATE INDEX posts_open ON posts (org, sort_key, post_id) WHERE state IN ('pending', 'posting');
        CREATE UNIQUE INDEX deliveries_copy ON deliveries (org, target, copy_id, kind) WHERE kind != 'edit';
        CREATE INDEX deliveries_post ON deliveries (post_id);
        CREATE INDEX uploads_recent ON uploads (org, target, created_at)
"""


@migrations()
def m004_target_states(db: sqlite_utils.Database) -> None:
    """Delivery state per (post, target): each target of an organisation has its own queue.

    A post's state (pending, posting, delivered...), attempts, next attempt,
    error, idempotency key and posting mark move from ``posts`` to
    ``post_targets``, one row per target that is to receive the post. Existing
    posts keep their state as their "mastodon" target's state (every ledger
    before this had that one target). The queue's order and origin are copied
    into the row so the open queue of one target stays one indexed range scan.
    Targets gain a reason for their state and a deferral of their own (a rate
    limit on one target defers only it); copies gain their deletion (``delete_state``
    "due", then "done" with ``deleted_at``) for deletes at the source.
    """
    stateless = db.execute(
        "SELECT p.org, p.post_id FROM posts p LEFT JOIN targets t ON t.org = p.org AND t.name = 'mastodon'"
        " WHERE t.org IS NULL LIMIT 5"
    ).fetchall()
    if stateless:  # their state would have nowhere to go: refuse (nothing changes) rather than lose it
        raise sqlite3.IntegrityError(f"ledger migration m004: posts of an organisation without a Mastodon target: {stateless}")
    for statement in _M004.split(";"):
        if statement.strip():
            db.execute(statement)
    problems = db.execute("PRAGMA foreign_key_check").fetchall()
    if problems:
        raise sqlite3.IntegrityError(f"ledger migration m004: rows without their parent: {problems[:5]}")


_M004 = """
        CREATE TABLE post_targets (
            org TEXT NOT NULL,
            source TEXT NOT NULL,
            post_id TEXT NOT NULL,
            target TEXT NOT NULL,
            sort_key INTEGER NOT NULL,
            origin TEXT NOT NULL DEFAULT 'poll',
            state TEXT NOT NULL DEFAULT 'pending'
                CHECK (state IN ('pending', 'posting', 'delivered', 'skipped', 'failed')),
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at TEXT,
            last_error TEXT,
            idempotency_key TEXT,
            posting_since TEXT,
            updated_at TEXT NOT NULL,
            PRIMARY KEY (org, source, post_id, target),
            FOREIGN KEY (org, source, post_id) REFERENCES posts (org, source, post_id) ON DELETE CASCADE,
            FOREIGN KEY (org, target) REFERENCES targets (org, name) ON DELETE CASCADE
        );
        INSERT INTO post_targets (org, source, post_id, target, sort_key, origin, state, attempts, next_attempt_at,
            last_error, idempotency_key, posting_since, updated_at)
        SELECT p.org, p.source, p.post_id, t.name, p.sort_key, p.origin, p.state, p.attempts, p.next_attempt_at,
            p.last_error, p.idempotency_key, p.posting_since, p.updated_at
        FROM posts p JOIN targets t ON t.org = p.org AND t.name = 'mastodon' ORDER BY p.rowid;
        DROP INDEX posts_due;
        DROP INDEX posts_open;
        ALTER TABLE posts DROP COLUMN state;
        ALTER TABLE posts DROP COLUMN attempts;
        ALTER TABLE posts DROP COLUMN next_attempt_at;
        ALTER TABLE posts DROP COLUMN last_error;
        ALTER TABLE posts DROP COLUMN idempotency_key;
        ALTER TABLE posts DROP COLUMN posting_since;
        CREATE INDEX post_targets_open ON post_targets (org, target, sort_key, post_id)
            WHERE state IN ('pending', 'posting');
        CREATE INDEX post_targets_state ON post_targets (org, target, state);
        ALTER TABLE targets ADD COLUMN state_reason TEXT;
        ALTER TABLE targets ADD COLUMN deferred_until TEXT;
        ALTER TABLE deliveries ADD COLUMN delete_state TEXT CHECK (delete_state IN ('due', 'done'));
        ALTER TABLE deliveries ADD COLUMN deleted_at TEXT;
        CREATE INDEX deliveries_delete_due ON deliveries (org, target) WHERE delete_state = 'due';
        CREATE INDEX deliveries_deleted ON deliveries (org, target, deleted_at) WHERE deleted_at IS NOT NULL
"""



@migrations()
def m005_web(db: sqlite_utils.Database) -> None:
    """What `bridge web` keeps (bridge/web/): invitations (only their hashes), OAuth attempts in flight,
    the policies an organisation sets for itself, and background jobs (archive imports) with their progress."""
    for statement in _M005.split(";"):
        if statement.strip():
            db.execute(statement)


@migrations()
def m006_source_handles_index(db: sqlite_utils.Database) -> None:
    # A mention is looked up by the source handle it names (Ledger.linked_handle, once per handle a
    # delivered post mentions): without this, a scan of every organisation's sources (10,000 at one
    # X key's capacity; issue 18).
    db.execute("CREATE INDEX sources_handle ON sources (lower(ltrim(handle, '@')))")


_M005 = """
        CREATE TABLE web_invites (
            token_hash TEXT PRIMARY KEY,
            org TEXT NOT NULL,
            created_at TEXT NOT NULL,
            expires_at TEXT NOT NULL,
            used_at TEXT
        );
        CREATE TABLE web_logins (
            state_hash TEXT PRIMARY KEY,
            purpose TEXT NOT NULL,
            data_json TEXT NOT NULL,
            created_at TEXT NOT NULL,
            expires_at TEXT NOT NULL
        );
        CREATE TABLE org_policies (
            org TEXT PRIMARY KEY REFERENCES orgs (name) ON DELETE CASCADE,
            policy_json TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE TABLE web_jobs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            org TEXT NOT NULL REFERENCES orgs (name) ON DELETE CASCADE,
            kind TEXT NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('planned', 'queued', 'running', 'done', 'failed', 'cancelled')),
            data_json TEXT NOT NULL,
            total INTEGER NOT NULL DEFAULT 0,
            done INTEGER NOT NULL DEFAULT 0,
            eta_seconds REAL,
            error TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE INDEX deliveries_recent ON deliveries (org, target, created_at)
"""


_REBUILDS = {"m003_sources_targets_copies", "m004_target_states"}  # migrations that rewrite whole tables


def _compact(conn: sqlite3.Connection) -> None:
    """Give back the pages a table rebuild freed (the old tables), once, after the migration committed.

    Best effort: a ledger that cannot be compacted now (another process reading
    it, too little disk for the copy VACUUM makes) works as it is, only larger.
    """
    try:
        conn.execute("VACUUM")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # in WAL mode the copy went through the -wal file
    except sqlite3.OperationalError:
        pass


def known_migrations() -> list[str]:
    """The migrations this version knows, in order (what an empty database would get)."""
    return [m.name for m in migrations.pending(sqlite_utils.Database(memory=True))]


def _refuse_newer(db: sqlite_utils.Database, path: Path | None) -> None:
    """A ledger a newer version migrated holds tables and rules this version does not know;
    writing to it could break them, so it is refused before anything is written."""
    applied = [m.name for m in migrations.applied(db)]
    known = known_migrations()
    unknown = [name for name in applied if name not in known]
    if unknown:
        raise ConfigError(
            f"database: {path} was written by a newer geno-bridge: it is at ledger schema version {len(applied)}"
            f" (with {', '.join(unknown)}), and this geno-bridge {__version__} knows schema version {len(known)};"
            " upgrade geno-bridge, or restore the ledger's backup from before the newer version ran"
        )


_SQLITE_FULL, _SQLITE_IOERR, _SQLITE_READONLY = 13, 10, 8  # https://sqlite.org/rescode.html


def _write_error(exc: sqlite3.OperationalError, path: Path | None) -> LedgerError | None:
    """The LedgerError for a write the disk refused; None for other errors (a bug, a lock)."""
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF  # the primary result code
    if code == _SQLITE_FULL:
        problem = "the disk is full"
    elif code == _SQLITE_IOERR:
        problem = "the disk failed to write"
    elif code == _SQLITE_READONLY:
        problem = "the file is read-only"
    else:
        return None
    return LedgerError(
        f"ledger {path or ':memory:'}: {problem} (SQLite: {exc}); this step was not recorded and nothing is lost:"
        " fix it and the bridge goes on where it stopped"
    )


IDS_PER_QUERY = 500  # well under SQLite's 32,766 host parameters per statement (sqlite.org/limits.html)


def _rows_for_ids(
    conn: sqlite3.Connection, sql: str, params: tuple[Any, ...], ids: Sequence[str]
) -> Iterator[Sequence[Any]]:
    """The rows of ``sql`` (whose ``IN ({})`` takes the ids) for every id, ``IDS_PER_QUERY`` ids per query."""
    for start in range(0, len(ids), IDS_PER_QUERY):
        chunk = ids[start : start + IDS_PER_QUERY]
        yield from conn.execute(sql.format(", ".join("?" * len(chunk))), (*params, *chunk))


@contextmanager
def _migration_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on ``<ledger>.migrate-lock`` while migrating (released when the process dies)."""
    try:
        fd = os.open(str(path) + ".migrate-lock", os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:  # a folder we cannot write to: SQLite names the real problem next
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def iso(dt: datetime | None) -> str | None:
    """UTC ISO-8601 with a fixed width, so text comparison in SQL orders like time."""
    if dt is None:
        return None
    if dt.tzinfo is None:
        raise ValueError("naive datetime given to the ledger; use timezone-aware UTC")
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(value: str | None) -> datetime | None:
    if value is None:
        return None
    return datetime.fromisoformat(value)  # Python 3.11 reads the trailing "Z"; strptime is ~10x slower


@dataclass(frozen=True)
class AppRecord:
    """An OAuth client registered on one instance, reused for every organisation there."""

    instance: str
    client_id: str
    client_secret: str
    scopes: str
    redirect_uri: str = "urn:ietf:wg:oauth:2.0:oob"


@dataclass(frozen=True)
class OrgRecord:
    name: str
    x_user_id: str
    x_username: str
    instance: str
    account_id: str
    acct: str
    account_url: str
    token: str | None = field(default=None, repr=False)
    state: str = "active"
    state_reason: str | None = None
    limits: dict[str, Any] | None = None
    limits_fetched_at: datetime | None = None
    last_poll_at: datetime | None = None
    last_success_at: datetime | None = None
    next_poll_at: datetime | None = None
    poll_deferred_until: datetime | None = None
    post_deferred_until: datetime | None = None
    deferrals: int = 0
    last_deferral: str | None = None
    created_at: datetime | None = None

    @property
    def fediverse_handle(self) -> str:
        """``user@instance-domain`` for mentions from other organisations."""
        if "@" in self.acct:
            return self.acct
        host = self.instance.split("://", 1)[-1].rstrip("/")
        return f"{self.acct}@{host}"


@dataclass(frozen=True)
class OrgTiming:
    """What the daemon's refresh reads of every organisation each minute (``Ledger.org_timings``): its
    state, its Mastodon token (for the log masker) and its poll times, not its whole ``OrgRecord``."""

    name: str
    state: str
    token: str | None = field(repr=False)
    last_poll_at: datetime | None
    last_success_at: datetime | None
    next_poll_at: datetime | None


@dataclass(frozen=True)
class PostRow:
    org: str
    post_id: str
    state: str
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    idempotency_key: str | None
    posting_since: datetime | None
    post: dict[str, Any]
    created_at: datetime
    fetched_at: datetime
    origin: str
    source: str = "x"
    sort_key: int = 0
    target: str = "mastodon"  # whose delivery state ``state`` .. ``posting_since`` are


@dataclass(frozen=True)
class Delivery:
    """One copy of one part of a post on one target (bridgy-fed's ``Object.copies`` entry)."""

    org: str
    post_id: str
    part: int
    kind: str
    status_id: str  # the copy's id on the target (a Mastodon status id)
    url: str
    created_at: datetime
    source: str = "x"
    target: str = "mastodon"
    deleted_at: datetime | None = None  # deleted on the target (its source post is gone)

    @property
    def copy_id(self) -> str:
        return self.status_id


@dataclass(frozen=True)
class FetchedPost:
    """What ``record_fetched`` needs of a post: its id, creation time and normalised JSON.

    ``post`` may be that JSON as text already (compact, as ``record_fetched`` writes it):
    a backfill stages what it checked as text and records it without parsing it again.
    """

    post_id: str
    created_at: datetime
    post: dict[str, Any] | str
    error: str | None = None  # the post could not be read: recorded as failed with this reason
    sort_key: int | None = None  # the source's order of its ids; None: the id's number (X), else the creation time
    source: str = "x"  # the organisation's source it came from (``SourceAccount.name``)


@dataclass(frozen=True)
class WebInvite:
    """An invitation `bridge invite` made; the ledger keeps only its token's hash."""

    token_hash: str
    org: str
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None


@dataclass(frozen=True)
class WebJob:
    """A background job of `bridge web` (an archive import) and its progress, kept across restarts."""

    id: int
    org: str
    kind: str
    state: str  # planned (dry run shown), queued (Start clicked), running, done, failed, cancelled
    data: dict[str, Any]
    total: int
    done: int
    eta_seconds: float | None
    error: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class SourceAccount:
    """One account an organisation's posts are read from (an X account, a feed, a Bluesky account).

    ``name`` is how posts and cursors refer to it within the organisation ("x"
    for the account ``bridge link`` links); ``kind`` says which network it is.
    """

    org: str
    name: str
    kind: str
    account_id: str  # X user id, feed URL, DID
    handle: str  # X username, feed title, Bluesky handle
    cursor: str | None = None
    state: str = "active"
    cursor_updated_at: datetime | None = None
    created_at: datetime | None = None


@dataclass(frozen=True)
class TargetAccount:
    """One account an organisation's posts are copied to (a Mastodon or Bluesky account)."""

    org: str
    name: str
    kind: str
    base_url: str  # the Mastodon instance, the Bluesky PDS
    account_id: str
    handle: str  # Mastodon acct, Bluesky handle
    account_url: str
    credentials: str | None = field(default=None, repr=False)  # the access token; never logged
    state: str = "active"
    limits: dict[str, Any] | None = None
    limits_fetched_at: datetime | None = None
    created_at: datetime | None = None
    state_reason: str | None = None  # why it needs a new link
    deferred_until: datetime | None = None  # rate limited: nothing is sent to it before


X_SOURCE = "x"  # the source ``OrgRecord``'s X fields describe
MASTODON_TARGET = "mastodon"  # the target ``OrgRecord``'s Mastodon fields describe

_ORG_TIME_FIELDS = (
    "limits_fetched_at",
    "last_poll_at",
    "last_success_at",
    "next_poll_at",
    "poll_deferred_until",
    "post_deferred_until",
    "created_at",
)
_ORG_FIELDS = (
    "x_user_id",
    "x_username",
    "instance",
    "account_id",
    "acct",
    "account_url",
    "token",
    "state",
    "state_reason",
    "limits",
    "deferrals",
    "last_deferral",
    *_ORG_TIME_FIELDS,
)
# Where each OrgRecord field is stored since m003: the organisation, its X source, its Mastodon target.
_SOURCE_COLUMNS = {"x_user_id": "account_id", "x_username": "handle"}
_TARGET_COLUMNS = {
    "instance": "base_url",
    "account_id": "account_id",
    "acct": "handle",
    "account_url": "account_url",
    "token": "credentials",
    "limits": "limits_json",
    "limits_fetched_at": "limits_fetched_at",
}
_ORG_SELECT = (
    "SELECT o.name, COALESCE(s.account_id, '') AS x_user_id, COALESCE(s.handle, '') AS x_username,"
    " COALESCE(t.base_url, '') AS instance, COALESCE(t.account_id, '') AS account_id, COALESCE(t.handle, '') AS acct,"
    " COALESCE(t.account_url, '') AS account_url, t.credentials AS token, o.state, o.state_reason,"
    " t.limits_json, t.limits_fetched_at, o.last_poll_at, o.last_success_at, o.next_poll_at, o.poll_deferred_until,"
    " o.post_deferred_until, o.deferrals, o.last_deferral, o.created_at"
    " FROM orgs o"
    f" LEFT JOIN sources s ON s.org = o.name AND s.name = '{X_SOURCE}'"
    f" LEFT JOIN targets t ON t.org = o.name AND t.name = '{MASTODON_TARGET}'"
)


def _account_state(org_state: str) -> str:
    """An organisation's X source and Mastodon target are unlinked with it, and active otherwise."""
    return "unlinked" if org_state == "unlinked" else "active"


_MAX_INTEGER = 2**63 - 1  # SQLite INTEGER is signed 64 bits (https://sqlite.org/datatype3.html)


def _numeric(value: str) -> int | None:
    """The number an id or cursor of ASCII digits stands for, if SQLite can store it; else None.

    (``str.isdigit`` alone also accepts "²", which ``int()`` refuses.)
    """
    if not (value.isascii() and value.isdigit() and len(value) <= 19):
        return None
    number = int(value)
    return number if number <= _MAX_INTEGER else None


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def derived_sort_key(post_id: str, created_at: datetime) -> int:
    """The order of a post whose source gave none: a numeric id orders by its number (X snowflakes grow
    with time), any other id by its creation time in microseconds, so other sources never all sort as 0."""
    number = _numeric(post_id)
    if number is not None:
        return number
    return (created_at - _EPOCH) // timedelta(microseconds=1)


class Ledger:
    """Typed access to the ledger file. One instance per thread (sqlite3 connections are not shared)."""

    def __init__(self, db: sqlite_utils.Database, path: Path | None) -> None:
        self.db = db
        self.path = path

    # -- opening ------------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path, *, busy_timeout_ms: int = 10_000) -> Ledger:
        """Open (and create or migrate) the ledger.

        The file is created with mode 0600 before SQLite touches it: it holds
        Mastodon tokens. Its folder is created (0700) if missing.
        """
        p = Path(path)
        try:
            p.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not p.exists():
                fd = os.open(p, os.O_CREAT | os.O_WRONLY, 0o600)
                os.close(fd)
            os.chmod(p, 0o600)
            conn = sqlite3.connect(str(p), timeout=busy_timeout_ms / 1000, check_same_thread=False, isolation_level=None)
        except OSError as exc:
            raise ConfigError(f"database: cannot open the ledger at {p}: {exc.strerror or exc}") from exc
        except sqlite3.Error as exc:
            raise ConfigError(f"database: cannot open the ledger at {p}: {exc}") from exc
        return cls._setup(conn, p, busy_timeout_ms)

    @classmethod
    def memory(cls) -> Ledger:
        """An in-memory ledger, for previews and dry runs that must not touch the real one."""
        conn = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        return cls._setup(conn, None, 1000)

    @classmethod
    def _setup(cls, conn: sqlite3.Connection, path: Path | None, busy_timeout_ms: int) -> Ledger:
        where = path if path is not None else ":memory:"
        pending: list[str] = []
        # Two processes opening a new ledger at once (the daemon and `bridge web`, or a CLI command) must not
        # both set it up: switching a new file to WAL and a read transaction becoming a write one once another
        # writer committed both fail at once with "database is locked" (no busy wait). One sets up and migrates;
        # the others wait for the lock, then find nothing pending.
        with _migration_lock(path) if path is not None else nullcontext():
            try:
                conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
                if path is not None:
                    conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA foreign_keys = ON")
                conn.execute("PRAGMA synchronous = NORMAL")
                db = sqlite_utils.Database(conn)
                _refuse_newer(db, path)
                pending = [m.name for m in migrations.pending(db)]
            except sqlite3.DatabaseError as exc:
                raise ConfigError(f"database: {where} is not a usable geno-bridge ledger: {exc}") from exc
            try:
                migrations.apply(db)  # each migration in its own transaction: one that fails leaves no trace
            except sqlite3.DatabaseError as exc:
                raise ConfigError(
                    f"database: the ledger at {where} could not be upgraded ({', '.join(pending)}): {exc};"
                    " the failed step changed nothing, so the previous geno-bridge can still use the ledger"
                ) from exc
            if _REBUILDS.intersection(pending):
                _compact(conn)
        # WAL and shared-memory files inherit nothing from the main file's mode.
        if path is not None:
            for suffix in ("-wal", "-shm"):
                side = Path(str(path) + suffix)
                if side.exists():
                    os.chmod(side, 0o600)
        return cls(db, path)

    def close(self) -> None:
        self.db.conn.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT: takes the write lock up front so two processes never interleave.

        A full disk (or a failing one) ends the transaction with nothing of it written
        and raises LedgerError, which callers report without a traceback.
        """
        conn = self.db.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                if conn.in_transaction:  # SQLite may have rolled back already (SQLITE_FULL does)
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            error = _write_error(exc, self.path)
            if error is None:
                raise
            raise error from exc

    def schema_version(self) -> list[str]:
        return [row["name"] for row in self.db["_sqlite_migrations"].rows]

    # -- apps ---------------------------------------------------------------
    def get_app(self, instance: str) -> AppRecord | None:
        row = self.db.conn.execute(
            "SELECT instance, client_id, client_secret, scopes, redirect_uri FROM apps WHERE instance = ?", (instance,)
        ).fetchone()
        return AppRecord(*row) if row else None

    def save_app(self, app: AppRecord, now: datetime | None = None) -> None:
        created = iso(now or datetime.now(timezone.utc))
        with self.transaction() as c:
            c.execute(
                "INSERT INTO apps (instance, client_id, client_secret, scopes, redirect_uri, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (instance) DO UPDATE SET client_id = excluded.client_id,"
                " client_secret = excluded.client_secret, scopes = excluded.scopes, redirect_uri = excluded.redirect_uri",
                (app.instance, app.client_id, app.client_secret, app.scopes, app.redirect_uri, created),
            )

    # -- organisations ------------------------------------------------------
    def _org_from_row(self, row: sqlite3.Row | tuple[Any, ...], names: Sequence[str]) -> OrgRecord:
        d = dict(zip(names, row, strict=True))
        limits = d.pop("limits_json")
        d["limits"] = json.loads(limits) if limits else None
        for key in _ORG_TIME_FIELDS:
            d[key] = parse_iso(d[key])
        return OrgRecord(**d)

    def _select_orgs(self, where: str = "", params: Sequence[Any] = ()) -> list[OrgRecord]:
        cur = self.db.conn.execute(f"{_ORG_SELECT} {where} ORDER BY o.name", params)
        names = [c[0] for c in cur.description]
        return [self._org_from_row(r, names) for r in cur.fetchall()]

    def get_org(self, name: str) -> OrgRecord | None:
        rows = self._select_orgs("WHERE o.name = ?", (name,))
        return rows[0] if rows else None

    def list_orgs(self, *, include_unlinked: bool = False) -> list[OrgRecord]:
        if include_unlinked:
            return self._select_orgs()
        return self._select_orgs("WHERE o.state != 'unlinked'")

    def org_timings(self) -> list[OrgTiming]:
        """``list_orgs()`` as the daemon's refresh needs it: the same organisations in the same order, only
        the fields of ``OrgTiming`` (reading and parsing whole records, limits included, was most of a
        refresh at 10,000 organisations, issue 18)."""
        rows = self.db.conn.execute(
            "SELECT o.name, o.state, t.credentials, o.last_poll_at, o.last_success_at, o.next_poll_at FROM orgs o"
            f" LEFT JOIN targets t ON t.org = o.name AND t.name = '{MASTODON_TARGET}'"
            " WHERE o.state != 'unlinked' ORDER BY o.name"
        ).fetchall()
        return [OrgTiming(name, state, token, parse_iso(polled), parse_iso(succeeded), parse_iso(due))
                for name, state, token, polled, succeeded, due in rows]

    def linked_handles(self, kind: str = "mastodon") -> dict[str, str]:
        """The mention map for targets of ``kind``: lowercased handle of every linked organisation's
        X or Bluesky source -> that organisation's handle on its target of that kind (a Mastodon
        acct as ``user@instance-domain``; other kinds' handles as stored, e.g. a Bluesky handle)."""
        rows = self.db.conn.execute(
            "SELECT s.handle, t.handle, t.base_url FROM orgs o"
            " JOIN sources s ON s.org = o.name AND s.kind IN ('x', 'bluesky') AND s.state != 'unlinked'"
            " JOIN targets t ON t.org = o.name AND t.kind = ? AND t.state != 'unlinked'"
            " WHERE o.state != 'unlinked' ORDER BY o.name, t.name",
            (kind,),
        ).fetchall()
        out: dict[str, str] = {}
        for source_handle, handle, base_url in rows:
            if kind == "mastodon" and "@" not in handle:  # a local acct: the instance's domain makes it global
                handle = f"{handle}@{base_url.split('://', 1)[-1].rstrip('/')}"
            out.setdefault(source_handle.lstrip("@").lower(), handle)
        return out

    def linked_handle(self, kind: str, source_handle: str) -> str | None:
        """One entry of ``linked_handles(kind)``: the handle on a target of ``kind`` of the linked organisation
        whose X or Bluesky source is ``source_handle`` (any case, with or without "@"), or None.

        A post mentions a few handles; the whole map reads every organisation (10,000 at
        one X key's capacity), so a delivery asks for the handles it meets (issue 18).
        Same rows, order and first-wins as ``linked_handles``; handles are ASCII, where
        SQLite's ``lower`` and Python's agree.
        """
        row = self.db.conn.execute(
            "SELECT t.handle, t.base_url FROM orgs o"
            " JOIN sources s ON s.org = o.name AND s.kind IN ('x', 'bluesky') AND s.state != 'unlinked'"
            " AND lower(ltrim(s.handle, '@')) = ?"
            " JOIN targets t ON t.org = o.name AND t.kind = ? AND t.state != 'unlinked'"
            " WHERE o.state != 'unlinked' ORDER BY o.name, t.name LIMIT 1",
            (source_handle.lstrip("@").lower(), kind),
        ).fetchone()
        if row is None:
            return None
        handle, base_url = row
        if kind == "mastodon" and "@" not in handle:  # a local acct: the instance's domain makes it global
            handle = f"{handle}@{base_url.split('://', 1)[-1].rstrip('/')}"
        return str(handle)

    def org_by_x_user(self, x_user_id: str) -> OrgRecord | None:
        row = self.db.conn.execute(
            "SELECT s.org FROM sources s JOIN orgs o ON o.name = s.org"
            " WHERE s.kind = 'x' AND s.account_id = ? AND s.state != 'unlinked' AND o.state != 'unlinked'"
            " ORDER BY s.org LIMIT 1",
            (x_user_id,),
        ).fetchone()
        return self.get_org(row[0]) if row else None

    def save_org(self, org: OrgRecord, now: datetime) -> None:
        """Insert or replace an organisation's link data, keeping its history and cursor.

        The X fields go to its source "x", the Mastodon fields to its target "mastodon".
        """
        created = iso(org.created_at) or iso(now)
        limits = json.dumps(org.limits) if org.limits is not None else None
        account_state = _account_state(org.state)
        try:
            with self.transaction() as c:
                c.execute(
                    "INSERT INTO orgs (name, state, state_reason, last_poll_at, last_success_at, next_poll_at,"
                    " poll_deferred_until, post_deferred_until, deferrals, last_deferral, created_at, updated_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET"
                    " state = excluded.state, state_reason = excluded.state_reason,"
                    " last_poll_at = excluded.last_poll_at, last_success_at = excluded.last_success_at,"
                    " next_poll_at = excluded.next_poll_at, poll_deferred_until = excluded.poll_deferred_until,"
                    " post_deferred_until = excluded.post_deferred_until, deferrals = excluded.deferrals,"
                    " last_deferral = excluded.last_deferral, updated_at = excluded.updated_at",
                    (org.name, org.state, org.state_reason, iso(org.last_poll_at), iso(org.last_success_at),
                     iso(org.next_poll_at), iso(org.poll_deferred_until), iso(org.post_deferred_until),
                     org.deferrals, org.last_deferral, created, iso(now)),
                )
                self._upsert_source(c, SourceAccount(org.name, X_SOURCE, "x", org.x_user_id, org.x_username,
                                                     state=account_state), now)
                self._upsert_target(
                    c,
                    TargetAccount(org.name, MASTODON_TARGET, "mastodon", org.instance, org.account_id, org.acct,
                                  org.account_url, org.token, account_state, org.limits, org.limits_fetched_at),
                    now,
                    limits_json=limits,
                )
        except sqlite3.IntegrityError as exc:
            other = self.org_by_x_user(org.x_user_id)
            raise ConfigError(
                f"the X account @{org.x_username} is already linked as organisation {other.name if other else '?'}"
            ) from exc

    def update_org(self, name: str, now: datetime, **changes: Any) -> None:
        """Change some columns of one organisation (times as datetimes, limits as a dict)."""
        if not changes:
            return
        unknown = set(changes) - set(_ORG_FIELDS)
        if unknown:
            raise ValueError(f"unknown organisation fields: {sorted(unknown)}")
        org_values: dict[str, Any] = {}
        source_values: dict[str, Any] = {}
        target_values: dict[str, Any] = {}
        for key, value in changes.items():
            if key == "limits":
                value = json.dumps(value) if value is not None else None
            elif key in _ORG_TIME_FIELDS:
                value = iso(value)
            if key in _SOURCE_COLUMNS:
                source_values[_SOURCE_COLUMNS[key]] = value
            elif key in _TARGET_COLUMNS:
                target_values[_TARGET_COLUMNS[key]] = value
            else:
                org_values[key] = value
        if "state" in changes:
            source_values["state"] = target_values["state"] = _account_state(changes["state"])
        stamp = iso(now)
        with self.transaction() as c:
            for table, values, where in (
                ("orgs", org_values, "name = ?"),
                ("sources", source_values, f"org = ? AND name = '{X_SOURCE}'"),
                ("targets", target_values, f"org = ? AND name = '{MASTODON_TARGET}'"),
            ):
                if values or table == "orgs":
                    values = {**values, "updated_at": stamp}
                    c.execute(
                        f"UPDATE {table} SET {', '.join(f'{k} = ?' for k in values)} WHERE {where}",
                        (*values.values(), name),
                    )

    def set_next_polls(self, next_polls: Mapping[str, datetime | None], now: datetime) -> None:
        """``update_org(name, now, next_poll_at=when)`` for many organisations in one transaction: after a
        round of polls every organisation's next poll moved, and one transaction each cost the daemon's
        refresh 10,000 commits at one X key's capacity (issue 18)."""
        if not next_polls:
            return
        stamp = iso(now)
        with self.transaction() as c:
            c.executemany("UPDATE orgs SET next_poll_at = ?, updated_at = ? WHERE name = ?",
                          [(iso(when), stamp, name) for name, when in next_polls.items()])

    def remove_org(self, name: str, *, keep_history: bool, now: datetime) -> None:
        """Forget an organisation. With ``keep_history`` its rows stay (state ``unlinked``, no token)."""
        with self.transaction() as c:
            if keep_history:
                c.execute(
                    "UPDATE orgs SET state = 'unlinked', state_reason = 'unlinked', updated_at = ? WHERE name = ?",
                    (iso(now), name),
                )
                c.execute("UPDATE sources SET state = 'unlinked', updated_at = ? WHERE org = ?", (iso(now), name))
                c.execute(
                    "UPDATE targets SET state = 'unlinked', credentials = NULL, updated_at = ? WHERE org = ?",
                    (iso(now), name),
                )
            else:
                c.execute("DELETE FROM deliveries WHERE org = ?", (name,))
                c.execute("DELETE FROM orgs WHERE name = ?", (name,))

    # -- source and target accounts -------------------------------------------
    @staticmethod
    def _upsert_source(c: sqlite3.Connection, account: SourceAccount, now: datetime) -> None:
        """Insert or update a source's identity and state; its cursor is only moved by the cursor methods."""
        c.execute(
            "INSERT INTO sources (org, name, kind, account_id, handle, cursor, cursor_updated_at, state,"
            " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (org, name) DO UPDATE SET kind = excluded.kind, account_id = excluded.account_id,"
            " handle = excluded.handle, state = excluded.state, updated_at = excluded.updated_at",
            (account.org, account.name, account.kind, account.account_id, account.handle, account.cursor,
             iso(now) if account.cursor is not None else None, account.state,
             iso(account.created_at) or iso(now), iso(now)),
        )

    @staticmethod
    def _upsert_target(
        c: sqlite3.Connection, account: TargetAccount, now: datetime, *, limits_json: str | None = None
    ) -> None:
        if limits_json is None and account.limits is not None:
            limits_json = json.dumps(account.limits)
        c.execute(
            "INSERT INTO targets (org, name, kind, base_url, account_id, handle, account_url, credentials,"
            " limits_json, limits_fetched_at, state, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (org, name) DO UPDATE SET kind = excluded.kind, base_url = excluded.base_url,"
            " account_id = excluded.account_id, handle = excluded.handle, account_url = excluded.account_url,"
            " credentials = excluded.credentials, limits_json = excluded.limits_json,"
            " limits_fetched_at = excluded.limits_fetched_at, state = excluded.state, updated_at = excluded.updated_at,"
            " state_reason = CASE WHEN excluded.state = 'active' THEN NULL ELSE targets.state_reason END",
            (account.org, account.name, account.kind, account.base_url, account.account_id, account.handle,
             account.account_url, account.credentials, limits_json, iso(account.limits_fetched_at), account.state,
             iso(account.created_at) or iso(now), iso(now)),
        )

    def add_source(self, account: SourceAccount, now: datetime) -> None:
        """Link (or update) one source account of an existing organisation.

        An account can be linked by one organisation at a time (unique per kind and account id).
        A given ``cursor`` is the first one; an existing cursor is kept.
        """
        try:
            with self.transaction() as c:
                self._upsert_source(c, account, now)
        except sqlite3.IntegrityError as exc:
            raise ConfigError(
                f"the {account.kind} account {account.handle} cannot be linked to organisation {account.org}:"
                " it is already linked elsewhere, or the organisation does not exist"
            ) from exc

    def add_target(self, account: TargetAccount, now: datetime) -> None:
        """Link (or update) one target account of an existing organisation."""
        try:
            with self.transaction() as c:
                self._upsert_target(c, account, now)
        except sqlite3.IntegrityError as exc:
            raise ConfigError(f"organisation {account.org} does not exist: cannot add target {account.name}") from exc

    _SOURCE_COLS = "org, name, kind, account_id, handle, cursor, state, cursor_updated_at, created_at"
    _TARGET_COLS = (
        "org, name, kind, base_url, account_id, handle, account_url, credentials, state, limits_json,"
        " limits_fetched_at, created_at, state_reason, deferred_until"
    )

    @staticmethod
    def _source_from_row(row: Sequence[Any]) -> SourceAccount:
        org, name, kind, account_id, handle, cursor, state = row[:7]
        return SourceAccount(org, name, kind, account_id, handle, cursor, state, parse_iso(row[7]), parse_iso(row[8]))

    @staticmethod
    def _target_from_row(row: Sequence[Any]) -> TargetAccount:
        limits = json.loads(row[9]) if row[9] else None
        org, name, kind, base_url, account_id, handle, account_url, credentials, state = row[:9]
        return TargetAccount(org, name, kind, base_url, account_id, handle, account_url, credentials, state, limits,
                             parse_iso(row[10]), parse_iso(row[11]), row[12], parse_iso(row[13]))

    def sources(self, org: str, *, include_unlinked: bool = False) -> list[SourceAccount]:
        """An organisation's source accounts, by name."""
        where = "" if include_unlinked else " AND state != 'unlinked'"
        rows = self.db.conn.execute(
            f"SELECT {self._SOURCE_COLS} FROM sources WHERE org = ?{where} ORDER BY name", (org,)
        ).fetchall()
        return [self._source_from_row(r) for r in rows]

    def get_source(self, org: str, name: str = X_SOURCE) -> SourceAccount | None:
        row = self.db.conn.execute(
            f"SELECT {self._SOURCE_COLS} FROM sources WHERE org = ? AND name = ?", (org, name)
        ).fetchone()
        return self._source_from_row(row) if row else None

    def targets(self, org: str, *, include_unlinked: bool = False) -> list[TargetAccount]:
        """An organisation's target accounts, by name."""
        where = "" if include_unlinked else " AND state != 'unlinked'"
        rows = self.db.conn.execute(
            f"SELECT {self._TARGET_COLS} FROM targets WHERE org = ?{where} ORDER BY name", (org,)
        ).fetchall()
        return [self._target_from_row(r) for r in rows]

    def get_target(self, org: str, name: str = MASTODON_TARGET) -> TargetAccount | None:
        row = self.db.conn.execute(
            f"SELECT {self._TARGET_COLS} FROM targets WHERE org = ? AND name = ?", (org, name)
        ).fetchone()
        return self._target_from_row(row) if row else None

    def set_source_state(self, org: str, state: str, now: datetime, *, source: str = X_SOURCE) -> None:
        """Mark one source of an organisation (``needs_relink``: its feed answered 404/410; ``active`` again)."""
        with self.transaction() as c:
            c.execute("UPDATE sources SET state = ?, updated_at = ? WHERE org = ? AND name = ?",
                      (state, iso(now), org, source))

    _TARGET_UPDATES = ("credentials", "limits", "limits_fetched_at", "state", "state_reason", "deferred_until")

    def update_target(self, org: str, now: datetime, *, target: str = MASTODON_TARGET, **changes: Any) -> None:
        """Change some columns of one target row (times as datetimes, limits as a dict): its cached limits,
        new credentials (a refreshed session), its state and why, its rate-limit deferral."""
        unknown = set(changes) - set(self._TARGET_UPDATES)
        if unknown:
            raise ValueError(f"unknown target fields: {sorted(unknown)}")
        values: dict[str, Any] = {}
        for key, value in changes.items():
            if key == "limits":
                values["limits_json"] = json.dumps(value) if value is not None else None
            elif key in ("limits_fetched_at", "deferred_until"):
                values[key] = iso(value)
            else:
                values[key] = value
        values["updated_at"] = iso(now)
        with self.transaction() as c:
            c.execute(
                f"UPDATE targets SET {', '.join(f'{k} = ?' for k in values)} WHERE org = ? AND name = ?",
                (*values.values(), org, target),
            )

    # -- cursors and fetched posts -----------------------------------------
    def get_cursor(self, org: str, *, source: str = X_SOURCE) -> str | None:
        row = self.db.conn.execute("SELECT cursor FROM sources WHERE org = ? AND name = ?", (org, source)).fetchone()
        return row[0] if row else None

    def set_cursor(self, org: str, newest_id: str, now: datetime, *, source: str = X_SOURCE) -> None:
        with self.transaction() as c:
            self._advance_cursor(c, org, source, newest_id, now)

    @staticmethod
    def _advance_cursor(c: sqlite3.Connection, org: str, source: str, cursor: str, now: datetime) -> None:
        """Move a source's cursor forward. A numeric cursor (an X id) never moves back; any other
        cursor is the source's own token (a feed's ETag, a Bluesky cursor) and is taken as given."""
        row = c.execute("SELECT cursor FROM sources WHERE org = ? AND name = ?", (org, source)).fetchone()
        if row is None:
            raise ValueError(f"organisation {org!r} has no source {source!r}")
        old, new = (_numeric(row[0]) if row[0] is not None else None), _numeric(cursor)
        if old is not None and (new is None or old >= new):
            return  # a numeric cursor moves only forward, and never to something that is not a number
        c.execute(
            "UPDATE sources SET cursor = ?, cursor_updated_at = ? WHERE org = ? AND name = ?",
            (cursor, iso(now), org, source),
        )

    def record_fetched(
        self,
        org: str,
        posts: Iterable[FetchedPost],
        *,
        cursor: str | None,
        now: datetime,
        origin: str = "poll",
        source: str | None = None,
    ) -> int:
        """Insert fetched posts as ``pending`` on each receiving target and advance the cursor in ONE transaction.

        Each target of the organisation that is linked now (active, or waiting for a
        new link: nothing is lost while it is) gets the post in its queue; a target
        linked later never receives older posts (no flood).

        A post already in the ledger (seen by the poller, or by a backfill) is
        left as it is: that is what makes poll and backfill never post twice.
        ``source`` is whose cursor moves (default: the posts' source, else "x");
        one call records posts of one source. Returns how many posts were new.
        """
        posts = list(posts)
        if not posts and cursor is None:
            return 0  # an idle poll: nothing to write, so no write lock taken
        names = {p.source for p in posts}
        if source is not None:
            names.add(source)
        if len(names) > 1:
            raise ValueError(f"record_fetched: posts of several sources in one call: {sorted(names)}")
        source = names.pop() if names else X_SOURCE
        stamp = iso(now)  # once per call, not per post (issue 18: a twentieth of recording an archive)
        added: list[str] = []
        with self.transaction() as c:
            targets = [r[0] for r in c.execute(
                f"SELECT name FROM targets WHERE org = ? AND state IN ({', '.join(repr(s) for s in RECEIVING)})"
                " ORDER BY name", (org,)
            )] if posts else []
            # One INSERT per table per call instead of one per post (issue 18): a post already in the
            # ledger (by the poller or a backfill) is left as it is, its states too, so those are looked
            # up first, 500 ids per query; inside the transaction, which holds the write lock.
            known = {r[0] for r in _rows_for_ids(
                c, "SELECT post_id FROM posts WHERE org = ? AND source = ? AND post_id IN ({})",
                (org, source), [p.post_id for p in posts],
            )}
            rows: list[tuple[Any, ...]] = []
            target_rows: list[tuple[Any, ...]] = []
            for p in posts:
                if p.post_id in known:
                    continue
                known.add(p.post_id)  # the same post twice in one call: recorded once
                sort_key = p.sort_key if p.sort_key is not None else derived_sort_key(p.post_id, p.created_at)
                rows.append((org, source, p.post_id, sort_key, origin,
                             p.post if isinstance(p.post, str)
                             else json.dumps(p.post, ensure_ascii=False, separators=(",", ":")),
                             iso(p.created_at), stamp, stamp))
                state = "failed" if p.error else "pending"
                target_rows.extend((org, source, p.post_id, t, sort_key, origin, state, p.error, stamp) for t in targets)
                added.append(p.post_id)
            c.executemany(
                "INSERT INTO posts (org, source, post_id, sort_key, origin, post_json,"
                " created_at, fetched_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            c.executemany(
                "INSERT INTO post_targets (org, source, post_id, target, sort_key, origin, state, last_error,"
                " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                target_rows,
            )
            for _ in added:
                crash_point("record_post")  # inside the batch's transaction: a crash keeps none of the batch
            if cursor is not None:
                crash_point("before_cursor")  # the posts are written, the cursor not yet: a crash keeps neither
                self._advance_cursor(c, org, source, cursor, now)
        return len(added)

    # -- posts ----------------------------------------------------------------
    _POST_COLS = (
        "p.org, p.post_id, pt.state, pt.attempts, pt.next_attempt_at, pt.last_error, pt.idempotency_key,"
        " pt.posting_since, p.post_json, p.created_at, p.fetched_at, p.origin, p.source, p.sort_key, pt.target"
    )
    _POST_FROM = (
        " FROM post_targets pt JOIN posts p ON p.org = pt.org AND p.source = pt.source AND p.post_id = pt.post_id"
    )

    @staticmethod
    def _post_from_row(row: Sequence[Any]) -> PostRow:
        return PostRow(
            org=row[0],
            post_id=row[1],
            state=row[2],
            attempts=row[3],
            next_attempt_at=parse_iso(row[4]),
            last_error=row[5],
            idempotency_key=row[6],
            posting_since=parse_iso(row[7]),
            post=json.loads(row[8]),
            created_at=parse_iso(row[9]),  # type: ignore[arg-type]
            fetched_at=parse_iso(row[10]),  # type: ignore[arg-type]
            origin=row[11],
            source=row[12],
            sort_key=row[13],
            target=row[14],
        )

    @staticmethod
    def _source_filter(sql: str, params: list[Any], source: str | None, column: str = "source") -> str:
        if source is None:
            return sql
        params.append(source)
        return sql + f" AND {column} = ?"

    def get_post(
        self, org: str, post_id: str, *, source: str = X_SOURCE, target: str | None = MASTODON_TARGET
    ) -> PostRow | None:
        """A recorded post with its delivery state on ``target`` (None: the post has no state there).

        ``target=None``: the post with the state of its first target by name; a post
        recorded while its organisation had no target shows as skipped.
        """
        if target is None:
            row = self.db.conn.execute(
                "SELECT p.org, p.post_id, COALESCE(pt.state, 'skipped'), COALESCE(pt.attempts, 0), pt.next_attempt_at,"
                " COALESCE(pt.last_error, CASE WHEN pt.state IS NULL THEN 'no target was linked when it was read' END),"
                " pt.idempotency_key, pt.posting_since, p.post_json, p.created_at, p.fetched_at, p.origin, p.source,"
                " p.sort_key, COALESCE(pt.target, '')"
                " FROM posts p LEFT JOIN post_targets pt"
                " ON pt.org = p.org AND pt.source = p.source AND pt.post_id = p.post_id"
                " WHERE p.org = ? AND p.source = ? AND p.post_id = ? ORDER BY pt.target LIMIT 1",
                (org, source, post_id),
            ).fetchone()
        else:
            row = self.db.conn.execute(
                f"SELECT {self._POST_COLS}{self._POST_FROM}"
                " WHERE pt.org = ? AND pt.source = ? AND pt.post_id = ? AND pt.target = ?",
                (org, source, post_id, target),
            ).fetchone()
        return self._post_from_row(row) if row else None

    def post_states(
        self, org: str, post_ids: Sequence[str], *, source: str = X_SOURCE, target: str = MASTODON_TARGET
    ) -> dict[str, str]:
        """The state on ``target`` of each of ``post_ids`` that is in the ledger (a post not recorded is absent).

        One query per 500 ids: a backfill checks an archive page by page instead of
        loading every post's row (issue 18: 100,000 ``get_post`` calls, each parsing
        the stored post, were a tenth of recording an archive).
        """
        return {row[0]: row[1] for row in _rows_for_ids(
            self.db.conn, "SELECT post_id, state FROM post_targets WHERE org = ? AND source = ? AND target = ?"
            " AND post_id IN ({})", (org, source, target), list(post_ids),
        )}

    def open_posts(
        self,
        org: str,
        limit: int = 1000,
        origin: str | None = None,
        *,
        source: str | None = X_SOURCE,
        target: str = MASTODON_TARGET,
    ) -> list[PostRow]:
        """Posts not yet finished (pending or posting) on ``target``, oldest first: that target's queue.

        ``origin`` keeps only the poller's ("poll") or a backfill's ("backfill") posts.
        ``source`` is whose queue (sort keys order posts within one source); None: every source's
        (each source's posts stay in their order). One range scan of the index ``post_targets_open``.
        """
        sql = (
            f"SELECT {self._POST_COLS}{self._POST_FROM}"
            " WHERE pt.org = ? AND pt.target = ? AND pt.state IN ('pending', 'posting')"
        )
        params: list[Any] = [org, target]
        if origin is not None:
            sql += " AND pt.origin = ?"
            params.append(origin)
        sql = self._source_filter(sql, params, source, "pt.source")
        rows = self.db.conn.execute(sql + " ORDER BY pt.sort_key, pt.post_id LIMIT ?", (*params, limit)).fetchall()
        return [self._post_from_row(r) for r in rows]

    def has_work(self, org: str, origin: str | None = "poll") -> bool:
        """Whether any active target of ``org`` has an open post (of ``origin``) or a copy due for deletion.

        One query over two partial indexes: an idle organisation costs this and nothing else. Posts
        waiting for a target that needs a new link do not count: nothing can be done for them now.
        """
        origin_sql = " AND origin = ?" if origin is not None else ""
        active = "SELECT name FROM targets WHERE org = ? AND state = 'active'"
        params: list[Any] = [org, org, *([origin] if origin is not None else []), org, org]
        row = self.db.conn.execute(
            "SELECT EXISTS (SELECT 1 FROM post_targets INDEXED BY post_targets_open"
            f" WHERE org = ? AND target IN ({active}) AND state IN ('pending', 'posting'){origin_sql})"
            f" OR EXISTS (SELECT 1 FROM deliveries INDEXED BY deliveries_delete_due"
            f" WHERE org = ? AND target IN ({active}) AND delete_state = 'due')",
            params,
        ).fetchone()
        return bool(row[0])

    def posts(
        self,
        org: str,
        states: Sequence[str] | None = None,
        *,
        source: str | None = X_SOURCE,
        target: str = MASTODON_TARGET,
    ) -> list[PostRow]:
        sql = f"SELECT {self._POST_COLS}{self._POST_FROM} WHERE pt.org = ? AND pt.target = ?"
        params: list[Any] = [org, target]
        if states:
            sql += f" AND pt.state IN ({', '.join('?' for _ in states)})"
            params.extend(states)
        sql = self._source_filter(sql, params, source, "pt.source")
        rows = self.db.conn.execute(sql + " ORDER BY pt.sort_key, pt.post_id", params).fetchall()
        return [self._post_from_row(r) for r in rows]

    def refresh_post(
        self, org: str, post_id: str, post: dict[str, Any], now: datetime, *, source: str = X_SOURCE
    ) -> bool:
        """Rewrite the stored post while some target still has it open (pending or posting); finished posts
        stay as they are.

        A resumed ``bridge backfill`` uses it to point archive media at files
        that exist in this run. Returns whether a row was changed.
        """
        with self.transaction() as c:
            cur = c.execute(
                "UPDATE posts SET post_json = ?, updated_at = ? WHERE org = ? AND source = ? AND post_id = ?"
                " AND EXISTS (SELECT 1 FROM post_targets pt WHERE pt.org = posts.org AND pt.source = posts.source"
                " AND pt.post_id = posts.post_id AND pt.state IN ('pending', 'posting'))",
                (json.dumps(post, ensure_ascii=False, separators=(",", ":")), iso(now), org, source, post_id),
            )
            return cur.rowcount > 0

    def mark_posting(
        self,
        org: str,
        post_id: str,
        idempotency_key: str,
        now: datetime,
        *,
        source: str = X_SOURCE,
        target: str = MASTODON_TARGET,
    ) -> None:
        """Record the intent before the first request, so a crash is resolved, never guessed."""
        with self.transaction() as c:
            c.execute(
                "UPDATE post_targets SET state = 'posting', idempotency_key = ?,"
                " posting_since = COALESCE(posting_since, ?), attempts = attempts + 1, updated_at = ?"
                " WHERE org = ? AND source = ? AND post_id = ? AND target = ?",
                (idempotency_key, iso(now), iso(now), org, source, post_id, target),
            )

    def finish(
        self,
        org: str,
        post_id: str,
        state: str,
        now: datetime,
        reason: str | None = None,
        *,
        source: str = X_SOURCE,
        target: str = MASTODON_TARGET,
    ) -> None:
        """End a post on one target: delivered, skipped (by policy) or failed (with the reason)."""
        if state not in ("delivered", "skipped", "failed"):
            raise ValueError(f"not a final state: {state}")
        with self.transaction() as c:
            c.execute(
                "UPDATE post_targets SET state = ?, last_error = ?, next_attempt_at = NULL, updated_at = ?"
                " WHERE org = ? AND source = ? AND post_id = ? AND target = ?",
                (state, reason, iso(now), org, source, post_id, target),
            )

    def defer(
        self,
        org: str,
        post_id: str,
        until: datetime,
        reason: str,
        now: datetime,
        *,
        source: str = X_SOURCE,
        target: str = MASTODON_TARGET,
    ) -> None:
        """Keep a post open on one target after a transient failure; it is tried again from ``until`` on."""
        with self.transaction() as c:
            c.execute(
                "UPDATE post_targets SET next_attempt_at = ?, last_error = ?, updated_at = ?"
                " WHERE org = ? AND source = ? AND post_id = ? AND target = ?",
                (iso(until), reason, iso(now), org, source, post_id, target),
            )

    def reopen(
        self,
        org: str,
        post_id: str | None,
        now: datetime,
        *,
        source: str | None = X_SOURCE,
        target: str | None = MASTODON_TARGET,
    ) -> int:
        """Put failed posts back in the queue (``bridge retry``). ``None`` reopens every failed post
        (of ``source``; of every source with ``source=None``), on ``target`` (every target with ``None``)."""
        sql = (
            "UPDATE post_targets SET state = 'pending', next_attempt_at = NULL, posting_since = NULL, attempts = 0,"
            " updated_at = ? WHERE org = ? AND state = 'failed'"
        )
        params: list[Any] = [iso(now), org]
        sql = self._source_filter(sql, params, source)
        sql = self._source_filter(sql, params, target, "target")
        if post_id is not None:
            sql += " AND post_id = ?"
            params.append(post_id)
        with self.transaction() as c:
            return c.execute(sql, params).rowcount

    # -- deletes at the source --------------------------------------------------
    def mark_deleted_at_source(
        self, org: str, post_ids: Sequence[str], now: datetime, *, source: str = X_SOURCE
    ) -> tuple[int, int]:
        """The source says these posts are gone: their open states are skipped ("deleted at the source")
        and their live copies (posts and boosts, not edits) become due for deletion. Idempotent: a
        copy already due or deleted is left as it is. Returns (states skipped, copies now due)."""
        skipped = due = 0
        with self.transaction() as c:
            for start in range(0, len(post_ids), 500):
                chunk = list(post_ids[start : start + 500])
                marks = ", ".join("?" for _ in chunk)
                skipped += c.execute(
                    "UPDATE post_targets SET state = 'skipped', last_error = 'deleted at the source',"
                    " next_attempt_at = NULL, updated_at = ?"
                    f" WHERE org = ? AND source = ? AND post_id IN ({marks}) AND state IN ('pending', 'posting')",
                    (iso(now), org, source, *chunk),
                ).rowcount
                due += c.execute(
                    "UPDATE deliveries SET delete_state = 'due'"
                    f" WHERE org = ? AND source = ? AND post_id IN ({marks}) AND kind != 'edit' AND delete_state IS NULL",
                    (org, source, *chunk),
                ).rowcount
        return skipped, due

    # A later version of a post (an edit) names its first version first in its edit history.
    _LATER_VERSIONS = (
        "SELECT post_id FROM posts WHERE org = ? AND source = ? AND json_extract(post_json, '$.edit_history_ids[0]') = ?"
    )

    def mark_copies_due(
        self, org: str, first: str, keep: str, *, source: str = X_SOURCE, target: str = MASTODON_TARGET
    ) -> int:
        """The live copies (posts, not edits or boosts) of every version of a post (its first version
        ``first`` and the later ones, but not ``keep``, the version now posted) on one target become due for
        deletion: the edit is posted there again (policy ``edits_where_impossible: repost``). Idempotent: a
        copy already due or deleted is left as it is. Returns how many became due."""
        with self.transaction() as c:
            return c.execute(
                "UPDATE deliveries SET delete_state = 'due' WHERE org = ? AND source = ? AND target = ?"
                " AND kind = 'status' AND delete_state IS NULL AND post_id != ?"
                f" AND (post_id = ? OR post_id IN ({self._LATER_VERSIONS}))",
                (org, source, target, keep, first, org, source, first),
            ).rowcount

    def edits_not_propagated(self, org: str, *, target: str = MASTODON_TARGET) -> int:
        """How many edits ``target`` left as they were (it has no edits; policy ``edits_where_impossible``)."""
        row = self.db.conn.execute(
            "SELECT count(*) FROM post_targets WHERE org = ? AND target = ? AND state = 'skipped'"
            " AND last_error LIKE 'edit not propagated:%'",
            (org, target),
        ).fetchone()
        return int(row[0])

    def due_deletes(self, org: str, *, target: str = MASTODON_TARGET, limit: int = 100) -> list[Delivery]:
        """Copies on ``target`` whose source post is gone and that are not deleted yet, oldest first."""
        rows = self.db.conn.execute(
            f"SELECT {self._DELIVERY_COLS} FROM deliveries WHERE org = ? AND target = ? AND delete_state = 'due'"
            " ORDER BY created_at, rowid LIMIT ?",
            (org, target, limit),
        ).fetchall()
        return [self._delivery_from_row(r) for r in rows]

    def record_deleted(self, copy: Delivery, now: datetime, *, deleted: bool = True) -> None:
        """One copy is deleted on its target: never deleted again. ``deleted=False``: the target cannot
        delete it; it stays (and counts as a live copy), and is never asked for again."""
        with self.transaction() as c:
            c.execute(
                "UPDATE deliveries SET delete_state = 'done', deleted_at = ?"
                " WHERE org = ? AND source = ? AND post_id = ? AND target = ? AND part = ?",
                (iso(now) if deleted else None, copy.org, copy.source, copy.post_id, copy.target, copy.part),
            )

    def deletes_since(self, org: str, since: datetime, *, target: str = MASTODON_TARGET) -> list[datetime]:
        """Times of copies deleted on ``target`` after ``since`` (Mastodon: 30 deletes per 30 minutes): one
        deleted exactly a window ago is out of the window."""
        rows = self.db.conn.execute(
            "SELECT deleted_at FROM deliveries WHERE org = ? AND target = ? AND deleted_at IS NOT NULL"
            " AND deleted_at > ? ORDER BY deleted_at",
            (org, target, iso(since)),
        ).fetchall()
        return [parse_iso(r[0]) for r in rows]  # type: ignore[misc]

    # -- deliveries: the copies of each post on each target ---------------------
    _DELIVERY_COLS = "org, post_id, part, kind, copy_id, url, created_at, source, target, deleted_at"

    @staticmethod
    def _delivery_from_row(row: Sequence[Any]) -> Delivery:
        org, post_id, part, kind, copy_id, url, created_at, source, target = row[:9]
        return Delivery(org, post_id, part, kind, copy_id, url, datetime.fromisoformat(created_at), source, target,
                        parse_iso(row[9]))

    def record_delivery(
        self,
        org: str,
        post_id: str,
        part: int,
        kind: str,
        status_id: str,
        url: str,
        now: datetime,
        *,
        source: str = X_SOURCE,
        target: str = MASTODON_TARGET,
    ) -> None:
        """Record one copy (a toot). Recording the same copy again is a no-op; a different copy for
        the same part on the same target is refused by the unique key (that would be a duplicate)."""
        with self.transaction() as c:
            existing = c.execute(
                "SELECT copy_id FROM deliveries WHERE org = ? AND source = ? AND post_id = ? AND target = ? AND part = ?",
                (org, source, post_id, target, part),
            ).fetchone()
            if existing and existing[0] == status_id:
                return
            c.execute(
                "INSERT INTO deliveries (org, source, post_id, target, part, kind, copy_id, url, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (org, source, post_id, target, part, kind, status_id, url, iso(now)),
            )

    def deliveries(
        self, org: str, post_id: str, *, source: str = X_SOURCE, target: str = MASTODON_TARGET
    ) -> list[Delivery]:
        rows = self.db.conn.execute(
            f"SELECT {self._DELIVERY_COLS} FROM deliveries"
            " WHERE org = ? AND source = ? AND post_id = ? AND target = ? ORDER BY part",
            (org, source, post_id, target),
        ).fetchall()
        return [self._delivery_from_row(r) for r in rows]

    def copies(self, org: str, source: str, post_id: str) -> list[Delivery]:
        """Every copy of a post, on every target (by target, then part): what an edit or delete must reach."""
        rows = self.db.conn.execute(
            f"SELECT {self._DELIVERY_COLS} FROM deliveries"
            " WHERE org = ? AND source = ? AND post_id = ? ORDER BY target, part",
            (org, source, post_id),
        ).fetchall()
        return [self._delivery_from_row(r) for r in rows]

    def first_toot(
        self, org: str | None, post_id: str, *, source: str | None = X_SOURCE, target: str = MASTODON_TARGET
    ) -> Delivery | None:
        """The first status a source post became (what replies, boosts and quotes point at).

        ``org=None`` looks across all organisations: a retweet of another linked
        organisation's post boosts that organisation's toot. ``source=None``: of any source.
        When the post's copies were deleted because an edit was posted again as a new post
        (``edits_where_impossible: repost``), the newest version's copy stands in for it.
        """
        sql = (
            f"SELECT {self._DELIVERY_COLS} FROM deliveries"
            " WHERE post_id = ? AND target = ? AND kind = 'status' AND deleted_at IS NULL"
        )
        params: list[Any] = [post_id, target]
        sql = self._source_filter(sql, params, source)
        if org is not None:
            sql += " AND org = ?"
            params.append(org)
        row = self.db.conn.execute(sql + " ORDER BY part LIMIT 1", params).fetchone()
        if row is None and (newer := self._newest_version(org, post_id, source, target)) is not None:
            return self.first_toot(newer[0], newer[2], source=newer[1], target=target)
        return self._delivery_from_row(row) if row else None

    def last_toot(
        self, org: str, post_id: str, *, source: str = X_SOURCE, target: str = MASTODON_TARGET
    ) -> Delivery | None:
        """The last status of a post: a self-reply continues the thread below it (below the newest
        version's copy when the post's own were deleted for an edit posted again, as ``first_toot``)."""
        row = self.db.conn.execute(
            f"SELECT {self._DELIVERY_COLS} FROM deliveries"
            " WHERE org = ? AND source = ? AND post_id = ? AND target = ? AND kind = 'status' AND deleted_at IS NULL"
            " ORDER BY part DESC LIMIT 1",
            (org, source, post_id, target),
        ).fetchone()
        if row is None and (newer := self._newest_version(org, post_id, source, target)) is not None:
            return self.last_toot(newer[0], newer[2], source=newer[1], target=target)
        return self._delivery_from_row(row) if row else None

    def _newest_version(
        self, org: str | None, post_id: str, source: str | None, target: str
    ) -> tuple[str, str, str] | None:
        """(org, source, post id) of the newest later version of ``post_id`` with a live copy on ``target``,
        looked for only when a copy of ``post_id`` there was deleted (cheap on the usual miss: one indexed
        lookup; the edit-history scan runs only after a deletion)."""
        sql = "SELECT org, source FROM deliveries WHERE post_id = ? AND target = ? AND deleted_at IS NOT NULL"
        params: list[Any] = [post_id, target]
        sql = self._source_filter(sql, params, source)
        if org is not None:
            sql += " AND org = ?"
            params.append(org)
        gone = self.db.conn.execute(sql + " LIMIT 1", params).fetchone()
        if gone is None:
            return None
        row = self.db.conn.execute(
            "SELECT post_id FROM deliveries WHERE org = ? AND source = ? AND target = ? AND kind = 'status'"
            f" AND deleted_at IS NULL AND post_id != ? AND post_id IN ({self._LATER_VERSIONS})"
            " ORDER BY created_at DESC, rowid DESC LIMIT 1",
            (gone[0], gone[1], target, post_id, gone[0], gone[1], post_id),
        ).fetchone()
        return (gone[0], gone[1], row[0]) if row else None

    def last_delivery(
        self, org: str, before: datetime | None = None, *, target: str = MASTODON_TARGET
    ) -> Delivery | None:
        """The newest recorded copy; with ``before``, the newest copy created (not edited) and recorded
        before that time (reconciliation: it is older than the copies of a post marked posting then)."""
        sql = f"SELECT {self._DELIVERY_COLS} FROM deliveries WHERE org = ? AND target = ?"
        params: list[Any] = [org, target]
        if before is not None:
            sql += " AND created_at < ? AND kind != 'edit'"
            params.append(iso(before))
        row = self.db.conn.execute(sql + " ORDER BY created_at DESC, rowid DESC LIMIT 1", params).fetchone()
        return self._delivery_from_row(row) if row else None

    def known_statuses(
        self, org: str, status_ids: Sequence[str], *, target: str = MASTODON_TARGET
    ) -> set[str]:
        """Which of these copies are recorded for ``org`` on ``target`` already (for any post):
        reconciliation never claims them twice."""
        found: set[str] = set()
        ids = list(status_ids)
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            rows = self.db.conn.execute(
                f"SELECT copy_id FROM deliveries WHERE org = ? AND target = ? AND copy_id IN ({', '.join('?' for _ in chunk)})",
                (org, target, *chunk),
            ).fetchall()
            found.update(str(r[0]) for r in rows)
        return found

    # -- reporting ----------------------------------------------------------------
    def counts(
        self, org: str, *, source: str | None = None, target: str | None = MASTODON_TARGET
    ) -> dict[str, int]:
        """Posts per state on ``target`` (``None``: summed over every target, a post once per target),
        of every source (or of one)."""
        out = {s: 0 for s in POST_STATES}
        params: list[Any] = [org]
        sql = self._source_filter("SELECT state, count(*) FROM post_targets WHERE org = ?", params, target, "target")
        sql = self._source_filter(sql, params, source)
        for state, n in self.db.conn.execute(sql + " GROUP BY state", params):
            out[state] = n
        return out

    def latest_failures(
        self, org: str, limit: int = 3, *, source: str | None = None, target: str | None = MASTODON_TARGET
    ) -> list[tuple[str, str]]:
        params: list[Any] = [org]
        sql = self._source_filter(
            "SELECT post_id, COALESCE(last_error, '') FROM post_targets WHERE org = ? AND state = 'failed'",
            params, target, "target",
        )
        sql = self._source_filter(sql, params, source)
        rows = self.db.conn.execute(sql + " ORDER BY updated_at DESC LIMIT ?", (*params, limit)).fetchall()
        return [(r[0], r[1]) for r in rows]

    def record_upload(self, org: str, media_id: str, now: datetime, *, target: str = MASTODON_TARGET) -> None:
        """Remember a media upload: Mastodon allows 30 per 30 minutes per account."""
        with self.transaction() as c:
            c.execute(
                "INSERT INTO uploads (org, target, media_id, created_at) VALUES (?, ?, ?, ?)",
                (org, target, media_id, iso(now)),
            )
            c.execute(
                "DELETE FROM uploads WHERE org = ? AND target = ? AND created_at < ?",
                (org, target, iso(now - timedelta(days=1))),
            )

    def uploads_since(self, org: str, since: datetime, *, target: str = MASTODON_TARGET) -> list[datetime]:
        rows = self.db.conn.execute(
            "SELECT created_at FROM uploads WHERE org = ? AND target = ? AND created_at >= ? ORDER BY created_at",
            (org, target, iso(since)),
        ).fetchall()
        return [parse_iso(r[0]) for r in rows]  # type: ignore[misc]

    def statuses_since(self, org: str, since: datetime, *, target: str = MASTODON_TARGET) -> list[datetime]:
        """Times of statuses created (not edits): Mastodon allows 300 per 3 hours per account."""
        rows = self.db.conn.execute(
            "SELECT created_at FROM deliveries WHERE org = ? AND target = ? AND kind != 'edit' AND created_at >= ?"
            " ORDER BY created_at",
            (org, target, iso(since)),
        ).fetchall()
        return [parse_iso(r[0]) for r in rows]  # type: ignore[misc]

    def posts_since(self, org: str, since: datetime, origin: str = "poll", *, source: str | None = None) -> int:
        """How many posts of one origin were created since ``since``: the organisation's activity (every source)."""
        params: list[Any] = [org, origin, iso(since)]
        sql = self._source_filter(
            "SELECT count(*) FROM posts WHERE org = ? AND origin = ? AND created_at >= ?", params, source
        )
        row = self.db.conn.execute(sql, params).fetchone()
        return int(row[0])

    # -- every organisation at once: the daemon's refresh and `bridge status` read these for all organisations,
    #    where one query per organisation cost 10,000 round trips per refresh at one X key's capacity (issue 18).
    #    Each answers, per organisation, what its per-organisation method answers.
    def source_kinds_by_org(self) -> dict[str, set[str]]:
        """The kinds of ``sources(org)`` of every organisation that has one (what the plan needs to tell an
        organisation reading X from one reading only free sources), in one query."""
        out: dict[str, set[str]] = {}
        for org, kind in self.db.conn.execute("SELECT DISTINCT org, kind FROM sources WHERE state != 'unlinked'"):
            out.setdefault(org, set()).add(kind)
        return out

    def target_credentials_by_org(self) -> dict[str, list[str]]:
        """The credentials of ``targets(org)`` that have some, of every organisation, in one query
        (what the daemon registers with the log masker; the targets themselves are not parsed)."""
        out: dict[str, list[str]] = {}
        rows = self.db.conn.execute(
            "SELECT org, credentials FROM targets WHERE state != 'unlinked' AND credentials IS NOT NULL"
            " AND credentials != '' ORDER BY org, name"
        ).fetchall()
        for org, credentials in rows:
            out.setdefault(org, []).append(credentials)
        return out

    def counts_by_org(self, *, target: str | None = None) -> dict[str, dict[str, int]]:
        """``counts(org, target=target)`` of every organisation with posts, in one query (one GROUP BY over
        the post_targets_state index); an organisation without posts is absent: all its counts are 0."""
        params: list[Any] = []
        sql = self._source_filter("SELECT org, state, count(*) FROM post_targets WHERE 1", params, target, "target")
        out: dict[str, dict[str, int]] = {}
        for org, state, n in self.db.conn.execute(sql + " GROUP BY org, state", params):
            out.setdefault(org, {s: 0 for s in POST_STATES})[state] = n
        return out

    def posts_since_by_org(self, since: datetime, origin: str = "poll") -> dict[str, int]:
        """``posts_since(org, since, origin)`` of every organisation with such posts, in one query
        (absent: 0)."""
        rows = self.db.conn.execute(
            "SELECT org, count(*) FROM posts WHERE origin = ? AND created_at >= ? GROUP BY org", (origin, iso(since))
        ).fetchall()
        return {org: int(n) for org, n in rows}

    # -- bridge web (m005_web): invitations, OAuth attempts, an organisation's own policy, jobs -----------
    def add_invite(self, token_hash: str, org: str, now: datetime, expires_at: datetime) -> None:
        with self.transaction() as c:
            c.execute("INSERT INTO web_invites (token_hash, org, created_at, expires_at) VALUES (?, ?, ?, ?)",
                      (token_hash, org, iso(now), iso(expires_at)))

    def get_invite(self, token_hash: str) -> WebInvite | None:
        row = self.db.conn.execute(
            "SELECT token_hash, org, created_at, expires_at, used_at FROM web_invites WHERE token_hash = ?",
            (token_hash,),
        ).fetchone()
        if row is None:
            return None
        return WebInvite(row[0], row[1], parse_iso(row[2]), parse_iso(row[3]), parse_iso(row[4]))  # type: ignore[arg-type]

    def use_invite(self, token_hash: str, now: datetime) -> bool:
        """Spend an invitation; False when it was spent already (two browsers racing: one wins)."""
        with self.transaction() as c:
            cur = c.execute("UPDATE web_invites SET used_at = ? WHERE token_hash = ? AND used_at IS NULL",
                            (iso(now), token_hash))
            return cur.rowcount == 1

    def release_invite(self, token_hash: str) -> None:
        """Give a spent invitation back: the link it was spent for could not be stored."""
        with self.transaction() as c:
            c.execute("UPDATE web_invites SET used_at = NULL WHERE token_hash = ?", (token_hash,))

    def save_login(self, state_hash: str, purpose: str, data: dict[str, Any], now: datetime,
                   expires_at: datetime) -> None:
        """An OAuth attempt in flight, found again by its ``state`` when the instance redirects back."""
        with self.transaction() as c:
            c.execute("DELETE FROM web_logins WHERE expires_at < ?", (iso(now),))
            c.execute("INSERT INTO web_logins (state_hash, purpose, data_json, created_at, expires_at)"
                      " VALUES (?, ?, ?, ?, ?)", (state_hash, purpose, json.dumps(data), iso(now), iso(expires_at)))

    def take_login(self, state_hash: str, now: datetime) -> tuple[str, dict[str, Any]] | None:
        """The attempt for this ``state``, removed so it serves once; None when unknown or expired."""
        with self.transaction() as c:
            row = c.execute("DELETE FROM web_logins WHERE state_hash = ? RETURNING purpose, data_json, expires_at",
                            (state_hash,)).fetchone()
        if row is None or row[2] < iso(now):
            return None
        return row[0], json.loads(row[1])

    def get_org_policy(self, org: str) -> dict[str, Any] | None:
        row = self.db.conn.execute("SELECT policy_json FROM org_policies WHERE org = ?", (org,)).fetchone()
        return dict(json.loads(row[0])) if row else None

    def set_org_policy(self, org: str, policy: dict[str, Any], now: datetime) -> None:
        with self.transaction() as c:
            c.execute("INSERT INTO org_policies (org, policy_json, updated_at) VALUES (?, ?, ?) ON CONFLICT (org)"
                      " DO UPDATE SET policy_json = excluded.policy_json, updated_at = excluded.updated_at",
                      (org, json.dumps(policy, ensure_ascii=False), iso(now)))

    def recent_copies(self, org: str, limit: int = 20, *, target: str = MASTODON_TARGET) -> list[tuple[Delivery, PostRow]]:
        """The newest first copies (part 0) on ``target`` with their posts: what the organisation's page lists."""
        dcols = ", ".join(f"d.{c.strip()}" for c in self._DELIVERY_COLS.split(","))
        width = len(self._DELIVERY_COLS.split(","))
        rows = self.db.conn.execute(
            f"SELECT {dcols}, {self._POST_COLS}{self._POST_FROM}"
            " JOIN deliveries d ON d.org = pt.org AND d.source = pt.source AND d.post_id = pt.post_id AND d.target = pt.target"
            " WHERE d.org = ? AND d.target = ? AND d.part = 0 AND d.kind != 'edit'"
            " ORDER BY d.created_at DESC LIMIT ?",
            (org, target, limit),
        ).fetchall()
        return [(self._delivery_from_row(r[:width]), self._post_from_row(r[width:])) for r in rows]

    def failed_posts(self, org: str, limit: int = 20, *, target: str = MASTODON_TARGET) -> list[PostRow]:
        """The organisation's latest failures on ``target``, newest first: what its page offers to try again."""
        rows = self.db.conn.execute(
            f"SELECT {self._POST_COLS}{self._POST_FROM}"
            " WHERE pt.org = ? AND pt.target = ? AND pt.state = 'failed' ORDER BY pt.updated_at DESC LIMIT ?",
            (org, target, limit),
        ).fetchall()
        return [self._post_from_row(r) for r in rows]

    _JOB_COLS = "id, org, kind, state, data_json, total, done, eta_seconds, error, created_at, updated_at"

    @staticmethod
    def _job_from_row(row: Sequence[Any]) -> WebJob:
        return WebJob(row[0], row[1], row[2], row[3], json.loads(row[4]), row[5], row[6], row[7], row[8],
                      parse_iso(row[9]), parse_iso(row[10]))  # type: ignore[arg-type]

    def add_job(self, org: str, kind: str, state: str, data: dict[str, Any], now: datetime) -> int:
        with self.transaction() as c:
            cur = c.execute("INSERT INTO web_jobs (org, kind, state, data_json, created_at, updated_at)"
                            " VALUES (?, ?, ?, ?, ?, ?)", (org, kind, state, json.dumps(data), iso(now), iso(now)))
            return int(cur.lastrowid or 0)

    def get_job(self, job_id: int) -> WebJob | None:
        row = self.db.conn.execute(f"SELECT {self._JOB_COLS} FROM web_jobs WHERE id = ?", (job_id,)).fetchone()
        return self._job_from_row(row) if row else None

    def latest_job(self, org: str, kind: str) -> WebJob | None:
        row = self.db.conn.execute(
            f"SELECT {self._JOB_COLS} FROM web_jobs WHERE org = ? AND kind = ? ORDER BY id DESC LIMIT 1", (org, kind)
        ).fetchone()
        return self._job_from_row(row) if row else None

    def jobs(self, states: Sequence[str]) -> list[WebJob]:
        rows = self.db.conn.execute(
            f"SELECT {self._JOB_COLS} FROM web_jobs WHERE state IN ({', '.join('?' for _ in states)}) ORDER BY id",
            tuple(states),
        ).fetchall()
        return [self._job_from_row(r) for r in rows]

    def update_job(self, job_id: int, now: datetime, *, expect: Sequence[str] | None = None, **changes: Any) -> bool:
        """Change a job (state, data, total, done, eta_seconds, error); with ``expect``, only from those states."""
        allowed = {"state", "data", "total", "done", "eta_seconds", "error"}
        if set(changes) - allowed:
            raise ValueError(f"unknown job fields: {sorted(set(changes) - allowed)}")
        values = {("data_json" if k == "data" else k): (json.dumps(v) if k == "data" else v) for k, v in changes.items()}
        values["updated_at"] = iso(now)
        sql = f"UPDATE web_jobs SET {', '.join(f'{k} = ?' for k in values)} WHERE id = ?"
        params: list[Any] = [*values.values(), job_id]
        if expect:
            sql += f" AND state IN ({', '.join('?' for _ in expect)})"
            params.extend(expect)
        with self.transaction() as c:
            return c.execute(sql, params).rowcount == 1
