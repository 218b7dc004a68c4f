"""End-to-end latency: from a post appearing on X to its toot existing on Mastodon, with `bridge run`.

The daemon (`bridge run`, a subprocess) polls every P = 10 s (x.poll_interval
and x.max_poll_interval both 10 s, the configured minimum; jitter 0). Posts
appear on the fake X server at random times (fixed seed) for several
organisations; mastodon-mock is polled until each toot exists, and the
latency is the toot's server-side created_at minus the moment the post was
published on X (same machine clock). Target (issue 8): p50 and p95 <= P + 2 s.
Quick: one organisation, two posts.
"""

from __future__ import annotations

import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]  # bench/ would shadow `requests`
sys.path.insert(0, str(HERE.parent))

import httpx  # noqa: E402

from bench._common import (  # noqa: E402
    ROOT,
    Org,
    Verdicts,
    banner,
    bridge_command,
    config_at,
    link_orgs,
    parse_args,
    start_servers,
    summary,
    table,
    text_tweet,
    wait_until,
    write_config,
)

NAME = "latency"
P = 10  # seconds: the shortest poll interval the configuration allows
SEED = 8


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return ordered[rank - 1]


def find_toots(client: httpx.Client, base: str, org: Org, markers: dict[str, float]) -> dict[str, float]:
    """Markers now visible among the org's statuses -> server created_at (epoch s)."""
    r = client.get(f"{base}/api/v1/accounts/{org.account_id}/statuses", params={"limit": 40},
                   headers={"Authorization": f"Bearer {org.token}"})
    r.raise_for_status()
    found = {}
    for status in r.json():
        for marker in markers:
            if marker in status.get("content", ""):
                created = datetime.fromisoformat(str(status["created_at"]).replace("Z", "+00:00"))
                if created.tzinfo is None:
                    created = created.replace(tzinfo=timezone.utc)
                found[marker] = created.timestamp()
    return found


def main() -> int:
    args = parse_args(__doc__.splitlines()[0])
    banner(NAME, args.quick)
    verdicts = Verdicts(args.quick)
    n_orgs, n_posts, window = (1, 2, 4.0) if args.quick else (5, 30, 120.0)
    rng = random.Random(SEED)
    rows = []
    latencies: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-latency-") as tmp_name:
        tmp = Path(tmp_name)
        x, mastodon = start_servers(log_dir=tmp)
        daemon = None
        try:
            config_path = write_config(tmp, x, mastodon, concurrency=4, poll_interval=P, max_poll_interval=P, jitter=0,
                                       refresh_interval=60)
            config = config_at(config_path)
            orgs = link_orgs(config, x, mastodon, n_orgs)
            log = open(tmp / "daemon.log", "wb")
            env = dict(os.environ, PYTHONPATH=str(ROOT))
            daemon = subprocess.Popen([*bridge_command(), "--config", str(config_path), "run"],
                                      stdout=log, stderr=log, env=env)
            # Ready when every organisation has had its first poll.
            if not wait_until(lambda: x.count("/2/") >= n_orgs or daemon.poll() is not None, 30):
                raise SystemExit("the daemon did not poll within 30 s")
            if daemon.poll() is not None:
                raise SystemExit(f"the daemon exited with {daemon.returncode}; see its log:\n"
                                 + (tmp / "daemon.log").read_text()[-2000:])
            # Random times within the window (fixed seed), each for a random organisation.
            plan = sorted((rng.uniform(0, window), rng.choice(orgs)) for _ in range(n_posts))
            start = time.monotonic()
            pending: dict[str, tuple[Org, float]] = {}
            done: dict[str, float] = {}
            client = httpx.Client(timeout=10)
            for n, (at, org) in enumerate(plan):
                while time.monotonic() - start < at:
                    time.sleep(0.02)  # publishing on a schedule: the schedule is the point
                marker = f"latency-{n:03d}-{rng.randrange(10**6):06d}"
                tweet = text_tweet(org, f"Bench post {marker}: the laundry room is open again.")
                published = time.time()
                x.add_tweet(tweet)
                pending[marker] = (org, published)
            deadline = time.monotonic() + 3 * P + 10
            while pending and time.monotonic() < deadline:
                for org in {o.name: o for o, _ in pending.values()}.values():
                    mine = {m: t for m, (o, t) in pending.items() if o.name == org.name}
                    for marker, created in find_toots(client, mastodon.base_url, org, mine).items():
                        done[marker] = created - pending.pop(marker)[1]
                time.sleep(0.2)  # polling another process's state
            client.close()
            latencies = sorted(done.values())
            missing = len(pending)
        finally:
            if daemon is not None and daemon.poll() is None:
                daemon.send_signal(signal.SIGTERM)
                try:
                    daemon.wait(timeout=40)
                except Exception:  # noqa: BLE001 - a hung daemon is killed, and reported below
                    daemon.kill()
                    daemon.wait()
            x.stop()
            mastodon.stop()
    p50 = percentile(latencies, 50) if latencies else float("nan")
    p95 = percentile(latencies, 95) if latencies else float("nan")
    rows.append({
        "P s": P,
        "orgs": n_orgs,
        "posts": n_posts,
        "arrived": len(latencies),
        "missing": missing,
        "min s": round(min(latencies), 2) if latencies else "-",
        "p50 s": round(p50, 2),
        "p95 s": round(p95, 2),
        "max s": round(max(latencies), 2) if latencies else "-",
        "mean s": round(statistics.fmean(latencies), 2) if latencies else "-",
        "daemon exit": daemon.returncode if daemon else "-",
    })
    table(rows)
    verdicts.check("every post arrived", missing == 0, f"{len(latencies)}/{n_posts}")
    verdicts.check(f"p50 <= P + 2 s = {P + 2} s", p50 <= P + 2, f"{p50:.2f} s")
    verdicts.check(f"p95 <= P + 2 s = {P + 2} s", p95 <= P + 2, f"{p95:.2f} s")
    summary(NAME, verdicts, f"P={P} s, {len(latencies)}/{n_posts} posts: p50 {p50:.2f} s, p95 {p95:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
