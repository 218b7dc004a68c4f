"""The poller reads from the cursor on: a post at or before it is never recorded or posted again.

Written to kill the mutants of ``Pipeline._poll`` that survived the pipeline tests (issue 12): fetching
without the cursor went unnoticed, because no test had a post older than the cursor on X.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.targets.mastodon import html_to_text
from tests.bridge_env import BridgeEnv
from tests.fakes.x_api import FakeXServer
from tests.mastodon_server import MastodonServer

OLD, NEW = "1500000000000000001", "1500000000000000002"


@pytest.fixture
def env(tmp_path: Path, x_server: FakeXServer, mastodon: MastodonServer) -> Iterator[BridgeEnv]:
    yield BridgeEnv(tmp_path, x_server, mastodon)


def test_a_poll_fetches_only_what_is_newer_than_the_cursor(env: BridgeEnv) -> None:
    org = env.link("cursor-poll", cursor=OLD)  # as after linking: the newest post then was OLD
    env.publish(env.tweet(org, "from before the link", post_id=OLD))
    env.publish(env.tweet(org, "after the link", post_id=NEW))
    with env.ledger() as ledger:
        result = env.pipeline(ledger).cycle(org.name)
    assert result.error is None and result.fetched == 1
    with env.ledger() as ledger:
        assert ledger.get_post(org.name, OLD) is None
        assert ledger.get_cursor(org.name) == NEW
    assert [html_to_text(t["content"]) for t in env.toots(org)] == ["after the link"]
