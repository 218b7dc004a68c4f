"""The pipeline's promises against the in-memory source and target (tests/fakes/memory.py).

No X or Mastodon shape here: these are the generic guarantees any source and
target get from the pipeline. The real-HTTP tests (test_pipeline.py,
test_crash.py) keep checking the real networks.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from bridge import registry
from bridge.config import Config, XConfig
from bridge.ledger import Ledger, OrgRecord, SourceAccount, TargetAccount
from bridge.pipeline import Pipeline, idempotency_key
from bridge.sources.base import Unreadable
from bridge.targets.base import Copy
from tests.fakes.memory import Item, MemorySource, MemoryTarget, memory_post

ACCOUNT = "acct-1"
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)


class Bench:
    def __init__(self, tmp: Path) -> None:
        # X's and Mastodon's addresses point nowhere: anything reaching a real network fails at once.
        self.config = Config(path=None, database=tmp / "ledger.db", x=XConfig(api_base_url="http://127.0.0.1:9"))
        self.ledger = Ledger.open(self.config.database)
        self.ledger.save_org(
            OrgRecord("coop", ACCOUNT, "coop", "memory://target", "1", "coop", "memory://target/@coop", token="t"), NOW
        )
        self.ledger.set_cursor("coop", "0", NOW)  # linked before the first post
        self.source = MemorySource()
        self.target = MemoryTarget()
        self.now = NOW

    def pipeline(self) -> Pipeline:
        return Pipeline(self.config, self.ledger, source=self.source, target_factory=lambda account: self.target,
                        clock=lambda: self.now, retry_wait_max=0.01)

    def post(self, post_id: str, text: str, **kw: str) -> None:
        self.source.add(memory_post(ACCOUNT, post_id, text, **kw))

    def cycle(self) -> object:
        with self.pipeline() as p:
            return p.cycle("coop")

    def state(self, post_id: str) -> str:
        row = self.ledger.get_post("coop", post_id)
        assert row is not None
        return row.state


@pytest.fixture
def bench(tmp_path: Path) -> Iterator[Bench]:
    b = Bench(tmp_path)
    yield b
    b.ledger.close()


def test_each_post_is_published_exactly_once_across_cycles(bench: Bench) -> None:
    for n in ("1", "2", "3"):
        bench.post(n, f"post {n}")
    bench.cycle()
    bench.cycle()
    assert bench.target.texts() == ["post 1", "post 2", "post 3"]
    assert [bench.state(n) for n in ("1", "2", "3")] == ["delivered"] * 3


def test_a_lost_answer_is_retried_with_the_same_key_and_makes_one_copy(bench: Bench) -> None:
    bench.post("1", "said once")
    bench.target.lose_answer.add("said once")
    result = bench.cycle()
    assert bench.target.texts() == ["said once"]
    assert result.delivered == 1  # type: ignore[attr-defined]
    (delivery,) = bench.ledger.deliveries("coop", "1")
    assert delivery.status_id == bench.target.items[0].copy.id


def test_an_unclear_answer_is_looked_up_before_publishing_again_even_where_keys_are_ignored(bench: Bench) -> None:
    bench.target.honour_keys = False
    bench.post("1", "said once")
    bench.target.lose_answer.add("said once")
    bench.cycle()
    assert bench.target.texts() == ["said once"]
    (delivery,) = bench.ledger.deliveries("coop", "1")
    assert delivery.status_id == bench.target.items[0].copy.id


def test_posts_go_out_oldest_first_whatever_order_the_source_reads_them_in(bench: Bench) -> None:
    for n in ("30", "10", "20"):
        bench.post(n, f"post {n}")
    bench.cycle()
    assert bench.target.texts() == ["post 10", "post 20", "post 30"]


def test_a_refused_post_is_recorded_failed_and_never_blocks_the_next(bench: Bench) -> None:
    for n in ("1", "2", "3"):
        bench.post(n, f"post {n}")
    bench.target.refuse["post 2"] = "refused: this is not allowed here"
    result = bench.cycle()
    assert bench.target.texts() == ["post 1", "post 3"]
    assert [bench.state(n) for n in ("1", "2", "3")] == ["delivered", "failed", "delivered"]
    row = bench.ledger.get_post("coop", "2")
    assert row is not None and "not allowed here" in (row.last_error or "")
    assert (result.delivered, result.failed) == (2, 1)  # type: ignore[attr-defined]


def test_an_unreadable_post_is_recorded_failed_and_never_blocks_the_next(bench: Bench) -> None:
    bench.post("1", "post 1")
    bench.source.unreadable[ACCOUNT] = [Unreadable("2", {"raw_json": "{}"}, "unreadable memory post: no text")]
    bench.post("3", "post 3")
    bench.cycle()
    assert bench.target.texts() == ["post 1", "post 3"]
    row = bench.ledger.get_post("coop", "2")
    assert row is not None and row.state == "failed" and row.last_error == "unreadable memory post: no text"
    assert bench.ledger.get_cursor("coop") == "3"


def test_the_cursor_moves_with_the_recorded_posts_and_an_idle_cycle_costs_no_target_request(bench: Bench) -> None:
    bench.post("1", "post 1")
    bench.post("2", "post 2")
    bench.cycle()
    assert bench.ledger.get_cursor("coop") == "2"
    bench.post("3", "post 3")
    result = bench.cycle()
    assert result.fetched == 1 and bench.ledger.get_cursor("coop") == "3"  # type: ignore[attr-defined]
    requests = bench.target.request_count
    idle = bench.cycle()
    assert idle.fetched == 0 and bench.target.request_count == requests  # type: ignore[attr-defined]
    assert bench.target.texts() == ["post 1", "post 2", "post 3"]


def test_a_self_reply_is_published_as_a_reply_to_the_copy_of_its_parent(bench: Bench) -> None:
    bench.post("1", "thread start")
    bench.post("2", "thread end", in_reply_to_post_id="1", in_reply_to_user_id=ACCOUNT)
    bench.cycle()
    first, second = bench.target.items
    assert second.in_reply_to == first.copy.id


def test_a_post_left_posting_past_the_idempotency_window_is_found_not_published_again(bench: Bench) -> None:
    bench.post("1", "published before the crash")
    with bench.pipeline() as p:
        p.cycle("coop", deliver=False)  # recorded, not delivered
    # The process published, then died before recording the copy; the key has expired since.
    bench.ledger.mark_posting("coop", "1", idempotency_key("coop", "1", 0), NOW - timedelta(hours=2))
    bench.target.items.append(Item(Copy("900", "memory://target/900"), "published before the crash", key="expired"))
    bench.cycle()
    assert bench.target.texts() == ["published before the crash"]
    (delivery,) = bench.ledger.deliveries("coop", "1")
    assert delivery.status_id == "900" and bench.state("1") == "delivered"


def test_a_new_network_is_used_through_its_registration_alone(bench: Bench, monkeypatch: pytest.MonkeyPatch) -> None:
    """An organisation whose source and target are of a kind the registry knows needs nothing else:
    no injection, the pipeline picks the implementations by the kinds in the ledger."""
    monkeypatch.setitem(registry.SOURCES, "memory", lambda config: bench.source)
    monkeypatch.setitem(registry.TARGETS, "memory", lambda config, **account: bench.target)
    monkeypatch.setitem(registry.RENDERERS, "memory", lambda: registry.renderer("mastodon"))
    bench.ledger.add_source(SourceAccount("coop", "x", "memory", ACCOUNT, "coop"), NOW)
    bench.ledger.add_target(TargetAccount("coop", "mastodon", "memory", "memory://target", "1", "coop", "", "t"), NOW)
    bench.post("1", "from a registered network")
    with Pipeline(bench.config, bench.ledger, clock=lambda: bench.now, retry_wait_max=0.01) as p:
        result = p.cycle("coop")
    assert result.delivered == 1 and bench.target.texts() == ["from a registered network"]
