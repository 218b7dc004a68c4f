"""Poll scale: one full poll cycle over 100 and 1,000 organisations (quick: 20; --orgs 10000 for issue 18).

The fake X server adds 50 ms to every request; the cycle runs the daemon's own
job (``Daemon.run_cycle``) on 16 threads (``daemon.concurrency`` 16), each with
the ledger connection and X session its worker keeps, and the daemon's delivery
pool (8 threads) posting what the polls found; 10% of the organisations
have 1-3 new posts (fixed seed). Target (issue 8): cycle wall time <= 1.3 x the
ideal, ideal = organisations x latency / concurrency; printed as that ratio, with
peak RSS. The first cycle after a start (workers still opening their ledger and
X connections) is shown too; the verdict is on the steady state.

The fake X server runs in a child process (in this one its request handling
would share the GIL with the bridge being measured); so does mastodon-mock.

Issue 18 adds, in the same run: the bridge's CPU per idle organisation (the
better of two "all idle" cycles), and its CPU per delivered status (the cycle with posts minus
an idle cycle's CPU, per status) next to mastodon-mock's CPU per status; target
bridge <= 0.3x the server. At 10,000 organisations: idle cycle <= 1.1x ideal,
peak RSS <= 200 MB. Concurrency 16, as for 1,000 (the configuration's default
is 4): X allows one app 10,000 timeline requests per 15 minutes, so 10,000
organisations need 11 polls a second and 16 threads at 50 ms manage 320. The
ideal cycle is then 31 s, while the bridge's own CPU for an idle cycle is 13-18 s
on one interpreter lock (1.3-1.8 ms per organisation under 16 threads; 0.75 ms on
one thread; it was 1.7-3 ms before the X poll left ``requests``, issue 18): with
32 threads the ideal (16 s) would come close to the CPU the cycle needs, so the
ratio would measure the lock, not the scheduling; with 4 the waiting would hide
the CPU cost. The ideal counts only the fake X's added latency, not its own
handling of each request (printed as its CPU), nor the machine's other load:
the ratio is meaningful on an otherwise quiet machine.
"""

from __future__ import annotations

import random
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]  # bench/ would shadow `requests`
sys.path.insert(0, str(HERE.parent))

from bench._common import (  # noqa: E402
    CORES,
    Org,
    Verdicts,
    banner,
    config_at,
    cpu_seconds,
    link_orgs,
    parse_args,
    peak_rss_mb,
    proc_cpu_seconds,
    quiet_logs,
    run_cycles,
    start_servers,
    summary,
    table,
    text_tweet,
    write_config,
)
from bridge.config import Config  # noqa: E402
from bridge.daemon import Daemon  # noqa: E402
from bridge.ledger import Ledger  # noqa: E402
from bridge.logs import masker  # noqa: E402
from geno_bridge_standins.x_api import FakeXServer  # noqa: E402

NAME = "poll_scale"
LATENCY = 0.050
CONCURRENCY = 16
SEED = 8
CALIBRATION = 40


def publish_new_posts(x: FakeXServer, orgs: list[Org], rng: random.Random) -> int:
    """10% of the organisations get 1-3 new posts: plain, with a link, with a hashtag."""
    count = 0
    for org in rng.sample(orgs, max(1, len(orgs) // 10)):
        for n in range(rng.randint(1, 3)):
            kind = rng.choice(("plain", "link", "tag"))
            if kind == "link":
                tweet = text_tweet(org, f"Minutes of the assembly: https://{org.x_username}.example/minutes/{n}",
                                   urls=[f"https://{org.x_username}.example/minutes/{n}"])
            elif kind == "tag":
                tweet = text_tweet(org, f"Open day number {n} #Genossenschaft", hashtags=["Genossenschaft"])
            else:
                tweet = text_tweet(org, f"Post {n} from {org.x_username}: the garden needs hands on Saturday.")
            x.add_tweet(tweet)
            count += 1
    return count


def delivered_total(config: Config) -> int:
    with Ledger.open(config.database) as ledger:
        return sum(ledger.counts(o.name)["delivered"] for o in ledger.list_orgs())


def run_cycle(daemon: Daemon, pool: ThreadPoolExecutor, names: list[str]) -> tuple[float, float]:
    """One cycle over every organisation through the daemon's own job (``Daemon.run_cycle``,
    its per-worker ledger connection and X session) on CONCURRENCY threads; wall s, CPU s.

    The cycle ends when every poll is done AND the daemon's delivery pool has
    delivered what they found."""
    cpu0, t0 = cpu_seconds(), time.monotonic()
    list(pool.map(daemon.run_cycle, names))
    daemon.wait_for_deliveries()
    return time.monotonic() - t0, cpu_seconds() - cpu0


def warm_up(config: Config, x: FakeXServer, orgs: list[Org]) -> None:
    """One post through the whole pipeline first: the daemon is long-running, so one-time costs
    (lazy imports, regex compilation in the converter; ~0.9 s here) are not part of a cycle."""
    x.add_tweet(text_tweet(orgs[0], "Warm-up: https://example.org #Genossenschaft", urls=["https://example.org"],
                           hashtags=["Genossenschaft"]))
    run_cycles(config, [orgs[0].name])


def mock_status_ms(config: Config, org: Org, base_url: str, n: int) -> float:
    """mastodon-mock's own speed: mean ms per POST /api/v1/statuses, one at a time (no bridge logic)."""
    from bridge.model import Draft
    from bridge.targets.mastodon import MastodonTarget

    target = MastodonTarget(base_url, org.token)
    t0 = time.monotonic()
    for i in range(n):
        draft = Draft(post_id=f"cal{i}", part=0, text=f"calibration {i}")
        target.post_status(draft, idempotency_key=f"bench-calibration-{org.name}-{i}")
    target.close()
    return 1000 * (time.monotonic() - t0) / n


def main() -> int:
    args = parse_args(__doc__.splitlines()[0], extra=[("--orgs", int, "only this many organisations (issue 18: 10000)")])
    banner(NAME, args.quick)
    quiet_logs()
    verdicts = Verdicts(args.quick)
    sizes = [args.orgs] if args.orgs else [20] if args.quick else [100, 1000]
    rng = random.Random(SEED)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-poll-") as tmp_name:
        tmp = Path(tmp_name)
        # Four cycles of 10,000 organisations back to back are four 15-minute windows of X's 10,000
        # requests (production polls 10,000 organisations once per window): without this the second
        # cycle got HTTP 429 for most of them and the "idle" one polled nobody.
        x, mastodon = start_servers(latency=LATENCY, log_dir=tmp, x_process=True, x_rate_limit=5 * max(sizes) + 1000)
        try:
            config = config_at(write_config(tmp, x, mastodon))
            calibration_org = link_orgs(config, x, mastodon, 1, prefix="cal")[0]
            status_ms = mock_status_ms(config, calibration_org, mastodon.base_url, 10 if args.quick else CALIBRATION)
            for size in sizes:
                state = tmp / f"n{size}"
                state.mkdir()
                config = config_at(write_config(state, x, mastodon, concurrency=CONCURRENCY))
                t0 = time.monotonic()
                orgs = link_orgs(config, x, mastodon, size, prefix=f"s{size}x")
                setup = time.monotonic() - t0
                # The daemon's refresh registers every organisation's token with the log masker (bridge.logs):
                # every log line is checked against all of them, so the benchmark does the same.
                masker.register(*(o.token for o in orgs))
                warm_up(config, x, orgs)
                names = [o.name for o in orgs]
                ideal = size * LATENCY / CONCURRENCY
                daemon = Daemon(config, environ={})
                # The daemon's worker threads live as long as it does; so does this pool.
                with ThreadPoolExecutor(CONCURRENCY) as pool:
                    for label, posts in (
                        ("first cycle after start, 10% new", True),
                        ("10% with 1-3 new posts", True),
                        ("all idle", False),
                        ("all idle again", False),
                    ):
                        published = publish_new_posts(x, orgs, rng) if posts else 0
                        x_before, delivered_before = x.count("/2/"), delivered_total(config)
                        mock_cpu, x_cpu = proc_cpu_seconds(mastodon.process.pid), proc_cpu_seconds(x.pid)
                        wall, cpu = run_cycle(daemon, pool, names)
                        mock_cpu = proc_cpu_seconds(mastodon.process.pid) - mock_cpu
                        x_cpu = proc_cpu_seconds(x.pid) - x_cpu
                        delivered = delivered_total(config) - delivered_before
                        rows.append({
                            "orgs": size,
                            "cycle": label,
                            "new posts": published,
                            "delivered": delivered,
                            "X req": x.count("/2/") - x_before,
                            "wall s": round(wall, 3),
                            "ideal s": round(ideal, 3),
                            "ratio": round(wall / ideal, 2),
                            "CPU s": round(cpu, 2),
                            "CPU ms/org": round(1000 * cpu / size, 2),
                            "mock CPU s": round(mock_cpu, 2),
                            "fake X CPU s": round(x_cpu, 2),
                            "setup s": round(setup, 1),
                            "peak RSS MB": round(peak_rss_mb(), 1),
                        })
                        if delivered != published:
                            print(f"warning: {published} posts published, {delivered} delivered")
                daemon.stop.set()
                daemon.close_workers()
        finally:
            x.stop()
            mastodon.stop()

    table(rows)
    print(f"mastodon-mock alone: {status_ms:.1f} ms per status POST, one at a time (calibration);"
          f" the ideal counts only X latency. CPU s is this process (the bridge); mock and fake X CPU are the"
          f" stand-ins' processes during the cycle, on the same {CORES} cores")
    by_size: dict[int, dict[str, dict]] = {}
    for row in rows:
        by_size.setdefault(row["orgs"], {})[row["cycle"]] = row
    for size, cycles in by_size.items():
        # The better of two idle cycles: the machine's other load only ever adds to a cycle (benchmark practice).
        idle = min(cycles["all idle"], cycles["all idle again"], key=lambda row: row["wall s"])
        busy = cycles["10% with 1-3 new posts"]
        per_org_idle = idle["CPU s"] / size
        statuses = max(1, busy["delivered"])
        bridge_ms = 1000 * max(0.0, busy["CPU s"] - per_org_idle * size) / statuses
        mock_ms = 1000 * busy["mock CPU s"] / statuses
        print(f"{size} orgs: bridge CPU {1000 * per_org_idle:.2f} ms per idle organisation; per delivered status"
              f" bridge {bridge_ms:.2f} ms vs mastodon-mock {mock_ms:.2f} ms = {bridge_ms / mock_ms if mock_ms else 0:.2f}x",
              flush=True)
        if size >= 10_000:
            verdicts.check(f"{size} orgs: idle cycle <= 1.1 x ideal (the better of two)", idle["ratio"] <= 1.1,
                           f"{idle['wall s']} s vs ideal {idle['ideal s']} s = {idle['ratio']}x")
            verdicts.check(f"{size} orgs: peak RSS <= 200 MB", idle["peak RSS MB"] <= 200, f"{idle['peak RSS MB']} MB")
        verdicts.check(f"{size} orgs: bridge CPU per delivered status <= 0.3 x mastodon-mock's",
                       mock_ms > 0 and bridge_ms <= 0.3 * mock_ms, f"{bridge_ms:.2f} ms vs {mock_ms:.2f} ms")
    for row in rows:
        if row["cycle"] == "10% with 1-3 new posts" and row["orgs"] < 10_000:
            ok = row["ratio"] <= 1.3 and row["delivered"] == row["new posts"]
            verdicts.check(f"{row['orgs']} orgs: cycle wall <= 1.3 x ideal", ok,
                           f"{row['wall s']} s vs ideal {row['ideal s']} s = {row['ratio']}x, "
                           f"{row['delivered']}/{row['new posts']} delivered")
    main_rows = [r for r in rows if r["cycle"] == "10% with 1-3 new posts"]
    summary(NAME, verdicts, "; ".join(f"{r['orgs']} orgs: {r['wall s']} s = {r['ratio']}x ideal" for r in main_rows)
            + f"; peak RSS {peak_rss_mb():.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
