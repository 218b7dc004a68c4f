"""The daemon's workers share the Bluesky DID documents they read (issue 18): with one cache per worker, each
of 16 workers read every organisation's document again, and past 2,000 organisations per worker an idle poll
cost two requests instead of one."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from bridge.config import load_config
from bridge.sources.bluesky import AccountCache, BlueskyAccount, BlueskySource, bluesky_source
from tests.bluesky_pds import BlueskyPds


def _account(n: int) -> BlueskyAccount:
    return BlueskyAccount(f"did:plc:{n:024d}", f"coop{n}.test", "http://127.0.0.1:9")


@pytest.mark.bluesky
def test_a_second_workers_idle_poll_is_one_request_as_the_first_worker_read_the_did_document(
    bluesky_pds: BlueskyPds, tmp_path: Path
) -> None:
    did, _jwt, _ = bluesky_pds.create_account("coop-shared.test")
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"database": str(tmp_path / "ledger.db"),
                                      "bluesky": {"plc_url": bluesky_pds.plc_url, "appview_url": bluesky_pds.url}}))
    first, second = bluesky_source(load_config(config)), bluesky_source(load_config(config))  # two workers' sources
    try:
        cursor, _ = first.start_cursor(did)  # linking reads the DID document
        idle = second.read_new(did, cursor)
        assert (idle.entries, idle.requests) == ([], 1)  # getLatestCommit alone
        # A source of its own (a one-off resolver) keeps its own documents, as before.
        with BlueskySource(plc_url=bluesky_pds.plc_url, appview_url=bluesky_pds.url, timeout=10) as alone:
            assert alone.read_new(did, cursor).requests == 2
    finally:
        first.close()
        second.close()


def test_the_did_document_cache_keeps_the_most_recently_used_and_forgets_the_expired() -> None:
    cache = AccountCache(limit=2)
    a, b, c = _account(1), _account(2), _account(3)
    cache.put("plc", a)
    cache.put("plc", b)
    assert cache.get("plc", a.did) == a  # a used last: b goes first
    cache.put("plc", c)
    assert (cache.get("plc", a.did), cache.get("plc", b.did), cache.get("plc", c.did)) == (a, None, c)
    assert cache.get("another-plc", a.did) is None  # one directory's answer is not another's
    expired = AccountCache(ttl=-1)
    expired.put("plc", a)
    assert expired.get("plc", a.did) is None
