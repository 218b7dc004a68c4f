"""`bridge web`: idle RSS of the web process and the organisation page's response time with 10,000 bridged posts.

The ledger gets one organisation with 10,000 delivered posts (quick: 200), each
with its copy, plus 50 failed ones; `bridge web` runs as a subprocess on
loopback; a signed-in session (a cookie signed with the bench's web secret, as
the sign-in would set it) asks for /org 200 times (quick: 30), one request at a
time. The page lists the 20 newest copies and failures and previews the newest
post, so its time should not grow with the history. Targets: idle RSS <= 80 MB;
p95 of /org <= 100 ms.
"""

from __future__ import annotations

import base64
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]  # bench/ would shadow `requests`
sys.path.insert(0, str(HERE.parent))

import httpx  # noqa: E402
from itsdangerous import TimestampSigner  # noqa: E402

from bench._common import (  # noqa: E402
    ROOT,
    T0,
    Verdicts,
    banner,
    bridge_command,
    parse_args,
    proc_hwm_mb,
    proc_rss_mb,
    summary,
    table,
    wait_until,
)
from bridge.config import load_config  # noqa: E402
from bridge.ledger import FetchedPost, Ledger, OrgRecord  # noqa: E402
from bridge.model import SourcePost, post_to_dict  # noqa: E402
from bridge.web.security import derive_key  # noqa: E402
from tests.mastodon_server import free_port  # noqa: E402

NAME = "web"
MAX_RSS, MAX_P95_MS = 80.0, 100.0
SECRET = "bench-web-secret-" + "s" * 32


def fill_ledger(path: Path, posts: int) -> None:
    with Ledger.open(path) as ledger:
        ledger.save_org(OrgRecord("coop", "4242", "coop_x", "https://geno.example", "1", "coop", "https://geno.example/@coop",
                                  token="t", limits={"max_characters": 500}, limits_fetched_at=T0), T0)
        batch = []
        for i in range(posts + 50):
            pid = str(1_700_000_000_000_000_000 + i)
            post = SourcePost(id=pid, author_id="4242", author_username="coop_x", created_at=T0 + timedelta(minutes=i),
                              text=f"Post {i} of the cooperative, with a link https://example.org/{i} #genossenschaft")
            batch.append(FetchedPost(pid, post.created_at, post_to_dict(post)))
        ledger.record_fetched("coop", batch, cursor=None, now=T0)
        for i, item in enumerate(batch):
            when = T0 + timedelta(minutes=i)
            if i < posts:
                ledger.record_delivery("coop", item.post_id, 0, "status", str(900_000 + i),
                                       f"https://geno.example/@coop/{900_000 + i}", when)
                ledger.finish("coop", item.post_id, "delivered", when)
            else:
                ledger.finish("coop", item.post_id, "failed", when, "Mastodon answered 422: Validation failed")


def session_cookie(org: str) -> str:
    """What SessionMiddleware sets after a sign-in: base64 JSON, signed with the derived key."""
    data = base64.b64encode(json.dumps({"org": org, "csrf": "bench"}).encode())
    return TimestampSigner(derive_key(SECRET, "session").hex()).sign(data).decode()


def main() -> int:
    args = parse_args(__doc__.splitlines()[0])
    banner(NAME, args.quick)
    verdicts = Verdicts(args.quick)
    posts, requests = (200, 30) if args.quick else (10_000, 200)
    with tempfile.TemporaryDirectory(prefix="bench-web-") as tmp_name:
        tmp = Path(tmp_name)
        port = free_port()
        (tmp / "secret").write_text(SECRET)
        config_path = tmp / "config.yaml"
        config_path.write_text(f"database: {tmp / 'ledger.db'}\nweb:\n  port: {port}\n  secret_file: {tmp / 'secret'}\n"
                               "  secure_cookies: false\n")
        t0 = time.monotonic()
        fill_ledger(load_config(config_path).database, posts)
        setup = time.monotonic() - t0
        log = open(tmp / "web.log", "wb")
        proc = subprocess.Popen([*bridge_command(), "--config", str(config_path), "web"], stdout=log, stderr=log,
                                env=dict(os.environ, PYTHONPATH=str(ROOT)))
        base = f"http://127.0.0.1:{port}"
        try:
            def up() -> bool:
                try:
                    return httpx.get(base + "/", timeout=1).status_code == 200
                except httpx.TransportError:
                    return proc.poll() is not None
            if not wait_until(up, 60) or proc.poll() is not None:
                raise SystemExit(f"bridge web did not start: {(tmp / 'web.log').read_text()[-2000:]}")
            wait_until(lambda: False, 1.0)  # idle for a second after the first page
            idle_rss = proc_rss_mb(proc.pid)
            times = []
            with httpx.Client(base_url=base, cookies={"bridge_session": session_cookie("coop")}) as client:
                first = client.get("/org")
                if first.status_code != 200 or "Post " not in first.text:
                    raise SystemExit(f"/org answered {first.status_code}: {first.text[:300]}")
                for _ in range(requests):
                    s = time.perf_counter()
                    r = client.get("/org")
                    times.append((time.perf_counter() - s) * 1000)
                    assert r.status_code == 200
            after_rss, hwm = proc_rss_mb(proc.pid), proc_hwm_mb(proc.pid)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
    times.sort()
    p50 = statistics.median(times)
    p95 = times[max(0, int(round(0.95 * len(times))) - 1)]
    row = {"bridged posts": posts, "setup s": round(setup, 1), "requests": requests, "p50 ms": round(p50, 1),
           "p95 ms": round(p95, 1), "max ms": round(times[-1], 1), "idle RSS MB": round(idle_rss, 1),
           "RSS after MB": round(after_rss, 1), "HWM MB": round(hwm, 1)}
    table([row])
    verdicts.check(f"idle RSS <= {MAX_RSS:.0f} MB", idle_rss <= MAX_RSS, f"{idle_rss:.1f} MB")
    verdicts.check(f"/org p95 <= {MAX_P95_MS:.0f} ms", p95 <= MAX_P95_MS, f"{p95:.1f} ms with {posts} bridged posts")
    summary(NAME, verdicts, f"idle RSS {idle_rss:.1f} MB, /org p95 {p95:.1f} ms (p50 {p50:.1f}) with {posts} bridged posts")
    return 0


if __name__ == "__main__":
    sys.exit(main())
