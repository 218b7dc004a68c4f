"""Deletes at the source (contract 3, issue 15): a post that disappears from its source is deleted on every
target that can delete, once, within the target's delete pace, and recorded; one not delivered yet is
skipped. In-memory first (tests/fakes/memory.py), then on mastodon-mock (the status really gone)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest

from bridge import registry
from bridge.config import Config, XConfig
from bridge.ledger import Ledger, OrgRecord, TargetAccount
from bridge.pipeline import CycleResult, Pipeline
from bridge.targets.base import TargetCapabilities
from tests.bridge_env import BridgeEnv
from tests.fakes.memory import MemorySource, MemoryTarget, keyed_target, memory_post
from tests.fakes.x_api import FakeXServer
from tests.mastodon_server import MastodonServer

ACCOUNT = "acct-1"
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)


class Bench:
    def __init__(self, tmp: Path) -> None:
        self.config = Config(path=None, database=tmp / "ledger.db", x=XConfig(api_base_url="http://127.0.0.1:9"))
        self.ledger = Ledger.open(self.config.database)
        self.ledger.save_org(OrgRecord("coop", ACCOUNT, "coop", "memory://target", "1", "coop", "u", token="t"), NOW)
        self.ledger.add_target(TargetAccount("coop", "second", "keyed", "memory://keyed", "k", "coop.k", "u", "t"), NOW)
        self.ledger.set_cursor("coop", "0", NOW)
        self.source = MemorySource()
        self.targets = {"mastodon": MemoryTarget(), "second": keyed_target()}
        self.targets["second"]._ids = iter(range(10_000, 20_000))
        self.now = NOW

    def pipeline(self) -> Pipeline:
        return Pipeline(self.config, self.ledger, source=self.source,
                        target_factory=lambda account: self.targets[account.name],
                        clock=lambda: self.now, retry_wait_max=0.01)

    def cycle(self, **kw: bool) -> CycleResult:
        with self.pipeline() as p:
            return p.cycle("coop", **kw)

    def live(self, target: str) -> list[str]:
        return self.targets[target].texts()


@pytest.fixture
def bench(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Bench]:
    monkeypatch.setitem(registry.RENDERERS, "keyed", lambda: registry.renderer("mastodon"))
    b = Bench(tmp_path)
    yield b
    b.ledger.close()


def test_a_post_deleted_at_the_source_is_deleted_once_on_each_target(bench: Bench) -> None:
    for n in ("1", "2"):
        bench.source.add(memory_post(ACCOUNT, n, f"post {n}"))
    bench.cycle()
    bench.source.delete(ACCOUNT, "1")
    result = bench.cycle()
    assert result.deleted == 2 and bench.live("mastodon") == ["post 2"] and bench.live("second") == ["post 2"]
    for target in ("mastodon", "second"):
        (copy,) = bench.ledger.deliveries("coop", "1", target=target)
        assert copy.deleted_at == NOW, target
    requests = {name: t.request_count for name, t in bench.targets.items()}
    again = bench.cycle()  # the source tells it again: nothing is deleted twice
    assert again.deleted == 0 and {name: t.request_count for name, t in bench.targets.items()} == requests


def test_a_post_deleted_before_it_was_delivered_is_skipped_on_every_target(bench: Bench) -> None:
    bench.source.add(memory_post(ACCOUNT, "1", "never out"))
    bench.cycle(deliver=False)
    bench.source.delete(ACCOUNT, "1")
    bench.cycle()
    assert bench.live("mastodon") == [] and bench.live("second") == []
    for target in ("mastodon", "second"):
        row = bench.ledger.get_post("coop", "1", target=target)
        assert row is not None and (row.state, row.last_error) == ("skipped", "deleted at the source"), target


def test_deletes_keep_mastodons_pace_of_30_per_30_minutes_and_the_rest_follow_later(bench: Bench) -> None:
    bench.ledger.update_target("coop", NOW, target="second", state="unlinked")
    for n in range(1, 32):
        bench.source.add(memory_post(ACCOUNT, str(n), f"post {n}"))
    bench.cycle()
    for n in range(1, 32):
        bench.source.delete(ACCOUNT, str(n))
    result = bench.cycle()
    assert result.deleted == 30 and bench.live("mastodon") == ["post 31"]
    assert result.deferred_until == NOW + timedelta(minutes=30) and "delete pace" in (result.error or "")
    bench.now = NOW + timedelta(minutes=29)
    assert bench.cycle().deleted == 0
    bench.now = NOW + timedelta(minutes=30)
    assert bench.cycle().deleted == 1 and bench.live("mastodon") == []


def test_a_target_that_cannot_delete_keeps_its_copy_and_is_not_asked_again(bench: Bench) -> None:
    bench.targets["second"].capabilities = TargetCapabilities(boosts=True)
    bench.source.add(memory_post(ACCOUNT, "1", "kept there"))
    bench.cycle()
    bench.source.delete(ACCOUNT, "1")
    bench.cycle()
    assert bench.live("mastodon") == [] and bench.live("second") == ["kept there"]
    with bench.pipeline() as p:
        assert not p.has_due("coop")  # nothing left to do: the organisation is idle again


def test_an_idle_organisation_costs_one_indexed_query_to_deliver(bench: Bench) -> None:
    bench.source.add(memory_post(ACCOUNT, "1", "post 1"))
    bench.cycle()
    sent: list[str] = []
    with bench.pipeline() as p:
        org = bench.ledger.get_org("coop")
        assert org is not None
        bench.ledger.db.conn.set_trace_callback(sent.append)
        p._deliver(org, CycleResult("coop"))
        bench.ledger.db.conn.set_trace_callback(None)
    assert len(sent) == 1 and "post_targets_open" in sent[0], sent


# --------------------------------------------------------------------------- on mastodon-mock


@pytest.fixture
def env(tmp_path: Path, x_server: FakeXServer, mastodon: MastodonServer) -> Iterator[BridgeEnv]:
    yield BridgeEnv(tmp_path, x_server, mastodon)


def status_code(server: MastodonServer, token: str, status_id: str) -> int:
    return httpx.get(f"{server.base_url}/api/v1/statuses/{status_id}", headers={"Authorization": f"Bearer {token}"},
                     timeout=10).status_code


def test_a_deleted_post_is_really_gone_from_both_instances(env: BridgeEnv, mastodon_other: MastodonServer) -> None:
    org = env.link("deletes")
    second = env.add_target(org, mastodon_other)
    source = MemorySource()  # a source that reports deletes (Bluesky's does; this one in memory)
    for n in ("2", "3"):
        source.add(memory_post(org.x_user_id, n, f"will be deleted {n}" if n == "2" else "stays"))
    with env.ledger() as ledger:
        assert env.pipeline(ledger, source=source).cycle(org.name).delivered == 4
        first = {t: ledger.deliveries(org.name, "2", target=t)[0].copy_id for t in ("mastodon", "second")}
    assert status_code(env.mastodon, org.token, first["mastodon"]) == 200
    # Deleted by hand on the second instance already: gone counts as deleted, no error.
    httpx.delete(f"{mastodon_other.base_url}/api/v1/statuses/{first['second']}",
                 headers={"Authorization": f"Bearer {second.token}"}, timeout=10).raise_for_status()
    source.delete(org.x_user_id, "2")
    with env.ledger() as ledger:
        result = env.pipeline(ledger, source=source).cycle(org.name)
        assert result.deleted == 2 and result.error is None
        assert all(ledger.deliveries(org.name, "2", target=t)[0].deleted_at for t in ("mastodon", "second"))
    assert status_code(env.mastodon, org.token, first["mastodon"]) == 404
    assert status_code(mastodon_other, second.token, first["second"]) == 404
    assert [t["content"] for t in env.toots(org)] == ["<p>stays</p>"]
