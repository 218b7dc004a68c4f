"""The ledger's delivery queue: which posts are open, in what order, and how they leave it.

Written to kill the mutants that survived the ledger tests (see the issue 12 note):
each test pins one rule the pipeline and `bridge retry` rely on.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest

from bridge.ledger import FetchedPost, Ledger, OrgRecord

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def ledger() -> Iterator[Ledger]:
    ledger = Ledger.memory()
    ledger.save_org(OrgRecord("coop", "100", "coop_x", "https://geno.social", "9", "coop", "https://geno.social/@coop"), NOW)
    yield ledger
    ledger.close()


def fetched(*ids: str) -> list[FetchedPost]:
    return [FetchedPost(i, NOW, {"id": i}) for i in ids]


def test_the_poll_and_backfill_queues_are_kept_apart(ledger: Ledger) -> None:
    ledger.record_fetched("coop", fetched("30", "40"), cursor="40", now=NOW)  # the poller's: origin "poll" by default
    ledger.record_fetched("coop", fetched("10", "20"), cursor=None, now=NOW, origin="backfill")
    assert [p.post_id for p in ledger.open_posts("coop", origin="poll")] == ["30", "40"]
    assert [p.post_id for p in ledger.open_posts("coop", origin="backfill")] == ["10", "20"]
    assert [p.post_id for p in ledger.open_posts("coop")] == ["10", "20", "30", "40"]


def test_a_skipped_post_leaves_the_queue_with_its_reason(ledger: Ledger) -> None:
    ledger.record_fetched("coop", fetched("10", "20"), cursor="20", now=NOW)
    ledger.finish("coop", "10", "skipped", NOW, "retweet of a post that is not bridged")
    row = ledger.get_post("coop", "10")
    assert row.state == "skipped" and row.last_error == "retweet of a post that is not bridged"
    assert [p.post_id for p in ledger.open_posts("coop")] == ["20"]
    with pytest.raises(ValueError, match="not a final state: posting"):
        ledger.finish("coop", "20", "posting", NOW)


def test_retrying_one_failed_post_reopens_only_that_post(ledger: Ledger) -> None:
    ledger.record_fetched("coop", fetched("10", "20"), cursor="20", now=NOW)
    for post_id in ("10", "20"):
        ledger.finish("coop", post_id, "failed", NOW, "422")
    assert ledger.reopen("coop", "20", NOW + timedelta(minutes=1)) == 1
    assert ledger.get_post("coop", "10").state == "failed"
    assert [p.post_id for p in ledger.open_posts("coop")] == ["20"]


def test_a_delivery_keeps_the_time_it_was_recorded(ledger: Ledger) -> None:
    ledger.record_fetched("coop", fetched("10"), cursor="10", now=NOW)
    ledger.record_delivery("coop", "10", 0, "status", "111", "https://geno.social/@coop/111", NOW + timedelta(seconds=5))
    assert [(d.part, d.created_at) for d in ledger.deliveries("coop", "10")] == [(0, NOW + timedelta(seconds=5))]
