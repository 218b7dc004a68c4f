"""Request economy: requests per cycle and per post, counted on both servers.

Targets (issue 8): an idle cycle is exactly 1 X request per organisation and 0
Mastodon requests; a text post is 1 status request; a post with k images is k
uploads + 1 status; every X post is read exactly once over the whole run
(counted from the fake's responses); no instance or verify_credentials calls
per cycle. X requests are counted from the fake X server's request log,
Mastodon requests on mastodon-mock itself (pass-through fault-rule budgets,
see ``MastodonCounter``) and cross-checked with the pipeline's own count
(``CycleResult.mastodon_requests`` from ``MastodonTarget.request_count``).

Fan-out (issue 16): an organisation with a Mastodon and a Bluesky target. A text post
costs 1 Mastodon request and 1 Bluesky request (createRecord; the session stored at
linking is reused, so no createSession); a post with k images costs k uploads plus one
post on each target; the media are downloaded from X once (k requests), whatever the
number of targets; an idle cycle costs nothing on either. Bluesky requests are counted
on the reference PDS itself, from its request log. Needs `python3 dev.py pds`; without
it the fan-out part says so and is skipped.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Python puts bench/ first on sys.path; this file would then shadow the `requests` package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(HERE.parent))

from bench._common import (  # noqa: E402
    MastodonCounter,
    Verdicts,
    banner,
    config_at,
    link_orgs,
    next_post_id,
    parse_args,
    quiet_logs,
    run_cycles,
    start_servers,
    summary,
    table,
    text_tweet,
    write_config,
)
from bridge.demo import JPEG  # noqa: E402  a real 1x1 JPEG, so uploads are real image uploads
from geno_bridge_standins.x_api import make_media  # noqa: E402

NAME = "requests"


def main() -> int:
    args = parse_args(__doc__.splitlines()[0])
    banner(NAME, args.quick)
    quiet_logs()
    verdicts = Verdicts(args.quick)
    n_orgs = 3 if args.quick else 20
    idle_rounds = 1 if args.quick else 3
    ks = (1, 2) if args.quick else (1, 2, 3, 4)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-requests-") as tmp_name:
        tmp = Path(tmp_name)
        x, mastodon = start_servers(log_dir=tmp)
        try:
            config = config_at(write_config(tmp, x, mastodon))
            orgs = link_orgs(config, x, mastodon, n_orgs)
            names = [o.name for o in orgs]
            counter = MastodonCounter(mastodon)
            rows = []
            published: list[str] = []

            def scenario(label: str, run_names: list[str], expect_x: int, expect_m: dict[str, int]) -> dict:
                """Run one cycle per named org and compare both servers' counts with what was expected."""
                x_before = x.count("/2/")
                media_before = x.count("/media/")
                counter.reset()
                results = run_cycles(config, run_names)
                counts = counter.read()
                x_api = x.count("/2/") - x_before
                row = {
                    "scenario": label,
                    "orgs": len(run_names),
                    "X api": x_api,
                    "X media": x.count("/media/") - media_before,
                    "X (bridge)": sum(r.x_requests for r in results),
                    "M total": counts["total"],
                    "M (bridge)": sum(r.mastodon_requests for r in results),
                    "statuses": counts["statuses"],
                    "uploads": counts["media"],
                    "media polls": counts["media_polls"],
                    "instance": counts["instance"],
                    "verify": counts["verify_credentials"],
                    "other": counts["other"] + counts["reblogs"],
                    "delivered": sum(r.delivered for r in results),
                    "errors": sum(1 for r in results if r.error),
                }
                want_m = {"total": sum(expect_m.values()), **expect_m}
                ok = (
                    x_api == expect_x
                    and row["X (bridge)"] == expect_x
                    and all(counts.get(k, 0) == v for k, v in want_m.items())
                    and row["M (bridge)"] == counts["total"]
                    and row["errors"] == 0
                )
                row["ok"] = "yes" if ok else "NO"
                rows.append(row)
                return row

            idle_ok = True
            for n in range(idle_rounds):
                row = scenario(f"idle cycle #{n + 1}", names, len(names), {})
                idle_ok &= row["ok"] == "yes"

            org = orgs[0]
            tweet = text_tweet(org, "General assembly on Friday, 18:00, in the common room. #Genossenschaft",
                               hashtags=["Genossenschaft"])
            x.add_tweet(tweet)
            published.append(tweet["id"])
            text_ok = scenario("1 text post", [org.name], 1, {"statuses": 1})["ok"] == "yes"

            image_ok = True
            for k in ks:
                media = []
                keys = []
                for i in range(k):
                    key = f"3_{next_post_id()}"
                    x.put_media(f"{key}.jpg", JPEG, "image/jpeg")
                    media.append(make_media(key, "photo", base_url=x.base_url, name=f"{key}.jpg", alt_text=f"photo {i + 1}"))
                    keys.append(key)
                tweet = text_tweet(org, f"A post with {k} photo(s) of the new house.", media_keys=keys)
                x.add_tweet(tweet, media=media)
                published.append(tweet["id"])
                row = scenario(f"post with {k} image(s)", [org.name], 1, {"statuses": 1, "media": k})
                image_ok &= row["ok"] == "yes" and row["X media"] == k

            # A burst: several orgs post at once (text + 1 image), then idle again.
            burst = orgs[1 : 1 + min(5, len(orgs) - 1)]
            for o in burst:
                tweet = text_tweet(o, f"News from {o.x_username}: the solar roof is online.")
                x.add_tweet(tweet)
                published.append(tweet["id"])
            scenario("burst: 1 text post each", [o.name for o in burst], len(burst), {"statuses": len(burst)})
            row = scenario("idle after burst", names, len(names), {})
            idle_ok &= row["ok"] == "yes"

            served = list(x.served_post_ids)
            dupes = sum(c - 1 for c in Counter(served).values() if c > 1)
            read_once = dupes == 0 and sorted(served) == sorted(published)
            no_probe = sum(r["instance"] + r["verify"] for r in rows) == 0
        finally:
            x.stop()
            mastodon.stop()

    table(rows, ["scenario", "orgs", "X api", "X (bridge)", "X media", "M total", "M (bridge)", "statuses",
                 "uploads", "media polls", "instance", "verify", "other", "delivered", "errors", "ok"])
    print(f"X posts published {len(published)}, served by the fake {len(served)}, served more than once {dupes}")
    verdicts.check("idle cycle: exactly 1 X request per organisation, 0 Mastodon requests", idle_ok,
                   f"{idle_rounds + 1} idle rounds over {n_orgs} orgs")
    text_row = next(r for r in rows if r["scenario"] == "1 text post")
    verdicts.check("text post: 1 status request", text_ok, f"{text_row['statuses']} status of {text_row['M total']} requests")
    verdicts.check("post with k images: k uploads + 1 status", image_ok,
                   ", ".join(f"k={r['scenario'].split()[2]}: {r['uploads']}+{r['statuses']}" for r in rows if "image" in r["scenario"]))
    verdicts.check("every X post read exactly once over the run", read_once, f"{len(served)} served / {len(published)} published, {dupes} repeats")
    verdicts.check("no instance or verify_credentials calls per cycle", no_probe,
                   f"{sum(r['instance'] for r in rows)} instance, {sum(r['verify'] for r in rows)} verify")
    fan = fanout(args.quick, verdicts)
    idle = next(r for r in rows if r["scenario"].startswith("idle"))
    summary(NAME, verdicts,
            f"idle {idle['X api'] / idle['orgs']:.2f} X req/org + {idle['M total']} Mastodon; text post {text_row['M total']} request(s);"
            f" k images = k+1 requests: {'yes' if image_ok else 'no'}; X posts read once: {'yes' if read_once else 'no'}"
            f"; fan-out: {fan} ({time.monotonic() - started:.1f} s)")
    return 0


def pds_calls(log_path: Path, start: int) -> tuple[Counter[str], int]:
    """XRPC methods the PDS served since byte ``start`` of its log (pino's "request completed" lines)."""
    import json

    with log_path.open("rb") as log:
        log.seek(start)
        data = log.read()
    calls: Counter[str] = Counter()
    for line in data.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        url = (entry.get("req") or {}).get("url") or ""
        if entry.get("msg") == "request completed" and url.startswith("/xrpc/"):
            calls[url.split("?")[0].removeprefix("/xrpc/")] += 1
    return calls, start + len(data)


def fanout(quick: bool, verdicts: Verdicts) -> str:
    """One organisation, both targets: what a text post and a post with k images cost on each."""
    from bridge import link_bluesky
    from tests.bluesky_pds import PdsNotInstalled, start_pds

    ks = (1, 2) if quick else (1, 2, 3, 4)
    with tempfile.TemporaryDirectory(prefix="bench-fanout-") as tmp_name:
        tmp = Path(tmp_name)
        try:
            pds = start_pds(tmp)
        except PdsNotInstalled as exc:
            print(f"fan-out: skipped ({exc})")
            return "skipped (no PDS)"
        x, mastodon = start_servers(log_dir=tmp)
        try:
            config = config_at(write_config(tmp, x, mastodon, extra=f"bluesky:\n  plc_url: {pds.plc_url}\n"
                                                                     f"  appview_url: {pds.url}\n"))
            [org] = link_orgs(config, x, mastodon, 1, prefix="fan")
            _, _, app_password = pds.create_account("fan-out.test")
            from datetime import datetime, timezone

            from bridge.ledger import Ledger

            with Ledger.open(config.database) as ledger:
                link_bluesky.link_target(ledger, config, org.name, "fan-out.test", app_password, datetime.now(timezone.utc))
            counter = MastodonCounter(mastodon)
            offset = pds.log_path.stat().st_size
            rows = []

            def scenario(label: str, k: int) -> dict:
                nonlocal offset
                media_before = x.count("/media/")
                counter.reset()
                _, offset = pds_calls(pds.log_path, offset)
                results = run_cycles(config, [org.name])
                counts = counter.read()
                calls, offset = pds_calls(pds.log_path, offset)
                row = {"scenario": label, "k": k, "X media": x.count("/media/") - media_before, "M total": counts["total"],
                       "M statuses": counts["statuses"], "M uploads": counts["media"], "B total": sum(calls.values()),
                       "B createRecord": calls["com.atproto.repo.createRecord"],
                       "B uploadBlob": calls["com.atproto.repo.uploadBlob"],
                       "B createSession": calls["com.atproto.server.createSession"],
                       "errors": sum(1 for r in results if r.error)}
                want_m = {"total": k + (1 if label != "idle" else 0)}
                ok = (row["M total"] == want_m["total"] and row["B total"] == want_m["total"] and row["errors"] == 0
                      and row["X media"] == k and row["M uploads"] == k and row["B uploadBlob"] == k)
                row["ok"] = "yes" if ok else "NO"
                rows.append(row)
                return row

            scenario("idle", 0)
            x.add_tweet(text_tweet(org, "General assembly on Friday, 18:00, in the common room. #Genossenschaft",
                                   hashtags=["Genossenschaft"]))
            text = scenario("1 text post", 0)
            image_rows = []
            for k in ks:
                keys, media = [], []
                for i in range(k):
                    key = f"3_{next_post_id()}"
                    x.put_media(f"{key}.jpg", JPEG, "image/jpeg")
                    media.append(make_media(key, "photo", base_url=x.base_url, name=f"{key}.jpg", alt_text=f"photo {i + 1}"))
                    keys.append(key)
                x.add_tweet(text_tweet(org, f"A post with {k} photo(s) of the new house.", media_keys=keys), media=media)
                image_rows.append(scenario(f"post with {k} image(s)", k))
            idle = scenario("idle", 0)
        finally:
            x.stop()
            mastodon.stop()
            pds.stop()
    table(rows, ["scenario", "k", "X media", "M total", "M statuses", "M uploads", "B total", "B createRecord", "B uploadBlob",
                 "B createSession", "errors", "ok"])
    verdicts.check("fan-out text post: 1 Mastodon request + 1 Bluesky request", text["ok"] == "yes",
                   f"{text['M total']} + {text['B total']}")
    verdicts.check("fan-out k images: k uploads + 1 post on each target, media downloaded once",
                   all(r["ok"] == "yes" for r in image_rows),
                   ", ".join(f"k={r['k']}: M {r['M uploads']}+{r['M statuses']}, B {r['B uploadBlob']}+"
                             f"{r['B createRecord']}, X media downloads {r['X media']}" for r in image_rows))
    verdicts.check("fan-out idle cycle: 0 requests on either target", idle["ok"] == "yes",
                   f"{idle['M total']} + {idle['B total']}")
    return (f"text post {text['M total']} M + {text['B total']} B requests; "
            + ", ".join(f"{r['k']} images {r['M total']} M + {r['B total']} B, {r['X media']} downloads"
                        for r in image_rows))


if __name__ == "__main__":
    sys.exit(main())
