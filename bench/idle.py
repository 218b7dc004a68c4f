"""The idle daemon: `bridge run` with 1,000 linked organisations (quick: 50; --orgs 10000) and nothing new on X.

The daemon (a subprocess, daemon.concurrency 16, poll_interval 300 s,
max_poll_interval 3600 s, refresh every 60 s; quick: 5 s) first polls every
organisation once; after that round no poll is due for an hour, so what the
process costs then is the cost of being idle: the scheduler, the refresh job
(re-reading organisations and re-planning), the heartbeat. CPU is
utime+stime from /proc/<pid>/stat over a window covering two refreshes;
RSS from /proc/<pid>/status. Targets (issue 8): RSS <= 120 MB; CPU <= 1% of
a core between cycles. Issue 18, at 10,000: RSS <= 150 MB, and the first round
spread out (no thundering herd: bridge.schedule.start_offsets): from the daemon's
log, the most first polls planned in one second and the most polls done in one second
are printed next to the even share (the planned rate of first polls).

The first round runs at the rate of x.budget.requests_per_15min, or at X's own
10,000 per 15 minutes (11 a second) without one: 10,000 organisations would take
900 s. Above 1,000 organisations this bench sets a budget of 100,000 per 15 minutes
(the fake X allows it), so the same rule runs at 111 a second and the round takes
90 s; the line "first round at X's rate" prints what the default would take.
Organisations are linked as `bridge link` leaves them (an account on mastodon-mock
with its token, the organisation, its X source with a cursor, its Mastodon target
with the instance's limits) but written to the ledger directly (bench/_common.link_orgs).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]  # bench/ would shadow `requests`
sys.path.insert(0, str(HERE.parent))

from bench._common import (  # noqa: E402
    ROOT,
    Verdicts,
    banner,
    bridge_command,
    config_at,
    link_orgs,
    parse_args,
    proc_cpu_seconds,
    proc_hwm_mb,
    proc_rss_mb,
    start_servers,
    summary,
    table,
    wait_until,
    write_config,
)
from bridge.schedule import START_GAP, start_gap  # noqa: E402

NAME = "idle"
MAX_RSS, MAX_CPU = 120.0, 1.0
MAX_RSS_10K = 150.0  # issue 18, 10,000 organisations
BENCH_BUDGET = 100_000  # x.budget.requests_per_15min above 1,000 organisations: see the docstring


def busiest_seconds(log: Path) -> tuple[int, int]:
    """From the daemon's JSON log: the most first polls planned in one second (``org_scheduled``'s
    next_poll) and the most polls done in one second (``cycle_finished`` with polled)."""
    planned: Counter[str] = Counter()
    polled: Counter[str] = Counter()
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        if '"org_scheduled"' not in line and '"cycle_finished"' not in line:
            continue
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("event") == "org_scheduled" and event.get("next_poll"):
            planned[event["next_poll"][:19]] += 1  # to the second
        elif event.get("event") == "cycle_finished" and event.get("polled"):
            polled[event["timestamp"][:19]] += 1
    return max(planned.values(), default=0), max(polled.values(), default=0)


def main() -> int:
    args = parse_args(__doc__.splitlines()[0], extra=[("--orgs", int, "this many organisations (issue 18: 10000)")])
    banner(NAME, args.quick)
    verdicts = Verdicts(args.quick)
    n_orgs, refresh, window = (50, 5, 11.0) if args.quick else (1000, 60, 125.0)
    n_orgs = args.orgs or n_orgs
    max_rss = MAX_RSS if n_orgs <= 1000 else MAX_RSS_10K
    interval = 300
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-idle-") as tmp_name:
        tmp = Path(tmp_name)
        budget = BENCH_BUDGET if n_orgs > 1000 else 0
        x, mastodon = start_servers(log_dir=tmp, x_rate_limit=max(10_000, 2 * budget))
        daemon = None
        try:
            config_path = write_config(tmp, x, mastodon, concurrency=16, poll_interval=interval, max_poll_interval=3600,
                                       jitter=0, refresh_interval=refresh, x_budget=budget)
            config = config_at(config_path)
            # Quiet organisations are planned at max_poll_interval; the first round's gap is the smaller of the
            # budget's (or X's) gap and what fits that interval (bridge.schedule.start_offsets).
            gap = min(start_gap(config.x), config.x.max_poll_interval / n_orgs)
            t0 = time.monotonic()
            link_orgs(config, x, mastodon, n_orgs)
            setup = time.monotonic() - t0
            log = open(tmp / "daemon.log", "wb")
            env = dict(os.environ, PYTHONPATH=str(ROOT))
            t0 = time.monotonic()
            daemon = subprocess.Popen([*bridge_command(), "--config", str(config_path), "run"],
                                      stdout=log, stderr=log, env=env)
            pid = daemon.pid
            # The first round is spread over up to one interval (issue 18): wait for it, then count the polls of
            # each second from the daemon's log (its timestamps: a sampler here could be descheduled itself).
            first_round_s = n_orgs * gap
            deadline = time.monotonic() + first_round_s + 120
            while x.count("/2/") < n_orgs and daemon.poll() is None:
                if time.monotonic() > deadline:
                    raise SystemExit(f"the daemon polled only {x.count('/2/')} of {n_orgs} organisations in"
                                     f" {first_round_s + 120:.0f} s")
                time.sleep(1.0)  # waiting on another process's requests
            if daemon.poll() is not None:
                raise SystemExit(f"the daemon exited with {daemon.returncode}; see its log:\n"
                                 + (tmp / "daemon.log").read_text()[-2000:])
            first_round = time.monotonic() - t0
            first_round_cpu = proc_cpu_seconds(pid)
            wait_until(lambda: False, 1.0)  # let the last cycles record their results
            planned, polled = busiest_seconds(tmp / "daemon.log")
            if os.environ.get("BENCH_IDLE_KEEP_LOG"):  # for a look at the round afterwards
                shutil.copy(tmp / "daemon.log", os.environ["BENCH_IDLE_KEEP_LOG"])
            polls_before = x.count("/2/")
            rss_start, cpu_start = proc_rss_mb(pid), proc_cpu_seconds(pid)
            w0 = time.monotonic()
            samples = []
            while time.monotonic() - w0 < window and daemon.poll() is None:
                time.sleep(1.0)  # sampling another process
                samples.append(proc_rss_mb(pid))
            elapsed = time.monotonic() - w0
            cpu = proc_cpu_seconds(pid) - cpu_start
            rss_end, hwm = proc_rss_mb(pid), proc_hwm_mb(pid)
            polls_during = x.count("/2/") - polls_before
            rows.append({
                "orgs": n_orgs,
                "setup s": round(setup, 1),
                "first round s": round(first_round, 1),
                "daemon CPU s (start + round)": round(first_round_cpu, 1),
                "busiest second planned": planned,
                "busiest second (polls)": polled,
                "even share/s": round(1 / gap, 1),
                "first round at X's rate s": round(n_orgs * min(START_GAP, config.x.max_poll_interval / n_orgs)),
                "window s": round(elapsed, 1),
                "refreshes": int(elapsed // refresh),
                "polls in window": polls_during,
                "CPU s": round(cpu, 3),
                "CPU % core": round(100 * cpu / elapsed, 3),
                "RSS start MB": round(rss_start, 1),
                "RSS end MB": round(rss_end, 1),
                "RSS max MB": round(max(samples or [rss_end]), 1),
                "peak RSS (HWM) MB": round(hwm, 1),
            })
        finally:
            if daemon is not None and daemon.poll() is None:
                daemon.send_signal(signal.SIGTERM)
                try:
                    daemon.wait(timeout=40)
                except subprocess.TimeoutExpired:
                    daemon.kill()
                    daemon.wait()
            x.stop()
            mastodon.stop()
    table(rows)
    r = rows[0]
    verdicts.check(f"idle RSS <= {max_rss:.0f} MB", r["RSS max MB"] <= max_rss,
                   f"{r['RSS max MB']} MB in the window, high-water mark {r['peak RSS (HWM) MB']} MB")
    verdicts.check(f"CPU <= {MAX_CPU:g}% of a core between cycles", r["CPU % core"] <= MAX_CPU and r["polls in window"] == 0,
                   f"{r['CPU % core']}% over {r['window s']} s, {r['polls in window']} polls in the window")
    if n_orgs > 1000:
        even = r["even share/s"]
        verdicts.check("first round spread over the interval (busiest second <= 2x the even share)",
                       r["busiest second (polls)"] <= 2 * even + 2,
                       f"{r['busiest second (polls)']} polls done, {r['busiest second planned']} planned vs {even:.1f}/s")
    summary(NAME, verdicts, f"{n_orgs} orgs idle: RSS {r['RSS max MB']} MB (HWM {r['peak RSS (HWM) MB']} MB),"
            f" CPU {r['CPU % core']}% of a core over {r['window s']} s; first round {r['first round s']} s,"
            f" busiest second {r['busiest second (polls)']} polls")
    return 0


if __name__ == "__main__":
    sys.exit(main())
