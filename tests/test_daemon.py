"""`bridge run` as operators run it: a real subprocess against the loopback X and Mastodon servers.

Synchronisation is on events, never on sleeps: the daemon's JSON log lines (read
from its stderr as they come), datagrams on a test notify socket, its exit, or
polling a server for the outcome with a deadline.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.config import Budget, XConfig, load_config
from bridge.daemon import Daemon
from bridge.ledger import FetchedPost, Ledger, OrgRecord, SourceAccount
from bridge.report import health, status_report
from bridge.schedule import plan
from tests.fakes.x_api import FakeXServer, make_tweet
from tests.mastodon_server import MastodonServer

pytest_plugins = ["tests.fixtures_x"]

ROOT = Path(__file__).resolve().parent.parent
DEADLINE = 20.0  # seconds any single wait may take before the test fails


def now() -> datetime:
    return datetime.now(timezone.utc)


# ---------------------------------------------------------------------------
# helpers


def write_config(path: Path, x_server: FakeXServer, **over: Any) -> Path:
    """A test configuration: short intervals, no jitter, JSON logs."""
    cfg: dict[str, Any] = {
        "database": str(path.parent / "ledger.db"),
        "log_format": "json",
        "x": {
            "bearer_token": x_server.token,
            "api_base_url": x_server.base_url,
            "media_hosts": [x_server.media_host],
            "poll_interval": over.pop("poll_interval", 10),
            "max_poll_interval": over.pop("max_poll_interval", 10),
        },
        "daemon": {
            "concurrency": 2,
            "jitter": 0,
            "refresh_interval": 1,
            "shutdown_grace": over.pop("shutdown_grace", 10),
        },
    }
    assert not over, f"unknown overrides {over}"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def daemon_command(config: Path) -> list[str]:
    from bridge.cli import main

    if "run" in main.commands:  # type: ignore[attr-defined]
        return [sys.executable, "-m", "bridge.cli", "--config", str(config), "run"]
    return [sys.executable, "-c", "import sys; from bridge.daemon import run; sys.exit(run(sys.argv[1], None))", str(config)]


class DaemonProcess:
    """`bridge run` in a subprocess; its JSON log lines are collected as they arrive."""

    def __init__(self, config: Path, env: dict[str, str] | None = None) -> None:
        full_env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}
        full_env.update(env or {})
        full_env["PYTHONUNBUFFERED"] = "1"
        self.proc = subprocess.Popen(
            daemon_command(config), cwd=ROOT, env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        self.lines: list[dict[str, Any]] = []
        self.raw: list[str] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._cond:
                self.raw.append(line.rstrip("\n"))
                try:
                    self.lines.append(json.loads(line))
                except ValueError:
                    self.lines.append({"event": "<not json>", "line": line})
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def mark(self) -> int:
        with self._cond:
            return len(self.lines)

    def wait_event(self, event: str, *, after: int = 0, timeout: float = DEADLINE, **fields: Any) -> dict[str, Any]:
        """The first log event named ``event`` (with ``fields`` equal) from line ``after`` on."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines[after:]:
                    if line.get("event") == event and all(line.get(k) == v for k, v in fields.items()):
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(f"no {event} {fields} in the daemon log:\n" + "\n".join(self.raw[-40:]))
                self._cond.wait(timeout=left)

    def events(self, event: str) -> list[dict[str, Any]]:
        with self._cond:
            return [line for line in self.lines if line.get("event") == event]

    def send(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def wait_exit(self, timeout: float = DEADLINE) -> int:
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("the daemon did not exit; its log:\n" + "\n".join(self.raw[-40:])) from None
        self._reader.join(timeout=5)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(timeout=5)


@pytest.fixture
def daemons() -> Iterator[Callable[..., DaemonProcess]]:
    """Start daemons; any left running at the end of the test is killed."""
    started: list[DaemonProcess] = []

    def start(config: Path, env: dict[str, str] | None = None) -> DaemonProcess:
        d = DaemonProcess(config, env)
        started.append(d)
        return d

    yield start
    for d in started:
        d.kill()


def link_org(database: Path, mastodon: MastodonServer, name: str, x_user_id: str = "1000", x_username: str = "coop") -> str:
    """Link an organisation the way `bridge link` leaves it: a token, and the X cursor at "now"."""
    username = f"{name.replace('-', '_')}_{uuid.uuid4().hex[:8]}"
    token = mastodon.create_account(username)
    me = httpx.get(
        f"{mastodon.base_url}/api/v1/accounts/verify_credentials", headers={"Authorization": f"Bearer {token}"}, timeout=10
    ).json()
    with Ledger.open(database) as ledger:
        ledger.save_org(
            OrgRecord(
                name=name,
                x_user_id=x_user_id,
                x_username=x_username,
                instance=mastodon.base_url,
                account_id=str(me["id"]),
                acct=me["acct"],
                account_url=me["url"],
                token=token,
            ),
            now(),
        )
        ledger.set_cursor(name, "1", now())
    return token


def post_tweets(x_server: FakeXServer, texts: list[str], author_id: str = "1000", base: int = 1_800_000_000_000_000_000) -> list[str]:
    ids = []
    for n, text in enumerate(texts):
        post_id = str(base + n)
        x_server.add_tweet(make_tweet(post_id, author_id, text, created_at=now() - timedelta(minutes=len(texts) - n), author_username="coop"))
        ids.append(post_id)
    return ids


def toot_texts(mastodon: MastodonServer, token: str) -> list[str]:
    return [s["content"] for s in mastodon.statuses(token)]


def wait_until(check: Callable[[], bool], what: str, timeout: float = DEADLINE) -> None:
    """Poll a server for an outcome until a deadline (the outcome lives in another process)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


class NotifySocket:
    """A stand-in for systemd's notify socket, in the abstract namespace."""

    def __init__(self) -> None:
        self.name = f"geno-bridge-test-{uuid.uuid4().hex}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(b"\0" + self.name.encode())
        self.messages: list[str] = []

    @property
    def env(self) -> str:
        return "@" + self.name

    def wait_for(self, predicate: Callable[[list[str]], bool], what: str, timeout: float = DEADLINE) -> None:
        deadline = time.monotonic() + timeout
        while not predicate(self.messages):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {what} on the notify socket; got {self.messages}")
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            self.messages.append(data.decode())

    def close(self) -> None:
        self.sock.close()


# ---------------------------------------------------------------------------
# systemd notify, SIGTERM and the heartbeat


def test_notify_ready_status_watchdog_stopping_and_clean_exit(tmp_path: Path, x_server: FakeXServer, daemons: Any) -> None:
    config = write_config(tmp_path / "config.yaml", x_server)
    notify = NotifySocket()
    try:
        d = daemons(config, {"NOTIFY_SOCKET": notify.env, "WATCHDOG_USEC": "200000"})
        notify.wait_for(lambda m: any("READY=1" in x.split("\n") for x in m), "READY=1")
        ready = next(x for x in notify.messages if "READY=1" in x.split("\n"))
        assert "STATUS=0 organisations, 0 pending, 0 failed" in ready.split("\n")
        # WATCHDOG_USEC=0.2 s: pings every 0.1 s from the scheduler; wait for several.
        notify.wait_for(lambda m: sum(x == "WATCHDOG=1" for x in m) >= 3, "three WATCHDOG=1")
        d.send(signal.SIGTERM)
        notify.wait_for(lambda m: any("STOPPING=1" in x.split("\n") for x in m), "STOPPING=1")
        assert d.wait_exit() == 0
    finally:
        notify.close()
    beat = json.loads((tmp_path / "ledger.db.heartbeat").read_text())
    assert beat["pid"] == d.proc.pid
    assert {"started_at", "last_cycle_at", "last_success_at", "interval", "organisations", "pending", "failed"} <= set(beat)
    assert datetime.fromisoformat(beat["last_success_at"]).tzinfo is not None
    assert beat["stopped_at"]


def test_without_notify_socket_runs_and_stops_on_sigint(tmp_path: Path, x_server: FakeXServer, daemons: Any) -> None:
    config = write_config(tmp_path / "config.yaml", x_server)
    d = daemons(config)
    d.wait_event("ready")
    d.send(signal.SIGINT)
    assert d.wait_exit() == 0
    d.wait_event("stopped")


def test_bad_config_at_start_exits_2_with_the_reason(tmp_path: Path, daemons: Any) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("database: ledger.db\nlog_format: json\nx:\n  poll_interval: 1\n", encoding="utf-8")
    d = daemons(config)
    assert d.wait_exit() == 2
    assert "x.poll_interval" in "\n".join(d.raw)


# ---------------------------------------------------------------------------
# Delivery, linking while running, stopping mid-delivery


def test_org_linked_while_running_gets_polled_and_delivered(
    tmp_path: Path, x_server: FakeXServer, mastodon: MastodonServer, daemons: Any
) -> None:
    config = write_config(tmp_path / "config.yaml", x_server)
    d = daemons(config)
    d.wait_event("ready", organisations=0)

    token = link_org(tmp_path / "ledger.db", mastodon, "coop-a")
    post_tweets(x_server, ["Our general assembly is on Friday at 6pm"])
    d.wait_event("org_scheduled", org="coop-a", interval=10)
    wait_until(lambda: len(toot_texts(mastodon, token)) == 1, "the toot on mastodon-mock")
    assert "general assembly is on Friday" in toot_texts(mastodon, token)[0]

    delivered = d.wait_event("delivered", org="coop-a")
    assert delivered["toot_id"] and delivered["post_id"] == "1800000000000000000"
    assert delivered["attempt"] == 1 and isinstance(delivered["duration"], float)
    d.wait_event("cycle_finished", org="coop-a", delivered=1)
    d.send(signal.SIGTERM)
    assert d.wait_exit() == 0
    assert len(toot_texts(mastodon, token)) == 1
    beat = json.loads((tmp_path / "ledger.db.heartbeat").read_text())
    assert beat["organisations"] == 1 and beat["last_cycle_at"] and beat["last_success_at"]


def test_unlinked_while_running_is_unscheduled(
    tmp_path: Path, x_server: FakeXServer, mastodon: MastodonServer, daemons: Any
) -> None:
    config = write_config(tmp_path / "config.yaml", x_server)
    link_org(tmp_path / "ledger.db", mastodon, "coop-a")
    d = daemons(config)
    d.wait_event("org_scheduled", org="coop-a")
    with Ledger.open(tmp_path / "ledger.db") as ledger:
        ledger.remove_org("coop-a", keep_history=True, now=now())
    d.wait_event("org_unscheduled", org="coop-a", state="unlinked")
    d.send(signal.SIGTERM)
    assert d.wait_exit() == 0


def test_sigterm_mid_delivery_no_duplicate_no_loss_after_restart(
    tmp_path: Path, x_server: FakeXServer, mastodon: MastodonServer, daemons: Any
) -> None:
    # A poll interval longer than this test: the restarted daemon's poll is not due yet (a loaded machine
    # once took the 10 s default between the two starts, and the poll, not the resume, delivered the rest).
    config = write_config(tmp_path / "config.yaml", x_server, poll_interval=120, max_poll_interval=120)
    token = link_org(tmp_path / "ledger.db", mastodon, "coop-a")
    texts = [f"Update number {n} from the coop" for n in range(4)]
    post_tweets(x_server, texts)
    # Every status takes 1.5 s on the server, so SIGTERM lands while one is in flight.
    mastodon.add_fault(
        {"match": {"methods": ["POST"], "path": "/api/v1/statuses"}, "effect": {"type": "latency", "delay_ms": 1500}, "count": 4}
    )
    d = daemons(config)
    d.wait_event("delivered", org="coop-a")
    d.send(signal.SIGTERM)
    assert d.wait_exit() == 0
    first_run = len(toot_texts(mastodon, token))
    assert 1 <= first_run < 4, "the stop did not land mid-delivery"
    with Ledger.open(tmp_path / "ledger.db") as ledger:
        counts = ledger.counts("coop-a")
    assert counts["delivered"] == first_run and counts["pending"] + counts["posting"] == 4 - first_run

    mastodon.clear_faults()
    d2 = daemons(config)
    # The open posts resume at once; the poll itself waits for its interval since the last one.
    d2.wait_event("org_resume", org="coop-a", open_posts=4 - first_run)
    wait_until(lambda: len(toot_texts(mastodon, token)) >= 4, "all four toots after the restart")
    d2.wait_event("cycle_finished", org="coop-a")
    d2.send(signal.SIGTERM)
    assert d2.wait_exit() == 0
    toots = toot_texts(mastodon, token)
    assert len(toots) == 4
    for text in texts:
        assert sum(text in t for t in toots) == 1, f"{text!r} not exactly once in {toots}"


# ---------------------------------------------------------------------------
# SIGHUP


def test_sighup_reloads_a_good_config_and_keeps_the_old_one_when_bad(
    tmp_path: Path, x_server: FakeXServer, mastodon: MastodonServer, daemons: Any
) -> None:
    config = write_config(tmp_path / "config.yaml", x_server, poll_interval=20, max_poll_interval=20)
    link_org(tmp_path / "ledger.db", mastodon, "coop-a")
    d = daemons(config)
    d.wait_event("org_scheduled", org="coop-a", interval=20)
    d.wait_event("ready")

    write_config(config, x_server, poll_interval=10, max_poll_interval=10)
    mark = d.mark()
    d.send(signal.SIGHUP)
    reloaded = d.wait_event("config_reloaded", after=mark)
    assert {"x.poll_interval", "x.max_poll_interval"} <= set(reloaded["changed"])
    d.wait_event("org_rescheduled", after=mark, org="coop-a", interval=10, was=20)

    bad = yaml.safe_load(config.read_text())
    bad["x"]["poll_interval"] = 1  # below the 10 s minimum
    config.write_text(yaml.safe_dump(bad), encoding="utf-8")
    mark = d.mark()
    d.send(signal.SIGHUP)
    failed = d.wait_event("config_reload_failed", after=mark)
    assert "x.poll_interval" in failed["error"] and str(config) in failed["error"]
    assert d.proc.poll() is None, "a bad configuration must not stop the daemon"

    # The config in force is still the last good one: only the key changed since then shows.
    write_config(config, x_server, poll_interval=10, max_poll_interval=15)
    mark = d.mark()
    d.send(signal.SIGHUP)
    assert d.wait_event("config_reloaded", after=mark)["changed"] == ["x.max_poll_interval"]
    d.send(signal.SIGTERM)
    assert d.wait_exit() == 0


# ---------------------------------------------------------------------------
# Health


def test_status_check_healthy_while_cycling_and_failing_once_cycles_stop(
    tmp_path: Path, x_server: FakeXServer, mastodon: MastodonServer, daemons: Any
) -> None:
    config_path = write_config(tmp_path / "config.yaml", x_server)
    link_org(tmp_path / "ledger.db", mastodon, "coop-a")
    d = daemons(config_path)
    d.wait_event("cycle_finished", org="coop-a", error=None)
    d.wait_event("ready")
    status = [sys.executable, "-m", "bridge.cli", "--config", str(config_path), "status", "--check"]
    wait_until(lambda: subprocess.run(status, cwd=ROOT, capture_output=True).returncode == 0, "status --check to pass")
    d.send(signal.SIGTERM)
    assert d.wait_exit() == 0

    config = load_config(config_path)
    beat_path = config.heartbeat_path
    beat = json.loads(beat_path.read_text())
    last = datetime.fromisoformat(beat["last_success_at"])
    assert health(config, last + timedelta(seconds=beat["interval"]))[0]
    ok, reason = health(config, last + timedelta(seconds=3 * beat["interval"] + 1))
    assert not ok and "3 intervals" in reason

    # Cycles stopped an hour ago: what the heartbeat of a hung daemon looks like.
    beat["last_success_at"] = (now() - timedelta(hours=1)).isoformat()
    beat_path.write_text(json.dumps(beat))
    result = subprocess.run(status, cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 1 and "unhealthy" in result.stderr


# ---------------------------------------------------------------------------
# Budget: the jobs' intervals are the plan, and the plan stays within the budget


def _seed_orgs(database: Path, quiet: int, busy: int) -> None:
    t = now()
    with Ledger.open(database) as ledger:
        for n in range(quiet + busy):
            name = f"org-{n:03d}"
            ledger.save_org(
                OrgRecord(name=name, x_user_id=str(5000 + n), x_username=f"u{n}", instance="http://127.0.0.1:9",
                          account_id=str(n), acct=f"u{n}", account_url=f"http://127.0.0.1:9/@u{n}", token=f"tok{n}"),
                t,
            )
            if n >= quiet:  # busy: five posts a day over the activity window
                posts = [FetchedPost(str(10_000_000 + n * 1000 + k), t - timedelta(hours=k * 4.8), {}) for k in range(70)]
                ledger.record_fetched(name, posts, cursor=None, now=t)


def test_jobs_follow_the_budgeted_plan_for_many_orgs(tmp_path: Path) -> None:
    database = tmp_path / "ledger.db"
    _seed_orgs(database, quiet=150, busy=50)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        yaml.safe_dump({
            "database": str(database),
            "x": {"poll_interval": 60, "max_poll_interval": 3600, "budget": {"requests_per_15min": 60}},
            "daemon": {"jitter": 0},
        }),
        encoding="utf-8",
    )
    config = load_config(cfg)
    daemon = Daemon(config, environ={})
    daemon.refresh()  # the scheduler is not started: jobs are added, nothing runs

    jobs = {job.id: job.trigger.interval.total_seconds() for job in daemon.scheduler.get_jobs()}
    assert len(jobs) == 200
    assert daemon.plan is not None and daemon.plan.budget_limited
    assert jobs == {name: float(i) for name, i in daemon.plan.intervals.items()}
    per_15min = sum(900 / i for i in jobs.values())
    assert per_15min <= 60 + 1e-9
    polls_per_day = sum(86400 / i for i in jobs.values())
    assert polls_per_day <= 60 * 96 + 1e-6
    assert max(jobs[f"org-{n:03d}"] for n in range(150, 200)) < min(jobs[f"org-{n:03d}"] for n in range(150))
    beat = json.loads(config.heartbeat_path.read_text())
    assert beat["organisations"] == 200 and beat["projected_requests_per_15min"] <= 60

    # Paused and unlinked organisations lose their jobs; the freed budget shortens the others.
    with Ledger.open(database) as ledger:
        for n in range(100):
            ledger.update_org(f"org-{n:03d}", now(), state="paused")
    daemon.refresh()
    after = {job.id: job.trigger.interval.total_seconds() for job in daemon.scheduler.get_jobs()}
    assert set(after) == {f"org-{n:03d}" for n in range(100, 200)}
    assert all(after[k] <= jobs[k] for k in after) and sum(900 / i for i in after.values()) <= 60 + 1e-9


def test_organisations_reading_only_feeds_or_bluesky_take_no_share_of_the_x_budget(tmp_path: Path) -> None:
    """Feeds and Bluesky cost no X reads: they poll at their own interval, and the X organisations
    keep the whole budget (an organisation with X beside a feed still follows the X plan)."""
    database = tmp_path / "ledger.db"
    _seed_orgs(database, quiet=30, busy=10)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        yaml.safe_dump({
            "database": str(database),
            "x": {"poll_interval": 60, "max_poll_interval": 3600, "budget": {"requests_per_15min": 15}},
            "feed": {"poll_interval": "7m"},
            "bluesky": {"poll_interval": "3m"},
            "daemon": {"jitter": 0},
        }),
        encoding="utf-8",
    )
    config = load_config(cfg)
    daemon = Daemon(config, environ={})
    daemon.refresh()
    x_only = {job.id: job.trigger.interval.total_seconds() for job in daemon.scheduler.get_jobs()}
    assert daemon.plan is not None and daemon.plan.budget_limited

    t = now()
    with Ledger.open(database) as ledger:
        for n, (kinds, busy) in enumerate([(["feed"], True), (["bluesky"], True), (["feed", "bluesky"], False),
                                           (["x", "feed"], False)] + [(["feed"], True)] * 40):
            name = f"free-{n:03d}"
            ledger.save_org(
                OrgRecord(name=name, x_user_id=str(9000 + n), x_username=f"f{n}", instance="http://127.0.0.1:9",
                          account_id=str(9000 + n), acct=f"f{n}", account_url=f"http://127.0.0.1:9/@f{n}", token=f"ft{n}"),
                t,
            )
            for k, kind in enumerate(kinds):
                ledger.add_source(SourceAccount(name, "x" if k == 0 else kind, kind, f"{kind}:{n}", f"{kind} {n}"), t)
            if busy:  # as busy as the busiest X organisations: activity must not matter for them
                posts = [FetchedPost(str(90_000_000 + n * 1000 + k), t - timedelta(hours=k * 4.8), {}) for k in range(70)]
                ledger.record_fetched(name, posts, cursor=None, now=t)
    daemon.refresh()
    jobs = {job.id: job.trigger.interval.total_seconds() for job in daemon.scheduler.get_jobs()}

    assert jobs["free-000"] == 420 and jobs["free-001"] == 180 and jobs["free-002"] == 180
    assert all(jobs[f"free-{n:03d}"] == 420 for n in range(4, 44))
    # The X organisations keep their intervals (the mixed one joined them: a little less each).
    mixed = {k: v for k, v in jobs.items() if k in x_only or k == "free-003"}
    assert sum(900 / i for i in mixed.values()) <= 15 + 1e-9
    assert all(mixed[k] <= x_only[k] * 1.05 for k in x_only)
    beat = json.loads(config.heartbeat_path.read_text())
    assert beat["organisations"] == 84 and beat["projected_requests_per_15min"] <= 15
    with Ledger.open(database) as ledger:
        status = status_report(ledger, config, now())
    assert status["budget"]["projected_requests_per_15min"] <= 15
    intervals = {o["name"]: o["poll_interval"] for o in status["organisations"]}
    assert intervals["free-000"] == 420 and intervals["free-001"] == 180 and intervals["org-000"] == jobs["org-000"]


@settings(derandomize=True, max_examples=200, deadline=None)
@given(
    activity=st.dictionaries(st.text(min_size=1, max_size=5), st.floats(min_value=0, max_value=200), max_size=60),
    budget=st.integers(min_value=0, max_value=2000),
    poll=st.integers(min_value=10, max_value=900),
    spread=st.integers(min_value=0, max_value=10_000),
)
def test_plan_never_exceeds_the_request_budget(activity: dict[str, float], budget: int, poll: int, spread: int) -> None:
    x = XConfig(poll_interval=poll, max_poll_interval=poll + spread, budget=Budget(requests_per_15min=budget))
    p = plan(activity, x)
    assert set(p.intervals) == set(activity)
    assert all(i >= poll for i in p.intervals.values())
    if budget:
        assert sum(900 / i for i in p.intervals.values()) <= budget + 1e-9
    if not p.budget_limited:
        assert all(i <= poll + spread for i in p.intervals.values())


def test_second_sigterm_exits_at_once_and_the_restart_posts_nothing_twice(
    tmp_path: Path, x_server: FakeXServer, mastodon: MastodonServer, daemons: Any
) -> None:
    config = write_config(tmp_path / "config.yaml", x_server, shutdown_grace=30)
    token = link_org(tmp_path / "ledger.db", mastodon, "coop-a")
    texts = ["First news from the coop", "Second news from the coop"]
    post_tweets(x_server, texts)
    # The first status request hangs for 3 s on the server, which still creates the status.
    mastodon.add_fault(
        {"match": {"methods": ["POST"], "path": "/api/v1/statuses"}, "effect": {"type": "latency", "delay_ms": 3000}, "count": 1}
    )
    d = daemons(config)
    wait_until(lambda: not mastodon.faults(), "the status request to reach the server")
    d.send(signal.SIGTERM)
    d.wait_event("stopping")
    started = time.monotonic()
    d.send(signal.SIGTERM)
    assert d.wait_exit() == 1
    assert time.monotonic() - started < 2.5, "the second signal did not exit at once"
    assert any('"forced_exit"' in line for line in d.raw)

    d2 = daemons(config)
    wait_until(lambda: len(toot_texts(mastodon, token)) >= 2, "both toots after the restart")
    d2.wait_event("cycle_finished", org="coop-a")
    d2.send(signal.SIGTERM)
    assert d2.wait_exit() == 0
    toots = toot_texts(mastodon, token)
    assert len(toots) == 2 and all(sum(t in toot for toot in toots) == 1 for t in texts)


def test_a_worker_keeps_its_ledger_and_x_connection_between_cycles(
    tmp_path: Path, x_server: FakeXServer, mastodon: MastodonServer
) -> None:
    """The daemon's job in-process on one worker thread: cycles of different organisations share
    that worker's X connection; a reloaded configuration gets a fresh one (issue 8)."""
    from concurrent.futures import ThreadPoolExecutor

    config_path = write_config(tmp_path / "config.yaml", x_server)
    config = load_config(config_path)
    x_server.add_user("1001", "coop_b")
    tokens = {"coop-a": link_org(config.database, mastodon, "coop-a"),
              "coop-b": link_org(config.database, mastodon, "coop-b", "1001", "coop_b")}
    post_tweets(x_server, ["Hello from A"])
    post_tweets(x_server, ["Hello from B"], author_id="1001", base=1_800_000_000_000_001_000)
    daemon = Daemon(config, environ={})
    x_server.reset_counts()
    with ThreadPoolExecutor(1) as worker:
        for name in ("coop-a", "coop-b", "coop-a"):
            worker.submit(daemon.run_cycle, name).result()
        assert daemon.wait_for_deliveries(timeout=DEADLINE)
        assert x_server.count("/2/users/") == 3
        assert len({r.client_port for r in x_server.requests}) == 1
        assert [len(toot_texts(mastodon, t)) for t in tokens.values()] == [1, 1]

        daemon.config = load_config(config_path)  # what SIGHUP does
        worker.submit(daemon.run_cycle, "coop-b").result()
        assert len({r.client_port for r in x_server.requests}) == 2
        daemon.close_workers()
        worker.submit(daemon.run_cycle, "coop-a").result()  # a closed worker is never reused
        assert x_server.count("/2/users/") == 5
        assert len({r.client_port for r in x_server.requests}) == 3
    daemon.close_workers()
    assert [len(toot_texts(mastodon, t)) for t in tokens.values()] == [1, 1]


def test_a_slow_mastodon_instance_does_not_hold_up_polling(
    tmp_path: Path, x_server: FakeXServer, mastodon: MastodonServer
) -> None:
    """Polls hand what they found to the delivery pool: while one organisation's toot waits
    3 s for its instance, the next organisation is polled at once (issue 8)."""
    config = load_config(write_config(tmp_path / "config.yaml", x_server))
    x_server.add_user("1001", "coop_b")
    token_a = link_org(config.database, mastodon, "coop-a")
    link_org(config.database, mastodon, "coop-b", "1001", "coop_b")
    post_tweets(x_server, ["Slow to arrive"])
    mastodon.add_fault({"match": {"methods": ["POST"], "path": "/api/v1/statuses"},
                        "effect": {"type": "latency", "delay_ms": 3000}, "count": 1})
    daemon = Daemon(config, environ={})
    x_server.reset_counts()
    began = time.monotonic()
    daemon.run_cycle("coop-a")
    daemon.run_cycle("coop-b")
    polled = time.monotonic() - began
    try:
        assert x_server.count("/2/users/") == 2 and polled < 3
        assert toot_texts(mastodon, token_a) == []  # still on its way
        assert daemon.wait_for_deliveries(timeout=DEADLINE)
        assert len(toot_texts(mastodon, token_a)) == 1
    finally:
        daemon.close_workers()


# ---------------------------------------------------------------------------
# Operations (issue 12, item 7)


def test_a_full_disk_ends_a_cycle_with_one_clear_log_line_and_loses_nothing(
    tmp_path: Path, x_server: FakeXServer, mastodon: MastodonServer
) -> None:
    import io

    from bridge.logs import configure

    config = load_config(write_config(tmp_path / "config.yaml", x_server))
    token = link_org(config.database, mastodon, "coop-a")
    post_tweets(x_server, [f"Minutes of meeting {n}: " + "lorem ipsum " * 20 for n in range(12)])
    daemon = Daemon(config, environ={})
    out = io.StringIO()
    configure("json", stream=out)
    try:
        ledger = daemon._pipeline().ledger  # this thread's worker: the one run_cycle uses below
        pages = ledger.db.conn.execute("PRAGMA page_count").fetchone()[0]
        ledger.db.conn.execute(f"PRAGMA max_page_count = {pages}")  # a full disk, deterministically
        daemon.run_cycle("coop-a")
        lines = [json.loads(line) for line in out.getvalue().splitlines()]
        failed = [line for line in lines if line["event"] == "cycle_failed"]
        assert len(failed) == 1 and "disk is full" in failed[0]["error"] and failed[0]["org"] == "coop-a"
        assert not any("exception" in line or "Traceback" in json.dumps(line) for line in lines)
        assert ledger.get_cursor("coop-a") == "1"

        ledger.db.conn.execute("PRAGMA max_page_count = 1073741823")  # room again
        daemon.run_cycle("coop-a")
        assert daemon.wait_for_deliveries(timeout=DEADLINE)
        assert len(toot_texts(mastodon, token)) == 12
    finally:
        daemon.close_workers()
        configure("json")


def test_a_second_bridge_run_on_the_same_ledger_is_refused_naming_the_first(
    tmp_path: Path, x_server: FakeXServer, daemons: Any
) -> None:
    config = write_config(tmp_path / "config.yaml", x_server)
    first = daemons(config)
    first.wait_event("ready")
    second = daemons(config)
    assert second.wait_exit() == 1
    refused = second.wait_event("already_running")
    assert f"pid {first.proc.pid}" in refused["error"] and str(tmp_path / "ledger.db") in refused["error"]
    assert not second.events("ready") and first.proc.poll() is None

    # The OS releases the lock however the first one ends: even SIGKILL never blocks the next start.
    first.kill()
    third = daemons(config)
    third.wait_event("ready")
    third.send(signal.SIGTERM)
    assert third.wait_exit() == 0


def test_status_check_is_healthy_right_after_a_clean_restart(
    tmp_path: Path, x_server: FakeXServer, mastodon: MastodonServer, daemons: Any
) -> None:
    """The HEALTHCHECK must not call a healthy service unhealthy until the next poll, up to an hour away."""
    config_path = write_config(tmp_path / "config.yaml", x_server, poll_interval=3600, max_poll_interval=3600)
    link_org(tmp_path / "ledger.db", mastodon, "coop-a")
    with Ledger.open(tmp_path / "ledger.db") as ledger:  # what the last run left: a poll ten minutes ago
        ledger.update_org("coop-a", now(), last_poll_at=now() - timedelta(minutes=10),
                          last_success_at=now() - timedelta(minutes=10))
    x_server.reset_counts()
    d = daemons(config_path)
    d.wait_event("org_scheduled", org="coop-a", interval=3600)
    d.wait_event("ready")
    status = subprocess.run([sys.executable, "-m", "bridge.cli", "--config", str(config_path), "status", "--check"],
                            cwd=ROOT, capture_output=True, text=True, check=False)
    assert status.returncode == 0, status.stdout + status.stderr
    assert x_server.count("/2/users/") == 0, "healthy from the ledger's last success, not from a new poll"
    d.send(signal.SIGTERM)
    assert d.wait_exit() == 0

    # A service that has not succeeded for longer than three intervals stays unhealthy after a restart.
    with Ledger.open(tmp_path / "ledger.db") as ledger:
        ledger.update_org("coop-a", now(), last_poll_at=now() - timedelta(minutes=10),
                          last_success_at=now() - timedelta(hours=4))
    daemon = Daemon(load_config(config_path), environ={})
    daemon.refresh()  # what serve() does first; the scheduler is not started
    ok, reason = health(load_config(config_path), now())
    assert not ok and "3 intervals" in reason


def test_media_folders_of_a_killed_run_are_cleaned_at_the_next_start(
    tmp_path: Path, x_server: FakeXServer, mastodon: MastodonServer, daemons: Any
) -> None:
    from tests.fakes.x_api import make_media

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    config = write_config(tmp_path / "config.yaml", x_server)
    token = link_org(tmp_path / "ledger.db", mastodon, "coop-a")
    x_server.put_media("p1.jpg", b"\xff\xd8\xff\xe0fakejpeg", "image/jpeg")
    photo = make_media("3_1", "photo", base_url=x_server.base_url, name="p1.jpg")
    x_server.add_tweet(make_tweet("1800000000000000001", "1000", "A photo of our new building", created_at=now(),
                                  author_username="coop", media_keys=["3_1"]), media=[photo])
    x_server.inject("/media/", "slow", delay=60)  # the download hangs: the run is killed mid-way
    d = daemons(config, {"TMPDIR": str(scratch)})
    wait_until(lambda: x_server.faults_pending() == 0, "the download to reach the server")
    d.kill()
    left = [p for p in scratch.iterdir() if p.name.startswith("geno-bridge-media-")]
    assert len(left) == 1 and left[0].is_dir()
    unrelated = scratch / "someone-elses-file"
    unrelated.write_text("keep me")

    d2 = daemons(config, {"TMPDIR": str(scratch)})
    assert d2.wait_event("media_cleaned")["folders"] == 1
    assert not left[0].exists() and unrelated.exists()
    wait_until(lambda: len(mastodon.statuses(token)) == 1, "the toot after the restart")
    d2.send(signal.SIGTERM)
    assert d2.wait_exit() == 0
    assert len(mastodon.statuses(token)[0]["media_attachments"]) == 1
    assert not any(p.name.startswith("geno-bridge-media-") for p in scratch.iterdir())


def test_a_live_runs_media_folder_is_never_taken_for_stale(tmp_path: Path) -> None:
    """`bridge poll` or a backfill starting beside a running daemon must not pull its media away."""
    import tempfile

    from bridge.mediatmp import clean_stale, media_dir

    original = tempfile.tempdir
    tempfile.tempdir = str(tmp_path)
    try:
        with media_dir() as live:
            (live / "m0").write_bytes(b"half a download")
            assert clean_stale(tmp_path) == 0 and (live / "m0").exists()
        assert not live.exists()
    finally:
        tempfile.tempdir = original
