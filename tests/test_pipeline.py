"""Exactly-once delivery, end to end over real HTTP: the fake X API and mastodon-mock.

Every assertion is about what actually arrived on the Mastodon server.
"""

from __future__ import annotations

import json
import re
import signal
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from bridge.ledger import Ledger
from bridge.targets.mastodon import html_to_text
from tests.bridge_env import BridgeEnv, LinkedOrg
from tests.fakes.x_api import FakeXServer, make_tweet
from tests.fixtures_x import x_server  # noqa: F401
from tests.mastodon_server import MastodonServer
from tests.test_daemon import daemons  # noqa: F401


@pytest.fixture
def env(tmp_path: Path, x_server: FakeXServer, mastodon: MastodonServer) -> Iterator[BridgeEnv]:  # noqa: F811
    yield BridgeEnv(tmp_path, x_server, mastodon)


def texts(env: BridgeEnv, org: LinkedOrg) -> list[str]:
    return [html_to_text(s["content"]) for s in env.toots(org) if not s.get("reblog")]


def cycle(env: BridgeEnv, name: str, **kwargs):
    with env.ledger() as ledger:
        return env.pipeline(ledger, **kwargs).cycle(name)


def drain(env: BridgeEnv, name: str, rounds: int = 20, **kwargs) -> None:
    """Cycle until nothing is open; deferred rows are made due at once (no waiting in tests)."""
    for _ in range(rounds):
        result = cycle(env, name, **kwargs)
        with env.ledger() as ledger:
            open_rows = ledger.open_posts(name)
            if not open_rows and result.polled and result.error is None:
                return
            ledger.db.conn.execute("UPDATE post_targets SET next_attempt_at = NULL WHERE org = ?", (name,))
            ledger.db.conn.execute(
                "UPDATE orgs SET post_deferred_until = NULL, poll_deferred_until = NULL WHERE name = ?", (name,)
            )
    raise AssertionError(f"{name}: posts still open after {rounds} cycles")


def mastodon_requests(env: BridgeEnv) -> str:
    """A pass-through rule whose budget counts every request the server receives."""
    return env.mastodon.add_fault({"effect": {"type": "latency", "delay_ms": 0}, "count": 100_000})


def used(env: BridgeEnv, rule_id: str) -> int:
    rule = next(r for r in env.mastodon.faults() if r["id"] == rule_id)
    return 100_000 - int(rule["remaining"])


def test_every_kind_of_post_lands_exactly_once(env: BridgeEnv) -> None:
    a = env.link("coop-a")
    b = env.link("coop-b")
    # A local account with the same name as an unmapped X handle: it must not be notified.
    stranger = f"stranger{a.account_id[-6:]}"
    env.mastodon.create_account(stranger)
    # b's post, bridged first, so a's retweet of it becomes a boost between the two cooperatives
    b_post = env.publish(env.tweet(b, "Solar news from coop b #energy", hashtags=["energy"]))
    cycle(env, "coop-b")

    env.publish(env.tweet(a, f"Hello @coop_b_x and @{stranger}, see https://example.org/page #geno $COOP",
                          urls=["https://example.org/page"], mentions=[("coop_b_x", b.x_user_id), stranger],
                          hashtags=["geno"], cashtags=["COOP"]))
    env.publish(env.tweet(a, "Our house", media_keys=["3_1"]), media=[env.photo("3_1", alt="A timber house")])
    env.publish(env.tweet(a, "A video", media_keys=["7_1"]), media=[env.video("7_1", alt="Walkthrough")])
    env.publish(env.tweet(a, "A GIF", media_keys=["16_1"]), media=[env.video("16_1", "animated_gif")])
    four = [env.photo(f"3_{n}", alt=f"photo {n}") for n in range(10, 14)]
    env.publish(env.tweet(a, "Four photos", media_keys=[m["media_key"] for m in four]), media=four)
    long_text = " ".join(f"Sentence {i} of a long post about the general assembly." for i in range(40))
    long_post = env.publish(env.tweet(a, long_text[:270] + "…", note_tweet=long_text))
    env.publish(env.tweet(a, "@coop_a_x and the thread goes on", in_reply_to=long_post["id"],
                          replied_user_id=a.x_user_id, mentions=[("coop_a_x", a.x_user_id)]))
    env.publish(env.tweet(a, "RT @coop_b_x: Solar news from coop b #energy", retweeted=b_post["id"],
                          mentions=[("coop_b_x", b.x_user_id)]), referenced=[b_post])
    env.publish(env.tweet(a, "Look at this", quoted=b_post["id"]), referenced=[b_post])
    result = cycle(env, "coop-a")
    assert result.failed == 0 and result.error is None, result

    toots = env.toots(a)
    plain = [html_to_text(t["content"]) for t in toots if not t.get("reblog")]
    # text, links, mentions: mapped handle -> fediverse account, unmapped never a bare mention
    first = plain[0]
    assert "https://example.org/page" in first and "t.co" not in first
    assert f"@{b.acct}@" in first and "#geno" in first and "$COOP" in first
    assert f"@\u2060{stranger}" in first
    assert stranger not in [m["username"] for m in toots[0]["mentions"]]
    # media with alt text
    by_text = {html_to_text(t["content"]): t for t in toots if not t.get("reblog")}
    assert [m["description"] for m in by_text["Our house"]["media_attachments"]] == ["A timber house"]
    assert [m["type"] for m in by_text["A video"]["media_attachments"]] == ["video"]
    assert by_text["A video"]["media_attachments"][0]["description"] == "Walkthrough"
    assert len(by_text["A GIF"]["media_attachments"]) == 1
    assert [m["description"] for m in by_text["Four photos"]["media_attachments"]] == [f"photo {n}" for n in range(10, 14)]
    # the long post became a thread, nothing lost, and the self-reply continues under it
    parts = [t for t in toots if "Sentence" in t["content"]]
    assert len(parts) >= 2
    assert " ".join(html_to_text(p["content"]) for p in parts).split() == long_text.split()
    for prev, nxt in zip(parts, parts[1:], strict=False):
        assert nxt["in_reply_to_id"] == prev["id"]
    reply = next(t for t in toots if "thread goes on" in t["content"])
    assert reply["in_reply_to_id"] == parts[-1]["id"]
    assert not html_to_text(reply["content"]).startswith("@")
    # the retweet of a bridged post of another linked organisation is a boost
    boosts = [t for t in toots if t.get("reblog")]
    assert len(boosts) == 1 and html_to_text(boosts[0]["reblog"]["content"]) == "Solar news from coop b #energy"
    # the quote links or quotes the bridged toot
    quote = next(t for t in toots if "Look at this" in t["content"])
    b_toot = env.toots(b)[0]
    assert b_toot["url"] in html_to_text(quote["content"]) or (quote.get("quote") or {}).get("quoted_status", {}).get("id") == b_toot["id"]

    # exactly once: another cycle posts nothing, and no text arrived twice
    again = cycle(env, "coop-a")
    assert again.delivered == 0 and again.mastodon_requests == 0
    assert len(env.toots(a)) == len(toots)
    counts = Counter(t["content"] for t in toots if not t.get("reblog"))
    assert max(counts.values()) == 1


def test_edit_on_x_becomes_a_status_edit(env: BridgeEnv) -> None:
    a = env.link("coop-edit")
    original = env.publish(env.tweet(a, "Meeting on Monday", post_id="1100000000000000001"))
    cycle(env, "coop-edit")
    edited = env.tweet(a, "Meeting on Tuesday", post_id="1100000000000000002",
                       edit_history=[original["id"], "1100000000000000002"])
    env.publish(edited)
    result = cycle(env, "coop-edit")
    assert result.failed == 0, result
    toots = env.toots(a)
    assert len(toots) == 1
    assert html_to_text(toots[0]["content"]) == "Meeting on Tuesday"
    assert toots[0].get("edited_at")


def test_idle_cycle_and_text_post_request_economy(env: BridgeEnv) -> None:
    a = env.link("coop-econ")
    env.x.reset_counts()
    rule = mastodon_requests(env)
    idle = cycle(env, "coop-econ")
    assert env.x.count("/2/") == 1 and idle.x_requests == 1
    assert used(env, rule) == 0 and idle.mastodon_requests == 0
    env.publish(env.tweet(a, "Just text"))
    one = cycle(env, "coop-econ")
    assert one.delivered == 1
    assert used(env, rule) == 1 and one.mastodon_requests == 1  # exactly the status POST
    assert env.x.count("/2/") == 2
    photo = env.photo("3_99", alt="x")
    env.publish(env.tweet(a, "One photo", media_keys=["3_99"]), media=[photo])
    cycle(env, "coop-econ")
    assert used(env, rule) == 3  # 1 upload + 1 status


def test_a_422_fails_only_its_own_post(env: BridgeEnv) -> None:
    a = env.link("coop-422")
    for n in range(3):
        env.publish(env.tweet(a, f"post {n}", post_id=f"120000000000000000{n}"))
    # Mastodon refuses the first status POST (post 0) with a 422: only that post fails.
    env.mastodon.add_fault({"match": {"methods": ["POST"], "path": "/api/v1/statuses"},
                            "effect": {"type": "status", "status": 422, "body": {"error": "Validation failed: Text is invalid"}},
                            "count": 1})
    result = cycle(env, "coop-422")
    assert result.failed == 1 and result.delivered == 2
    assert texts(env, a) == ["post 1", "post 2"]
    with env.ledger() as ledger:
        failed = ledger.posts("coop-422", ["failed"])
        assert [p.post_id for p in failed] == ["1200000000000000000"]
        assert "422" in (failed[0].last_error or "") and "Text is invalid" in failed[0].last_error
    # `bridge retry` puts it back; then it goes out once
    with env.ledger() as ledger:
        assert ledger.reopen("coop-422", "1200000000000000000", datetime.now(timezone.utc)) == 1
    cycle(env, "coop-422")
    assert sorted(texts(env, a)) == ["post 0", "post 1", "post 2"]


def test_a_bad_media_file_fails_only_its_post(env: BridgeEnv) -> None:
    a = env.link("coop-media")
    broken = env.photo("3_50", alt="gone")
    broken["url"] = env.x.media_url("does-not-exist.jpg")
    env.publish(env.tweet(a, "broken photo", media_keys=["3_50"], post_id="1300000000000000001"), media=[broken])
    env.publish(env.tweet(a, "after it", post_id="1300000000000000002"))
    result = cycle(env, "coop-media")
    assert result.failed == 1 and result.delivered == 1
    assert texts(env, a) == ["after it"]
    with env.ledger() as ledger:
        reason = ledger.posts("coop-media", ["failed"])[0].last_error
    assert "does-not-exist.jpg" in reason or "404" in reason


def test_revoked_token_puts_only_that_org_in_needs_relink(env: BridgeEnv) -> None:
    a = env.link("coop-revoked")
    b = env.link("coop-fine")
    env.publish(env.tweet(a, "from a"))
    env.publish(env.tweet(b, "from b"))
    # revoke a's token at the instance
    import httpx

    httpx.post(f"{env.mastodon.base_url}/oauth/revoke", data={"token": a.token}).raise_for_status()
    ra = cycle(env, "coop-revoked")
    rb = cycle(env, "coop-fine")
    assert rb.delivered == 1 and texts(env, b) == ["from b"]
    assert ra.delivered == 0
    with env.ledger() as ledger:
        assert ledger.get_org("coop-revoked").state == "needs_relink"
        assert ledger.get_org("coop-fine").state == "active"
        # nothing lost: the post stays open (with its idempotency key) until the organisation is relinked
        assert [p.state for p in ledger.posts("coop-revoked")] in (["pending"], ["posting"])
    assert a.token not in (ra.error or "")


def test_transient_faults_everything_delivered_in_order_without_duplicates(env: BridgeEnv) -> None:
    a = env.link("coop-faults")
    for n in range(8):
        env.publish(env.tweet(a, f"ordered {n}", post_id=f"14000000000000000{n:02d}"))
    # X: the first poll fails with a 503, then the answer is malformed
    env.x.inject("/2/users/", "503", count=1)
    env.x.inject("/2/users/", "malformed", count=1)
    # Mastodon: 5xx, a malformed body after the status was created, a slow answer, a rate limit
    env.mastodon.add_fault({"match": {"methods": ["POST"], "path": "/api/v1/statuses"},
                            "effect": {"type": "status", "status": 503}, "count": 2})
    drain(env, "coop-faults")  # the X faults only cost cycles
    env.mastodon.add_fault({"match": {"methods": ["POST"], "path": "/api/v1/statuses"},
                            "effect": {"type": "malformed"}, "count": 1})
    for n in range(8, 12):
        env.publish(env.tweet(a, f"ordered {n}", post_id=f"14000000000000000{n:02d}"))
    env.mastodon.add_fault({"match": {"methods": ["POST"], "path": "/api/v1/statuses"},
                            "effect": {"type": "status", "status": 502}, "count": 5})
    drain(env, "coop-faults")
    env.mastodon.add_fault({"match": {"methods": ["POST"], "path": "/api/v1/statuses"},
                            "effect": {"type": "ratelimit"}, "count": 1})
    env.publish(env.tweet(a, "ordered 12", post_id="1400000000000000012"))
    r = cycle(env, "coop-faults")
    assert r.deferred_until is not None  # the 429 deferred the organisation
    with env.ledger() as ledger:
        org = ledger.get_org("coop-faults")
        assert org.post_deferred_until is not None and org.deferrals >= 1
    drain(env, "coop-faults")
    got = texts(env, a)
    assert got == [f"ordered {n}" for n in range(13)], got


def test_x_rate_limit_defers_polling_until_reset(env: BridgeEnv) -> None:
    env.link("coop-xlimit")
    reset = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(minutes=7)
    env.x.inject("/2/users/", "429", count=1, reset_at=reset)
    r = cycle(env, "coop-xlimit")
    assert r.deferred_until == reset
    env.x.reset_counts()
    r = cycle(env, "coop-xlimit")  # still deferred: no request at all
    assert env.x.count("/2/") == 0 and r.x_requests == 0


def test_thread_child_of_a_failed_parent_is_posted_standalone_with_a_link(env: BridgeEnv) -> None:
    a = env.link("coop-orphan")
    parent = env.publish(env.tweet(a, "parent", post_id="1500000000000000001"))
    env.publish(env.tweet(a, "@coop_orphan_x child", post_id="1500000000000000002", in_reply_to=parent["id"],
                          replied_user_id=a.x_user_id, mentions=[("coop_orphan_x", a.x_user_id)]))
    env.mastodon.add_fault({"match": {"methods": ["POST"], "path": "/api/v1/statuses"},
                            "effect": {"type": "status", "status": 422, "body": {"error": "Validation failed"}}, "count": 1})
    cycle(env, "coop-orphan")
    toots = env.toots(a)
    assert len(toots) == 1
    assert toots[0]["in_reply_to_id"] is None
    assert f"https://x.com/{a.x_username}/status/{parent['id']}" in html_to_text(toots[0]["content"])


def test_posting_row_over_an_hour_old_is_reconciled_not_reposted(env: BridgeEnv) -> None:
    """A crash after the status POST but before the ledger commit, found again after the key expired."""
    a = env.link("coop-reconcile")
    env.publish(env.tweet(a, "posted before the crash", post_id="1600000000000000001"))
    env.publish(env.tweet(a, "never posted", post_id="1600000000000000002"))
    with env.ledger() as ledger:
        pipeline = env.pipeline(ledger)
        pipeline._poll(ledger.get_org("coop-reconcile"), __import__("bridge.pipeline").pipeline.CycleResult("coop-reconcile"), datetime.now(timezone.utc))
        # What the crashed run did: marked the row posting and created the status on the server.
        ledger.mark_posting("coop-reconcile", "1600000000000000001", "k", datetime.now(timezone.utc))
    from mastodon import Mastodon

    Mastodon(access_token=a.token, api_base_url=env.mastodon.base_url).status_post("posted before the crash")
    later = datetime.now(timezone.utc) + timedelta(hours=2)
    with env.ledger() as ledger:
        result = env.pipeline(ledger, clock=lambda: later).cycle("coop-reconcile", poll=False)
        assert result.delivered == 2
        assert len(ledger.deliveries("coop-reconcile", "1600000000000000001")) == 1
    assert texts(env, a) == ["posted before the crash", "never posted"]


def test_dry_run_posts_and_records_nothing(env: BridgeEnv) -> None:
    from click.testing import CliRunner

    from bridge.cli import main

    a = env.link("coop-dry")
    env.publish(env.tweet(a, "would be posted"))
    r = CliRunner().invoke(main, ["--config", str(env.config_path), "poll", "coop-dry", "--dry-run"])
    assert r.exit_code == 0, r.output
    assert "would be posted" in r.output
    assert texts(env, a) == []
    with env.ledger() as ledger:
        assert ledger.posts("coop-dry") == [] and ledger.get_cursor("coop-dry") == "1"


def test_retry_command(env: BridgeEnv) -> None:
    from click.testing import CliRunner

    from bridge.cli import main

    a = env.link("coop-retry")
    env.publish(env.tweet(a, "refused once", post_id="1700000000000000001"))
    env.mastodon.add_fault({"match": {"methods": ["POST"], "path": "/api/v1/statuses"},
                            "effect": {"type": "status", "status": 422}, "count": 1})
    cycle(env, "coop-retry")
    runner = CliRunner()
    r = runner.invoke(main, ["--config", str(env.config_path), "retry", "coop-retry"])
    assert r.exit_code == 2 and "exactly one of" in r.output
    r = runner.invoke(main, ["--config", str(env.config_path), "retry", "coop-retry", "--all-failed"])
    assert r.exit_code == 0 and "1 post(s)" in r.output
    r = runner.invoke(main, ["--config", str(env.config_path), "poll", "coop-retry"])
    assert r.exit_code == 0, r.output
    assert texts(env, a) == ["refused once"]
    assert re.search(r"delivered 1", r.output)


def test_posts_survive_in_the_ledger_file(env: BridgeEnv) -> None:
    env.link("coop-file")
    with Ledger.open(env.config.database) as ledger:
        assert ledger.get_org("coop-file").token
    assert (env.config.database.stat().st_mode & 0o777) == 0o600


def test_a_422_naming_a_limit_refreshes_the_cached_limits_once(env: BridgeEnv) -> None:
    a = env.link("coop-limits")
    with env.ledger() as ledger:
        org = ledger.get_org("coop-limits")
        stale = dict(org.limits, max_characters=5000)  # cached before the instance lowered its limit
        ledger.update_org("coop-limits", datetime.now(timezone.utc), limits=stale)
    long_text = " ".join(f"word{i}" for i in range(150))  # ~1000 characters: over the real 500
    env.publish(env.tweet(a, long_text[:270] + "…", note_tweet=long_text))
    result = cycle(env, "coop-limits")
    assert result.failed == 0 and result.delivered == 1, result
    got = texts(env, a)
    assert len(got) >= 2 and " ".join(got).split() == long_text.split()
    with env.ledger() as ledger:
        assert ledger.get_org("coop-limits").limits["max_characters"] == 500


def test_poll_cycles_leave_backfill_rows_to_the_backfill(env: BridgeEnv) -> None:
    from bridge.ledger import FetchedPost
    from bridge.sources.x_v2 import normalise_page

    a = env.link("coop-split")
    history = env.tweet(a, "an old post being backfilled", post_id="1000000000000000500")
    post = normalise_page({"data": [history], "includes": {"users": [{"id": a.x_user_id, "username": a.x_username, "name": "x"}]}})[0]
    from bridge.model import post_to_dict

    with env.ledger() as ledger:
        ledger.record_fetched("coop-split", [FetchedPost(post.id, post.created_at, post_to_dict(post))], cursor=None,
                              now=datetime.now(timezone.utc), origin="backfill")
    env.publish(env.tweet(a, "live post"))
    result = cycle(env, "coop-split")
    assert result.delivered == 1 and texts(env, a) == ["live post"]
    with env.ledger() as ledger:
        assert [p.post_id for p in ledger.open_posts("coop-split")] == ["1000000000000000500"]
        assert env.pipeline(ledger).deliver("coop-split").delivered == 1  # what `bridge backfill` calls
    assert texts(env, a) == ["live post", "an old post being backfilled"]


def test_one_worker_serves_many_organisations_on_one_instance_session(env: BridgeEnv) -> None:
    """A pipeline keeps one session per instance across organisations (keep-alive): each
    toot still goes out under its own organisation's token, counted for its own cycle."""
    orgs = [env.link(f"coop-shared-{n}") for n in range(3)]
    for n, org in enumerate(orgs):
        env.publish(env.tweet(org, f"Only from coop {n}"))
    with env.ledger() as ledger, env.pipeline(ledger) as pipeline:
        results = [pipeline.cycle(org.name) for org in orgs]
        assert len(pipeline._instances) == 1
    assert [(r.delivered, r.mastodon_requests) for r in results] == [(1, 1)] * 3
    assert [texts(env, org) for org in orgs] == [[f"Only from coop {n}"] for n in range(3)]


# ---------------------------------------------------------------------------- no flood, and no post that stops an org
# (issue 12, items 2 and 3)


def bridge_cli(env: BridgeEnv, *args: str):
    from click.testing import CliRunner

    from bridge.cli import main

    return CliRunner().invoke(main, ["--config", str(env.config_path), "--log-format", "json", *args])


def timeline_body(org: LinkedOrg, tweets: list[dict], *, newest: str, oldest: str) -> str:
    """A timeline page as X shapes it, around posts no builder would make."""
    users = [{"id": org.x_user_id, "username": org.x_username, "name": org.x_username}]
    meta = {"result_count": len(tweets), "newest_id": newest, "oldest_id": oldest}
    return json.dumps({"data": tweets, "includes": {"users": users}, "meta": meta}, ensure_ascii=False)


def test_an_org_without_a_cursor_is_never_flooded_its_first_poll_only_sets_the_cursor(env: BridgeEnv) -> None:
    a = env.link("coop-nocursor", cursor=None)  # what a link cut short by X used to leave behind
    old = [env.publish(env.tweet(a, f"old post {n}")) for n in range(3)]
    dry = bridge_cli(env, "poll", "coop-nocursor", "--dry-run", "--json")
    assert dry.exit_code == 0 and json.loads(dry.output) == [], dry.output  # the dry run tells the same
    first = cycle(env, "coop-nocursor")
    assert first.error is None and first.fetched == 0 and first.delivered == 0
    assert texts(env, a) == []
    with env.ledger() as ledger:
        assert ledger.get_cursor("coop-nocursor") == old[-1]["id"]
        assert ledger.posts("coop-nocursor") == []
    env.publish(env.tweet(a, "new after the cursor"))
    assert cycle(env, "coop-nocursor").delivered == 1
    assert texts(env, a) == ["new after the cursor"]


def snowflake_at(when: datetime) -> str:
    """The first X post id of the moment ``when`` (X docs, "Twitter IDs": ids carry their creation time)."""
    return str((int(when.timestamp() * 1000) - 1288834974657) << 22)


def test_an_org_without_a_cursor_and_no_posts_yet_starts_at_the_first_poll(env: BridgeEnv) -> None:
    a = env.link("coop-empty", cursor=None)
    before = datetime.now(timezone.utc)
    assert cycle(env, "coop-empty").delivered == 0
    with env.ledger() as ledger:
        cursor = ledger.get_cursor("coop-empty")
    # the cursor is the moment of that poll: what X posts later is new, what it holds from before is not
    assert cursor is not None and int(snowflake_at(before)) <= int(cursor)
    env.publish(env.tweet(a, "made after the first poll",
                          post_id=snowflake_at(datetime.now(timezone.utc) + timedelta(minutes=1))))
    assert cycle(env, "coop-empty").delivered == 1
    assert texts(env, a) == ["made after the first poll"]


HOSTILE_POSTS = {
    # X never sends these; a broken proxy or a hostile stand-in might. Neither may stop the organisation.
    "huge_id_without_created_at": {"id": "9" * 40, "text": "a post from nowhere", "edit_history_tweet_ids": ["9" * 40]},
    "superscript_digit_id": {"id": "²", "text": "a post with a strange id", "created_at": "2026-11-01T09:30:00.000Z",
                             "edit_history_tweet_ids": ["²"]},
}


@pytest.mark.parametrize("kind", sorted(HOSTILE_POSTS))
def test_a_post_x_should_never_send_fails_alone_and_bridge_poll_goes_on(env: BridgeEnv, kind: str) -> None:
    a = env.link("coop-a")
    b = env.link("coop-b")
    older, newer = env.tweet(a, "before the strange post"), env.tweet(a, "after the strange post")
    bad = dict(HOSTILE_POSTS[kind], author_id=a.x_user_id)
    env.x.inject(f"/2/users/{a.x_user_id}/tweets", "body",
                 body=timeline_body(a, [newer, bad, older], newest=newer["id"], oldest=older["id"]))
    env.publish(env.tweet(b, "coop b goes on"))

    result = bridge_cli(env, "poll")
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output and result.exception is None
    assert "coop-a: fetched 3, delivered 2, skipped 0, failed 1" in result.output
    assert texts(env, a) == ["before the strange post", "after the strange post"]
    assert texts(env, b) == ["coop b goes on"]
    with env.ledger() as ledger:
        [failed] = ledger.posts("coop-a", ["failed"])
        assert failed.post_id == bad["id"] and "not an X post id" in (failed.last_error or "")
        assert ledger.get_cursor("coop-a") == newer["id"]  # moved past what was read
    # the next poll reads on from the cursor: the strange page is not read (and failed) again
    env.publish(env.tweet(a, "the next day"))
    again = bridge_cli(env, "poll", "coop-a")
    assert again.exit_code == 0 and "coop-a: fetched 1, delivered 1" in again.output, again.output
    assert texts(env, a)[-1] == "the next day"


def nested_too_deeply(org: LinkedOrg, post: dict, depth: int = 100_000) -> str:
    """A page whose post carries a value nested ``depth`` lists deep: no JSON parser recurses that far."""
    body = timeline_body(org, [dict(post, withheld="@@")], newest=post["id"], oldest=post["id"])
    return body.replace('"@@"', "[" * depth + "]" * depth)


def test_a_page_nested_too_deeply_is_a_transient_error_and_bridge_poll_goes_on(env: BridgeEnv) -> None:
    a = env.link("coop-a")
    b = env.link("coop-b")
    post = env.publish(env.tweet(a, "read once the page is sane again"))
    env.x.inject(f"/2/users/{a.x_user_id}/tweets", "body", body=nested_too_deeply(a, post))
    env.publish(env.tweet(b, "coop b goes on"))

    result = bridge_cli(env, "poll")
    assert result.exit_code == 1 and result.exception is not None and isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert re.search(r"coop-a: fetched 0, .*X: .*nested too deeply", result.output), result.output
    assert texts(env, b) == ["coop b goes on"]
    with env.ledger() as ledger:
        assert ledger.get_cursor("coop-a") == "1"  # nothing was read, so nothing moved
    # X answers normally again: nothing was lost
    assert bridge_cli(env, "poll", "coop-a").exit_code == 0
    assert texts(env, a) == ["read once the page is sane again"]


def test_a_post_nested_almost_too_deeply_fails_alone(env: BridgeEnv) -> None:
    """Deep enough that storing it raw could overflow the stack: it is failed with its reason, not a crash."""
    a = env.link("coop-a")
    good = env.tweet(a, "the sane post")
    bad = env.tweet(a, "entities nested deep")
    page = timeline_body(a, [dict(bad, entities={"urls": "@@"}), good], newest=bad["id"], oldest=good["id"])
    env.x.inject(f"/2/users/{a.x_user_id}/tweets", "body", body=page.replace('"@@"', "[" * 900 + "]" * 900))
    result = cycle(env, "coop-a")
    assert result.error is None and (result.delivered, result.failed) == (1, 1)
    assert texts(env, a) == ["the sane post"]
    with env.ledger() as ledger:
        [failed] = ledger.posts("coop-a", ["failed"])
        assert failed.post_id == bad["id"] and "entities.urls" in (failed.last_error or "")
        assert ledger.get_cursor("coop-a") == bad["id"]


def test_the_daemon_polls_on_past_a_malformed_page_and_posts_x_should_never_send(
    tmp_path: Path, x_server: FakeXServer, mastodon: MastodonServer, daemons: Any  # noqa: F811
) -> None:
    from tests.test_daemon import link_org, post_tweets, toot_texts, wait_until, write_config

    config = write_config(tmp_path / "config.yaml", x_server)
    token_a = link_org(tmp_path / "ledger.db", mastodon, "coop-a")  # @coop, X id 1000
    x_server.add_user("1001", "coop_b")
    token_b = link_org(tmp_path / "ledger.db", mastodon, "coop-b", "1001", "coop_b")
    post_tweets(x_server, ["coop b goes on"], author_id="1001", base=1_810_000_000_000_000_000)
    a = LinkedOrg("coop-a", "1000", "coop", token_a, "", "")
    older, newer = (make_tweet(i, "1000", text, created_at=datetime.now(timezone.utc), author_username="coop")
                    for i, text in (("1800000000000000001", "before the strange posts"),
                                    ("1800000000000000004", "after the strange posts")))
    strange = [dict(HOSTILE_POSTS[k], author_id="1000") for k in sorted(HOSTILE_POSTS)]
    # coop-a's first poll gets a page nested too deeply to parse, its second the strange posts
    x_server.inject("/2/users/1000/tweets", "body", body=nested_too_deeply(a, newer))
    x_server.inject("/2/users/1000/tweets", "body",
                    body=timeline_body(a, [newer, *strange, older], newest=newer["id"], oldest=older["id"]))

    d = daemons(config)
    malformed = d.wait_event("cycle_finished", org="coop-a", polled=True)
    assert "nested too deeply" in (malformed["error"] or "")
    wait_until(lambda: len(toot_texts(mastodon, token_b)) == 1, "coop-b's toot")
    d.wait_event("cycle_finished", org="coop-a", polled=True, fetched=4, failed=2, timeout=30)
    wait_until(lambda: len(toot_texts(mastodon, token_a)) == 2, "coop-a's two readable posts")
    d.send(signal.SIGTERM)
    assert d.wait_exit() == 0
    assert d.events("cycle_crashed") == [] and d.events("poll_crashed") == []
    assert [html_to_text(t) for t in reversed(toot_texts(mastodon, token_a))] == [
        "before the strange posts", "after the strange posts"]
    with Ledger.open(tmp_path / "ledger.db") as ledger:
        failed = ledger.posts("coop-a", ["failed"])
        assert sorted(p.post_id for p in failed) == sorted(p["id"] for p in strange)
        assert all("not an X post id" in (p.last_error or "") for p in failed)
        assert ledger.get_cursor("coop-a") == newer["id"]
