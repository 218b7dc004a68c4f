"""An organisation with several sources (issues 14/15, contract 2): every source is polled from its own
cursor, one failing never stops the others. In-memory sources and target (tests/fakes/memory.py),
reached through the registry by the kinds in the ledger, as in production."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from bridge import registry
from bridge.config import Config, XConfig
from bridge.errors import SourceGone, TransientError
from bridge.ledger import Ledger, OrgRecord, SourceAccount
from bridge.pipeline import CycleResult, Pipeline
from tests.fakes.memory import MemorySource, MemoryTarget, memory_post

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)


class Bench:
    """Organisation "coop": source "x" (kind memory, account a-1) and source "feed" (kind memory2, account f-1)."""

    def __init__(self, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.config = Config(path=None, database=tmp / "ledger.db", x=XConfig(api_base_url="http://127.0.0.1:9"))
        self.ledger = Ledger.open(self.config.database)
        self.ledger.save_org(OrgRecord("coop", "a-1", "coop", "memory://target", "1", "coop", "u", token="t"), NOW)
        self.ledger.add_source(SourceAccount("coop", "x", "memory", "a-1", "coop"), NOW)
        self.ledger.set_cursor("coop", "0", NOW)
        self.ledger.add_source(SourceAccount("coop", "feed", "memory2", "f-1", "Coop news", cursor="0"), NOW)
        self.sources = {"x": MemorySource(), "feed": MemorySource(kind="memory2", name="memory2 feed")}
        monkeypatch.setitem(registry.SOURCES, "memory", lambda config: self.sources["x"])
        monkeypatch.setitem(registry.SOURCES, "memory2", lambda config: self.sources["feed"])
        self.target = MemoryTarget()

    def pipeline(self) -> Pipeline:
        return Pipeline(self.config, self.ledger, target_factory=lambda account: self.target,
                        clock=lambda: NOW, retry_wait_max=0.01)

    def post(self, source: str, post_id: str, text: str) -> None:
        account = "a-1" if source == "x" else "f-1"
        self.sources[source].add(memory_post(account, post_id, text))

    def cycle(self) -> CycleResult:
        with self.pipeline() as p:
            return p.cycle("coop")


@pytest.fixture
def bench(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Bench]:
    b = Bench(tmp_path, monkeypatch)
    yield b
    b.ledger.close()


def test_every_source_is_polled_from_its_own_cursor_and_each_post_goes_out_once(bench: Bench) -> None:
    bench.post("x", "1", "from x")
    bench.post("feed", "2", "from the feed")
    result = bench.cycle()
    assert sorted(bench.target.texts()) == ["from the feed", "from x"]
    assert (result.fetched, result.delivered, result.x_requests) == (2, 2, 2)  # summed over the sources
    assert bench.ledger.get_cursor("coop", source="x") == "1" and bench.ledger.get_cursor("coop", source="feed") == "2"
    assert [r.post_id for r in bench.ledger.posts("coop", source="feed")] == ["2"]
    bench.post("feed", "3", "more news")
    bench.cycle()
    bench.cycle()
    assert sorted(bench.target.texts()) == ["from the feed", "from x", "more news"]


def test_one_source_failing_never_stops_the_others(bench: Bench) -> None:
    bench.post("x", "1", "from x")
    bench.post("feed", "2", "from the feed")
    bench.sources["feed"].down = TransientError("503 from the website")
    result = bench.cycle()
    assert bench.target.texts() == ["from x"]
    assert "feed (memory2): 503 from the website" in (result.error or "")
    assert bench.ledger.get_cursor("coop", source="feed") == "0"  # nothing of it recorded, nothing lost
    bench.sources["feed"].down = None
    bench.cycle()
    assert bench.target.texts() == ["from x", "from the feed"]


def test_a_gone_source_needs_a_new_link_alone_and_comes_back_when_it_answers(bench: Bench) -> None:
    bench.sources["feed"].down = SourceGone("the feed answered 410 Gone")
    bench.post("x", "1", "from x")
    bench.cycle()
    feed, x = bench.ledger.get_source("coop", "feed"), bench.ledger.get_source("coop", "x")
    assert feed is not None and feed.state == "needs_relink" and x is not None and x.state == "active"
    org = bench.ledger.get_org("coop")
    assert org is not None and org.state == "active" and bench.target.texts() == ["from x"]
    bench.sources["feed"].down = None
    bench.post("feed", "2", "back again")
    bench.cycle()
    feed = bench.ledger.get_source("coop", "feed")
    assert feed is not None and feed.state == "active" and bench.target.texts() == ["from x", "back again"]
    org = bench.ledger.get_org("coop")
    assert org is not None and org.state_reason is None


def test_a_source_linked_without_a_cursor_only_sets_it_on_its_first_poll(bench: Bench) -> None:
    bench.ledger.add_source(SourceAccount("coop", "news", "memory2", "n-1", "News"), NOW)
    bench.sources["feed"].add(memory_post("n-1", "5", "history"))
    bench.cycle()
    assert bench.target.texts() == [] and bench.ledger.get_cursor("coop", source="news") == "5"
    bench.sources["feed"].add(memory_post("n-1", "6", "news"))
    bench.cycle()
    assert bench.target.texts() == ["news"]


def test_preview_covers_every_source(bench: Bench) -> None:
    bench.post("x", "1", "from x")
    bench.post("feed", "2", "from the feed")
    with bench.pipeline() as p:
        previews = p.preview_new("coop")
    assert sorted(post.text for post, _ in previews) == ["from the feed", "from x"]
    assert all(conversion.drafts for _, conversion in previews)
    assert bench.target.texts() == [] and bench.ledger.posts("coop", source=None) == []
