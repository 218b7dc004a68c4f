"""`bridge backfill` end to end: the sample archive and the fake X API into mastodon-mock.

Every assertion is about what arrived on the Mastodon server, what the ledger
holds, or what the command printed; nothing is patched.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
import zipfile
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from bridge.backfill import Backfill, BackfillOptions, Plan, Summary, estimate_text, parse_date
from bridge.cli import Progress, main
from bridge.errors import SourceError
from bridge.targets.mastodon import html_to_text
from tests.archive_builder import (
    ACCOUNT_ID,
    USERNAME,
    account_js,
    archive_tweet,
    build_archive,
    js,
    photo,
    write_archive,
)
from tests.bridge_env import BridgeEnv, LinkedOrg
from tests.fakes.x_api import FakeXServer
from tests.mastodon_server import MastodonServer

SAMPLE_ID = "1400000000000000001"  # the sample archive's accountId (EXPECTED.md)
T01 = "1632655794777997096"
T08A, T08B, T08C = "1661819687590113148", "1661820039082832020", "1661820471721131233"
T15 = "1709617543215268789"
T20, T21 = "1753002943439525206", "1757679105777140454"
SAMPLE_STATUSES = 28  # 26 statuses with T24 in two parts (25 + 2) plus the boost of T20 (EXPECTED.md)
SAMPLE_MEDIA = 9  # distinct media files; T21's copy is not uploaded again


@pytest.fixture
def env(tmp_path: Path, x_server: FakeXServer, mastodon: MastodonServer) -> Iterator[BridgeEnv]:
    yield BridgeEnv(tmp_path, x_server, mastodon)


@pytest.fixture
def sample_zip(fixtures_dir: Path) -> Path:
    return fixtures_dir / "x-archive" / "sample-coop.zip"


def link_sample(env: BridgeEnv, name: str = "wgn") -> LinkedOrg:
    return env.link(name, USERNAME, x_user_id=SAMPLE_ID)


def cli(env: BridgeEnv, *args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(main, ["--config", str(env.config_path), "backfill", *args], input=input)


def subprocess_cli(env: BridgeEnv, *args: str, crash_at: str | None = None, out: Path | None = None) -> subprocess.Popen:
    environ = {k: v for k, v in os.environ.items() if k != "BRIDGE_TEST_CRASH_AT"}
    if crash_at:
        environ["BRIDGE_TEST_CRASH_AT"] = crash_at
    sink = open(out or os.devnull, "w")  # noqa: SIM115 (closed by the child's exit)
    return subprocess.Popen(
        [sys.executable, "-c", "from bridge.cli import main; main()", "--config", str(env.config_path), "backfill", *args],
        env=environ, stdout=sink, stderr=subprocess.STDOUT,
    )


def statuses(env: BridgeEnv, org: LinkedOrg) -> list[dict[str, Any]]:
    return env.toots(org)


def toot_of(env: BridgeEnv, org: LinkedOrg, post_id: str) -> str:
    with env.ledger() as ledger:
        toot = ledger.first_toot(org.name, post_id)
    assert toot is not None, f"post {post_id} has no toot"
    return toot.status_id


def assert_sample_complete(env: BridgeEnv, org: LinkedOrg) -> None:
    """Exactly one toot per part of every post that should go out: nothing missing, nothing twice."""
    toots = statuses(env, org)
    assert len(toots) == SAMPLE_STATUSES
    texts = Counter(html_to_text(t["content"]) for t in toots if not t.get("reblog") and t["content"])
    assert all(n == 1 for n in texts.values()), [t for t, n in texts.items() if n > 1]
    assert sum(len(t["media_attachments"]) for t in toots) == SAMPLE_MEDIA
    with env.ledger() as ledger:
        counts = ledger.counts(org.name)
        assert counts == {"pending": 0, "posting": 0, "delivered": 27, "skipped": 6, "failed": 0}
        delivered_ids = {d.status_id for r in ledger.posts(org.name, ["delivered"]) for d in ledger.deliveries(org.name, r.post_id)}
    assert delivered_ids == {t["id"] for t in toots}


# --------------------------------------------------------------------------- the sample archive


def test_sample_archive_end_to_end(env: BridgeEnv, sample_zip: Path):
    org = link_sample(env)
    with env.ledger() as ledger:
        cursor_before = ledger.get_cursor(org.name)

    r = cli(env, org.name, "--archive", str(sample_zip), "--pace", "0", "--yes")

    assert r.exit_code == 0, r.output
    assert "delivered 27 posts (28 statuses, 9 media uploads), skipped 6, failed 0" in r.stdout
    assert "3 x reply to another account (policy replies: self)" in r.stdout
    assert_sample_complete(env, org)
    toots = {t["id"]: t for t in statuses(env, org)}
    # Self-threads are rebuilt: each part replies to its parent's toot.
    assert toots[toot_of(env, org, T08B)]["in_reply_to_id"] == toot_of(env, org, T08A)
    assert toots[toot_of(env, org, T08C)]["in_reply_to_id"] == toot_of(env, org, T08B)
    # Media come from the archive's files: four photos in one status, in order.
    four = toots[toot_of(env, org, T15)]["media_attachments"]
    assert [m["type"] for m in four] == ["image"] * 4
    # The retweet of an own post boosts that post's toot; nothing else is a boost.
    boosts = [t for t in toots.values() if t.get("reblog")]
    assert len(boosts) == 1 and boosts[0]["reblog"]["id"] == toot_of(env, org, T20)
    # Backfill defaults to unlisted, so followers' timelines are not flooded.
    assert {t["visibility"] for t in toots.values() if not t.get("reblog")} == {"unlisted"}
    # Oldest first: server ids grow with the posts' dates.
    assert sorted(toots) == [toots[k]["id"] for k in sorted(toots)]
    first_post_toot = toot_of(env, org, T01)
    assert min(toots, key=int) == first_post_toot
    with env.ledger() as ledger:
        assert ledger.get_cursor(org.name) == cursor_before  # the poller's cursor is untouched
        assert {r.origin for r in ledger.posts(org.name)} == {"backfill"}
    assert not (env.config.database.parent / "backfill-media" / org.name).exists()  # extracted media cleaned up

    again = cli(env, org.name, "--archive", str(sample_zip), "--pace", "0", "--yes")
    assert again.exit_code == 0, again.output
    assert "33 already handled" in again.stdout and "nothing to bring over" in again.stdout
    assert len(statuses(env, org)) == SAMPLE_STATUSES


def test_dry_run_prints_drafts_and_writes_nothing(env: BridgeEnv, sample_zip: Path):
    org = link_sample(env)
    db = env.config.database
    before = db.read_bytes()

    r = cli(env, org.name, "--archive", str(sample_zip), "--dry-run")

    assert r.exit_code == 0, r.output
    out = r.stdout
    assert f"== post {T08B}" in out and f"target: reply to the toot of post {T08A}" in out
    assert f"boost of the toot of post {T20}" in out
    assert "media 1: photo data/tweets_media/1681655788369499284-" in out
    assert "SKIPPED: post 1764954551922106539: superseded" in out
    assert "would deliver 27 posts (28 statuses, 9 media uploads), skipped 6, failed 0" in out
    assert statuses(env, org) == []
    with env.ledger() as ledger:
        assert ledger.posts(org.name) == []
    assert db.read_bytes() == before
    assert not (db.parent / "backfill-media").exists()


def test_options_override_the_policy_for_this_run(env: BridgeEnv, sample_zip: Path):
    org = link_sample(env)
    r = cli(env, org.name, "--archive", str(sample_zip), "--dry-run", "--no-retweets", "--replies", "none",
            "--visibility", "public", "--date-prefix", "--since", "2023-03-10", "--until", "2023-06-30")
    assert r.exit_code == 0, r.output
    out = r.stdout
    assert "11 posts in range" in out  # T02 (2023-03-14) up to T10 (2023-06-30, the --until day included)
    assert "visibility public, retweets skip, replies none, date prefix on" in out
    assert "2023-03-14: Was unterscheidet" in out  # T02's date in front of its text
    assert "visibility: public" in out and "visibility: unlisted" not in out
    assert f"== post {T01}" not in out  # 2023-03-06: before --since
    assert f"SKIPPED: post {T08B}: reply (policy replies: none)" in out
    assert "SKIPPED: post 1674672877940463297: retweet (policy retweets: skip)" in out
    assert statuses(env, org) == []


def test_resume_after_kill_posts_each_post_once(env: BridgeEnv, sample_zip: Path, tmp_path: Path):
    org = link_sample(env)
    proc = subprocess_cli(env, org.name, "--archive", str(sample_zip), "--pace", "0", "--yes",
                          crash_at="after_status_post", out=tmp_path / "crash.log")
    assert proc.wait(timeout=60) == -signal.SIGKILL, (tmp_path / "crash.log").read_text()
    assert len(statuses(env, org)) == 1  # posted, but the process died before recording it
    with env.ledger() as ledger:
        assert ledger.get_post(org.name, T01).state == "posting"
        assert ledger.counts(org.name)["pending"] == 32
    # The extracted media are gone (a cleaned temp folder): the resumed run takes them from the archive again.
    shutil.rmtree(env.config.database.parent / "backfill-media")

    r = cli(env, org.name, "--archive", str(sample_zip), "--pace", "0", "--yes")

    assert r.exit_code == 0, r.output
    assert "0 new, 33 left open by an earlier run" in r.stdout
    assert_sample_complete(env, org)


def test_ctrl_c_stops_between_posts_and_a_new_run_continues(env: BridgeEnv, sample_zip: Path, tmp_path: Path):
    org = link_sample(env)
    log = tmp_path / "run.log"
    proc = subprocess_cli(env, org.name, "--archive", str(sample_zip), "--pace", "3600", "--yes", out=log)
    deadline = time.monotonic() + 30
    while not statuses(env, org):  # polling the server until the first toot arrived
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=20) == 130, log.read_text()
    text = log.read_text()
    assert "delivered 1 posts" in text and "run the same command again to continue" in text
    assert len(statuses(env, org)) == 1

    r = cli(env, org.name, "--archive", str(sample_zip), "--pace", "0", "--yes")
    assert r.exit_code == 0, r.output
    assert_sample_complete(env, org)


def test_alt_text_missing_media_and_truncated_retweet(env: BridgeEnv, tmp_path: Path):
    env.write_config("defaults:\n  retweets: link\n")
    org = env.link("nord", USERNAME, x_user_id=ACCOUNT_ID)
    with_alt = archive_tweet("1500000000000000001", "Flyer https://t.co/pic0000001", "Mon Jan 01 10:00:00 +0000 2024",
                             extended_entities={"media": [{**photo("1500000000000000001", "71", "Flyer.jpg"), "ext_alt_text": "Ein Flyer"}]})
    missing = archive_tweet("1500000000000000002", "Hoffest https://t.co/pic0000001", "Tue Jan 02 10:00:00 +0000 2024",
                            extended_entities={"media": [photo("1500000000000000002", "72", "Fest.jpg")]})
    cut = "RT @GenoSocialHH: Ein sehr langer Beitrag über Genossenschaften, der im Archiv nach 140 Zeichen abgeschnitten wird, wie X es immer…"
    retweet = archive_tweet("1500000000000000003", cut, "Wed Jan 03 10:00:00 +0000 2024",
                            entities={"hashtags": [], "symbols": [], "urls": [],
                                      "user_mentions": [{"screen_name": "GenoSocialHH", "id_str": "99", "indices": ["3", "16"]}]})
    path = build_archive(tmp_path / "arch", [retweet, missing, with_alt],
                         media={"1500000000000000001-Flyer.jpg": b"\xff\xd8\xff\xe0tinyjpeg"})

    r = cli(env, org.name, "--archive", str(path), "--pace", "0", "--yes")

    assert r.exit_code == 0, r.output
    assert "warning: 1 media files are missing from the source" in r.stdout
    assert "post 1500000000000000002: media 72 (photo)" in r.stdout
    toots = statuses(env, org)
    assert len(toots) == 3
    flyer, fest, rt = toots
    assert [m["description"] for m in flyer["media_attachments"]] == ["Ein Flyer"]
    assert fest["media_attachments"] == []
    assert "x.com/WohnGenoNord/status/1500000000000000002" in html_to_text(fest["content"])
    rt_text = html_to_text(rt["content"]).replace("\u2060", "")  # the word joiner keeps @ from mentioning
    assert "abgeschnitten" not in rt_text and "RT @GenoSocialHH" in rt_text  # never the cut text as if whole
    assert env.x.count("/media/") == 0  # archive media are never downloaded


# --------------------------------------------------------------------------- the X API


def publish_history(env: BridgeEnv, org: LinkedOrg, n: int, *, replies_to_others: int = 0) -> list[dict[str, Any]]:
    """``n`` own posts, one a minute, then ``replies_to_others`` replies to another account (skipped by policy)."""
    posts = []
    for i in range(n + replies_to_others):
        kwargs: dict[str, Any] = {}
        if i >= n:
            kwargs = {"in_reply_to": "1", "replied_user_id": "777"}
        posts.append(env.publish(env.tweet(org, f"post number {i}", minutes=i + 1, **kwargs)))
    return posts


def test_api_backfill_over_several_pages_oldest_first_with_a_thread(env: BridgeEnv):
    org = env.link("coop-a")
    posts = publish_history(env, org, 6, replies_to_others=200)
    parent = posts[5]
    child = env.publish(env.tweet(org, "and the thread goes on", minutes=300, in_reply_to=parent["id"]))
    env.x.reset_counts()

    r = cli(env, org.name, "--api", "--pace", "0", "--yes")

    assert r.exit_code == 0, r.output
    assert env.x.count("/2/users/") == 3  # 207 posts: three pages of at most 100
    assert "207 posts in range: 207 new" in r.stdout
    assert "delivered 7 posts (7 statuses, 0 media uploads), skipped 200, failed 0" in r.stdout
    toots = statuses(env, org)
    assert [html_to_text(t["content"]) for t in toots] == [f"post number {i}" for i in range(6)] + ["and the thread goes on"]
    assert toots[-1]["in_reply_to_id"] == toot_of(env, org, parent["id"])
    with env.ledger() as ledger:
        assert ledger.get_cursor(org.name) == "1"
        assert ledger.get_post(org.name, child["id"]).origin == "backfill"


def test_api_backfill_stops_at_x_3200_cap(env: BridgeEnv):
    org = env.link("big")
    publish_history(env, org, 3250)
    env.x.reset_counts()

    r = cli(env, org.name, "--api", input="n\n")  # the plan is shown, then declined

    assert r.exit_code == 1
    assert "3200 posts in range: 3200 new" in r.stdout
    assert "serves only the 3,200 most recent posts; older ones need the archive" in r.stdout
    assert "estimated time about 1d 8:00:00" in r.stdout  # 3,200 statuses at 300 per 3 hours
    assert "nothing was recorded or posted" in r.stderr
    assert env.x.count("/2/users/") == 32
    with env.ledger() as ledger:
        assert ledger.posts(org.name) == []
    assert statuses(env, org) == []


def test_x_rate_limit_is_reported_with_its_reset_and_the_run_can_be_repeated(env: BridgeEnv):
    org = env.link("coop-b")
    publish_history(env, org, 3)
    reset = datetime(2026, 11, 22, 10, 15, tzinfo=timezone.utc)
    env.x.inject("/2/users/", "429", reset_at=reset)

    r = cli(env, org.name, "--api", "--pace", "0", "--yes")

    assert r.exit_code == 1
    assert "rate limit" in r.stderr and "resets at 2026-11-22 10:15:00 UTC" in r.stderr
    assert "Nothing was recorded or posted" in r.stderr
    with env.ledger() as ledger:
        assert ledger.posts(org.name) == []
    again = cli(env, org.name, "--api", "--pace", "0", "--yes")
    assert again.exit_code == 0, again.output
    assert len(statuses(env, org)) == 3


def test_poller_then_backfill_never_posts_twice(env: BridgeEnv):
    org = env.link("coop-c")
    publish_history(env, org, 4)
    with env.ledger() as ledger:
        assert env.pipeline(ledger).cycle(org.name).delivered == 4

    r = cli(env, org.name, "--api", "--pace", "0", "--yes")

    assert r.exit_code == 0, r.output
    assert "4 posts in range: 0 new, 0 left open by an earlier run, 4 already handled" in r.stdout
    assert len(statuses(env, org)) == 4


def test_backfill_then_poller_never_posts_twice(env: BridgeEnv):
    org = env.link("coop-d")
    publish_history(env, org, 4)
    r = cli(env, org.name, "--api", "--pace", "0", "--yes")
    assert r.exit_code == 0, r.output
    newer = env.publish(env.tweet(org, "a new post after the backfill", minutes=500))

    with env.ledger() as ledger:
        result = env.pipeline(ledger).cycle(org.name)

    assert result.fetched == 1 and result.delivered == 1  # the four backfilled posts are known
    texts = [html_to_text(t["content"]) for t in statuses(env, org)]
    assert texts == [f"post number {i}" for i in range(4)] + ["a new post after the backfill"]
    with env.ledger() as ledger:
        assert ledger.get_post(org.name, newer["id"]).origin == "poll"


def test_archive_backfill_skips_what_the_poller_already_posted(env: BridgeEnv, sample_zip: Path):
    """The poller saw the newest archive post first (same id): the backfill leaves it alone."""
    org = link_sample(env)
    newest = "1853363846723908915"
    env.publish(env.tweet(org, "Ihr findet uns jetzt auch im Fediverse", post_id=newest))
    with env.ledger() as ledger:
        assert env.pipeline(ledger).cycle(org.name).delivered == 1

    r = cli(env, org.name, "--archive", str(sample_zip), "--pace", "0", "--yes")

    assert r.exit_code == 0, r.output
    assert "32 new, 0 left open by an earlier run, 1 already handled" in r.stdout
    assert len(statuses(env, org)) == SAMPLE_STATUSES  # 27 from the backfill + 1 from the poller
    with env.ledger() as ledger:
        assert ledger.get_post(org.name, newest).origin == "poll"
        assert len(ledger.deliveries(org.name, newest)) == 1


def test_limit_takes_the_oldest_new_posts_and_the_next_run_continues(env: BridgeEnv, sample_zip: Path):
    org = link_sample(env)
    r = cli(env, org.name, "--archive", str(sample_zip), "--pace", "0", "--yes", "--limit", "9")
    assert r.exit_code == 0, r.output
    assert "9 new" in r.stdout
    with env.ledger() as ledger:
        first = [row.post_id for row in ledger.posts(org.name)]
    assert first[0] == T01 and first[-1] == T08B and len(first) == 9  # T01..T07, T08a, T08b are the nine oldest
    r2 = cli(env, org.name, "--archive", str(sample_zip), "--pace", "0", "--yes")
    assert r2.exit_code == 0, r2.output
    assert "24 new, 0 left open by an earlier run, 9 already handled" in r2.stdout
    assert_sample_complete(env, org)



def test_a_dry_run_with_limit_shows_only_the_oldest_new_posts(env: BridgeEnv, sample_zip: Path):
    """A dry run records into its scratch ledger while it checks the archive, except with --limit: the posts
    chosen are known only once the whole archive is read (issue 18)."""
    org = link_sample(env)
    r = cli(env, org.name, "--archive", str(sample_zip), "--dry-run", "--limit", "9")
    assert r.exit_code == 0, r.output
    shown = re.findall(r"^== post (\d+) ", r.stdout, re.M)
    assert len(shown) == 9 and shown[0] == T01 and shown[-1] == T08B, shown
    assert statuses(env, org) == []
    with env.ledger() as ledger:
        assert ledger.posts(org.name) == []

# --------------------------------------------------------------------------- bad input: clear error, exit 2, nothing posted


def assert_refused(env: BridgeEnv, org: LinkedOrg, r: Result, *needles: str) -> None:
    assert r.exit_code == 2, r.output
    for needle in needles:
        assert needle in r.stderr, r.stderr
    assert statuses(env, org) == []
    with env.ledger() as ledger:
        assert ledger.posts(org.name) == []


def good_files() -> dict[str, str | bytes]:
    return {"data/account.js": account_js(), "data/tweets.js": js("tweets", [archive_tweet("1500000000000000001", "Hallo")])}


def declared_sizes_zip(path: Path, entries: int, declared: int) -> Path:
    """A small zip whose central directory declares ``declared`` bytes per entry (how a zip bomb looks)."""
    files = good_files()
    for i in range(entries):
        files[f"data/tweets_media/1500000000000000001-{i}.jpg"] = b"x"
    write_archive(path.with_suffix(""), files, as_zip=True)
    data = bytearray(path.read_bytes())
    at = data.find(b"PK\x01\x02")
    while at != -1:
        name_len = struct.unpack_from("<H", data, at + 28)[0]
        if b"tweets_media" in data[at + 46 : at + 46 + name_len]:
            struct.pack_into("<I", data, at + 24, declared)
        at = data.find(b"PK\x01\x02", at + 4)
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize(
    "case",
    ["not_archive", "truncated", "invalid_json", "wrong_prefix", "no_prefix", "no_data_zip", "no_data_folder", "zip_slip", "zip_bomb"],
)
def test_bad_archives_are_refused(env: BridgeEnv, tmp_path: Path, case: str):
    org = env.link("nord", USERNAME, x_user_id=ACCOUNT_ID)
    items = [archive_tweet(f"150000000000000000{i}", f"Beitrag {i}") for i in range(1, 4)]
    good = js("tweets", items)
    if case == "not_archive":
        path = tmp_path / "notes.txt"
        path.write_text("just some notes")
        needles = ["notes.txt: not an X archive"]
    elif case == "truncated":
        path = write_archive(tmp_path / "a", {"data/account.js": account_js(), "data/tweets.js": good[: len(good) // 2]})
        needles = ["tweets.js: truncated", "line "]
    elif case == "invalid_json":
        path = write_archive(tmp_path / "a", {"data/account.js": account_js(), "data/tweets.js": good.replace('"Beitrag 2"', "Beitrag 2")})
        needles = ["tweets.js: invalid JSON in item #1 at line"]
    elif case == "wrong_prefix":
        path = write_archive(tmp_path / "a", {"data/account.js": account_js(), "data/tweets.js": good.replace("YTD.tweets.", "YTD.like.")})
        needles = ["tweets.js: expected 'window.YTD.tweets.partN = ' at the start, found 'window.YTD.like.part0 ='"]
    elif case == "no_prefix":
        path = write_archive(tmp_path / "a", {"data/account.js": account_js(), "data/tweets.js": good.split("= ", 1)[1]})
        needles = ["tweets.js: expected 'window.YTD.tweets.part0 = ' at the start"]
    elif case == "no_data_zip":
        path = write_archive(tmp_path / "a", {"README.txt": "hello"}, as_zip=True)
        needles = ["a.zip: not an X archive: the zip has no data/ folder"]
    elif case == "no_data_folder":
        path = write_archive(tmp_path / "a", {"README.txt": "hello"})
        needles = ["not an X archive folder: no data/ folder in it"]
    elif case == "zip_slip":
        path = tmp_path / "slip.zip"
        with zipfile.ZipFile(path, "w") as zf:
            for rel, content in good_files().items():
                zf.writestr(rel, content)
            zf.writestr("../evil.js", "x")
        needles = ["slip.zip: zip entry '../evil.js' has an unsafe path"]
    else:  # 17 entries each declaring ~4 GB: over the 64 GB total cap
        path = declared_sizes_zip(tmp_path / "bomb.zip", 17, 0xFFFFFFF0)
        needles = ["bomb.zip: zip declares", "(zip bomb?)"]

    assert_refused(env, org, cli(env, org.name, "--archive", str(path), "--pace", "0", "--yes"), *needles)


def test_a_media_entry_over_the_cap_is_refused_before_anything_is_recorded(env: BridgeEnv, tmp_path: Path):
    org = env.link("nord", USERNAME, x_user_id=ACCOUNT_ID)
    pid = "1500000000000000001"
    item = archive_tweet(pid, "Foto https://t.co/pic0000001", extended_entities={"media": [photo(pid, "71", "Big.jpg")]})
    early = archive_tweet("1400000000000000009", "ein älterer Beitrag")
    path = build_archive(tmp_path / "bomb", [item, early], media={f"{pid}-Big.jpg": b"\0" * 200_000}, as_zip=True)
    with env.ledger() as ledger:
        run = Backfill(env.config, ledger, org.name, BackfillOptions(archive=path, pace=0, max_entry_bytes=100_000))
        with pytest.raises(SourceError, match=r"bomb\.zip:data/tweets_media/1500000000000000001-Big\.jpg: entry declares 200000 bytes.*zip bomb"):
            run.plan()
        assert ledger.posts(org.name) == []
    assert statuses(env, org) == []


def test_the_backfill_records_the_posts_its_plan_checked_even_if_the_archive_changes_in_between(
    env: BridgeEnv, tmp_path: Path
):
    """plan() keeps what it read and checked; record() records that, without reading the archive again (issue 18)."""
    org = env.link("nord", USERNAME, x_user_id=ACCOUNT_ID)
    pid = "1500000000000000001"
    checked = [archive_tweet(pid, "Foto https://t.co/pic0000001", extended_entities={"media": [photo(pid, "71", "A.jpg")]}),
               archive_tweet("1400000000000000009", "geprüft")]
    path = build_archive(tmp_path / "coop", checked, media={f"{pid}-A.jpg": b"\xff\xd8 jpeg"}, as_zip=True)
    with env.ledger() as ledger:
        run = Backfill(env.config, ledger, org.name, BackfillOptions(archive=path, pace=0))
        assert run.plan().new == 2
        build_archive(tmp_path / "coop", [archive_tweet("1300000000000000001", "nie geprüft")], as_zip=True)
        assert run.record() == 2
        rows = {r.post_id: r for r in ledger.posts(org.name)}
    assert sorted(rows) == ["1400000000000000009", pid]
    assert rows["1400000000000000009"].post["text"] == "geprüft"
    assert all(r.state == "pending" for r in rows.values())

def test_archive_of_another_account_is_refused_unless_forced(env: BridgeEnv, sample_zip: Path):
    org = env.link("other", "SomeoneElse")
    r = cli(env, org.name, "--archive", str(sample_zip), "--pace", "0", "--yes")
    assert_refused(env, org, r, "belongs to @WohnGenoNord (X id 1400000000000000001)",
                   f"@SomeoneElse (X id {org.x_user_id})", "--force")
    forced = cli(env, org.name, "--archive", str(sample_zip), "--dry-run", "--force")
    assert forced.exit_code == 0, forced.output
    assert "33 posts in range" in forced.stdout


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--archive", "x.zip", "--api"], "give exactly one of --archive PATH or --api, not both"),
        ([], "give exactly one of --archive PATH or --api"),
        (["--api", "--since", "2024-05-01", "--until", "2024-01-31"], "--since 2024-05-01 00:00:00Z is not before --until"),
        (["--api", "--since", "last tuesday"], "--since: 'last tuesday' is not a date"),
        (["--api", "--pace", "fast"], "--pace: 'fast' is neither 'auto' nor a number of seconds"),
        (["--api", "--limit", "0"], "--limit: 0 must be 1 or more"),
    ],
)
def test_bad_command_lines_are_refused(env: BridgeEnv, args: list[str], needle: str):
    org = env.link("coop-e")
    publish_history(env, org, 2)
    assert_refused(env, org, cli(env, org.name, *args, "--yes"), needle)
    assert env.x.count("/2/users/") == 0


def test_unknown_organisation(env: BridgeEnv, sample_zip: Path):
    org = env.link("coop-f")
    r = cli(env, "nobody", "--archive", str(sample_zip), "--yes")
    assert_refused(env, org, r, "no organisation named 'nobody'")


def test_until_includes_the_whole_day():
    assert parse_date("2024-01-31", "--until", end=True) == datetime(2024, 2, 1, tzinfo=timezone.utc)
    assert parse_date("2024-01-31T12:00:00+02:00", "--since") == datetime(2024, 1, 31, 10, tzinfo=timezone.utc)


def test_stop_event_ends_delivery_between_posts(env: BridgeEnv, sample_zip: Path):
    """The library side of Ctrl-C: once ``stop`` is set, the post in flight finishes and nothing else starts."""
    org = link_sample(env)
    stop = threading.Event()
    with env.ledger() as ledger:
        run = Backfill(env.config, ledger, org.name, BackfillOptions(archive=sample_zip, pace=0), stop=stop, retry_wait_max=0.01)
        run.plan()
        run.record()
        summary = run.deliver(lambda s, post_id, state: stop.set() if s.processed == 3 else None)
        assert summary.stopped and summary.processed == 3
        assert ledger.counts(org.name)["pending"] == 30
    assert len(statuses(env, org)) == 3


def test_automatic_pace_stays_within_mastodon_limits(env: BridgeEnv, sample_zip: Path):
    """300 statuses per 3 hours and 30 uploads per 30 minutes: 36 s a status, 60 s an upload."""
    org = link_sample(env)
    with env.ledger() as ledger:
        auto = Backfill(env.config, ledger, org.name, BackfillOptions(archive=sample_zip))
        assert auto.pause_after(1, 0) == 36
        assert auto.pause_after(2, 4) == 240  # four photos: the upload limit is the tighter one
        assert auto.eta_seconds(300, 0) == 3 * 3600
        assert auto.eta_seconds(10, 30) == 30 * 60
        fixed = Backfill(env.config, ledger, org.name, BackfillOptions(archive=sample_zip, pace=5))
        assert fixed.pause_after(3, 4) == 5 and fixed.eta_seconds(10, 30) == 50


# --------------------------------------------------------------------------- issue 12 item 8: how long it takes


def test_dry_run_prints_the_time_mastodons_limits_need_before_the_drafts(env: BridgeEnv, sample_zip: Path):
    org = link_sample(env)
    r = cli(env, org.name, "--archive", str(sample_zip), "--dry-run")
    assert r.exit_code == 0, r.output
    out = r.stdout
    limits = "at Mastodon's limits of 300 statuses per 3 h and 30 media uploads per 30 min"
    # the plan, before the first draft: at least one status per post (33 posts, 10 media files)
    first = out.index(f"estimated time about 0:25:36 {limits} (33 statuses need 0:19:48 on their own, 10 media uploads 0:10:00")
    assert first < out.index("== post ")
    # the summary counts exactly what would be posted: 28 statuses at 36 s, 9 uploads at 60 s, per post the larger
    assert f"estimated time about 0:22:12 {limits} (28 statuses need 0:16:48 on their own, 9 media uploads 0:09:00" in out


def test_566_media_files_take_about_nine_and_a_half_hours(env: BridgeEnv, sample_zip: Path):
    """The issue's example: 566 media files at 30 uploads per 30 minutes."""
    org = link_sample(env)
    with env.ledger() as ledger:
        run = Backfill(env.config, ledger, org.name, BackfillOptions(archive=sample_zip))
        plan = Plan(source="test", new=566, media=566, posts_by_media=Counter({1: 566}))
        seconds = run.plan_seconds(plan)
    assert seconds == 566 * 60
    assert estimate_text(seconds, 566, 566, None).startswith("9:26:00 (about 9.4 h) at Mastodon's limits")
    assert estimate_text(100.0, 10, 0, 10.0) == "0:01:40 at 10 s after each post"


def test_live_eta_includes_the_pacing_waits(env: BridgeEnv, sample_zip: Path, capsys: pytest.CaptureFixture[str]):
    """After the first post the ETA is the rest of the planned waits plus the wait now due, not seconds."""
    org = link_sample(env)
    stop = threading.Event()
    with env.ledger() as ledger:
        run = Backfill(env.config, ledger, org.name, BackfillOptions(archive=sample_zip), stop=stop, retry_wait_max=0.01)
        planned = run.plan_seconds(run.plan())
        run.record()
        progress = Progress(org.name, run.plan_.to_deliver, run.eta_now, tty=False)  # type: ignore[union-attr]

        def first_post_only(summary: Summary, post_id: str, state: str) -> None:
            progress(summary, post_id, state)
            stop.set()  # ends the run in its first wait, at once

        summary = run.deliver(first_post_only)
    assert summary.delivered == 1 and summary.stopped
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith(f"{org.name}: 1/33 post {T01} delivered")
    h, m, s = (int(x) for x in line.rsplit("ETA ", 1)[1].split(":"))
    assert planned - 2 <= h * 3600 + m * 60 + s <= planned  # a text post: 36 s of it are the wait now due
