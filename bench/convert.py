"""Converter throughput: ``bridge.convert.convert()`` on one core over a generated mix.

The mix (fixed seed) has what real timelines have: plain posts, links, linked
and unlinked mentions, hashtags, photos (1 and 4, with alt text), a video, an
animated GIF, long posts that split into threads, retweets (bridged: boost;
not bridged: skipped), quotes, self-replies, emoji and CJK text. Posts are
built as X API v2 pages and normalised first (not timed); only ``convert()``
is timed, in one thread. Target (issue 8): >= 5,000 posts/s; below it, the
profile's top 5 functions are printed.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import random
import sys
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]  # bench/ would shadow `requests`
sys.path.insert(0, str(HERE.parent))

from bench._common import T0, Verdicts, banner, parse_args, peak_rss_mb, summary, table  # noqa: E402
from bridge.convert import convert  # noqa: E402
from bridge.model import BridgedToot, SourcePost  # noqa: E402
from bridge.policy import InstanceLimits, Policy  # noqa: E402
from bridge.sources.x_post import neutral_post  # noqa: E402
from bridge.sources.x_v2 import normalise_page  # noqa: E402
from geno_bridge_standins.x_api import make_media, make_tweet  # noqa: E402

NAME = "convert"
TARGET = 5000
OWN_ID, OWN_NAME = "1400000000000000001", "WohnGenoNord"
OTHER_ID, OTHER_NAME = "1400000000000000002", "SolarGenoSued"
MEDIA_BASE = "https://pbs.twimg.com"
WORDS = ("Genossenschaft", "Mitglieder", "assembly", "garden", "solar", "roof", "rent", "workshop", "members",
         "Wohnen", "neighbours", "repair café", "bike", "meeting", "Frühling", "🌱", "🏠", "住宅", "協同組合")
KINDS = ("plain", "links", "mentions", "hashtags", "photo", "photos4", "video", "gif", "long", "retweet_bridged",
         "retweet_unbridged", "quote", "self_reply", "emoji_cjk")


def sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def build_posts(count: int, seed: int = 8) -> list[SourcePost]:
    """``count`` SourcePosts of every kind, via v2 pages of 100 and the real normaliser."""
    rng = random.Random(seed)
    base_id = 1_850_000_000_000_000_000
    posts: list[SourcePost] = []
    originals: dict[str, dict] = {}
    for start in range(0, count, 100):
        data, media, tweets = [], [], []
        for i in range(start, min(count, start + 100)):
            kind = KINDS[i % len(KINDS)]
            pid = str(base_id + 10 * i)
            at = T0 + timedelta(seconds=i)
            kw: dict = {"created_at": at, "author_username": OWN_NAME}
            if kind == "plain":
                tweet = make_tweet(pid, OWN_ID, sentence(rng, 14) + ".", **kw)
            elif kind == "links":
                a, b = f"https://wohngeno.example/news/{i}", f"https://www.example.org/a/very/long/path/{i}?ref=x"
                tweet = make_tweet(pid, OWN_ID, f"{sentence(rng, 6)} {a} and {b}", urls=[a, b], **kw)
            elif kind == "mentions":
                tweet = make_tweet(pid, OWN_ID, f"Thanks @{OTHER_NAME} and @someone_{i % 7} for {sentence(rng, 5)}",
                                   mentions=[(OTHER_NAME, OTHER_ID), f"someone_{i % 7}"], **kw)
            elif kind == "hashtags":
                tweet = make_tweet(pid, OWN_ID, f"{sentence(rng, 8)} #Genossenschaft #Wohnen $COOP",
                                   hashtags=["Genossenschaft", "Wohnen"], cashtags=["COOP"], **kw)
            elif kind in ("photo", "photos4"):
                keys = [f"3_{pid}{k}" for k in range(1 if kind == "photo" else 4)]
                tweet = make_tweet(pid, OWN_ID, sentence(rng, 10), media_keys=keys, **kw)
                media += [make_media(k, "photo", base_url=MEDIA_BASE, alt_text=f"Photo {n} of {sentence(rng, 4)}")
                          for n, k in enumerate(keys)]
            elif kind in ("video", "gif"):
                key = f"{'7' if kind == 'video' else '16'}_{pid}"
                tweet = make_tweet(pid, OWN_ID, sentence(rng, 9), media_keys=[key], **kw)
                media.append(make_media(key, "video" if kind == "video" else "animated_gif", base_url=MEDIA_BASE))
            elif kind == "long":
                note = " ".join(f"Paragraph {p}: {sentence(rng, 30)}." for p in range(1, 9))
                tweet = make_tweet(pid, OWN_ID, "", note_tweet=note, **kw)
            elif kind in ("retweet_bridged", "retweet_unbridged", "quote"):
                oid = str(base_id + 10 * i + 1)
                original = make_tweet(oid, OTHER_ID, f"{sentence(rng, 12)} #Energiewende", hashtags=["Energiewende"],
                                      created_at=at - timedelta(hours=1), author_username=OTHER_NAME)
                originals[oid] = original
                tweets.append(original)
                if kind == "quote":
                    tweet = make_tweet(pid, OWN_ID, f"Worth reading: {sentence(rng, 6)}", quoted=oid, **kw)
                else:
                    tweet = make_tweet(pid, OWN_ID, f"RT @{OTHER_NAME}: {original['text'][:100]}", retweeted=oid,
                                       mentions=[(OTHER_NAME, OTHER_ID)], **kw)
            elif kind == "self_reply":
                parent = str(base_id + 10 * (i - 1))
                tweet = make_tweet(pid, OWN_ID, f"@{OWN_NAME} {sentence(rng, 10)}", in_reply_to=parent,
                                   replied_user_id=OWN_ID, mentions=[(OWN_NAME, OWN_ID)], **kw)
            else:
                tweet = make_tweet(pid, OWN_ID, "🏡🌻 " + "".join(rng.choice(("住宅", "協同組合", "👩‍👩‍👧", "ç", "ß")) for _ in range(40)), **kw)
            data.append(tweet)
        users = [{"id": OWN_ID, "username": OWN_NAME, "name": "Wohngeno Nord"},
                 {"id": OTHER_ID, "username": OTHER_NAME, "name": "SolarGeno Süd"}]
        page = {"data": data, "includes": {"media": media, "tweets": tweets, "users": users},
                "meta": {"result_count": len(data)}}
        posts.extend(normalise_page(page))
    return posts


def main() -> int:
    args = parse_args(__doc__.splitlines()[0])
    banner(NAME, args.quick)
    verdicts = Verdicts(args.quick)
    count = 280 if args.quick else 7_000
    t0 = time.monotonic()
    posts = build_posts(count)
    build_s = time.monotonic() - t0
    limits = InstanceLimits(supports_quotes=True)
    policy = Policy()
    mentions = {OTHER_NAME.lower(): "solargeno@geno.social", "partner": "partner@example.social"}
    # Every other retweeted original is already bridged (boost); the rest are not (skipped).
    bridged_ids = {p.retweet_of.id for n, p in enumerate(posts) if p.retweet_of is not None and n % 2 == 0}
    bridged_ids |= {p.id for p in posts if p.quote_of is None and p.retweet_of is None}
    toot = BridgedToot(status_id="1", url="https://geno.social/@wohngeno/1", account_acct="wohngeno@geno.social")

    def bridged(post_id: str) -> BridgedToot | None:
        return toot if post_id in bridged_ids else None

    def run_all() -> list:
        # the pipeline's conversion: the X source's neutral step, then the converter
        return [convert(neutral_post(p, OWN_ID), limits, policy, mentions=mentions, bridged=bridged) for p in posts]

    run_all()  # warm-up: one-time regex compilation and imports are not throughput
    rounds = 1 if args.quick else 2
    best = float("inf")
    for _ in range(rounds):
        t0 = time.process_time()
        conversions = run_all()
        best = min(best, time.process_time() - t0)
    rate = count / best
    outcome = Counter()
    drafts = 0
    for c in conversions:
        outcome["skipped" if c.skipped else "converted"] += 1
        drafts += len(c.drafts)
    kinds = Counter(d.kind for c in conversions for d in c.drafts)
    split = sum(1 for c in conversions if len(c.drafts) > 1)
    table([{
        "posts": count,
        "kinds": len(KINDS),
        "converted": outcome["converted"],
        "skipped": outcome["skipped"],
        "drafts": drafts,
        "split into threads": split,
        "boosts": kinds.get("boost", 0),
        "build s": round(build_s, 2),
        "convert CPU s (best)": round(best, 3),
        "posts/s": int(rate),
        "us/post": round(1e6 / rate, 1),
        "peak RSS MB": round(peak_rss_mb(), 1),
    }])
    if rate < TARGET and not args.quick:
        profile = cProfile.Profile()
        profile.enable()
        run_all()
        profile.disable()
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(5)
        pstats.Stats(profile, stream=out).sort_stats("cumulative").print_stats(r"bridge", 8)
        print("profile of one pass, top 5 functions by own time, then the bridge functions by cumulative time:")
        print("\n".join(line for line in out.getvalue().splitlines() if line.strip()))
    verdicts.check(f"converter >= {TARGET} posts/s on one core", rate >= TARGET, f"{rate:.0f} posts/s")
    summary(NAME, verdicts, f"{rate:.0f} posts/s on one core over {count} posts of {len(KINDS)} kinds ({drafts} drafts)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
