"""The ledger: file safety, migrations, and the database-level guarantees behind exactly-once."""

from __future__ import annotations

import sqlite3
import stat
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from bridge.errors import ConfigError
from bridge.ledger import (
    AppRecord,
    FetchedPost,
    Ledger,
    OrgRecord,
    SourceAccount,
    TargetAccount,
    known_migrations,
)

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)


def org(name: str = "coop", x_user_id: str = "100", token: str = "tok") -> OrgRecord:
    return OrgRecord(name, x_user_id, name + "_x", "https://geno.social", "9", name, f"https://geno.social/@{name}", token=token)


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    ledger = Ledger.open(tmp_path / "state" / "ledger.db")
    yield ledger
    ledger.close()


def test_file_created_0600_with_its_folder(tmp_path: Path) -> None:
    path = tmp_path / "new" / "dir" / "ledger.db"
    with Ledger.open(path) as ledger:
        ledger.save_org(org(), NOW)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for side in (Path(str(path) + "-wal"), Path(str(path) + "-shm")):
        if side.exists():
            assert stat.S_IMODE(side.stat().st_mode) == 0o600


def test_existing_file_is_tightened_to_0600(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    path.touch(mode=0o644)
    path.chmod(0o644)
    Ledger.open(path).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_pragmas_and_migrations(ledger: Ledger) -> None:
    conn = ledger.db.conn
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 10000
    assert ledger.schema_version() == ["m001_initial", "m002_open_posts_index", "m003_sources_targets_copies",
                                       "m004_target_states", "m005_web", "m006_source_handles_index"]
    assert {"apps", "orgs", "sources", "targets", "posts", "deliveries"} <= set(ledger.db.table_names())


def test_reopen_does_not_reapply_migrations(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    with Ledger.open(path) as a:
        a.save_org(org(), NOW)
    with Ledger.open(path) as b:
        assert b.schema_version() == ["m001_initial", "m002_open_posts_index", "m003_sources_targets_copies",
                                      "m004_target_states", "m005_web", "m006_source_handles_index"]
        assert b.get_org("coop") is not None


def test_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ConfigError, match="not a usable geno-bridge ledger"):
        Ledger.open(path)


def test_apps_one_per_instance(ledger: Ledger) -> None:
    ledger.save_app(AppRecord("https://a.social", "id1", "s1", "read:accounts"))
    ledger.save_app(AppRecord("https://a.social", "id2", "s2", "read:accounts"))
    assert ledger.get_app("https://a.social") == AppRecord("https://a.social", "id2", "s2", "read:accounts")
    assert ledger.db["apps"].count == 1
    assert ledger.get_app("https://b.social") is None


def test_org_roundtrip_and_token_not_in_repr(ledger: Ledger) -> None:
    ledger.save_org(org(token="very-secret-token"), NOW)
    got = ledger.get_org("coop")
    assert got is not None and got.token == "very-secret-token" and got.created_at == NOW
    assert "very-secret-token" not in repr(got)
    ledger.update_org("coop", NOW, state="needs_relink", state_reason="401", limits={"max_characters": 1000})
    got = ledger.get_org("coop")
    assert got.state == "needs_relink" and got.limits == {"max_characters": 1000}
    assert got.fediverse_handle == "coop@geno.social"


def test_same_x_account_cannot_be_linked_twice(ledger: Ledger) -> None:
    ledger.save_org(org("a", "100"), NOW)
    with pytest.raises(ConfigError, match="already linked as organisation a"):
        ledger.save_org(org("b", "100"), NOW)


def test_fetched_posts_and_cursor_are_recorded_together(ledger: Ledger) -> None:
    ledger.save_org(org(), NOW)
    posts = [FetchedPost("20", NOW, {"id": "20"}), FetchedPost("10", NOW, {"id": "10"})]
    assert ledger.record_fetched("coop", posts, cursor="20", now=NOW) == 2
    assert ledger.get_cursor("coop") == "20"
    assert [p.post_id for p in ledger.open_posts("coop")] == ["10", "20"]


def refuse_in_sql(ledger: Ledger, when: str, table: str, condition: str = "1") -> None:
    """Make SQLite itself refuse a write, inside ``record_fetched``'s transaction (a TEMP trigger: this connection only)."""
    ledger.db.conn.execute(
        f"CREATE TEMP TRIGGER refuse_{when.lower()}_{table} BEFORE {when} ON {table} WHEN {condition}"
        " BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
    )


def test_a_post_that_fails_mid_insert_rolls_back_the_posts_before_it_and_the_cursor(ledger: Ledger) -> None:
    """The failure happens inside the transaction, after post 30 is written: nothing of the fetch may stay."""
    ledger.save_org(org(), NOW)
    ledger.record_fetched("coop", [FetchedPost("20", NOW, {"id": "20"})], cursor="20", now=NOW)
    refuse_in_sql(ledger, "INSERT", "posts", "NEW.post_id = '31'")
    posts = [FetchedPost(i, NOW, {"id": i}) for i in ("30", "31", "32")]
    with pytest.raises(sqlite3.DatabaseError, match="refused by the test"):
        ledger.record_fetched("coop", posts, cursor="32", now=NOW)
    assert ledger.get_cursor("coop") == "20"
    assert [p.post_id for p in ledger.open_posts("coop")] == ["20"]
    # Read again on a second connection: nothing was committed behind this one's back.
    with Ledger.open(ledger.path) as other:
        assert other.get_cursor("coop") == "20" and other.get_post("coop", "30") is None


@pytest.mark.parametrize("which", ["first", "later"])
def test_a_cursor_that_fails_to_move_rolls_back_the_posts(ledger: Ledger, which: str) -> None:
    """The posts are written before the cursor; if the cursor cannot follow, the posts go too (the first
    cursor of an organisation, or a later one; since m003 both are an UPDATE of its source's row)."""
    ledger.save_org(org(), NOW)
    if which == "later":
        ledger.record_fetched("coop", [FetchedPost("20", NOW, {"id": "20"})], cursor="20", now=NOW)
    refuse_in_sql(ledger, "UPDATE", "sources", "NEW.cursor IS NOT OLD.cursor")
    with pytest.raises(sqlite3.DatabaseError, match="refused by the test"):
        ledger.record_fetched("coop", [FetchedPost("30", NOW, {"id": "30"})], cursor="30", now=NOW)
    assert ledger.get_post("coop", "30") is None
    assert ledger.get_cursor("coop") == ("20" if which == "later" else None)


def test_a_backfill_records_new_posts_and_leaves_the_cursor_alone(ledger: Ledger) -> None:
    ledger.save_org(org(), NOW)
    ledger.record_fetched("coop", [FetchedPost("50", NOW, {"id": "50"})], cursor="50", now=NOW)
    old = [FetchedPost("10", NOW, {"id": "10"}), FetchedPost("20", NOW, {"id": "20"})]
    assert ledger.record_fetched("coop", old, cursor=None, now=NOW, origin="backfill") == 2
    assert [(p.post_id, p.origin) for p in ledger.open_posts("coop")] == [("10", "backfill"), ("20", "backfill"), ("50", "poll")]
    assert ledger.get_cursor("coop") == "50"


def test_a_page_with_nothing_to_record_still_moves_the_cursor(ledger: Ledger) -> None:
    """Every post of the page was unreadable and dropped: the cursor still moves past what was read."""
    ledger.save_org(org(), NOW)
    ledger.set_cursor("coop", "20", NOW)
    assert ledger.record_fetched("coop", [], cursor="40", now=NOW) == 0
    assert ledger.get_cursor("coop") == "40"


def test_an_idle_poll_records_nothing_and_counts_nothing(ledger: Ledger) -> None:
    ledger.save_org(org(), NOW)
    assert ledger.record_fetched("coop", [], cursor=None, now=NOW) == 0
    assert ledger.get_cursor("coop") is None and ledger.open_posts("coop") == []


def test_a_post_that_could_not_be_read_is_recorded_failed_with_its_reason(ledger: Ledger) -> None:
    ledger.save_org(org(), NOW)
    bad = FetchedPost("30", NOW, {"raw": {"id": "30"}}, error="unreadable X post: no text")
    good = FetchedPost("31", NOW, {"id": "31"})
    assert ledger.record_fetched("coop", [bad, good], cursor="31", now=NOW) == 2
    row = ledger.get_post("coop", "30")
    assert row.state == "failed" and row.last_error == "unreadable X post: no text"
    assert [p.post_id for p in ledger.open_posts("coop")] == ["31"]  # it never blocks the post after it


def test_a_recorded_post_reads_back_exactly_and_is_stored_as_compact_utf8(ledger: Ledger) -> None:
    """Thousands of backfilled posts: the ledger keeps each as compact UTF-8 JSON, and reads it back unchanged."""
    ledger.save_org(org(), NOW)
    post = {"id": "30", "text": "Genossenschaft für Wohnen – 10 € ✓", "media": [{"alt": "Hof", "w": 2}], "reply": None}
    ledger.record_fetched("coop", [FetchedPost("30", NOW, post)], cursor="30", now=NOW)
    assert ledger.get_post("coop", "30").post == post
    stored = ledger.db.conn.execute("SELECT post_json FROM posts WHERE post_id = '30'").fetchone()[0]
    assert stored == '{"id":"30","text":"Genossenschaft für Wohnen – 10 € ✓","media":[{"alt":"Hof","w":2}],"reply":null}'


def test_refetch_and_backfill_never_duplicate(ledger: Ledger) -> None:
    ledger.save_org(org(), NOW)
    ledger.record_fetched("coop", [FetchedPost("10", NOW, {})], cursor="10", now=NOW)
    ledger.finish("coop", "10", "delivered", NOW)
    assert ledger.record_fetched("coop", [FetchedPost("10", NOW, {})], cursor=None, now=NOW, origin="backfill") == 0
    assert ledger.get_post("coop", "10").state == "delivered"


def test_cursor_never_moves_back(ledger: Ledger) -> None:
    ledger.save_org(org(), NOW)
    ledger.set_cursor("coop", "999", NOW)
    ledger.set_cursor("coop", "1000", NOW)
    ledger.set_cursor("coop", "998", NOW)
    assert ledger.get_cursor("coop") == "1000"


def test_delivery_unique_per_part(ledger: Ledger) -> None:
    ledger.save_org(org(), NOW)
    ledger.record_fetched("coop", [FetchedPost("10", NOW, {})], cursor="10", now=NOW)
    ledger.record_delivery("coop", "10", 0, "status", "111", "https://x/111", NOW)
    ledger.record_delivery("coop", "10", 0, "status", "111", "https://x/111", NOW)  # same toot again: no-op
    with pytest.raises(sqlite3.IntegrityError):
        ledger.record_delivery("coop", "10", 0, "status", "222", "https://x/222", NOW)
    assert [d.status_id for d in ledger.deliveries("coop", "10")] == ["111"]
    assert ledger.first_toot(None, "10").status_id == "111"


def test_posting_defer_finish_reopen(ledger: Ledger) -> None:
    ledger.save_org(org(), NOW)
    ledger.record_fetched("coop", [FetchedPost("10", NOW, {})], cursor="10", now=NOW)
    ledger.mark_posting("coop", "10", "key-1", NOW)
    ledger.mark_posting("coop", "10", "key-1", NOW + timedelta(minutes=5))
    row = ledger.get_post("coop", "10")
    assert row.state == "posting" and row.attempts == 2 and row.posting_since == NOW  # first intent kept
    ledger.defer("coop", "10", NOW + timedelta(minutes=1), "503 from instance", NOW)
    assert ledger.get_post("coop", "10").next_attempt_at == NOW + timedelta(minutes=1)
    ledger.finish("coop", "10", "failed", NOW, "422: Validation failed")
    assert ledger.latest_failures("coop") == [("10", "422: Validation failed")]
    assert ledger.counts("coop")["failed"] == 1
    assert ledger.reopen("coop", None, NOW) == 1
    assert ledger.get_post("coop", "10").state == "pending"


def test_unlink_keep_history_and_full_remove(ledger: Ledger) -> None:
    ledger.save_org(org(), NOW)
    ledger.record_fetched("coop", [FetchedPost("10", NOW, {})], cursor="10", now=NOW)
    ledger.record_delivery("coop", "10", 0, "status", "111", "u", NOW)
    ledger.remove_org("coop", keep_history=True, now=NOW)
    kept = ledger.get_org("coop")
    assert kept.state == "unlinked" and kept.token is None
    assert ledger.list_orgs() == [] and ledger.get_post("coop", "10") is not None
    ledger.remove_org("coop", keep_history=False, now=NOW)
    assert ledger.get_org("coop") is None and ledger.get_post("coop", "10") is None
    assert ledger.deliveries("coop", "10") == []


def test_two_connections_see_each_other(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    a, b = Ledger.open(path), Ledger.open(path)
    a.save_org(org(), NOW)
    assert b.get_org("coop") is not None
    a.close()
    b.close()


def test_delivery_queue_uses_its_index_not_a_sort(ledger: Ledger) -> None:
    """The queries ``open_posts`` and ``has_work`` really send, explained: index range scans, no sort."""
    sent: list[str] = []
    ledger.db.conn.set_trace_callback(sent.append)
    ledger.open_posts("coop", 10, "poll", source=None, target="mastodon")
    ledger.has_work("coop")
    ledger.db.conn.set_trace_callback(None)
    queue, idle = sent
    plan = " ".join(str(r[-1]) for r in ledger.db.conn.execute("EXPLAIN QUERY PLAN " + queue).fetchall())
    assert "post_targets_open" in plan and "TEMP B-TREE" not in plan, plan
    plan = " ".join(str(r[-1]) for r in ledger.db.conn.execute("EXPLAIN QUERY PLAN " + idle).fetchall())
    assert "post_targets_open" in plan and "deliveries_delete_due" in plan, plan
    assert "SCAN post_targets" not in plan and "SCAN deliveries" not in plan, plan


def test_a_mention_is_looked_up_through_the_source_handle_index(ledger: Ledger) -> None:
    """``linked_handle``'s query, explained: the handle's index, not a scan of every organisation's sources."""
    for n in range(3):
        ledger.save_org(org(f"o{n}", str(n + 1)), NOW)
    sent: list[str] = []
    ledger.db.conn.set_trace_callback(sent.append)
    assert ledger.linked_handle("mastodon", "@O1_X") == "o1@geno.social"
    ledger.db.conn.set_trace_callback(None)
    [query] = [q for q in sent if "lower(ltrim(s.handle" in q]
    plan = " ".join(str(r[-1]) for r in ledger.db.conn.execute("EXPLAIN QUERY PLAN " + query).fetchall())
    assert "sources_handle" in plan and "SCAN s" not in plan and "SCAN sources" not in plan, plan


def test_linked_handles_is_the_mention_map(ledger: Ledger) -> None:
    ledger.save_org(org("a", "1"), NOW)
    ledger.save_org(OrgRecord("b", "2", "B_X", "https://other.social", "9", "b@other.social", "u", token="t"), NOW)
    assert ledger.linked_handles() == {"a_x": "a@geno.social", "b_x": "b@other.social"}


# -- sources, targets and copies (issue 13) ------------------------------------------------

FEED = SourceAccount("coop", "feed", "feed", "https://coop.example/feed.xml", "Coop news")
BLUESKY = TargetAccount("coop", "bluesky", "bluesky", "https://bsky.social", "did:plc:coop", "coop.bsky.social",
                        "https://bsky.app/profile/coop.bsky.social", "app-password")


def test_an_organisation_lists_and_adds_its_sources_and_targets(ledger: Ledger) -> None:
    ledger.save_org(org(), NOW)
    ledger.add_source(FEED, NOW)
    ledger.add_target(BLUESKY, NOW)
    assert [(s.name, s.kind, s.account_id) for s in ledger.sources("coop")] == [
        ("feed", "feed", "https://coop.example/feed.xml"), ("x", "x", "100")
    ]
    assert [(t.name, t.kind, t.handle) for t in ledger.targets("coop")] == [
        ("bluesky", "bluesky", "coop.bsky.social"), ("mastodon", "mastodon", "coop")
    ]
    assert ledger.get_target("coop", "bluesky").credentials == "app-password"
    assert "app-password" not in repr(ledger.get_target("coop", "bluesky"))
    # The OrgRecord view is still the X source and the Mastodon target.
    got = ledger.get_org("coop")
    assert (got.x_user_id, got.instance, got.token) == ("100", "https://geno.social", "tok")
    with pytest.raises(ConfigError, match="organisation nobody does not exist"):
        ledger.add_target(TargetAccount("nobody", "m", "mastodon", "u", "1", "a", "u"), NOW)


def test_posts_of_another_source_sort_by_the_key_their_source_gives(ledger: Ledger) -> None:
    ledger.save_org(org(), NOW)
    ledger.add_source(FEED, NOW)
    posts = [FetchedPost("tag:coop.example,2026:b", NOW, {}, sort_key=20, source="feed"),
             FetchedPost("tag:coop.example,2026:a", NOW, {}, sort_key=10, source="feed")]
    assert ledger.record_fetched("coop", posts, cursor="etag-2", now=NOW) == 2
    rows = ledger.open_posts("coop", source="feed")
    assert [(r.post_id, r.sort_key, r.source) for r in rows] == [
        ("tag:coop.example,2026:a", 10, "feed"), ("tag:coop.example,2026:b", 20, "feed")
    ]
    assert ledger.open_posts("coop") == []  # the default queue is the X source's, as before
    assert ledger.get_post("coop", "tag:coop.example,2026:a", source="feed") is not None
    assert ledger.counts("coop")["pending"] == 2  # reports count every source


def test_an_id_without_a_number_sorts_by_its_creation_time_not_as_zero(ledger: Ledger) -> None:
    ledger.save_org(org(), NOW)
    ledger.add_source(FEED, NOW)
    later, earlier = NOW + timedelta(hours=1), NOW - timedelta(hours=1)
    ledger.record_fetched("coop", [FetchedPost("zzz-first", earlier, {}, source="feed"),
                                   FetchedPost("aaa-second", later, {}, source="feed")], cursor=None, now=NOW)
    rows = ledger.open_posts("coop", source="feed")
    assert [r.post_id for r in rows] == ["zzz-first", "aaa-second"]
    assert rows[0].sort_key == int(earlier.timestamp()) * 1_000_000 > 0


def test_each_source_has_its_own_cursor_and_its_own_post_ids(ledger: Ledger) -> None:
    ledger.save_org(org(), NOW)
    ledger.add_source(FEED, NOW)
    ledger.record_fetched("coop", [FetchedPost("10", NOW, {"from": "x"})], cursor="10", now=NOW)
    ledger.record_fetched("coop", [FetchedPost("10", NOW, {"from": "feed"}, source="feed")], cursor="b", now=NOW)
    assert ledger.get_post("coop", "10").post == {"from": "x"}
    assert ledger.get_post("coop", "10", source="feed").post == {"from": "feed"}
    assert (ledger.get_cursor("coop"), ledger.get_cursor("coop", source="feed")) == ("10", "b")
    ledger.set_cursor("coop", "a", NOW, source="feed")  # a feed's cursor is its own token: taken as given
    ledger.set_cursor("coop", "9", NOW)  # an X id never moves back
    assert (ledger.get_cursor("coop"), ledger.get_cursor("coop", source="feed")) == ("10", "a")
    assert ledger.get_source("coop", "feed").cursor == "a"
    with pytest.raises(ValueError, match="several sources"):
        ledger.record_fetched("coop", [FetchedPost("11", NOW, {}), FetchedPost("c", NOW, {}, source="feed")],
                              cursor=None, now=NOW)
    with pytest.raises(ValueError, match="no source 'rss'"):
        ledger.set_cursor("coop", "1", NOW, source="rss")


def test_each_target_keeps_its_own_copies_of_a_post(ledger: Ledger) -> None:
    ledger.save_org(org(), NOW)
    ledger.add_target(BLUESKY, NOW)
    ledger.record_fetched("coop", [FetchedPost("10", NOW, {})], cursor="10", now=NOW)
    ledger.record_delivery("coop", "10", 0, "status", "111", "https://geno.social/@coop/111", NOW)
    at_uri = "at://did:plc:coop/app.bsky.feed.post/3k"
    ledger.record_delivery("coop", "10", 0, "status", at_uri, "https://bsky.app/x", NOW, target="bluesky")
    ledger.record_delivery("coop", "10", 0, "status", at_uri, "https://bsky.app/x", NOW, target="bluesky")  # no-op
    with pytest.raises(sqlite3.IntegrityError):  # a second copy of the same part on the same target
        ledger.record_delivery("coop", "10", 0, "status", "at://other", "u", NOW, target="bluesky")
    assert [(c.target, c.copy_id) for c in ledger.copies("coop", "x", "10")] == [("bluesky", at_uri), ("mastodon", "111")]
    assert [d.status_id for d in ledger.deliveries("coop", "10")] == ["111"]  # the Mastodon copies, as before
    assert ledger.first_toot(None, "10", target="bluesky").copy_id == at_uri
    assert ledger.known_statuses("coop", ["111", at_uri]) == {"111"}
    assert ledger.known_statuses("coop", ["111", at_uri], target="bluesky") == {at_uri}
    assert len(ledger.statuses_since("coop", NOW)) == 1 and len(ledger.statuses_since("coop", NOW, target="bluesky")) == 1


def test_an_account_is_linked_by_one_organisation_at_a_time(ledger: Ledger) -> None:
    ledger.save_org(org("a", "100"), NOW)
    ledger.save_org(org("b", "200"), NOW)
    with pytest.raises(ConfigError, match="already linked elsewhere"):
        ledger.add_source(SourceAccount("b", "x2", "x", "100", "a_x"), NOW)
    ledger.remove_org("a", keep_history=True, now=NOW)
    assert ledger.sources("a") == [] and ledger.get_target("a").credentials is None
    ledger.add_source(SourceAccount("b", "x2", "x", "100", "a_x"), NOW)  # free again once unlinked
    assert ledger.org_by_x_user("100").name == "b"
    assert ledger.linked_handles() == {"b_x": "b@geno.social", "a_x": "b@geno.social"}


def test_a_ledger_from_a_newer_version_is_refused_naming_both_versions(tmp_path: Path) -> None:
    """Using it silently could break what the newer version relies on: refuse, and say which versions."""
    from click.testing import CliRunner

    from bridge import __version__
    from bridge.cli import main

    path = tmp_path / "ledger.db"
    with Ledger.open(path) as ledger:
        ledger.save_org(org(), NOW)
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO _sqlite_migrations (migration_set, name, applied_at) VALUES"
                 " ('geno-bridge', 'm099_from_the_future', '2027-01-01 00:00:00+00:00')")
    conn.commit()
    conn.close()
    ours = len(known_migrations())
    with pytest.raises(ConfigError) as caught:
        Ledger.open(path)
    message = str(caught.value)
    assert str(path) in message and "newer geno-bridge" in message and "m099_from_the_future" in message
    assert f"schema version {ours + 1}" in message and f"schema version {ours}" in message and __version__ in message

    config = tmp_path / "config.yaml"
    config.write_text(f"database: {path}\n")
    result = CliRunner().invoke(main, ["--config", str(config), "status"])
    assert result.exit_code == 2 and "newer geno-bridge" in result.output and "Traceback" not in result.output
    # Nothing was written: the newer version finds its ledger as it left it.
    conn = sqlite3.connect(path)
    assert [r[0] for r in conn.execute("SELECT name FROM _sqlite_migrations ORDER BY id")][-1] == "m099_from_the_future"
    assert conn.execute("SELECT count(*) FROM orgs").fetchone()[0] == 1
    conn.close()


def test_a_ledger_from_this_version_opens_again(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    Ledger.open(path).close()
    with Ledger.open(path) as ledger:
        assert ledger.schema_version() == known_migrations()


def fill_disk(ledger: Ledger) -> None:
    """What a full disk looks like to SQLite: no page can be added (deterministic, unlike a real one)."""
    pages = ledger.db.conn.execute("PRAGMA page_count").fetchone()[0]
    ledger.db.conn.execute(f"PRAGMA max_page_count = {pages}")


def test_a_full_disk_is_a_ledger_error_and_writes_none_of_the_transaction(ledger: Ledger) -> None:
    from bridge.errors import LedgerError

    ledger.save_org(org(), NOW)
    ledger.set_cursor("coop", "100", NOW)
    fill_disk(ledger)
    posts = [FetchedPost(str(1000 + n), NOW, {"text": "a long post " * 100}) for n in range(20)]
    with pytest.raises(LedgerError) as caught:
        ledger.record_fetched("coop", posts, cursor="1019", now=NOW)
    message = str(caught.value)
    assert "disk is full" in message and str(ledger.path) in message and "nothing is lost" in message
    assert ledger.get_cursor("coop") == "100" and ledger.counts("coop")["pending"] == 0
    # The connection is fine afterwards: small writes that fit still go, and with room again all of it.
    ledger.update_org("coop", NOW, state_reason="still writable")
    ledger.db.conn.execute("PRAGMA max_page_count = 1073741823")
    assert ledger.record_fetched("coop", posts, cursor="1019", now=NOW) == 20
    assert ledger.get_cursor("coop") == "1019"


def _open_at_once(path: str, barrier: Any, results: Any) -> None:
    barrier.wait()
    try:
        with Ledger.open(path) as ledger:
            results.put(ledger.schema_version()[-1])
    except Exception as exc:  # noqa: BLE001 - the test reports what each process met
        results.put(f"error: {exc}")


def test_processes_opening_a_new_ledger_at_once_all_get_it_migrated(tmp_path: Path) -> None:
    """The daemon, `bridge web` and a CLI command may open a new ledger in the same instant: one migrates,
    the others wait for it (before, one of them failed with "database is locked")."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    path = str(tmp_path / "ledger.db")
    barrier, results = ctx.Barrier(6), ctx.Queue()
    procs = [ctx.Process(target=_open_at_once, args=(path, barrier, results)) for _ in range(6)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    seen = [results.get(timeout=5) for _ in procs]
    assert seen == [known_migrations()[-1]] * 6, seen
