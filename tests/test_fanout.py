"""Fan-out on real servers: one organisation, two Mastodon accounts on two mastodon-mock instances as its two
targets (issue 16's promise, with Mastodon standing in for the second network): every post on both, exactly
once each, and one instance's trouble never holds up the other. Crash safety with two targets is in
tests/test_crash.py."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from bridge.targets.mastodon import html_to_text
from tests.bridge_env import BridgeEnv, LinkedOrg
from tests.fakes.x_api import FakeXServer
from tests.mastodon_server import MastodonServer
from tests.test_crash import publish_mix


@pytest.fixture
def env(tmp_path: Path, x_server: FakeXServer, mastodon: MastodonServer) -> Iterator[BridgeEnv]:
    yield BridgeEnv(tmp_path, x_server, mastodon)


def cycle(env: BridgeEnv, name: str):  # noqa: ANN201 - a CycleResult
    with env.ledger() as ledger:
        return env.pipeline(ledger).cycle(name)


def texts(server: MastodonServer, account: LinkedOrg) -> list[str]:
    return [html_to_text(t["content"]) for t in reversed(server.statuses(account.token, account.account_id))]


def make_due(env: BridgeEnv, name: str) -> None:
    with env.ledger() as ledger:
        ledger.db.conn.execute("UPDATE post_targets SET next_attempt_at = NULL WHERE org = ?", (name,))


def test_every_post_reaches_both_instances_once_and_one_failing_instance_never_holds_up_the_other(
    env: BridgeEnv, mastodon_other: MastodonServer
) -> None:
    org = env.link("fan-out")
    second = env.add_target(org, mastodon_other)
    expected = publish_mix(env, org, "fan")
    mastodon_other.add_fault({"match": {"methods": ["POST"], "path_regex": "^/api/v[12]/(statuses|media)"},
                              "effect": {"type": "status", "status": 503}, "count": 1000})
    result = cycle(env, org.name)
    first = texts(env.mastodon, org)
    assert first[:2] == expected[:2] and " ".join(first[2:]).split() == expected[2].split()  # all of it, at once
    assert texts(mastodon_other, second) == []
    with env.ledger() as ledger:
        assert ledger.counts(org.name)["delivered"] == 3
        assert ledger.counts(org.name, target="second")["delivered"] == 0
        assert ledger.get_org(org.name).state == "active"
    assert result.deferred_until is not None and "second:" in (result.error or "")

    mastodon_other.clear_faults()
    make_due(env, org.name)
    cycle(env, org.name)
    for server, account in ((env.mastodon, org), (mastodon_other, second)):
        toots = texts(server, account)
        assert max(Counter(toots).values()) == 1, server.base_url
        assert toots[:2] == expected[:2] and " ".join(toots[2:]).split() == expected[2].split(), server.base_url
    with env.ledger() as ledger:
        assert ledger.counts(org.name, target=None)["delivered"] == 6
        # Each target's copies are its own: the thread on the second instance replies to its own toots.
        thread = ledger.deliveries(org.name, ledger.posts(org.name, target="second")[-1].post_id, target="second")
    on_other = {t["id"]: t for t in mastodon_other.statuses(second.token, second.account_id)}
    assert len(thread) >= 3 and all(d.copy_id in on_other for d in thread)
    assert [on_other[d.copy_id]["in_reply_to_id"] for d in thread[1:]] == [d.copy_id for d in thread[:-1]]


def test_a_revoked_token_on_one_instance_needs_a_new_link_there_only(env: BridgeEnv,
                                                                      mastodon_other: MastodonServer) -> None:
    org = env.link("fan-revoked")
    env.add_target(org, mastodon_other)
    with env.ledger() as ledger:  # the account's owner revoked the bridge's token on that instance
        ledger.update_target(org.name, datetime.now(timezone.utc), target="second", credentials="revoked-token")
    env.publish(env.tweet(org, "still on the first instance"))
    result = cycle(env, org.name)
    assert texts(env.mastodon, org) == ["still on the first instance"]
    with env.ledger() as ledger:
        target = ledger.get_target(org.name, "second")
        assert target.state == "needs_relink" and target.state_reason
        assert ledger.get_org(org.name).state == "active"
    assert "second:" in (result.error or "")
