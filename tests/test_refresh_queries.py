"""The daemon's refresh and `bridge status` read every organisation with one grouped query per fact (issue 18):
each grouped answer is, organisation by organisation, what the per-organisation query answers."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import yaml

from bridge.config import load_config
from bridge.daemon import Daemon
from bridge.ledger import POST_STATES, FetchedPost, Ledger, OrgRecord, SourceAccount, TargetAccount
from bridge.report import ACTIVITY_WINDOW, activity, status_report

NOW = datetime.now(timezone.utc).replace(microsecond=0)
OLD = NOW - ACTIVITY_WINDOW - timedelta(days=1)  # outside the activity window
RECENT = NOW - timedelta(days=2)


def _org(ledger: Ledger, name: str, n: int, token: str | None = None) -> None:
    ledger.save_org(OrgRecord(name, str(7000 + n), f"{name}_x", "http://127.0.0.1:9", str(n), name,
                              f"http://127.0.0.1:9/@{name}", token=token or f"token-{name}-{n:04d}"), NOW)
    ledger.set_cursor(name, "1", NOW)


def _posts(ledger: Ledger, org: str, ids: list[str], created: datetime, *, source: str = "x",
           origin: str = "poll") -> None:
    ledger.record_fetched(org, [FetchedPost(i, created, {"id": i}, source=source) for i in ids], cursor=None, now=NOW,
                          origin=origin, source=source)


def build(database: Path) -> None:
    """Organisations with several sources, targets and post states, one paused, one unlinked, one without posts."""
    with Ledger.open(database) as ledger:
        _org(ledger, "alpha", 1)  # X + feed, Mastodon + Bluesky, posts in every state, old and recent, poll and backfill
        ledger.add_source(SourceAccount("alpha", "feed", "feed", "https://alpha.example/feed.xml", "Alpha", cursor="c"),
                          NOW)
        ledger.add_target(TargetAccount("alpha", "bluesky", "bluesky", "https://pds.example", "did:plc:alpha",
                                        "alpha.bsky.social", "https://bsky.app/profile/alpha", "bsky-session-alpha"), NOW)
        _posts(ledger, "alpha", ["11", "12", "13", "14", "15"], RECENT)
        _posts(ledger, "alpha", ["f1", "f2"], RECENT, source="feed")
        _posts(ledger, "alpha", ["5", "6"], OLD)
        _posts(ledger, "alpha", ["1", "2", "3"], RECENT, origin="backfill")
        ledger.finish("alpha", "11", "delivered", NOW)
        ledger.finish("alpha", "12", "failed", NOW, "422: too long")
        ledger.finish("alpha", "12", "skipped", NOW, target="bluesky")
        ledger.mark_posting("alpha", "13", "key-13", NOW)
        ledger.finish("alpha", "f1", "failed", NOW, "400", source="feed", target="bluesky")
        ledger.finish("alpha", "5", "delivered", NOW)

        _org(ledger, "bravo", 2)  # only a feed (free: no X budget), posts on one target, a target without credentials
        ledger.set_source_state("bravo", "unlinked", NOW)
        ledger.add_source(SourceAccount("bravo", "feed", "feed", "https://bravo.example/feed.xml", "Bravo", cursor="c"),
                          NOW)
        ledger.add_target(TargetAccount("bravo", "spare", "mastodon", "http://127.0.0.1:9", "22", "bravo2",
                                        "http://127.0.0.1:9/@bravo2", None), NOW)
        _posts(ledger, "bravo", ["b1", "b2", "b3"], RECENT, source="feed")
        ledger.finish("bravo", "b1", "delivered", NOW, source="feed")

        _org(ledger, "charlie", 3)  # no posts at all; a target with empty credentials
        ledger.add_target(TargetAccount("charlie", "spare", "mastodon", "http://127.0.0.1:9", "33", "charlie2",
                                        "http://127.0.0.1:9/@charlie2", ""), NOW)

        _org(ledger, "delta", 4)  # paused, with posts
        _posts(ledger, "delta", ["41", "42"], RECENT)
        ledger.update_org("delta", NOW, state="paused")

        _org(ledger, "echo", 5)  # unlinked, history kept
        _posts(ledger, "echo", ["51"], RECENT)
        ledger.remove_org("echo", keep_history=True, now=NOW)


def test_each_grouped_ledger_answer_equals_the_per_organisation_answer(tmp_path: Path) -> None:
    build(tmp_path / "ledger.db")
    with Ledger.open(tmp_path / "ledger.db") as ledger:
        names = [o.name for o in ledger.list_orgs(include_unlinked=True)]
        assert names == ["alpha", "bravo", "charlie", "delta", "echo"]
        kinds, credentials = ledger.source_kinds_by_org(), ledger.target_credentials_by_org()
        for name in names:
            assert kinds.get(name, set()) == {s.kind for s in ledger.sources(name)}, name
            assert credentials.get(name, []) == [t.credentials for t in ledger.targets(name) if t.credentials], name
        assert kinds["alpha"] == {"x", "feed"} and kinds["bravo"] == {"feed"} and "echo" not in kinds
        assert credentials["alpha"] == ["bsky-session-alpha", "token-alpha-0001"]
        zero = {s: 0 for s in POST_STATES}
        for target in (None, "mastodon", "bluesky", "spare"):
            grouped = ledger.counts_by_org(target=target)
            for name in names:
                assert grouped.get(name, zero) == ledger.counts(name, target=target), (name, target)
        assert ledger.counts_by_org()["alpha"] == {"pending": 18, "posting": 1, "delivered": 2, "skipped": 1,
                                                   "failed": 2}
        for since in (NOW - ACTIVITY_WINDOW, RECENT, OLD - timedelta(days=1), NOW):
            for origin in ("poll", "backfill"):
                grouped_posts = ledger.posts_since_by_org(since, origin)
                for name in names:
                    assert grouped_posts.get(name, 0) == ledger.posts_since(name, since, origin), (name, since, origin)
        assert ledger.posts_since_by_org(NOW - ACTIVITY_WINDOW) == {"alpha": 7, "bravo": 3, "delta": 2, "echo": 1}
        ledger.update_org("alpha", NOW, last_poll_at=RECENT, last_success_at=OLD, next_poll_at=NOW)
        assert [(t.name, t.state, t.token, t.last_poll_at, t.last_success_at, t.next_poll_at)
                for t in ledger.org_timings()] == [
            (o.name, o.state, o.token, o.last_poll_at, o.last_success_at, o.next_poll_at) for o in ledger.list_orgs()]
        assert ledger.org_timings()[0].last_poll_at == RECENT and len(ledger.org_timings()) == 4  # echo unlinked


def test_activity_and_the_status_plan_read_every_organisation_as_one_by_one(tmp_path: Path) -> None:
    build(tmp_path / "ledger.db")
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"database": str(tmp_path / "ledger.db"), "feed": {"poll_interval": 600},
                                      "x": {"poll_interval": 300, "max_poll_interval": 86400}}), encoding="utf-8")
    with Ledger.open(tmp_path / "ledger.db") as ledger:
        orgs = ledger.list_orgs(include_unlinked=True)
        assert activity(ledger, orgs, NOW) == {
            o.name: ledger.posts_since(o.name, NOW - ACTIVITY_WINDOW) / ACTIVITY_WINDOW.days for o in orgs}
        report = status_report(ledger, load_config(config), NOW)
    intervals = {o["name"]: o["poll_interval"] for o in report["organisations"]}
    # bravo reads only a feed (its X source is unlinked): its own interval, no share of the X budget.
    # alpha: 7 posts from polls in 14 days, 0.5 a day (backfilled and older posts do not count): 24 polls a post.
    assert intervals["alpha"] == 7200 and intervals["charlie"] == 86400


def test_a_refresh_plans_counts_and_masks_as_the_per_organisation_queries_say(tmp_path: Path) -> None:
    build(tmp_path / "ledger.db")
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"database": str(tmp_path / "ledger.db"), "feed": {"poll_interval": 600},
                                      "x": {"poll_interval": 300, "max_poll_interval": 3600},
                                      "daemon": {"jitter": 0, "status_file": str(tmp_path / "heartbeat.json")}}),
                      encoding="utf-8")
    daemon = Daemon(load_config(config), environ={})
    daemon.refresh()
    with Ledger.open(tmp_path / "ledger.db") as ledger:
        active = [o.name for o in ledger.list_orgs() if o.state == "active"]
        per_org = [ledger.counts(name, target=None) for name in active]
    assert active == ["alpha", "bravo", "charlie"]
    assert daemon.counts == {"organisations": 3, "pending": sum(c["pending"] + c["posting"] for c in per_org),
                             "failed": sum(c["failed"] for c in per_org)}
    assert daemon.counts["pending"] == 19 + 5  # alpha: 18 pending + 1 posting (2 targets); bravo: 5 (2 targets)
    assert daemon.plan is not None and daemon.plan.intervals["bravo"] == 600
    assert sorted(daemon.schedule) == active
    from bridge.logs import masker

    assert masker.mask("bsky-session-alpha and token-bravo-0002") == "*** and ***"


def test_next_polls_set_in_one_transaction_read_back_as_one_update_each(tmp_path: Path) -> None:
    build(tmp_path / "ledger.db")
    later = NOW + timedelta(hours=1)
    moves = {"alpha": later, "bravo": later + timedelta(seconds=1.5), "delta": None}
    with Ledger.open(tmp_path / "ledger.db") as batched:
        batched.set_next_polls(moves, later)
        got = {o.name: o for o in batched.list_orgs(include_unlinked=True)}
    build(tmp_path / "one-by-one.db")
    with Ledger.open(tmp_path / "one-by-one.db") as single:
        for name, when in moves.items():
            single.update_org(name, later, next_poll_at=when)
        want = {o.name: o for o in single.list_orgs(include_unlinked=True)}
    assert got == want
    assert got["bravo"].next_poll_at == later + timedelta(seconds=1.5) and got["charlie"].next_poll_at is None
