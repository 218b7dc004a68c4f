"""The SQLite ledger: the single source of truth for what was fetched and what went out.

Exactly-once delivery rests on three rules kept here:
- fetched posts and the advanced cursor are written in ONE transaction, so a
  crash either loses the fetch (it is re-fetched) or keeps both;
- a post is marked ``posting`` with its idempotency key before any request;
- ``deliveries`` has a unique key per (org, post, part), so a part can be
  recorded only once, whatever the code above does.

No SQL lives outside this module. The ledger knows no API and reads no clock:
callers pass ``now``.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import sqlite_utils
from sqlite_utils.migrations import Migrations

from bridge import __version__
from bridge.crashpoints import crash_point
from bridge.errors import ConfigError, LedgerError
from bridge.model import post_id_key

ORG_STATES = ("active", "paused", "needs_relink", "unlinked")
POST_STATES = ("pending", "posting", "delivered", "skipped", "failed")

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


@dataclass(frozen=True)
class Delivery:
    org: str
    post_id: str
    part: int
    kind: str
    status_id: str
    url: str
    created_at: datetime


@dataclass(frozen=True)
class FetchedPost:
    """What ``record_fetched`` needs of a post: its id, creation time and normalised JSON."""

    post_id: str
    created_at: datetime
    post: dict[str, Any]
    error: str | None = None  # the post could not be read: recorded as failed with this reason


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
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            if path is not None:
                conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA synchronous = NORMAL")
            db = sqlite_utils.Database(conn)
            _refuse_newer(db, path)
            migrations.apply(db)
        except sqlite3.DatabaseError as exc:
            where = path if path is not None else ":memory:"
            raise ConfigError(f"database: {where} is not a usable geno-bridge ledger: {exc}") from exc
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
        d.pop("updated_at", None)
        limits = d.pop("limits_json")
        d["limits"] = json.loads(limits) if limits else None
        for key in _ORG_TIME_FIELDS:
            d[key] = parse_iso(d[key])
        return OrgRecord(**d)

    def _select_orgs(self, where: str = "", params: Sequence[Any] = ()) -> list[OrgRecord]:
        cur = self.db.conn.execute(f"SELECT * FROM orgs {where} ORDER BY name", params)
        names = [c[0] for c in cur.description]
        return [self._org_from_row(r, names) for r in cur.fetchall()]

    def get_org(self, name: str) -> OrgRecord | None:
        rows = self._select_orgs("WHERE name = ?", (name,))
        return rows[0] if rows else None

    def list_orgs(self, *, include_unlinked: bool = False) -> list[OrgRecord]:
        if include_unlinked:
            return self._select_orgs()
        return self._select_orgs("WHERE state != 'unlinked'")

    def linked_handles(self) -> dict[str, str]:
        """Lowercased X handle -> fediverse account of every linked organisation (the mention map)."""
        rows = self.db.conn.execute("SELECT x_username, acct, instance FROM orgs WHERE state != 'unlinked'").fetchall()
        out = {}
        for x_username, acct, instance in rows:
            host = instance.split("://", 1)[-1].rstrip("/")
            out[x_username.lower()] = acct if "@" in acct else f"{acct}@{host}"
        return out

    def org_by_x_user(self, x_user_id: str) -> OrgRecord | None:
        rows = self._select_orgs("WHERE x_user_id = ? AND state != 'unlinked'", (x_user_id,))
        return rows[0] if rows else None

    def save_org(self, org: OrgRecord, now: datetime) -> None:
        """Insert or replace an organisation's link data, keeping its history and cursor."""
        values = {k: getattr(org, k) for k in _ORG_FIELDS}
        limits = values.pop("limits")
        values["limits_json"] = json.dumps(limits) if limits is not None else None
        for key in _ORG_TIME_FIELDS:
            values[key] = iso(values[key])
        values["created_at"] = values["created_at"] or iso(now)
        values["updated_at"] = iso(now)
        cols = ["name", *values]
        sets = ", ".join(f"{k} = excluded.{k}" for k in values if k != "created_at")
        try:
            with self.transaction() as c:
                c.execute(
                    f"INSERT INTO orgs ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})"
                    f" ON CONFLICT (name) DO UPDATE SET {sets}",
                    (org.name, *values.values()),
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
        values: dict[str, Any] = {}
        for key, value in changes.items():
            if key == "limits":
                values["limits_json"] = json.dumps(value) if value is not None else None
            elif key in _ORG_TIME_FIELDS:
                values[key] = iso(value)
            else:
                values[key] = value
        values["updated_at"] = iso(now)
        with self.transaction() as c:
            c.execute(
                f"UPDATE orgs SET {', '.join(f'{k} = ?' for k in values)} WHERE name = ?",
                (*values.values(), name),
            )

    def remove_org(self, name: str, *, keep_history: bool, now: datetime) -> None:
        """Forget an organisation. With ``keep_history`` its rows stay (state ``unlinked``, no token)."""
        with self.transaction() as c:
            if keep_history:
                c.execute(
                    "UPDATE orgs SET state = 'unlinked', token = NULL, state_reason = 'unlinked', updated_at = ?"
                    " WHERE name = ?",
                    (iso(now), name),
                )
            else:
                c.execute("DELETE FROM deliveries WHERE org = ?", (name,))
                c.execute("DELETE FROM orgs WHERE name = ?", (name,))

    # -- cursors and fetched posts -----------------------------------------
    def get_cursor(self, org: str) -> str | None:
        row = self.db.conn.execute("SELECT newest_id FROM cursors WHERE org = ?", (org,)).fetchone()
        return row[0] if row else None

    def set_cursor(self, org: str, newest_id: str, now: datetime) -> None:
        with self.transaction() as c:
            self._advance_cursor(c, org, newest_id, now)

    @staticmethod
    def _advance_cursor(c: sqlite3.Connection, org: str, newest_id: str, now: datetime) -> None:
        row = c.execute("SELECT newest_id FROM cursors WHERE org = ?", (org,)).fetchone()
        if row and post_id_key(row[0]) >= post_id_key(newest_id):
            return
        c.execute(
            "INSERT INTO cursors (org, newest_id, updated_at) VALUES (?, ?, ?)"
            " ON CONFLICT (org) DO UPDATE SET newest_id = excluded.newest_id, updated_at = excluded.updated_at",
            (org, newest_id, iso(now)),
        )

    def record_fetched(
        self,
        org: str,
        posts: Iterable[FetchedPost],
        *,
        cursor: str | None,
        now: datetime,
        origin: str = "poll",
    ) -> int:
        """Insert fetched posts as ``pending`` and advance the cursor in ONE transaction.

        A post already in the ledger (seen by the poller, or by a backfill) is
        left as it is: that is what makes poll and backfill never post twice.
        Returns how many posts were new.
        """
        posts = list(posts)
        if not posts and cursor is None:
            return 0  # an idle poll: nothing to write, so no write lock taken
        added = 0
        with self.transaction() as c:
            for p in posts:
                cur = c.execute(
                    "INSERT OR IGNORE INTO posts (org, post_id, sort_key, origin, state, last_error, post_json,"
                    " created_at, fetched_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        org,
                        p.post_id,
                        post_id_key(p.post_id)[0],
                        origin,
                        "failed" if p.error else "pending",
                        p.error,
                        json.dumps(p.post, ensure_ascii=False, separators=(",", ":")),
                        iso(p.created_at),
                        iso(now),
                        iso(now),
                    ),
                )
                added += cur.rowcount
            if cursor is not None:
                crash_point("before_cursor")  # the posts are written, the cursor not yet: a crash keeps neither
                self._advance_cursor(c, org, cursor, now)
        return added

    # -- posts ----------------------------------------------------------------
    _POST_COLS = (
        "org, post_id, state, attempts, next_attempt_at, last_error, idempotency_key, posting_since,"
        " post_json, created_at, fetched_at, origin"
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
        )

    def get_post(self, org: str, post_id: str) -> PostRow | None:
        row = self.db.conn.execute(
            f"SELECT {self._POST_COLS} FROM posts WHERE org = ? AND post_id = ?", (org, post_id)
        ).fetchone()
        return self._post_from_row(row) if row else None

    def open_posts(self, org: str, limit: int = 1000, origin: str | None = None) -> list[PostRow]:
        """Posts not yet finished (pending or posting), oldest first: the delivery queue.

        ``origin`` keeps only the poller's ("poll") or a backfill's ("backfill") posts.
        """
        sql = f"SELECT {self._POST_COLS} FROM posts WHERE org = ? AND state IN ('pending', 'posting')"
        params: list[Any] = [org]
        if origin is not None:
            sql += " AND origin = ?"
            params.append(origin)
        rows = self.db.conn.execute(sql + " ORDER BY sort_key, post_id LIMIT ?", (*params, limit)).fetchall()
        return [self._post_from_row(r) for r in rows]

    def posts(self, org: str, states: Sequence[str] | None = None) -> list[PostRow]:
        sql = f"SELECT {self._POST_COLS} FROM posts WHERE org = ?"
        params: list[Any] = [org]
        if states:
            sql += f" AND state IN ({', '.join('?' for _ in states)})"
            params.extend(states)
        rows = self.db.conn.execute(sql + " ORDER BY sort_key, post_id", params).fetchall()
        return [self._post_from_row(r) for r in rows]

    def refresh_post(self, org: str, post_id: str, post: dict[str, Any], now: datetime) -> bool:
        """Rewrite the stored post of a row still open (pending or posting); finished rows stay as they are.

        A resumed ``bridge backfill`` uses it to point archive media at files
        that exist in this run. Returns whether a row was changed.
        """
        with self.transaction() as c:
            cur = c.execute(
                "UPDATE posts SET post_json = ?, updated_at = ? WHERE org = ? AND post_id = ?"
                " AND state IN ('pending', 'posting')",
                (json.dumps(post, ensure_ascii=False, separators=(",", ":")), iso(now), org, post_id),
            )
            return cur.rowcount > 0

    def mark_posting(self, org: str, post_id: str, idempotency_key: str, now: datetime) -> None:
        """Record the intent before the first request, so a crash is resolved, never guessed."""
        with self.transaction() as c:
            c.execute(
                "UPDATE posts SET state = 'posting', idempotency_key = ?, posting_since = COALESCE(posting_since, ?),"
                " attempts = attempts + 1, updated_at = ? WHERE org = ? AND post_id = ?",
                (idempotency_key, iso(now), iso(now), org, post_id),
            )

    def finish(self, org: str, post_id: str, state: str, now: datetime, reason: str | None = None) -> None:
        """End a post: delivered, skipped (by policy) or failed (with the reason)."""
        if state not in ("delivered", "skipped", "failed"):
            raise ValueError(f"not a final state: {state}")
        with self.transaction() as c:
            c.execute(
                "UPDATE posts SET state = ?, last_error = ?, next_attempt_at = NULL, updated_at = ?"
                " WHERE org = ? AND post_id = ?",
                (state, reason, iso(now), org, post_id),
            )

    def defer(self, org: str, post_id: str, until: datetime, reason: str, now: datetime) -> None:
        """Keep a post open after a transient failure; it is tried again from ``until`` on."""
        with self.transaction() as c:
            c.execute(
                "UPDATE posts SET next_attempt_at = ?, last_error = ?, updated_at = ? WHERE org = ? AND post_id = ?",
                (iso(until), reason, iso(now), org, post_id),
            )

    def reopen(self, org: str, post_id: str | None, now: datetime) -> int:
        """Put failed posts back in the queue (``bridge retry``). ``None`` reopens every failed post."""
        sql = (
            "UPDATE posts SET state = 'pending', next_attempt_at = NULL, posting_since = NULL, attempts = 0,"
            " updated_at = ? WHERE org = ? AND state = 'failed'"
        )
        params: list[Any] = [iso(now), org]
        if post_id is not None:
            sql += " AND post_id = ?"
            params.append(post_id)
        with self.transaction() as c:
            return c.execute(sql, params).rowcount

    # -- deliveries -------------------------------------------------------------
    def record_delivery(
        self, org: str, post_id: str, part: int, kind: str, status_id: str, url: str, now: datetime
    ) -> None:
        """Record one toot. Recording the same toot again is a no-op; a different toot for
        the same part is refused by the unique key (that would be a duplicate)."""
        with self.transaction() as c:
            existing = c.execute(
                "SELECT status_id FROM deliveries WHERE org = ? AND post_id = ? AND part = ?", (org, post_id, part)
            ).fetchone()
            if existing and existing[0] == status_id:
                return
            c.execute(
                "INSERT INTO deliveries (org, post_id, part, kind, status_id, url, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (org, post_id, part, kind, status_id, url, iso(now)),
            )

    def deliveries(self, org: str, post_id: str) -> list[Delivery]:
        rows = self.db.conn.execute(
            "SELECT org, post_id, part, kind, status_id, url, created_at FROM deliveries"
            " WHERE org = ? AND post_id = ? ORDER BY part",
            (org, post_id),
        ).fetchall()
        return [Delivery(*r[:6], parse_iso(r[6])) for r in rows]  # type: ignore[arg-type]

    def first_toot(self, org: str | None, post_id: str) -> Delivery | None:
        """The first status a source post became (what replies, boosts and quotes point at).

        ``org=None`` looks across all organisations: a retweet of another linked
        organisation's post boosts that organisation's toot.
        """
        sql = (
            "SELECT org, post_id, part, kind, status_id, url, created_at FROM deliveries"
            " WHERE post_id = ? AND kind = 'status'"
        )
        params: list[Any] = [post_id]
        if org is not None:
            sql += " AND org = ?"
            params.append(org)
        row = self.db.conn.execute(sql + " ORDER BY part LIMIT 1", params).fetchone()
        return Delivery(*row[:6], parse_iso(row[6])) if row else None  # type: ignore[arg-type]

    def last_toot(self, org: str, post_id: str) -> Delivery | None:
        """The last status of a post: a self-reply continues the thread below it."""
        row = self.db.conn.execute(
            "SELECT org, post_id, part, kind, status_id, url, created_at FROM deliveries"
            " WHERE org = ? AND post_id = ? AND kind = 'status' ORDER BY part DESC LIMIT 1",
            (org, post_id),
        ).fetchone()
        return Delivery(*row[:6], parse_iso(row[6])) if row else None  # type: ignore[arg-type]

    def last_delivery(self, org: str, before: datetime | None = None) -> Delivery | None:
        """The newest recorded toot; with ``before``, the newest toot created (not edited) and recorded
        before that time (reconciliation: it is older than the toots of a post marked posting then)."""
        sql = "SELECT org, post_id, part, kind, status_id, url, created_at FROM deliveries WHERE org = ?"
        params: list[Any] = [org]
        if before is not None:
            sql += " AND created_at < ? AND kind != 'edit'"
            params.append(iso(before))
        row = self.db.conn.execute(sql + " ORDER BY created_at DESC, rowid DESC LIMIT 1", params).fetchone()
        return Delivery(*row[:6], parse_iso(row[6])) if row else None  # type: ignore[arg-type]

    def known_statuses(self, org: str, status_ids: Sequence[str]) -> set[str]:
        """Which of these toots are recorded for ``org`` already (for any post): reconciliation never claims them twice."""
        found: set[str] = set()
        ids = list(status_ids)
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            rows = self.db.conn.execute(
                f"SELECT status_id FROM deliveries WHERE org = ? AND status_id IN ({', '.join('?' for _ in chunk)})",
                (org, *chunk),
            ).fetchall()
            found.update(str(r[0]) for r in rows)
        return found

    # -- reporting ----------------------------------------------------------------
    def counts(self, org: str) -> dict[str, int]:
        out = {s: 0 for s in POST_STATES}
        for state, n in self.db.conn.execute("SELECT state, count(*) FROM posts WHERE org = ? GROUP BY state", (org,)):
            out[state] = n
        return out

    def latest_failures(self, org: str, limit: int = 3) -> list[tuple[str, str]]:
        rows = self.db.conn.execute(
            "SELECT post_id, COALESCE(last_error, '') FROM posts WHERE org = ? AND state = 'failed'"
            " ORDER BY updated_at DESC LIMIT ?",
            (org, limit),
        ).fetchall()
        return [(r[0], r[1]) for r in rows]

    def record_upload(self, org: str, media_id: str, now: datetime) -> None:
        """Remember a media upload: Mastodon allows 30 per 30 minutes per account."""
        with self.transaction() as c:
            c.execute("INSERT INTO uploads (org, media_id, created_at) VALUES (?, ?, ?)", (org, media_id, iso(now)))
            c.execute("DELETE FROM uploads WHERE org = ? AND created_at < ?", (org, iso(now - timedelta(days=1))))

    def uploads_since(self, org: str, since: datetime) -> list[datetime]:
        rows = self.db.conn.execute(
            "SELECT created_at FROM uploads WHERE org = ? AND created_at >= ? ORDER BY created_at", (org, iso(since))
        ).fetchall()
        return [parse_iso(r[0]) for r in rows]  # type: ignore[misc]

    def statuses_since(self, org: str, since: datetime) -> list[datetime]:
        """Times of statuses created (not edits): Mastodon allows 300 per 3 hours per account."""
        rows = self.db.conn.execute(
            "SELECT created_at FROM deliveries WHERE org = ? AND kind != 'edit' AND created_at >= ? ORDER BY created_at",
            (org, iso(since)),
        ).fetchall()
        return [parse_iso(r[0]) for r in rows]  # type: ignore[misc]

    def posts_since(self, org: str, since: datetime, origin: str = "poll") -> int:
        """How many posts of one origin were created since ``since``: the organisation's activity."""
        row = self.db.conn.execute(
            "SELECT count(*) FROM posts WHERE org = ? AND origin = ? AND created_at >= ?", (org, origin, iso(since))
        ).fetchone()
        return int(row[0])
