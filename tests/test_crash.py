"""Crash safety: the real `bridge poll` in a subprocess, killed with SIGKILL at injected points.

After each kill the poll is run again until everything is delivered; then exactly
one toot per post must exist on the Mastodon server, none missing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.targets.mastodon import html_to_text
from tests.bridge_env import BridgeEnv, LinkedOrg
from tests.fakes.x_api import FakeXServer
from tests.mastodon_server import MastodonServer

BRIDGE = [sys.executable, "-m", "bridge.cli"]


@pytest.fixture
def env(tmp_path: Path, x_server: FakeXServer, mastodon: MastodonServer) -> Iterator[BridgeEnv]:
    yield BridgeEnv(tmp_path, x_server, mastodon)


def poll(env: BridgeEnv, name: str, crash_at: str | None = None) -> subprocess.CompletedProcess[str]:
    process_env = {k: v for k, v in os.environ.items() if k != "BRIDGE_TEST_CRASH_AT"}
    if crash_at:
        process_env["BRIDGE_TEST_CRASH_AT"] = crash_at
    return subprocess.run(
        [*BRIDGE, "--config", str(env.config_path), "--log-format", "json", "poll", name],
        capture_output=True, text=True, env=process_env, timeout=60, check=False,
    )


def publish_mix(env: BridgeEnv, org: LinkedOrg, prefix: str) -> list[str]:
    """A text post, a photo post and a long post that becomes a 3+ part thread."""
    env.publish(env.tweet(org, f"{prefix} plain text"))
    env.publish(env.tweet(org, f"{prefix} with photo", media_keys=[f"3_{prefix}"]),
                media=[env.photo(f"3_{prefix}", alt="alt text")])
    long_text = " ".join(f"{prefix} sentence {i} about the cooperative's general assembly." for i in range(35))
    env.publish(env.tweet(org, long_text[:270] + "…", note_tweet=long_text))
    return [f"{prefix} plain text", f"{prefix} with photo", long_text]


def assert_exactly_once(env: BridgeEnv, org: LinkedOrg, expected: list[str]) -> None:
    toots = env.toots(org)
    contents = Counter(t["content"] for t in toots)
    assert max(contents.values()) == 1, f"duplicate toots: {contents.most_common(3)}"
    text = [html_to_text(t["content"]) for t in toots]
    assert text[0] == expected[0] and text[1] == expected[1]
    assert " ".join(text[2:]).split() == expected[2].split()  # the thread, complete, nothing twice
    assert len([t for t in toots if t["media_attachments"]]) == 1


@pytest.mark.parametrize("crash_at", ["after_fetch", "before_cursor", "after_record", "after_media_upload", "after_status_post", "mid_thread"])
def test_sigkill_at_each_point_then_restart_delivers_exactly_once(env: BridgeEnv, crash_at: str) -> None:
    org = env.link(f"crash-{crash_at.replace('_', '-')}")
    expected = publish_mix(env, org, crash_at)
    killed = poll(env, org.name, crash_at)
    assert killed.returncode == -signal.SIGKILL, (killed.returncode, killed.stderr[-2000:])
    for _ in range(3):
        done = poll(env, org.name)
        assert done.returncode == 0, done.stderr[-2000:]
        with env.ledger() as ledger:
            if not ledger.open_posts(org.name):
                break
    with env.ledger() as ledger:
        assert ledger.counts(org.name)["delivered"] == 3
    assert_exactly_once(env, org, expected)


def test_sigkill_between_recording_the_posts_and_moving_the_cursor_keeps_neither(env: BridgeEnv) -> None:
    """The posts are written, the cursor not yet moved, and the process dies: the ledger must hold the
    cursor where it was and none of the posts, so the next poll reads them again."""
    org = env.link("crash-before-cursor-state")
    with env.ledger() as ledger:
        cursor_at_link = ledger.get_cursor(org.name)
    expected = publish_mix(env, org, "state")
    killed = poll(env, org.name, "before_cursor")
    assert killed.returncode == -signal.SIGKILL, (killed.returncode, killed.stderr[-2000:])
    with env.ledger() as ledger:
        assert ledger.get_cursor(org.name) == cursor_at_link
        assert sum(ledger.counts(org.name).values()) == 0
    assert env.toots(org) == []
    done = poll(env, org.name)
    assert done.returncode == 0, done.stderr[-2000:]
    with env.ledger() as ledger:
        assert ledger.counts(org.name)["delivered"] == 3
        assert ledger.get_cursor(org.name) != cursor_at_link
    assert_exactly_once(env, org, expected)


def test_killed_repeatedly_at_every_point_still_exactly_once(env: BridgeEnv) -> None:
    """Crash at every point in turn (several times mid-thread), restarting each time."""
    org = env.link("crash-everywhere")
    expected = publish_mix(env, org, "everywhere")
    for point in ["after_fetch", "before_cursor", "after_record", "after_media_upload", "after_status_post", "mid_thread", "mid_thread",
                  "after_status_post"]:
        result = poll(env, org.name, point)
        assert result.returncode in (0, -signal.SIGKILL), result.stderr[-2000:]
    for _ in range(3):
        assert poll(env, org.name).returncode == 0
    assert_exactly_once(env, org, expected)


@pytest.fixture
def env2(tmp_path: Path, x_server: FakeXServer, mastodon: MastodonServer,
         mastodon_other: MastodonServer) -> Iterator[tuple[BridgeEnv, MastodonServer]]:
    yield BridgeEnv(tmp_path, x_server, mastodon), mastodon_other


def assert_exactly_once_on(server: MastodonServer, account: LinkedOrg, expected: list[str]) -> None:
    toots = list(reversed(server.statuses(account.token, account.account_id)))
    contents = Counter(t["content"] for t in toots)
    assert max(contents.values()) == 1, f"duplicate toots on {server.base_url}: {contents.most_common(3)}"
    text = [html_to_text(t["content"]) for t in toots]
    assert text[0] == expected[0] and text[1] == expected[1]
    assert " ".join(text[2:]).split() == expected[2].split()
    assert len([t for t in toots if t["media_attachments"]]) == 1


# "backup" is delivered before "mastodon" (targets go by name), "second" after it: a kill at a delivery
# point lands on the other target in each case, and the restart must finish both.
@pytest.mark.parametrize(("crash_at", "second"), [
    *[(point, "backup") for point in ["after_fetch", "before_cursor", "after_record", "after_media_upload",
                                      "after_status_post", "mid_thread"]],
    *[(point, "second") for point in ["after_media_upload", "after_status_post", "mid_thread"]],
])
def test_sigkill_at_each_point_with_two_targets_delivers_exactly_once_on_each(
    env2: tuple[BridgeEnv, MastodonServer], crash_at: str, second: str
) -> None:
    env, other = env2
    org = env.link(f"crash2-{second}-{crash_at.replace('_', '-')}")
    other_account = env.add_target(org, other, name=second)
    expected = publish_mix(env, org, f"{second}-{crash_at}")
    killed = poll(env, org.name, crash_at)
    assert killed.returncode == -signal.SIGKILL, (killed.returncode, killed.stderr[-2000:])
    for _ in range(3):
        done = poll(env, org.name)
        assert done.returncode == 0, done.stderr[-2000:]
        with env.ledger() as ledger:
            if not ledger.has_work(org.name, None):
                break
    with env.ledger() as ledger:
        assert ledger.counts(org.name)["delivered"] == 3
        assert ledger.counts(org.name, target=second)["delivered"] == 3
    assert_exactly_once(env, org, expected)
    assert_exactly_once_on(other, other_account, expected)
