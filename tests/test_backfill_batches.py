"""Recording an archive in batches (issue 18): a kill in the middle of a batch leaves whole batches only.

`bridge backfill` records RECORD_BATCH posts per ledger transaction (one per post
made recording cost 11x reading the archive). These tests kill the real command
(a subprocess, SIGKILL at crash points) inside a batch's transaction and after
recording, then let it finish, and check what the ledger and the Mastodon server hold.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from bridge.backfill import RECORD_BATCH, Backfill, BackfillOptions
from bridge.ledger import FetchedPost
from bridge.model import post_to_dict
from bridge.registry import open_archive_source
from bridge.targets.mastodon import html_to_text
from tests.archive_builder import ACCOUNT_ID, USERNAME, archive_tweet, build_archive, photo
from tests.bridge_env import BridgeEnv
from tests.fakes.x_api import FakeXServer
from tests.mastodon_server import MastodonServer

POSTS = 2 * RECORD_BATCH + 100  # three batches: whole, whole, and a short last one
KILL_AT = RECORD_BATCH + RECORD_BATCH // 2  # the 750th post: half of the second batch written, not committed
OWN_EVERY = 55  # every 55th post is the organisation's own text; the others are retweets, skipped by --no-retweets


def _archive(tmp_path: Path) -> tuple[Path, list[str], list[str]]:
    """POSTS posts in file order, newest first as X writes them; returns (zip, every id, the own posts' texts)."""
    start = datetime(2024, 1, 1, tzinfo=timezone.utc)
    tweets, ids, own = [], [], []
    for n in range(POSTS):
        post_id = str(1_600_000_000_000_000_000 + n)
        when = (start + timedelta(minutes=n)).strftime("%a %b %d %H:%M:%S +0000 %Y")
        text = f"Own post {n}: the cooperative's news" if n % OWN_EVERY == 0 else f"RT @other: shared news {n}"
        if n % OWN_EVERY == 0:
            own.append(text)
        tweets.append(archive_tweet(post_id, text, when))
        ids.append(post_id)
    tweets.reverse()
    return build_archive(tmp_path / "big", tweets, as_zip=True), ids, own


@pytest.fixture
def env(tmp_path: Path, x_server: FakeXServer, mastodon: MastodonServer) -> Iterator[BridgeEnv]:
    yield BridgeEnv(tmp_path, x_server, mastodon)


def _backfill(env: BridgeEnv, archive: Path, log: Path, crash_at: str | None = None, after: int = 1) -> int:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_TEST_CRASH")}
    if crash_at:
        environ.update(BRIDGE_TEST_CRASH_AT=crash_at, BRIDGE_TEST_CRASH_AFTER=str(after))
    with open(log, "w") as out:
        return subprocess.run(
            [sys.executable, "-m", "bridge.cli", "--config", str(env.config_path), "backfill", "coop", "--archive",
             str(archive), "--no-retweets", "--pace", "0", "--yes"],
            env=environ, stdout=out, stderr=subprocess.STDOUT, timeout=300, check=False,
        ).returncode


def test_a_kill_in_the_middle_of_a_batch_keeps_whole_batches_and_the_rerun_posts_each_post_once(
    env: BridgeEnv, tmp_path: Path
) -> None:
    org = env.link("coop", USERNAME, x_user_id=ACCOUNT_ID)
    archive, ids, own = _archive(tmp_path)
    log = tmp_path / "run.log"

    # Killed while the second batch is half written: the first batch is recorded, nothing of the second.
    assert _backfill(env, archive, log, "record_post", after=KILL_AT) == -signal.SIGKILL, log.read_text()[-2000:]
    with env.ledger() as ledger:
        rows = ledger.posts(org.name)
        assert len(rows) == RECORD_BATCH
        assert all(r.state == "pending" and r.origin == "backfill" and r.post["id"] == r.post_id for r in rows)
    assert env.toots(org) == []

    # Run again, killed once everything is recorded: the rest is recorded, the first batch kept as it was.
    assert _backfill(env, archive, log, "backfill_recorded") == -signal.SIGKILL, log.read_text()[-2000:]
    assert f"{POSTS - RECORD_BATCH} new, {RECORD_BATCH} left open by an earlier run" in log.read_text()
    with env.ledger() as ledger:
        assert sorted(r.post_id for r in ledger.posts(org.name)) == ids  # none missing, none twice
    assert env.toots(org) == []

    # And once more to the end: each own post exactly once on Mastodon, every retweet skipped.
    assert _backfill(env, archive, log) == 0, log.read_text()[-2000:]
    texts = Counter(html_to_text(t["content"]) for t in env.toots(org))
    assert sorted(texts) == sorted(own) and set(texts.values()) == {1}
    with env.ledger() as ledger:
        assert ledger.counts(org.name) == {"pending": 0, "posting": 0, "delivered": len(own), "skipped": POSTS - len(own),
                                           "failed": 0}


def test_each_post_is_recorded_as_its_plan_checked_it_media_files_extracted_and_x_urls_dropped(
    env: BridgeEnv, tmp_path: Path
) -> None:
    """plan() keeps a post needing nothing more in its final form and record() writes that text unparsed; a post
    with a file in the zip is still checked and extracted by record(). Either way no X media URL is left to fetch."""
    org = env.link("coop", USERNAME, x_user_id=ACCOUNT_ID)
    found, missing, plain = "1500000000000000003", "1500000000000000002", "1500000000000000001"
    tweets = [
        archive_tweet(found, "Foto https://t.co/pic0000001", "Wed Jan 03 10:00:00 +0000 2024",
                      extended_entities={"media": [photo(found, "71", "Da.jpg")]}),
        archive_tweet(missing, "Foto https://t.co/pic0000001", "Tue Jan 02 10:00:00 +0000 2024",
                      extended_entities={"media": [photo(missing, "72", "Weg.jpg")]}),
        archive_tweet(plain, "Nur Text, ä ö ü \u2028 und ein Emoji 🏠", "Mon Jan 01 10:00:00 +0000 2024"),
    ]
    archive = build_archive(tmp_path / "coop", tweets, media={f"{found}-Da.jpg": b"\xff\xd8 jpeg"}, as_zip=True)
    with env.ledger() as ledger:
        run = Backfill(env.config, ledger, org.name, BackfillOptions(archive=archive, pace=0))
        assert run.plan().new == 3
        assert run.record() == 3
        rows = {r.post_id: r.post for r in ledger.posts(org.name)}
    with open_archive_source(archive) as source:
        read = {p.id: post_to_dict(p) for p in source.iter_posts()}
    assert rows[plain] == read[plain]  # the text as read, through the staging file unchanged
    media = {pid: rows[pid]["media"][0] for pid in (found, missing)}
    assert all(m["url"] is None and m["variants"] == [] for m in media.values())
    assert media[missing]["local_path"] is None
    extracted = Path(media[found]["local_path"])
    assert extracted.is_relative_to(run.media_dir) and extracted.read_bytes() == b"\xff\xd8 jpeg"
    for pid in (found, missing):  # apart from the media, each post as read
        assert {k: v for k, v in rows[pid].items() if k != "media"} == {k: v for k, v in read[pid].items() if k != "media"}


def test_a_post_the_poller_records_between_plan_and_record_is_left_as_the_poller_recorded_it(
    env: BridgeEnv, tmp_path: Path
) -> None:
    """record() writes the staged posts without looking their states up again: the ledger's own check keeps a post
    recorded meanwhile (here delivered by the poller) as it is, counted as not new, never queued twice."""
    org = env.link("coop", USERNAME, x_user_id=ACCOUNT_ID)
    archive, ids, _own = _archive(tmp_path)
    now = datetime.now(timezone.utc)
    with env.ledger() as ledger:
        run = Backfill(env.config, ledger, org.name, BackfillOptions(archive=archive, pace=0))
        assert run.plan().new == POSTS
        polled = ids[-1]  # the newest: the poller read it after the plan
        assert ledger.record_fetched(org.name, [FetchedPost(polled, now, {"id": polled, "text": "as polled"})],
                                     cursor=None, now=now) == 1
        ledger.finish(org.name, polled, "delivered", now)
        assert run.record() == POSTS - 1
        row = ledger.get_post(org.name, polled)
        assert row is not None and (row.origin, row.state, row.post["text"]) == ("poll", "delivered", "as polled")
        assert sorted(r.post_id for r in ledger.posts(org.name)) == ids
