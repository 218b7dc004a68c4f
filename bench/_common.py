"""Shared helpers for the benchmarks in bench/ (issue 8).

Each benchmark runs as ``python bench/NAME.py [--quick]`` against the loopback
stand-ins (the fake X server in this process, mastodon-mock as a child
process), prints a small table, PASS/MISS per target in full mode, and ends
with ONE summary line starting ``SUMMARY``. Quick mode (CI) uses small sizes,
asserts no timings and only shows that the script still runs.
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing
import os
import platform
import resource
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # plain `python bench/NAME.py` must find `bridge` and `tests`
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from bridge.config import Config, load_config  # noqa: E402
from bridge.ledger import Ledger, OrgRecord  # noqa: E402
from bridge.targets.mastodon import MastodonTarget, limits_to_dict  # noqa: E402
from geno_bridge_standins.x_api import FakeXServer, make_tweet  # noqa: E402
from geno_bridge_standins.x_api import _HTTPServer as _FakeHTTPServer  # noqa: E402
from tests.mastodon_server import MastodonServer, start_mastodon  # noqa: E402

CORES = os.cpu_count() or 1
T0 = datetime(2026, 11, 1, 9, 0, tzinfo=timezone.utc)


# --------------------------------------------------------------------------- arguments and output


def parse_args(
    description: str, argv: list[str] | None = None, extra: list[tuple[str, type, str]] | None = None
) -> argparse.Namespace:
    """``--quick``, and a benchmark's own options (``extra``: name, type, help; default None)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="small sizes for CI: completes fast, asserts no timings")
    for name, kind, text in extra or []:
        parser.add_argument(name, type=kind, default=None, help=text)
    return parser.parse_args(argv)


def banner(name: str, quick: bool) -> None:
    print(f"bench/{name}.py  mode={'quick' if quick else 'full'}  cores={CORES}  python={platform.python_version()}"
          f"  machine={platform.machine()}", flush=True)


def table(rows: list[dict[str, Any]], columns: list[str] | None = None) -> None:
    """A plain aligned text table."""
    if not rows:
        print("(no rows)")
        return
    columns = columns or list(rows[0])
    cells = [[_fmt(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)))
    sys.stdout.flush()


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


@dataclass
class Verdicts:
    """Targets checked in full mode; quick mode prints the numbers but no verdicts."""

    quick: bool
    results: list[tuple[str, bool, str]] = field(default_factory=list)

    def check(self, target: str, ok: bool, measured: str) -> None:
        self.results.append((target, ok, measured))
        if not self.quick:
            print(f"{'PASS' if ok else 'MISS'}  {target}  (measured: {measured})", flush=True)

    def word(self) -> str:
        if self.quick:
            return "quick run: completed, no targets judged"
        missed = [t for t, ok, _ in self.results if not ok]
        return f"{len(self.results) - len(missed)}/{len(self.results)} targets PASS" + (
            f"; MISS: {'; '.join(missed)}" if missed else ""
        )


def summary(name: str, verdicts: Verdicts, numbers: str) -> None:
    """The ONE final line of every benchmark."""
    print(f"SUMMARY bench/{name}: {numbers} | cores={CORES} | {verdicts.word()}", flush=True)


# --------------------------------------------------------------------------- memory and CPU


def peak_rss_mb() -> float:
    """This process's peak RSS (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def proc_rss_mb(pid: int) -> float:
    """Current RSS of a process, from /proc/<pid>/status (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def proc_hwm_mb(pid: int) -> float:
    """Peak RSS so far of a running process (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc/<pid>/stat (fields 14 and 15, in clock ticks)."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    fields = raw[raw.rindex(")") + 2 :].split()  # the command name may contain spaces
    ticks = int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def cpu_seconds() -> float:
    """This process's CPU (all its threads), user + system."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


# --------------------------------------------------------------------------- servers, config, orgs


def _serve_in_child(conn: Any, make: Any, args: tuple[Any, ...], address: str) -> None:
    """Child process of ``InChild``: make the object, send its address, answer calls until told to stop."""
    served = make(*args)
    conn.send(getattr(served, address)())
    while True:
        name, call_args = conn.recv()
        if name == "stop":
            served.close()
            conn.send(None)
            return
        conn.send(getattr(served, name)(*call_args))


class InChild:
    """An object (a stand-in server) in a child process, its methods called by name over a pipe: its request
    handling then never shares the measured process's interpreter lock. Create it before this process starts
    a thread (it forks). ``address`` names the object's method that says where it serves."""

    def __init__(self, make: Any, *args: Any, name: str, address: str) -> None:
        ctx = multiprocessing.get_context("fork")
        self._conn, child = ctx.Pipe()
        self._process = ctx.Process(target=_serve_in_child, args=(child, make, args, address), name=name, daemon=True)
        self._process.start()
        self.address = str(self._conn.recv())

    def call(self, name: str, *args: Any) -> Any:
        self._conn.send((name, args))
        return self._conn.recv()

    def stop(self) -> None:
        if self._process.is_alive():
            self.call("stop")
        self._process.join(timeout=10)


def _serve_fake_x(conn: Any, latency: float, rate_limit: int = 10_000) -> None:
    """Child process: run a FakeXServer and answer the parent's calls until told to stop."""
    _FakeHTTPServer.request_queue_size = 128
    fake = FakeXServer(latency=latency, rate_limit=rate_limit).start()
    conn.send((fake.base_url, fake.token))
    while True:
        name, args, kwargs = conn.recv()
        if name == "stop":
            fake.stop()
            conn.send(None)
            return
        conn.send(getattr(fake, name)(*args, **kwargs))


class RemoteFakeX:
    """The fake X server in a child process, driven through a pipe.

    In the bench's own process its request handling would take the GIL from the
    bridge it measures; X is never in the bridge's process in production.
    """

    def __init__(self, latency: float, rate_limit: int = 10_000) -> None:
        # fork: called before this process starts any thread (mastodon-mock comes after).
        ctx = multiprocessing.get_context("fork")
        self._conn, child = ctx.Pipe()
        self._process = ctx.Process(target=_serve_fake_x, args=(child, latency, rate_limit), name="fake-x", daemon=True)
        self._process.start()
        self.base_url, self.token = self._conn.recv()

    def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        self._conn.send((name, args, kwargs))
        return self._conn.recv()

    def add_user(self, *args: Any, **kwargs: Any) -> None:
        self._call("add_user", *args, **kwargs)

    def add_tweet(self, *args: Any, **kwargs: Any) -> None:
        self._call("add_tweet", *args, **kwargs)

    def count(self, path_prefix: str | None = None) -> int:
        return int(self._call("count", path_prefix))

    @property
    def pid(self) -> int:
        return int(self._process.pid or 0)

    def stop(self) -> None:
        if self._process.is_alive():
            self._call("stop")
        self._process.join(timeout=10)


def start_servers(
    *, latency: float = 0.0, log_dir: Path | None = None, x_process: bool = False, x_rate_limit: int = 10_000
) -> tuple[FakeXServer, MastodonServer]:
    """The fake X server (in this process, or in a child with ``x_process``) and mastodon-mock.

    ``x_rate_limit``: the fake's requests per 15 minutes (X's 10,000 by default); a benchmark running
    several 10,000-organisation cycles back to back raises it (each cycle is one 15-minute window's worth).
    """
    if x_process:
        x: Any = RemoteFakeX(latency, x_rate_limit)
        return x, start_mastodon(log_path=(log_dir / "mastodon.log") if log_dir else None)
    # socketserver's default listen backlog is 5: with 16 workers each opening a new
    # connection per cycle, SYNs overflow it and the kernel retries after 1 s, a stall
    # of the stand-in, not of the bridge (measured: 100 idle orgs 1.18 s -> 0.42 s).
    # Real X accepts these connections; a backlog of 128 models that.
    _FakeHTTPServer.request_queue_size = 128
    x = FakeXServer(latency=latency, rate_limit=x_rate_limit).start()
    mastodon = start_mastodon(log_path=(log_dir / "mastodon.log") if log_dir else None)
    return x, mastodon


def write_config(
    tmp: Path,
    x: FakeXServer,
    mastodon: MastodonServer,
    *,
    concurrency: int = 16,
    poll_interval: int = 300,
    max_poll_interval: int | None = None,
    jitter: int = 0,
    refresh_interval: int = 60,
    extra: str = "",
    x_budget: int = 0,
) -> Path:
    """A bench's configuration; ``x_budget``: x.budget.requests_per_15min (0: none)."""
    path = tmp / "config.yaml"
    path.write_text(
        f"database: {tmp / 'state' / 'ledger.db'}\n"
        f"log_format: json\n"
        f"x:\n  bearer_token: {x.token}\n  api_base_url: {x.base_url}\n  media_hosts: ['127.0.0.1']\n  timeout: 10\n"
        f"  poll_interval: {poll_interval}\n  max_poll_interval: {max_poll_interval or max(poll_interval, 3600)}\n"
        f"  budget:\n    requests_per_15min: {x_budget}\n"
        f"mastodon:\n  default_instance: {mastodon.base_url}\n  timeout: 10\n  media_poll_timeout: 10\n"
        f"daemon:\n  concurrency: {concurrency}\n  jitter: {jitter}\n  refresh_interval: {refresh_interval}\n"
        f"defaults:\n  footer: ''\n" + extra
    )
    return path


def config_at(path: Path) -> Config:
    return load_config(path)


@dataclass(frozen=True)
class Org:
    name: str
    x_user_id: str
    x_username: str
    token: str
    account_id: str


def link_orgs(
    config: Config, x: FakeXServer, mastodon: MastodonServer, count: int, *, prefix: str = "coop", workers: int = 4
) -> list[Org]:
    """Link ``count`` organisations fast: accounts via mastodon-mock's dev_user, OrgRecords written
    directly with the instance limits cached (as tests/bridge_env.py does), cursors at "1"."""
    probe = MastodonTarget(mastodon.base_url, "none")
    limits = limits_to_dict(probe.instance_limits())  # one request; the same instance for all
    probe.close()
    host = mastodon.base_url.split("://", 1)[1]

    first_x_id = next(_x_user_ids)
    for _ in range(count - 1):
        next(_x_user_ids)

    local = threading.local()
    clients: list[httpx.Client] = []

    def make(n: int) -> Org:
        username = f"{prefix}{n:05d}"
        client = getattr(local, "client", None)
        if client is None:  # one per worker: a new client per organisation cost ~30 ms of CPU at 10,000
            client = local.client = httpx.Client(timeout=30)
            clients.append(client)
        r = client.post(f"{mastodon.base_url}/api/v1/_mock/dev_user", json={"username": username})
        r.raise_for_status()
        body = r.json()
        return Org(f"{prefix}-{n:05d}", str(first_x_id + n), f"{prefix}{n:05d}", str(body["access_token"]), str(body["id"]))

    with ThreadPoolExecutor(workers) as pool:
        orgs = list(pool.map(make, range(count)))
    for client in clients:
        client.close()
    now = datetime.now(timezone.utc)
    with Ledger.open(config.database) as ledger:
        for org in orgs:
            x.add_user(org.x_user_id, org.x_username)
            ledger.save_org(
                OrgRecord(org.name, org.x_user_id, org.x_username, mastodon.base_url, org.account_id,
                          org.x_username, f"http://{host}/@{org.x_username}", token=org.token,
                          limits=limits, limits_fetched_at=now),
                now,
            )
            ledger.set_cursor(org.name, "1", now)
    return orgs


_x_user_ids = itertools.count(7_000_000)  # unique across calls: the fake X server is shared
_post_ids = itertools.count(1_900_000_000_000_000_000)


def next_post_id() -> str:
    return str(next(_post_ids))


def text_tweet(org: Org, text: str, **kwargs: Any) -> dict[str, Any]:
    post_id = next_post_id()
    return make_tweet(post_id, org.x_user_id, text, created_at=T0 + timedelta(seconds=int(post_id) % 100_000),
                      author_username=org.x_username, **kwargs)


# --------------------------------------------------------------------------- Mastodon request counting


class MastodonCounter:
    """Counts requests on mastodon-mock, which keeps no request log, from the server side.

    A pass-through fault rule (effect latency 0 ms) with a large budget is
    installed per category; the first matching rule takes one from its budget
    (mastodon_mock/faults.py, ``take_match``), so used = budget - remaining.
    The last rule matches everything else. ``/api/v1/_mock/*`` is never counted.
    """

    BUDGET = 100_000
    CATEGORIES: tuple[tuple[str, dict[str, Any]], ...] = (
        ("statuses", {"methods": ["POST"], "path": "/api/v1/statuses"}),
        ("reblogs", {"methods": ["POST"], "path_regex": r"^/api/v1/statuses/[^/]+/reblog$"}),
        ("media", {"methods": ["POST"], "path_regex": r"^/api/v[12]/media$"}),
        ("media_polls", {"methods": ["GET"], "path_regex": r"^/api/v1/media/"}),
        ("instance", {"path_regex": r"^/api/v[12]/instance"}),
        ("verify_credentials", {"path": "/api/v1/accounts/verify_credentials"}),
        ("other", {}),
    )

    def __init__(self, server: MastodonServer) -> None:
        self.server = server
        self.ids: dict[str, str] = {}

    def reset(self) -> None:
        self.server.clear_faults()
        self.ids = {}
        for label, match in self.CATEGORIES:
            rule = {"match": match, "effect": {"type": "latency", "delay_ms": 0}, "count": self.BUDGET}
            self.ids[label] = self.server.add_fault(rule)

    def read(self) -> dict[str, int]:
        remaining = {str(r["id"]): r.get("remaining") for r in self.server.faults()}
        out = {}
        for label, rule_id in self.ids.items():
            left = remaining.get(rule_id)
            out[label] = self.BUDGET - int(left) if left is not None else self.BUDGET
        out["total"] = sum(out.values())
        return out


def wait_until(predicate: Any, timeout: float, interval: float = 0.05) -> bool:
    """Poll ``predicate`` (a server query) until true or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


# --------------------------------------------------------------------------- running cycles


def quiet_logs() -> None:
    """INFO logs as in production (their cost is part of a cycle), written to /dev/null."""
    import logging

    from bridge.logs import configure

    configure("json", level=logging.INFO, stream=open(os.devnull, "w"))  # noqa: SIM115 - lives as long as the process


def run_cycles(config: Config, names: list[str]) -> list[Any]:
    """One cycle per organisation, in order, on one ledger connection (like one worker)."""
    from bridge.pipeline import Pipeline

    with Ledger.open(config.database) as ledger, Pipeline(config, ledger, retry_wait_max=0.01) as pipeline:
        return [pipeline.cycle(name) for name in names]


# --------------------------------------------------------------------------- measured subprocesses


@dataclass
class Measured:
    returncode: int
    wall: float
    peak_rss_mb: float  # the child's own high-water mark (VmHWM), sampled from /proc
    cpu: float
    rss_samples: list[tuple[float, float]]  # (seconds since start, RSS MB)


def run_measured(cmd: list[str], *, stdout: Any, stderr: Any = None, env: dict[str, str] | None = None,
                 sample_every: float = 0.05, cwd: Path | None = None) -> Measured:
    """Run ``cmd``; wall time, peak RSS and CPU of exactly this child, and an RSS curve.

    Peak RSS is the child's VmHWM, sampled until it exits: wait4's ru_maxrss would
    be wrong here, because Linux keeps the forking parent's high-water mark across
    exec (signal->maxrss), so a child of a 100 MB benchmark reports >= 100 MB.
    """
    import subprocess

    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=stdout, stderr=stderr, env=env, cwd=cwd)
    samples: list[tuple[float, float]] = []
    hwm = 0.0
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        try:
            samples.append((time.monotonic() - t0, proc_rss_mb(proc.pid)))
            hwm = max(hwm, proc_hwm_mb(proc.pid))
        except (FileNotFoundError, ProcessLookupError, ValueError):
            pass
        time.sleep(sample_every)  # sampling another process's memory: there is nothing to wait on
    wall = time.monotonic() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Measured(proc.returncode, wall, hwm or usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime, samples)


def bridge_command() -> list[str]:
    """The installed `bridge` console script next to this Python, else the CLI module."""
    script = Path(sys.executable).parent / "bridge"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "bridge.cli"]
