"""`bridge run`: the long-running service operators start under systemd or in a container.

One APScheduler interval job per active organisation polls it on a pool of
``daemon.concurrency`` threads; what a poll records is delivered on a second
pool (half that size), so waiting for a Mastodon instance never delays the
polling of other organisations. A refresh job re-reads the organisations
from the ledger every ``daemon.refresh_interval`` seconds (so linking, unlinking
and relinking need no restart), re-plans every interval under the X read budget
(bridge.schedule.plan) and writes the heartbeat file `bridge status --check`
reads (organisations reading only feeds or Bluesky take no share of that budget: they
poll at ``feed.poll_interval`` / ``bluesky.poll_interval``, bridge.schedule.free_interval). The main thread only waits for signals:

- SIGTERM / SIGINT: no new cycles, cycles in flight stop between posts (the
  pipeline checks the stop event) and get ``daemon.shutdown_grace`` seconds,
  then exit 0. A second signal exits at once: the ledger stays consistent
  because every delivery step is recorded before and after its request.
- SIGHUP: reload the configuration; a bad one is logged and the old one kept.

systemd is told about all this over $NOTIFY_SOCKET (sd_notify(3), plain socket
protocol): READY=1, WATCHDOG=1, STATUS=..., STOPPING=1.
"""

from __future__ import annotations

import fcntl
import json
import os
import random
import select
import signal
import socket
import sys
import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future
from concurrent.futures import ThreadPoolExecutor as FuturesPool
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from bridge.config import Config, effective, load_config
from bridge.errors import ConfigError, LedgerError
from bridge.ledger import Ledger, OrgTiming
from bridge.logs import configure as configure_logging
from bridge.logs import get_logger, masker
from bridge.mediatmp import clean_stale
from bridge.report import activity
from bridge.schedule import START_GAP, Plan, free_interval, plan, start_gap, start_offsets

if TYPE_CHECKING:
    from bridge.pipeline import Pipeline

log = get_logger("bridge.daemon")

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
CONTROL = "control"  # executor for refresh and watchdog jobs, so busy organisations never delay them
REFRESH_JOB = "_refresh"
# Seconds to put one organisation's poll job in place at a start (its APScheduler job, a log line, the scheduler's
# start): a few times what it takes (0.1-0.3 ms), so a spread first round never begins overdue.
SCHEDULING_SECONDS = 0.001
WATCHDOG_JOB = "_watchdog"


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


# ---------------------------------------------------------------------------
# systemd notify


class Notifier:
    """sd_notify(3) over the plain datagram protocol; a no-op when $NOTIFY_SOCKET is unset.

    An address starting with '@' is in the abstract namespace (a leading NUL byte).
    Failing to notify must never stop the bridge, so errors are logged once and dropped.
    """

    def __init__(self, environ: Mapping[str, str]) -> None:
        address = environ.get("NOTIFY_SOCKET", "")
        self.address: str | bytes | None = None
        if address.startswith("@"):
            self.address = b"\0" + address[1:].encode()
        elif address.startswith("/"):
            self.address = address
        self._sock: socket.socket | None = None
        self._warned = False
        self._lock = threading.Lock()
        self.watchdog_interval = self._watchdog_interval(environ)

    @staticmethod
    def _watchdog_interval(environ: Mapping[str, str]) -> float | None:
        """Half of WATCHDOG_USEC, as sd_watchdog_enabled(3) advises; None when not for us."""
        usec = environ.get("WATCHDOG_USEC", "")
        pid = environ.get("WATCHDOG_PID", "")
        if not usec.isdigit() or int(usec) == 0:
            return None
        if pid and pid != str(os.getpid()):
            return None
        return int(usec) / 2_000_000

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *fields: str) -> None:
        if self.address is None:
            return
        with self._lock:
            try:
                if self._sock is None:
                    self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.sendto("\n".join(fields).encode(), self.address)
            except OSError as exc:
                if not self._warned:
                    self._warned = True
                    log.warning("notify_failed", socket=os.environ.get("NOTIFY_SOCKET"), error=str(exc))

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None


# ---------------------------------------------------------------------------
# The daemon


@dataclass(frozen=True)
class Scheduled:
    """What the daemon decided for one organisation at the last refresh."""

    interval: int
    next_run: datetime | None


@dataclass
class _Worker:
    """What one worker thread keeps between its cycles: a pipeline on its own ledger connection."""

    pipeline: Pipeline
    closed: bool = False

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.pipeline.close()
            self.pipeline.ledger.close()


class Daemon:
    """Owns the scheduler, the heartbeat and the signal state; see the module docstring."""

    def __init__(
        self,
        config: Config,
        *,
        config_path: str | None = None,
        log_format: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.log_format = log_format
        self.notifier = Notifier(os.environ if environ is None else environ)
        self.stop = threading.Event()  # passed to every pipeline: stop between posts
        self.stop_requested = False
        self.reload_requested = False
        self._wakeup = -1  # read end of the signal wake-up pipe
        self.signals = 0
        self.received: list[str] = []  # signal names, logged by the main loop
        self.started_at = utcnow()
        self.last_cycle_at: datetime | None = None
        self.last_success_at: datetime | None = None
        self._health_seeded = False
        self.plan: Plan | None = None
        self.schedule: dict[str, Scheduled] = {}
        self.counts = {"organisations": 0, "pending": 0, "failed": 0}
        self._state_lock = threading.Lock()
        self._inflight = 0
        self._inflight_done = threading.Condition()
        self._refresh_lock = threading.Lock()
        self._org_locks: dict[tuple[str, bool], threading.Lock] = {}
        self._worker = threading.local()  # each worker thread's ledger connection and pipeline
        # Deliveries run apart from polls (half as many threads): see run_cycle.
        self._deliveries = FuturesPool(max(1, config.daemon.concurrency // 2), thread_name_prefix="deliver")
        self._delivery_queued: set[str] = set()
        self._delivery_futures: set[Future[None]] = set()
        self._workers: list[_Worker] = []  # all of them, to close at shutdown
        self.scheduler = BackgroundScheduler(
            executors={
                "default": ThreadPoolExecutor(config.daemon.concurrency),
                CONTROL: ThreadPoolExecutor(2),
            },
            job_defaults={"coalesce": True, "max_instances": 1},
            timezone=timezone.utc,
        )

    # -- lifecycle ------------------------------------------------------------
    def serve(self) -> int:
        """Run until SIGTERM/SIGINT; returns the exit code."""
        self.install_signal_handlers()
        log.info(
            "starting",
            pid=os.getpid(),
            config=str(self.config.path),
            database=str(self.config.database),
            concurrency=self.config.daemon.concurrency,
            heartbeat=str(self.config.heartbeat_path),
        )
        removed = clean_stale()
        if removed:
            log.info("media_cleaned", folders=removed, reason="left behind by a run that was killed")
        self.refresh()  # jobs exist before the scheduler starts: READY means "polling"
        self.scheduler.add_job(
            self.refresh,
            IntervalTrigger(seconds=self.config.daemon.refresh_interval),
            id=REFRESH_JOB,
            name="refresh organisations and heartbeat",
            executor=CONTROL,
            misfire_grace_time=self.config.daemon.refresh_interval,
        )
        if self.notifier.watchdog_interval is not None:
            # A scheduler job, not a thread of its own: if the scheduler hangs, the pings stop
            # and systemd restarts us (WatchdogSec= in the unit).
            self.scheduler.add_job(
                self.watchdog,
                IntervalTrigger(seconds=self.notifier.watchdog_interval),
                id=WATCHDOG_JOB,
                name="systemd watchdog",
                executor=CONTROL,
                misfire_grace_time=max(1, int(self.notifier.watchdog_interval)),
            )
        self.scheduler.start()
        self.notifier.send("READY=1", self.status_line())
        if self.notifier.watchdog_interval is not None:
            self.watchdog()
        log.info("ready", organisations=len(self.schedule), watchdog_interval=self.notifier.watchdog_interval)
        while not self.stop_requested:
            # A signal makes select() return (set_wakeup_fd); the timeout is only a safety net.
            select.select([self._wakeup], [], [], 5)
            _drain(self._wakeup)
            self._log_signals()
            if self.reload_requested and not self.stop_requested:
                self.reload_requested = False
                self.reload()
        return self.shutdown()

    def shutdown(self) -> int:
        grace = self.config.daemon.shutdown_grace
        self._log_signals()
        self.notifier.send("STOPPING=1", "STATUS=stopping")
        log.info("stopping", in_flight=self._inflight, grace=grace)
        self.stop.set()
        self.scheduler.shutdown(wait=False)  # no new runs; queued runs see the stop event and return
        self._deliveries.shutdown(wait=False, cancel_futures=True)
        deadline = time.monotonic() + grace
        with self._inflight_done:
            while self._inflight > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._inflight_done.wait(timeout=left)
            abandoned = self._inflight
        self.write_heartbeat(stopped=True)
        self.notifier.close()
        if abandoned:
            # The cycles still running are cut off mid-request; the ledger already says
            # what is in flight ("posting" + idempotency key), so the next start resumes it.
            log.warning("stopped", abandoned_cycles=abandoned, grace=grace)
            _flush()
            os._exit(EXIT_OK)
        self.close_workers()
        log.info("stopped")
        return EXIT_OK

    # -- signals --------------------------------------------------------------
    def install_signal_handlers(self) -> None:
        read_end, write_end = os.pipe()
        os.set_blocking(read_end, False)
        os.set_blocking(write_end, False)
        self._wakeup = read_end
        signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
        signal.signal(signal.SIGTERM, self._on_stop_signal)
        signal.signal(signal.SIGINT, self._on_stop_signal)
        signal.signal(signal.SIGHUP, self._on_hup)

    # Signal handlers run between two bytecodes of the main thread, possibly while it holds
    # a lock (a log stream's, an Event's): they must take no lock, so they only set plain
    # attributes. signal.set_wakeup_fd makes the main loop's select() return at once.
    def _on_stop_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.signals += 1
        if self.signals > 1:
            _raw_log({"event": "forced_exit", "signal": signal.Signals(signum).name, "level": "warning"})
            os._exit(EXIT_FAILURE)
        self.received.append(signal.Signals(signum).name)
        self.stop_requested = True

    def _on_hup(self, _signum: int, _frame: FrameType | None) -> None:
        self.received.append("SIGHUP")
        self.reload_requested = True

    def _log_signals(self) -> None:
        while self.received:
            name = self.received.pop(0)
            log.info("signal", signal=name, action="reload" if name == "SIGHUP" else "stop")

    # -- configuration reload -------------------------------------------------
    def reload(self) -> bool:
        """Read the configuration again; keep the old one when the new one is wrong."""
        self.notifier.send("RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")
        try:
            new = load_config(self.config_path if self.config_path else self.config.path)
        except ConfigError as exc:
            log.error("config_reload_failed", error=str(exc), kept=str(self.config.path))
            self.notifier.send("READY=1", self.status_line())
            return False
        old = self.config
        changed = _changed_keys(effective(old), effective(new))
        for key, why in (("database", "the ledger"), ("daemon.concurrency", "the worker pool")):
            if key in changed:
                log.warning("config_needs_restart", key=key, reason=f"{why} is set up at start; restart to apply")
        masker.register(*new.secrets)
        if self.log_format is None and new.log_format != old.log_format:
            configure_logging(new.log_format)
        # The old database and pool stay in force until a restart (warned above).
        self.config = _keep_restart_only(new, old)
        log.info("config_reloaded", config=str(new.path), changed=changed)
        self.refresh()
        self.notifier.send("READY=1", self.status_line())
        return True

    # -- jobs -----------------------------------------------------------------
    def refresh(self) -> None:
        """Pick up linked/unlinked organisations, re-plan intervals, write the heartbeat."""
        if self.stop.is_set():
            return
        with self._refresh_lock:
            try:
                self._refresh()
            except LedgerError as exc:  # a full disk: the message says it all, a traceback would not help
                log.error("refresh_failed", error=str(exc))
            except Exception as exc:  # noqa: BLE001 - a refresh failure must not end the daemon
                log.exception("refresh_failed", error=str(exc))
            self.write_heartbeat()
            self.notifier.send(self.status_line())

    def _refresh(self) -> None:
        config = self.config
        now = utcnow()
        with Ledger.open(config.database) as ledger:
            # One query per kind of fact for all organisations, not one per organisation: at 10,000
            # organisations the per-organisation queries made a refresh cost 0.8 s of CPU (issue 18).
            orgs = ledger.org_timings()  # list_orgs() without what a refresh does not need
            active = [o for o in orgs if o.state == "active"]
            credentials = ledger.target_credentials_by_org()
            kinds = ledger.source_kinds_by_org()
            counts = ledger.counts_by_org(target=None)  # every target's queue
            # Every target's credentials, not only the Mastodon token OrgTiming shows.
            masker.register(*(o.token for o in orgs), *(c for o in active for c in credentials.get(o.name, ())))
            self._seed_health(active)
            # Only organisations that read X share its read budget; the others poll at their own interval.
            free = {o.name: i for o in active
                    if (i := free_interval(kinds.get(o.name, set()), config)) is not None}
            self.plan = plan(activity(ledger, [o for o in active if o.name not in free], now), config.x, free)
            pending = failed = 0
            open_posts: dict[str, int] = {}
            for org in active:
                c = counts.get(org.name)
                open_posts[org.name] = c["pending"] + c["posting"] if c else 0
                pending += open_posts[org.name]
                failed += c["failed"] if c else 0
            wanted = {o.name: o for o in active}
            for name in list(self.schedule):
                if name not in wanted:
                    self._unschedule(name, next((o.state for o in orgs if o.name == name), "unlinked"))
            # Organisations due now and not scheduled yet (a start) get their first polls spread out.
            due = [o for o in active if o.name not in self.schedule and (
                o.last_poll_at is None or o.last_poll_at + timedelta(seconds=self.plan.intervals[o.name]) <= now)]
            # Those reading X at the budget's (or X's) rate; those reading only feeds or Bluesky cost no X reads
            # and are not held back by it: they are spread on their own, interleaved with the others.
            offsets: dict[str, float] = {}
            for group, gap in (([o for o in due if o.name not in free], start_gap(config.x)),
                               ([o for o in due if o.name in free], START_GAP)):
                offsets.update(zip((o.name for o in group), start_offsets([self.plan.intervals[o.name] for o in group], gap)))
            # The spread round begins once its jobs are in place: planned from the refresh's start, the polls of its
            # first seconds were overdue when polling began (the reads, adding 10,000 jobs and starting the
            # scheduler take seconds) and ran all at once: 295 in one second against 111 planned (bench/idle.py).
            lead = SCHEDULING_SECONDS * len(due) if len(due) > 1 else 0.0
            start = utcnow()
            for org in active:
                offset = lead + offsets[org.name] if org.name in offsets else 0.0
                self._schedule(org, self.plan.intervals[org.name], start, open_posts[org.name], offset)
            moved = {}
            for org in active:
                nxt = self.schedule[org.name].next_run
                if nxt is not None and (org.next_poll_at is None or abs((org.next_poll_at - nxt).total_seconds()) >= 1):
                    moved[org.name] = nxt
            ledger.set_next_polls(moved, now)  # one transaction: after a round, every polled organisation's moved
        with self._state_lock:
            self.counts = {"organisations": len(active), "pending": pending, "failed": failed}
            if not active:
                # Nothing to poll is a healthy state, not a stalled one.
                self.last_success_at = now
        log.debug("refreshed", organisations=len(active), pending=pending, failed=failed)

    def _seed_health(self, active: list[OrgTiming]) -> None:
        """At start, the last success is the ledger's: health follows the service, not the process.

        Otherwise `status --check` fails after every clean restart until the first poll, which
        for a quiet organisation is up to x.max_poll_interval away.
        """
        if self._health_seeded:
            return
        self._health_seeded = True
        seen = [o.last_success_at for o in active if o.last_success_at is not None]
        with self._state_lock:
            if seen and self.last_success_at is None:
                self.last_success_at = max(seen)

    def _schedule(self, org: OrgTiming, interval: int, now: datetime, open_posts: int = 0, offset: float = 0.0) -> None:
        jitter = self.config.daemon.jitter or None
        current = self.schedule.get(org.name)
        # Only an organisation scheduled before has a job: before the scheduler starts, get_job searches
        # every job added so far, which made the first refresh of 10,000 organisations take 20 s (issue 18).
        job = self.scheduler.get_job(org.name) if current is not None else None
        if current is not None and job is not None:
            if current.interval != interval:
                # Keep the rhythm from the last poll, so a re-plan never postpones an overdue poll forever.
                anchor = org.last_poll_at or now
                job.reschedule(IntervalTrigger(seconds=interval, start_date=anchor, jitter=jitter))
                job = self.scheduler.get_job(org.name)
                log.info("org_rescheduled", org=org.name, interval=interval, was=current.interval,
                         next_poll=_iso(job.next_run_time if job else None))
            self.schedule[org.name] = Scheduled(interval, job.next_run_time if job else None)
            return
        # Newly seen (at start, or linked while running): poll now - or, with many due at once, at its
        # place in the spread first round (offset) - unless it was polled recently (a restart): polls cost reads.
        first = now + timedelta(seconds=offset)
        if org.last_poll_at is not None:
            first = max(first, org.last_poll_at + timedelta(seconds=interval))
        if jitter:
            first += timedelta(seconds=random.uniform(0, min(jitter, interval)))  # noqa: S311 - spreading, not security
        job = self.scheduler.add_job(
            self.run_cycle,
            IntervalTrigger(seconds=interval, start_date=first, jitter=jitter),
            args=[org.name],
            id=org.name,
            name=f"poll {org.name}",
            next_run_time=first,
            misfire_grace_time=max(30, interval // 2),
            replace_existing=True,
        )
        self.schedule[org.name] = Scheduled(interval, first)
        if first > now and open_posts:
            # Deliveries left open by the last run resume now; only the poll waits for its turn.
            self.deliver_soon(org.name)
            log.info("org_resume", org=org.name, open_posts=open_posts)
        log.info("org_scheduled", org=org.name, interval=interval, next_poll=_iso(first),
                 budget_limited=self.plan.budget_limited if self.plan else False)

    def _unschedule(self, name: str, state: str) -> None:
        try:
            self.scheduler.remove_job(name)
        except JobLookupError:
            pass
        self.schedule.pop(name, None)
        log.info("org_unscheduled", org=name, state=state)

    def run_cycle(self, name: str, poll: bool = True) -> None:
        """One organisation's cycle on a worker thread, with its own ledger connection.

        Never raises: an organisation's trouble is logged and the daemon goes on.
        Two cycles of one organisation never overlap (a pipeline assumes it is alone).
        """
        if self.stop.is_set():
            return
        with self._state_lock:
            # Polling and delivering an organisation may overlap (a poll only adds posts and
            # moves the cursor); two polls, or two deliveries, of one organisation never do.
            busy = self._org_locks.setdefault((name, poll), threading.Lock())
            if not poll:
                self._delivery_queued.discard(name)
        if not busy.acquire(blocking=False):
            # A delivery that finds one running is not lost: that one delivers what is due.
            log.info("cycle_skipped", org=name, polled=poll,
                     reason=f"the previous {'poll' if poll else 'delivery'} of this organisation is still running")
            return
        with self._inflight_done:
            self._inflight += 1
        started = time.monotonic()
        hand_off = False
        try:
            pipeline = self._pipeline()
            # A poll only reads X and records; what it found is delivered on the delivery
            # pool, so a slow Mastodon instance never holds up the polling of the others.
            result = pipeline.cycle(name, poll=poll, deliver=not poll)
            hand_off = poll and not self.stop.is_set() and pipeline.has_due(name)
            now = utcnow()
            with self._state_lock:
                self.last_cycle_at = now
                if result.error is None:
                    self.last_success_at = now
            job = self.scheduler.get_job(name) if not self.stop.is_set() else None
            log.info(
                "cycle_finished",
                org=name,
                duration=round(time.monotonic() - started, 3),
                polled=poll,
                fetched=result.fetched,
                delivered=result.delivered,
                failed=result.failed,
                deferred_until=_iso(result.deferred_until),
                error=result.error,
                next_poll=_iso(job.next_run_time if job else None),
            )
        except LedgerError as exc:
            # The ledger cannot be written (a full disk): nothing of this cycle was recorded, so
            # nothing is lost; the next cycle reads the same posts again once there is room.
            with self._state_lock:
                self.last_cycle_at = utcnow()
            log.error("cycle_failed", org=name, polled=poll, duration=round(time.monotonic() - started, 3), error=str(exc))
        except Exception as exc:  # noqa: BLE001 - one organisation must never stop the others
            with self._state_lock:
                self.last_cycle_at = utcnow()
            log.exception("cycle_crashed", org=name, duration=round(time.monotonic() - started, 3), error=str(exc))
        finally:
            busy.release()
            with self._inflight_done:
                self._inflight -= 1
                self._inflight_done.notify_all()
        if hand_off:
            self.deliver_soon(name)

    def deliver_soon(self, name: str) -> None:
        """Queue a delivery of ``name`` on the delivery pool (once, however often asked)."""
        with self._state_lock:
            if name in self._delivery_queued or self.stop.is_set():
                return
            self._delivery_queued.add(name)
            try:
                future = self._deliveries.submit(self.run_cycle, name, False)
            except RuntimeError:  # the pool is shut down: the daemon is stopping
                self._delivery_queued.discard(name)
                return
            self._delivery_futures.add(future)
        future.add_done_callback(self._delivery_done)

    def _delivery_done(self, future: Future[None]) -> None:
        with self._state_lock:
            self._delivery_futures.discard(future)

    def wait_for_deliveries(self, timeout: float | None = None) -> bool:
        """Block until the delivery pool is idle; False on timeout (benchmarks and tests)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._state_lock:
                pending = list(self._delivery_futures)
            if not pending:
                return True
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            wait_futures(pending, timeout=left)

    def _pipeline(self) -> Pipeline:
        """This worker thread's pipeline: one ledger connection and one X session per worker.

        Kept across cycles instead of opened per cycle: opening the ledger and a new
        connection to X cost more CPU than an idle poll itself (bench/poll_scale.py,
        issue 8). A reloaded configuration gets a fresh pipeline on the next cycle.
        """
        worker: _Worker | None = getattr(self._worker, "current", None)
        config = self.config
        if worker is not None and worker.pipeline.config is config and not worker.closed:
            return worker.pipeline
        if worker is not None:
            worker.close()
        from bridge.pipeline import Pipeline  # imported late: heavy, and only workers need it

        worker = _Worker(Pipeline(config, Ledger.open(config.database), stop=self.stop))
        self._worker.current = worker
        with self._state_lock:
            self._workers = [w for w in self._workers if not w.closed] + [worker]
        return worker.pipeline

    def close_workers(self) -> None:
        with self._state_lock:
            workers, self._workers = self._workers, []
        for worker in workers:
            worker.close()

    def watchdog(self) -> None:
        self.notifier.send("WATCHDOG=1")

    # -- reporting ------------------------------------------------------------
    def status_line(self) -> str:
        c = self.counts
        return f"STATUS={c['organisations']} organisations, {c['pending']} pending, {c['failed']} failed"

    def heartbeat(self, stopped: bool = False) -> dict[str, Any]:
        """What `bridge status` and `status --check` read (bridge.report.health)."""
        config = self.config
        intervals = list(self.schedule_intervals())
        # Any organisation's success counts, so the longest planned interval bounds the gap
        # between successes; with none, the refresh itself is the cycle.
        base = max(intervals) + config.daemon.jitter if intervals else config.x.poll_interval
        with self._state_lock:
            beat: dict[str, Any] = {
                "pid": os.getpid(),
                "started_at": self.started_at.isoformat(),
                "last_cycle_at": _iso(self.last_cycle_at),
                "last_success_at": _iso(self.last_success_at),
                "interval": max(base, config.daemon.refresh_interval),
                **self.counts,
                "written_at": utcnow().isoformat(),
            }
        if self.plan is not None:
            beat["projected_requests_per_15min"] = self.plan.requests_per_15min
            beat["budget_limited"] = self.plan.budget_limited
        if stopped:
            beat["stopped_at"] = utcnow().isoformat()
        return beat

    def schedule_intervals(self) -> list[int]:
        # list() copies the values in one step under the GIL: a refresh may be changing the dict.
        return [s.interval for s in list(self.schedule.values())]

    def write_heartbeat(self, stopped: bool = False) -> None:
        path = self.config.heartbeat_path
        try:
            _write_atomic(path, json.dumps(self.heartbeat(stopped), indent=2) + "\n")
        except OSError as exc:
            log.error("heartbeat_failed", path=str(path), error=exc.strerror or str(exc))


# ---------------------------------------------------------------------------
# helpers


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(timezone.utc).isoformat() if value else None


def _write_atomic(path: Path, text: str) -> None:
    """Write then rename, so a reader never sees half a heartbeat."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        full = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, full + "."))
        else:
            out[full] = value
    return out


def _changed_keys(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Key paths whose effective value changed (secrets are masked in ``effective``, so a
    changed token shows only when its length changes; that is enough for a log line)."""
    a, b = _flatten(old), _flatten(new)
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))


def _keep_restart_only(new: Config, old: Config) -> Config:
    """The new configuration, except what only a restart can change."""
    from dataclasses import replace

    return replace(new, database=old.database, daemon=replace(new.daemon, concurrency=old.daemon.concurrency))


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        pass


def _raw_log(event: dict[str, Any]) -> None:
    """One JSON line straight to fd 2, bypassing every lock (for signal handlers)."""
    event["timestamp"] = utcnow().isoformat()
    try:
        os.write(2, (json.dumps(event) + "\n").encode())
    except OSError:
        pass


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass


class AlreadyRunning(Exception):
    """Another `bridge run` holds the ledger's run lock."""


def lock_ledger(database: Path) -> int:
    """Take the ledger's run lock (flock on ``<ledger>.lock``) and write our pid into it.

    Two daemons on one ledger would poll and deliver the same organisations twice over.
    The kernel releases the lock when the process ends, however it ends, so a killed
    daemon never blocks the next start. Returns the lock's file descriptor: keep it open.
    """
    path = database.with_name(database.name + ".lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        os.close(fd)
        raise AlreadyRunning(
            f"another `bridge run` (pid {holder if holder.isdigit() else 'unknown'}) is already running on the ledger"
            f" {database}; stop it first, or give this one a ledger of its own (lock file: {path})"
        ) from None
    except OSError:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def run(config_path: str | None, log_format: str | None) -> int:
    """`bridge run`: load the configuration, serve until stopped, return the exit code."""
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        configure_logging(log_format or "auto")
        log.error("config_invalid", error=str(exc))
        return EXIT_USAGE
    configure_logging(log_format or config.log_format)
    masker.register(*config.secrets)
    try:
        Ledger.open(config.database).close()  # fail now, with a clear message, not in every job
    except ConfigError as exc:
        log.error("ledger_unusable", error=str(exc))
        return EXIT_USAGE
    try:
        lock = lock_ledger(config.database)
    except AlreadyRunning as exc:
        log.error("already_running", error=str(exc))
        return EXIT_FAILURE
    except OSError as exc:
        log.error("ledger_unusable", error=f"cannot lock the ledger {config.database}: {exc.strerror or exc}")
        return EXIT_USAGE
    try:
        return Daemon(config, config_path=config_path, log_format=log_format).serve()
    finally:
        os.close(lock)  # after the last write; the kernel would release it at exit anyway
