"""The daemon at one X app key's scale (issue 18): thousands of organisations start without a thundering herd."""

from __future__ import annotations

import math
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import yaml

from bridge.config import load_config
from bridge.daemon import Daemon
from bridge.ledger import Ledger, OrgRecord, SourceAccount
from bridge.schedule import START_GAP


def _daemon_with_orgs(tmp_path: Path, count: int, interval: int, polled_at: datetime | None = None, *,
                      feed_only: int = 0, budget: int = 0) -> Daemon:
    """``count`` organisations reading X, then ``feed_only`` reading only a feed (their X source unlinked)."""
    database = tmp_path / "ledger.db"
    t = datetime.now(timezone.utc)
    with Ledger.open(database) as ledger:
        for n in range(count + feed_only):
            name = f"org-{n:05d}"
            ledger.save_org(
                OrgRecord(name=name, x_user_id=str(5000 + n), x_username=f"u{n}", instance="http://127.0.0.1:9",
                          account_id=str(n), acct=f"u{n}", account_url=f"http://127.0.0.1:9/@u{n}", token=f"tok{n:05d}",
                          last_poll_at=polled_at),
                t,
            )
            if n >= count:
                ledger.set_source_state(name, "unlinked", t)
                ledger.add_source(SourceAccount(name, "feed", "feed", f"http://127.0.0.1:9/{n}.xml", "News", cursor="c"), t)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump({"database": str(database), "daemon": {"jitter": 0}, "feed": {"poll_interval": 300},
                                   "x": {"poll_interval": interval, "max_poll_interval": interval,
                                         "budget": {"requests_per_15min": budget}}}), encoding="utf-8")
    return Daemon(load_config(cfg), environ={})


def _first_polls(daemon: Daemon) -> tuple[datetime, list[float]]:
    started = datetime.now(timezone.utc)
    daemon.refresh()  # what serve() does first; the scheduler is not started, nothing runs
    return started, sorted((job.next_run_time - started).total_seconds() for job in daemon.scheduler.get_jobs())


def test_the_first_polls_of_thousands_of_organisations_are_spread_over_the_interval(tmp_path: Path) -> None:
    count, interval = 3_000, 60  # bench/idle.py runs 10,000 (at 300 s); the same rule, smaller for the suite
    daemon = _daemon_with_orgs(tmp_path, count, interval)
    _, offsets = _first_polls(daemon)
    assert len(offsets) == count
    assert offsets[0] < 5 and interval * 0.9 < offsets[-1] <= interval + 5  # the whole interval, not one moment
    per_second = Counter(math.floor(o) for o in offsets)
    assert max(per_second.values()) <= math.ceil(count / interval) + 1  # ~50 a second, never all at once


def test_a_few_organisations_are_all_polled_at_once_at_a_start(tmp_path: Path) -> None:
    daemon = _daemon_with_orgs(tmp_path, 3, 300)
    _, offsets = _first_polls(daemon)
    assert len(offsets) == 3 and offsets[-1] < 2 * START_GAP + 2  # a few: no waiting for a spread


def test_organisations_polled_just_before_a_restart_keep_their_rhythm(tmp_path: Path) -> None:
    polled = datetime.now(timezone.utc) - timedelta(seconds=100)
    daemon = _daemon_with_orgs(tmp_path, 500, 300, polled_at=polled)
    _, offsets = _first_polls(daemon)
    assert all(195 <= o <= 205 for o in offsets)  # their next poll is due 300 s after the last one, not spread anew


def test_the_first_polls_of_organisations_reading_x_follow_the_rate_of_the_x_budget(tmp_path: Path) -> None:
    # 36,000 reads per 15 minutes: 40 a second, so 1,000 quiet organisations (hourly) take 25 s, not X's 90 s.
    daemon = _daemon_with_orgs(tmp_path, 1_000, 3600, budget=36_000)
    _, offsets = _first_polls(daemon)
    assert 24 < offsets[-1] - offsets[0] < 26
    assert max(Counter(math.floor(o) for o in offsets).values()) <= 41


def test_organisations_reading_only_feeds_are_not_held_back_by_a_small_x_budget(tmp_path: Path) -> None:
    # 90 X reads per 15 minutes: one first poll every 10 s for those reading X; the feed readers cost no X read.
    daemon = _daemon_with_orgs(tmp_path, 100, 3600, feed_only=100, budget=90)
    started = datetime.now(timezone.utc)
    daemon.refresh()
    first = {job.id: (job.next_run_time - started).total_seconds() for job in daemon.scheduler.get_jobs()}
    x_readers = sorted(v for k, v in first.items() if int(k[4:]) < 100)
    feed_readers = sorted(v for k, v in first.items() if int(k[4:]) >= 100)
    assert 980 < x_readers[-1] < 1000 and 9 < x_readers[1] - x_readers[0] < 11
    assert feed_readers[-1] < 100 * START_GAP + 2  # at the default rate, within seconds


def test_the_spread_first_round_begins_only_once_every_job_is_in_place(tmp_path: Path) -> None:
    # Planned from the refresh's start, the first seconds of the round were overdue once the 10,000 jobs were
    # added and ran all at once (bench/idle.py: 295 polls in one second against 111 planned).
    daemon = _daemon_with_orgs(tmp_path, 3_000, 3600)
    daemon.refresh()
    in_place = datetime.now(timezone.utc)
    assert min(job.next_run_time for job in daemon.scheduler.get_jobs()) >= in_place
