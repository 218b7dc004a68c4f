"""Feed polling at scale (issue 14): 1,000 feed organisations (quick: 50; --orgs 10000 for issue 18), idle and with news.

Each organisation has its own feed (a Hugo-shaped RSS, 2 entries) on one loopback
website (tests/feed_server.py, in a thread). The feed source reads them the way
the pipeline does: ``read_new(url, cursor)`` with the cursor of the read before.

- idle: nothing changed since the last read. Target: 1 request and 0 body bytes
  per organisation (the conditional GET answered 304), and the CPU of the polling
  thread per organisation.
- news: 10 % of the feeds have one new entry. Target: exactly those entries read,
  one request per organisation, full bodies only for the changed feeds.

CPU is ``time.thread_time`` of the polling thread only (the server runs in other
threads of this process). The source level is measured, not the ledger: the
ledger's cost of an idle poll is nil (no write when the cursor is unchanged).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]  # bench/ would shadow `requests`
sys.path.insert(0, str(HERE.parent))

from bench._common import Verdicts, banner, parse_args, quiet_logs, summary, table  # noqa: E402
from bridge.sources.feed import FeedSource  # noqa: E402
from tests.feed_server import FEEDS, FeedServer  # noqa: E402

NEW_ITEM = """<item>
      <title>News {n}</title>
      <link>http://example.coop/posts/news-{n}/</link>
      <pubDate>Tue, 01 Dec 2026 14:00:00 +0000</pubDate>
      <guid>http://example.coop/posts/news-{n}/</guid>
      <description>&lt;p&gt;Something new at co-op {n}.&lt;/p&gt;</description>
    </item>
    """


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__ or "", argv, extra=[("--orgs", int, "this many feed organisations (issue 18: 10000)")])
    banner("feed_poll", args.quick)
    quiet_logs()
    count = args.orgs or (50 if args.quick else 1000)
    verdicts = Verdicts(quick=args.quick)
    server = FeedServer()
    base = (FEEDS / "hugo.xml").read_text()
    source = FeedSource()
    try:
        urls = [server.serve(f"/org{i}/index.xml", base) for i in range(count)]
        cursors = {u: source.start_cursor(u)[0] for u in urls}
        rows = []

        def cycle(label: str) -> tuple[int, int, int, float]:
            before, bytes_before = len(server.hits), server.body_bytes()
            cpu0, wall0 = time.thread_time(), time.perf_counter()
            found = 0
            for u in urls:
                read = source.read_new(u, cursors[u])
                found += len(read.posts)
                if read.cursor:
                    cursors[u] = read.cursor
            cpu, wall = time.thread_time() - cpu0, time.perf_counter() - wall0
            requests, body = len(server.hits) - before, server.body_bytes() - bytes_before
            rows.append({"cycle": label, "orgs": count, "requests": requests, "body_bytes": body, "new_entries": found,
                         "cpu_ms_per_org": round(cpu / count * 1000, 3), "wall_s": round(wall, 2)})
            return requests, body, found, cpu

        requests, body, found, cpu = cycle("idle")
        verdicts.check("idle: 1 request per organisation", requests == count, f"{requests / count:g}")
        verdicts.check("idle: 0 body bytes", body == 0, f"{body} bytes")
        verdicts.check("idle: nothing new", found == 0, str(found))
        changed = urls[:: 10]
        for n, u in enumerate(changed):
            at = base.index("<item>")
            server.serve(u.removeprefix(server.base), base[:at] + NEW_ITEM.format(n=n) + base[at:])
        requests, body, found, _ = cycle("10% new")
        verdicts.check("news: 1 request per organisation", requests == count, f"{requests / count:g}")
        verdicts.check("news: exactly the new entries read", found == len(changed), f"{found} of {len(changed)}")
        requests, body, found, _ = cycle("idle again")
        verdicts.check("idle after news: 0 body bytes", body == 0, f"{body} bytes")
        table(rows)
        summary("feed_poll", verdicts, f"{count} feeds; idle CPU {rows[0]['cpu_ms_per_org']} ms per organisation")
    finally:
        source.close()
        server.close()
    return 0 if args.quick or all(ok for _, ok, _ in verdicts.results) else 1


if __name__ == "__main__":
    sys.exit(main())
