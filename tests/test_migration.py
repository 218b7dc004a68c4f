"""Migration m003 (sources, targets, copies) carries every ledger written before it over.

The starting point is a ledger as the version before issue 13 wrote it: its
schema frozen in tests/data/ledger_v2.sql, its rows written with the INSERTs
that version used, its posts' JSON frozen in tests/data/ledger_v2_posts.json.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from bridge.cli import main
from bridge.errors import ConfigError
from bridge.ledger import Delivery, FetchedPost, Ledger, OrgRecord, SourceAccount, TargetAccount
from bridge.targets.mastodon import MastodonTarget, html_to_text, limits_to_dict
from tests.bridge_env import BridgeEnv
from tests.fakes.x_api import FakeXServer
from tests.mastodon_server import MastodonServer

DATA = Path(__file__).parent / "data"
V2_SCHEMA = (DATA / "ledger_v2.sql").read_text()
V2 = json.loads((DATA / "ledger_v2_posts.json").read_text())
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)
M003 = ["m001_initial", "m002_open_posts_index", "m003_sources_targets_copies"]
ALL = [*M003, "m004_target_states", "m005_web", "m006_source_handles_index"]  # every migration this version applies (m005_web: bridge web)

# The frozen posts (tests/data/ledger_v2_posts.json), by role.
B1, B2, B3 = "1800000000000000101", "1800000000000000102", "1800000000000000103"  # a backfill in progress
P1, P2, P3, P4, P5, P6 = (f"180000000000000020{n}" for n in range(1, 7))  # polled
N1, N2 = "1800000000000000301", "1800000000000000302"  # on X after the migration, newer than the cursor


def iso(dt: datetime | None) -> str | None:
    """Times as the old ledger wrote them (fixed width, UTC, trailing Z)."""
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ") if dt else None


def text_of(post_id: str) -> str:
    return V2["post_json"][post_id]["text"]


# --------------------------------------------------------------------------- a ledger as the old version wrote it


class OldLedger:
    """Writes rows with the statements the version before m003 used (bridge/ledger.py at main 4925bf6)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("PRAGMA foreign_keys = ON")
        self.conn.executescript(V2_SCHEMA)

    def close(self) -> None:
        self.conn.close()

    def org(self, name: str, x_user_id: str, x_username: str, instance: str, account_id: str, acct: str,
            account_url: str, token: str | None, *, state: str = "active", **extra: Any) -> None:
        row = {"name": name, "x_user_id": x_user_id, "x_username": x_username, "instance": instance,
               "account_id": account_id, "acct": acct, "account_url": account_url, "token": token, "state": state,
               "created_at": iso(NOW - timedelta(days=30)), "updated_at": iso(NOW - timedelta(days=1)), **extra}
        self.conn.execute(f"INSERT INTO orgs ({', '.join(row)}) VALUES ({', '.join('?' for _ in row)})",
                          tuple(row.values()))

    def cursor(self, org: str, newest_id: str) -> None:
        self.conn.execute("INSERT INTO cursors (org, newest_id, updated_at) VALUES (?, ?, ?)",
                          (org, newest_id, iso(NOW - timedelta(days=1))))

    def post(self, org: str, post_id: str, state: str, *, origin: str = "poll", attempts: int = 0,
             last_error: str | None = None, idempotency_key: str | None = None, posting_since: datetime | None = None,
             next_attempt_at: datetime | None = None, post: dict[str, Any] | None = None) -> None:
        created = datetime.fromisoformat(V2["post_json"][post_id]["created_at"]) if post_id in V2["post_json"] else NOW
        self.conn.execute(
            "INSERT INTO posts (org, post_id, sort_key, origin, state, attempts, next_attempt_at, last_error,"
            " idempotency_key, posting_since, post_json, created_at, fetched_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (org, post_id, int(post_id), origin, state, attempts, iso(next_attempt_at), last_error, idempotency_key,
             iso(posting_since), json.dumps(post if post is not None else V2["post_json"][post_id],
                                            ensure_ascii=False, separators=(",", ":")),
             iso(created), iso(NOW - timedelta(days=2)), iso(NOW - timedelta(days=2))),
        )

    def delivery(self, org: str, post_id: str, part: int, kind: str, status_id: str, url: str, at: datetime) -> None:
        self.conn.execute(
            "INSERT INTO deliveries (org, post_id, part, kind, status_id, url, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (org, post_id, part, kind, status_id, url, iso(at)),
        )

    def upload(self, org: str, media_id: str, at: datetime) -> None:
        self.conn.execute("INSERT INTO uploads (org, media_id, created_at) VALUES (?, ?, ?)", (org, media_id, iso(at)))


def tables_and_migrations(path: Path) -> tuple[set[str], list[str]]:
    conn = sqlite3.connect(path)
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        names = [r[0] for r in conn.execute("SELECT name FROM _sqlite_migrations ORDER BY id")]
    finally:
        conn.close()
    return tables, names


# --------------------------------------------------------------------------- the rows, one by one


LIMITS = {"max_characters": 500, "max_media_attachments": 4, "characters_reserved_per_url": 23}


def a_full_old_ledger(path: Path) -> None:
    """Two organisations (one unlinked, holding the same X account), posts in every state, a thread,
    a boost, an edit, uploads and cursors."""
    old = OldLedger(path)
    old.conn.execute(
        "INSERT INTO apps (instance, client_id, client_secret, scopes, redirect_uri, created_at)"
        " VALUES ('https://geno.social', 'cid', 'csecret', 'read write', 'urn:ietf:wg:oauth:2.0:oob', ?)", (iso(NOW),)
    )
    old.org("coop", "100", "coop_x", "https://geno.social", "9", "coop", "https://geno.social/@coop", "tok-coop",
            state_reason=None, limits_json=json.dumps(LIMITS), limits_fetched_at=iso(NOW - timedelta(hours=3)),
            last_poll_at=iso(NOW - timedelta(minutes=5)), last_success_at=iso(NOW - timedelta(minutes=5)),
            next_poll_at=iso(NOW + timedelta(minutes=1)), post_deferred_until=iso(NOW + timedelta(minutes=2)),
            deferrals=2, last_deferral="429 from the instance (until 12:02:00Z)")
    old.org("gone", "100", "coop_x", "https://other.social", "5", "gone@other.social", "https://other.social/@gone",
            None, state="unlinked", state_reason="unlinked")
    old.cursor("coop", P6)
    old.post("coop", B1, "delivered", origin="backfill", attempts=1, idempotency_key="k-b1")
    old.post("coop", B2, "posting", origin="backfill", attempts=1, idempotency_key="k-b2",
             posting_since=NOW - timedelta(minutes=3))
    old.post("coop", B3, "pending", origin="backfill")
    old.post("coop", P1, "delivered", attempts=1, idempotency_key="k-p1")
    old.post("coop", P2, "skipped", last_error="a reply to another account")
    old.post("coop", P3, "failed", attempts=3, last_error="422: Validation failed: Text is too long")
    old.post("coop", P4, "delivered", attempts=2, idempotency_key="k-p4")
    old.post("coop", P5, "pending", attempts=1, next_attempt_at=NOW + timedelta(minutes=4),
             last_error="transient: 503 from the instance")
    old.post("coop", P6, "pending")
    old.post("gone", "77", "delivered", post={"id": "77", "text": "history of an unlinked organisation"})
    old.delivery("coop", B1, 0, "status", "501", "https://geno.social/@coop/501", NOW - timedelta(days=3))
    old.delivery("coop", P1, 0, "status", "502", "https://geno.social/@coop/502", NOW - timedelta(days=2))
    old.delivery("coop", P1, 1, "status", "503", "https://geno.social/@coop/503", NOW - timedelta(days=2))
    old.delivery("coop", P4, 0, "boost", "504", "https://geno.social/@coop/504", NOW - timedelta(hours=2))
    old.delivery("coop", P4, 1, "edit", "502", "https://geno.social/@coop/502", NOW - timedelta(hours=2))
    old.delivery("gone", "77", 0, "status", "601", "https://other.social/@gone/601", NOW - timedelta(days=9))
    old.upload("coop", "m-1", NOW - timedelta(minutes=10))
    old.upload("coop", "m-2", NOW - timedelta(minutes=5))
    old.close()


def test_todays_ledger_is_migrated_with_every_row_and_link_kept(tmp_path: Path) -> None:
    path = tmp_path / "state" / "ledger.db"
    a_full_old_ledger(path)

    with Ledger.open(path) as ledger:
        assert ledger.schema_version() == ALL
        assert ledger.db.conn.execute("PRAGMA freelist_count").fetchone()[0] == 0  # the old tables' pages given back
        # The organisation reads exactly as before: its X source and Mastodon target fill OrgRecord.
        assert ledger.get_org("coop") == OrgRecord(
            "coop", "100", "coop_x", "https://geno.social", "9", "coop", "https://geno.social/@coop", token="tok-coop",
            limits=LIMITS, limits_fetched_at=NOW - timedelta(hours=3), last_poll_at=NOW - timedelta(minutes=5),
            last_success_at=NOW - timedelta(minutes=5), next_poll_at=NOW + timedelta(minutes=1),
            post_deferred_until=NOW + timedelta(minutes=2), deferrals=2,
            last_deferral="429 from the instance (until 12:02:00Z)", created_at=NOW - timedelta(days=30),
        )
        gone = ledger.get_org("gone")
        assert gone is not None and gone.state == "unlinked" and gone.token is None and gone.x_user_id == "100"
        assert [o.name for o in ledger.list_orgs()] == ["coop"]
        assert ledger.get_app("https://geno.social").client_secret == "csecret"
        # Its accounts, as rows of their own.
        assert ledger.sources("coop") == [
            SourceAccount("coop", "x", "x", "100", "coop_x", cursor=P6, cursor_updated_at=NOW - timedelta(days=1),
                          created_at=NOW - timedelta(days=30))
        ]
        assert ledger.targets("coop") == [
            TargetAccount("coop", "mastodon", "mastodon", "https://geno.social", "9", "coop",
                          "https://geno.social/@coop", "tok-coop", limits=LIMITS,
                          limits_fetched_at=NOW - timedelta(hours=3), created_at=NOW - timedelta(days=30))
        ]
        assert ledger.sources("gone") == [] and ledger.sources("gone", include_unlinked=True)[0].state == "unlinked"
        assert ledger.get_cursor("coop") == P6 and ledger.get_cursor("gone") is None
        # Every post in its state, with its attempts, intent and reason; the queue in the same order.
        rows = {r.post_id: r for r in ledger.posts("coop")}
        assert {p: r.state for p, r in rows.items()} == {
            B1: "delivered", B2: "posting", B3: "pending", P1: "delivered", P2: "skipped", P3: "failed",
            P4: "delivered", P5: "pending", P6: "pending",
        }
        assert all(r.source == "x" and r.sort_key == int(r.post_id) for r in rows.values())
        assert rows[B2].idempotency_key == "k-b2" and rows[B2].posting_since == NOW - timedelta(minutes=3)
        assert rows[B2].origin == "backfill" and rows[P1].origin == "poll"
        assert rows[P3].attempts == 3 and rows[P3].last_error == "422: Validation failed: Text is too long"
        assert rows[P5].next_attempt_at == NOW + timedelta(minutes=4)
        assert rows[P6].post == V2["post_json"][P6]
        assert [r.post_id for r in ledger.open_posts("coop")] == [B2, B3, P5, P6]
        assert [r.post_id for r in ledger.open_posts("coop", origin="backfill")] == [B2, B3]
        assert ledger.counts("coop") == {"pending": 3, "posting": 1, "delivered": 3, "skipped": 1, "failed": 1}
        assert ledger.latest_failures("coop") == [(P3, "422: Validation failed: Text is too long")]
        # Every copy, now on the target "mastodon".
        assert ledger.deliveries("coop", P1) == [
            Delivery("coop", P1, 0, "status", "502", "https://geno.social/@coop/502", NOW - timedelta(days=2)),
            Delivery("coop", P1, 1, "status", "503", "https://geno.social/@coop/503", NOW - timedelta(days=2)),
        ]
        assert [(d.target, d.kind, d.copy_id) for d in ledger.copies("coop", "x", P4)] == [
            ("mastodon", "boost", "504"), ("mastodon", "edit", "502")
        ]
        assert ledger.first_toot(None, "77").org == "gone"
        assert ledger.last_toot("coop", P1).status_id == "503"
        assert ledger.last_delivery("coop").status_id == "502"  # the edit: recorded last (same time, later row)
        assert len(ledger.statuses_since("coop", NOW - timedelta(days=2))) == 3  # the edit is not a status
        assert ledger.uploads_since("coop", NOW - timedelta(hours=1)) == [NOW - timedelta(minutes=10),
                                                                          NOW - timedelta(minutes=5)]
        # The rebuilt tables point at each other, not at the old or temporary ones.
        conn = ledger.db.conn
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        schema = " ".join(r[0] for r in conn.execute("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL"))
        assert "_new" not in schema and "cursors" not in ledger.db.table_names()
        # The same X account still cannot be linked twice while active.
        with pytest.raises(ConfigError, match="already linked as organisation coop"):
            ledger.save_org(OrgRecord("third", "100", "coop_x", "https://geno.social", "10", "third", "u"), NOW)
        # Removing an organisation still takes all its rows with it (the foreign keys cascade).
        ledger.remove_org("coop", keep_history=False, now=NOW)
        for table in ("orgs", "sources", "targets", "posts", "deliveries", "uploads"):
            column = "name" if table == "orgs" else "org"
            assert conn.execute(f"SELECT count(*) FROM {table} WHERE {column} = 'coop'").fetchone()[0] == 0, table
        assert ledger.first_toot(None, "77") is not None  # the other organisation's history stays

    with Ledger.open(path) as again:  # opening again applies nothing more
        assert again.schema_version() == ALL


def test_a_migration_that_fails_leaves_the_old_ledger_as_it_was(tmp_path: Path) -> None:
    """The rebuild runs in the migration's transaction: a row it cannot carry over undoes all of it."""
    path = tmp_path / "ledger.db"
    a_full_old_ledger(path)
    conn = sqlite3.connect(path, isolation_level=None)  # foreign keys off: a toot whose post is gone
    conn.execute("INSERT INTO deliveries (org, post_id, part, kind, status_id, url, created_at)"
                 " VALUES ('coop', '999', 0, 'status', '700', 'u', '2026-11-01T00:00:00.000000Z')")
    conn.close()

    with pytest.raises(ConfigError) as caught:
        Ledger.open(path)
    message = str(caught.value)
    assert str(path) in message and "could not be upgraded (m003_sources_targets_copies" in message
    assert "FOREIGN KEY constraint failed" in message and "changed nothing" in message

    tables, names = tables_and_migrations(path)
    assert names == ["m001_initial", "m002_open_posts_index"]
    assert {"orgs", "cursors", "posts", "deliveries", "uploads"} <= tables
    assert not tables & {"sources", "targets", "orgs_new", "posts_new", "deliveries_new", "uploads_new"}
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT count(*) FROM posts").fetchone()[0] == 10
    assert conn.execute("SELECT newest_id FROM cursors WHERE org = 'coop'").fetchone()[0] == P6
    conn.close()


# --------------------------------------------------------------------------- end to end: poll and backfill


@pytest.fixture
def env(tmp_path: Path, x_server: FakeXServer, mastodon: MastodonServer) -> Iterator[BridgeEnv]:
    yield BridgeEnv(tmp_path, x_server, mastodon)


def toot(env: BridgeEnv, token: str, text: str) -> tuple[str, str]:
    """What the old bridge posted: a real status on mastodon-mock."""
    r = httpx.post(f"{env.mastodon.base_url}/api/v1/statuses", headers={"Authorization": f"Bearer {token}"},
                   data={"status": text}, timeout=10)
    r.raise_for_status()
    return str(r.json()["id"]), str(r.json()["url"])


def test_a_migrated_ledger_polls_and_backfills_posting_each_post_exactly_once(env: BridgeEnv) -> None:
    """A ledger in mid-flight under the old version: delivered, pending, posting (one toot already out,
    one not), failed and skipped rows, a cursor, and a backfill half done. After the migration a poll, a
    backfill and a retry post every missing post once, and nothing already out again."""
    x_user, x_name = V2["x_user_id"], V2["x_username"]
    env.x.add_user(x_user, x_name)
    for tweet in V2["tweets"].values():
        env.publish(tweet)
    username = f"migr{uuid.uuid4().hex[:10]}"
    token = env.mastodon.create_account(username)
    target = MastodonTarget(env.mastodon.base_url, token)
    me, limits = target.verify(), target.instance_limits()
    target.close()
    now = datetime.now(timezone.utc)

    old = OldLedger(env.config.database)
    old.org("coop", x_user, x_name, env.mastodon.base_url, me.id, me.acct, me.url, token,
            limits_json=json.dumps(limits_to_dict(limits)), limits_fetched_at=iso(now))
    old.cursor("coop", P6)
    # The backfill run stopped half way: B1 out, B2 marked posting (stopped before its request), B3 waiting.
    old.post("coop", B1, "delivered", origin="backfill", attempts=1, idempotency_key="k-b1")
    old.delivery("coop", B1, 0, "status", *toot(env, token, text_of(B1)), now - timedelta(hours=5))
    old.post("coop", B2, "posting", origin="backfill", attempts=1, idempotency_key="k-b2",
             posting_since=now - timedelta(hours=2))
    old.post("coop", B3, "pending", origin="backfill")
    # The poller: delivered, skipped, failed, delivered, posting with its toot out (a crash before recording it), pending.
    old.post("coop", P1, "delivered", attempts=1, idempotency_key="k-p1")
    old.delivery("coop", P1, 0, "status", *toot(env, token, text_of(P1)), now - timedelta(hours=4))
    old.post("coop", P2, "skipped", last_error="a reply to another account")
    old.post("coop", P3, "failed", attempts=3, last_error="422: Validation failed")
    old.post("coop", P4, "delivered", attempts=1, idempotency_key="k-p4")
    old.delivery("coop", P4, 0, "status", *toot(env, token, text_of(P4)), now - timedelta(hours=3))
    old.post("coop", P5, "posting", attempts=1, idempotency_key="k-p5", posting_since=now - timedelta(hours=2))
    toot(env, token, text_of(P5))
    old.post("coop", P6, "pending")
    old.close()
    assert len(env.mastodon.statuses(token, me.id)) == 4

    with Ledger.open(env.config.database) as ledger:  # the migration runs here
        assert ledger.schema_version() == ALL
        result = env.pipeline(ledger).cycle("coop")
        assert result.error is None and result.fetched == 2  # N1 and N2, newer than the cursor
        assert ledger.get_cursor("coop") == N2
        assert ledger.get_post("coop", P5).state == "delivered"  # its toot found on the server, not posted again

    backfill = CliRunner().invoke(main, ["--config", str(env.config_path), "backfill", "coop", "--api", "--pace", "0",
                                         "--yes"])
    assert backfill.exit_code == 0, backfill.output
    assert "0 new" in backfill.output

    with Ledger.open(env.config.database) as ledger:
        assert ledger.get_post("coop", P3).last_error == "422: Validation failed"  # kept, and still retryable
        assert ledger.reopen("coop", P3, datetime.now(timezone.utc)) == 1
        assert env.pipeline(ledger).cycle("coop").delivered == 1
        counts = ledger.counts("coop")
        copies = {d.copy_id for r in ledger.posts("coop", ["delivered"]) for d in ledger.copies("coop", "x", r.post_id)}

    toots = env.mastodon.statuses(token, me.id)
    texts = Counter(html_to_text(t["content"]) for t in toots)
    expected = [B1, B2, B3, P1, P3, P4, P5, P6, N1, N2]
    assert texts == Counter(text_of(p) for p in expected)  # each once; the skipped reply never
    assert counts == {"pending": 0, "posting": 0, "delivered": 10, "skipped": 1, "failed": 0}
    assert copies == {t["id"] for t in toots}


# --------------------------------------------------------------------------- m004: delivery state per (post, target)

V3_SCHEMA = (DATA / "ledger_v3.sql").read_text()


class V3Ledger:
    """Writes rows as the version before m004 did (bridge/ledger.py at main 88c9b62): state on the post."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("PRAGMA foreign_keys = ON")
        self.conn.executescript(V3_SCHEMA)

    def org(self, name: str, *, targets: tuple[str, ...] = ("mastodon",)) -> None:
        at = iso(NOW - timedelta(days=30))
        self.conn.execute("INSERT INTO orgs (name, created_at, updated_at) VALUES (?, ?, ?)", (name, at, at))
        self.conn.execute(
            "INSERT INTO sources (org, name, kind, account_id, handle, cursor, state, created_at, updated_at)"
            " VALUES (?, 'x', 'x', ?, ?, ?, 'active', ?, ?)", (name, f"id-{name}", f"{name}_x", P6, at, at))
        for target in targets:
            self.conn.execute(
                "INSERT INTO targets (org, name, kind, base_url, account_id, handle, account_url, credentials,"
                " state, created_at, updated_at) VALUES (?, ?, ?, 'https://geno.social', '9', ?, 'u', 'tok', 'active', ?, ?)",
                (name, target, target, name, at, at))

    def post(self, org: str, post_id: str, state: str, *, origin: str = "poll", attempts: int = 0,
             last_error: str | None = None, idempotency_key: str | None = None, posting_since: datetime | None = None,
             next_attempt_at: datetime | None = None) -> None:
        self.conn.execute(
            "INSERT INTO posts (org, source, post_id, sort_key, origin, state, attempts, next_attempt_at, last_error,"
            " idempotency_key, posting_since, post_json, created_at, fetched_at, updated_at)"
            " VALUES (?, 'x', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (org, post_id, int(post_id), origin, state, attempts, iso(next_attempt_at), last_error, idempotency_key,
             iso(posting_since), json.dumps({"id": post_id, "text": f"post {post_id}"}), iso(NOW - timedelta(days=3)),
             iso(NOW - timedelta(days=2)), iso(NOW - timedelta(days=2))))

    def delivery(self, org: str, post_id: str, part: int, copy_id: str) -> None:
        self.conn.execute(
            "INSERT INTO deliveries (org, source, post_id, target, part, kind, copy_id, url, created_at)"
            " VALUES (?, 'x', ?, 'mastodon', ?, 'status', ?, ?, ?)",
            (org, post_id, part, copy_id, f"https://geno.social/@{org}/{copy_id}", iso(NOW - timedelta(days=2))))

    def close(self) -> None:
        self.conn.close()


def a_v3_ledger(path: Path) -> V3Ledger:
    old = V3Ledger(path)
    old.org("coop")
    old.post("coop", B1, "delivered", origin="backfill", attempts=1, idempotency_key="k-b1")
    old.delivery("coop", B1, 0, "501")
    old.post("coop", B2, "posting", origin="backfill", attempts=2, idempotency_key="k-b2",
             posting_since=NOW - timedelta(minutes=3))
    old.post("coop", P1, "skipped", last_error="a reply to another account")
    old.post("coop", P2, "failed", attempts=3, last_error="422: Validation failed")
    old.post("coop", P3, "pending", attempts=1, next_attempt_at=NOW + timedelta(minutes=4),
             last_error="transient: 503 from the instance")
    old.post("coop", P4, "pending")
    return old


def test_a_v3_ledger_keeps_each_posts_state_as_its_mastodon_targets_state(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    a_v3_ledger(path).close()

    with Ledger.open(path) as ledger:
        assert ledger.schema_version() == ALL
        assert ledger.db.conn.execute("PRAGMA freelist_count").fetchone()[0] == 0  # DROP COLUMN's pages given back
        rows = {r.post_id: r for r in ledger.posts("coop")}
        assert {p: (r.state, r.target) for p, r in rows.items()} == {
            B1: ("delivered", "mastodon"), B2: ("posting", "mastodon"), P1: ("skipped", "mastodon"),
            P2: ("failed", "mastodon"), P3: ("pending", "mastodon"), P4: ("pending", "mastodon"),
        }
        assert rows[B2].attempts == 2 and rows[B2].idempotency_key == "k-b2"
        assert rows[B2].posting_since == NOW - timedelta(minutes=3) and rows[B2].origin == "backfill"
        assert rows[P1].last_error == "a reply to another account"
        assert rows[P3].next_attempt_at == NOW + timedelta(minutes=4) and rows[P3].attempts == 1
        assert rows[P4].post == {"id": P4, "text": f"post {P4}"} and rows[P4].sort_key == int(P4)
        assert [r.post_id for r in ledger.open_posts("coop")] == [B2, P3, P4]
        assert [r.post_id for r in ledger.open_posts("coop", origin="poll")] == [P3, P4]
        assert ledger.counts("coop") == {"pending": 2, "posting": 1, "delivered": 1, "skipped": 1, "failed": 1}
        assert ledger.latest_failures("coop") == [(P2, "422: Validation failed")]
        assert ledger.deliveries("coop", B1)[0].copy_id == "501" and ledger.has_work("coop")
        # The state lives in one place now: the post rows hold the post, the target rows its deliveries' state.
        columns = {r[1] for r in ledger.db.conn.execute("PRAGMA table_info(posts)")}
        assert not columns & {"state", "attempts", "next_attempt_at", "last_error", "idempotency_key", "posting_since"}
        conn = ledger.db.conn
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        # A post recorded now gets a state on the organisation's one target; a second target linked later
        # receives what is recorded after it, never the history.
        ledger.add_target(TargetAccount("coop", "second", "mastodon", "https://other.social", "3", "coop2", "u",
                                        "tok2"), NOW)
        assert ledger.open_posts("coop", target="second") == []
        ledger.record_fetched("coop", [FetchedPost(N1, NOW, {"id": N1})], cursor=N1, now=NOW)
        assert [r.post_id for r in ledger.open_posts("coop", target="second")] == [N1]
        assert [r.post_id for r in ledger.open_posts("coop")] == [B2, P3, P4, N1]
        # Removing the organisation takes the states with it.
        ledger.remove_org("coop", keep_history=False, now=NOW)
        assert conn.execute("SELECT count(*) FROM post_targets").fetchone()[0] == 0


def test_a_v3_post_without_a_mastodon_target_stops_the_migration_and_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    old = a_v3_ledger(path)
    old.org("odd", targets=("bluesky",))  # never written by v3, but its state would have nowhere to go
    old.post("odd", P5, "pending")
    old.close()

    with pytest.raises(ConfigError) as caught:
        Ledger.open(path)
    assert "could not be upgraded (m004_target_states, m005_web, m006_source_handles_index)" in str(caught.value) and "odd" in str(caught.value)
    tables, names = tables_and_migrations(path)
    assert names == M003 and "post_targets" not in tables
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT state FROM posts WHERE post_id = ?", (P2,)).fetchone()[0] == "failed"
    conn.close()
