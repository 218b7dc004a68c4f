"""An organisation with several targets (issue 16): every post goes to each, exactly once per target, and
one target's trouble never holds up another. In-memory source and targets (tests/fakes/memory.py); the
real-server fan-out is tests/test_fanout.py."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from bridge import registry
from bridge.cli import _render_status
from bridge.config import Config, XConfig
from bridge.errors import AuthError, RateLimited, TransientError
from bridge.ledger import Ledger, OrgRecord, TargetAccount
from bridge.model import Draft
from bridge.model import Media as MediaItemRef
from bridge.pipeline import CycleResult, Pipeline, idempotency_key
from bridge.policy import Policy
from bridge.report import status_report
from tests.fakes.memory import MemorySource, MemoryTarget, keyed_target, memory_post

ACCOUNT = "acct-1"
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)
SECOND = TargetAccount("coop", "second", "keyed", "memory://keyed", "k1", "coop.keyed", "memory://keyed/coop", "t2")


class Bench:
    """One organisation, its memory source, its Mastodon-like target "mastodon" and a keyed target "second"."""

    def __init__(self, tmp: Path) -> None:
        self.config = Config(path=None, database=tmp / "ledger.db", x=XConfig(api_base_url="http://127.0.0.1:9"))
        self.ledger = Ledger.open(self.config.database)
        self.ledger.save_org(
            OrgRecord("coop", ACCOUNT, "coop", "memory://target", "1", "coop", "memory://target/@coop", token="t"), NOW
        )
        self.ledger.add_target(SECOND, NOW)
        self.ledger.set_cursor("coop", "0", NOW)
        self.source = MemorySource()
        self.targets: dict[str, MemoryTarget] = {"mastodon": MemoryTarget(), "second": keyed_target()}
        self.now = NOW

    def pipeline(self) -> Pipeline:
        return Pipeline(self.config, self.ledger, source=self.source,
                        target_factory=lambda account: self.targets[account.name],
                        clock=lambda: self.now, retry_wait_max=0.01)

    def post(self, post_id: str, text: str, **kw: object) -> None:
        self.source.add(memory_post(ACCOUNT, post_id, text, **kw))

    def cycle(self) -> CycleResult:
        with self.pipeline() as p:
            return p.cycle("coop")

    def states(self, target: str) -> dict[str, str]:
        return {r.post_id: r.state for r in self.ledger.posts("coop", target=target)}

    def texts(self, target: str) -> list[str]:
        return self.targets[target].texts()


@pytest.fixture
def bench(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Bench]:
    monkeypatch.setitem(registry.RENDERERS, "keyed", lambda: registry.renderer("mastodon"))
    b = Bench(tmp_path)
    yield b
    b.ledger.close()


def test_every_post_goes_to_each_target_exactly_once(bench: Bench) -> None:
    for n in ("1", "2", "3"):
        bench.post(n, f"post {n}")
    first = bench.cycle()
    bench.cycle()
    for target in ("mastodon", "second"):
        assert bench.texts(target) == ["post 1", "post 2", "post 3"], target
        assert bench.states(target) == {"1": "delivered", "2": "delivered", "3": "delivered"}
        assert [len(bench.ledger.deliveries("coop", n, target=target)) for n in ("1", "2", "3")] == [1, 1, 1]
    assert first.delivered == 6 and set(first.target_requests) == {"mastodon", "second"}


def test_a_target_that_is_down_never_holds_up_the_other_and_gets_every_post_in_order_later(bench: Bench) -> None:
    for n in ("1", "2", "3"):
        bench.post(n, f"post {n}")
    bench.targets["mastodon"].down = TransientError("503 from the instance")
    result = bench.cycle()
    assert bench.texts("second") == ["post 1", "post 2", "post 3"]
    assert bench.texts("mastodon") == [] and bench.states("mastodon") == {"1": "posting", "2": "pending", "3": "pending"}
    assert result.deferred_until is not None and "deferred" in (result.error or "")
    bench.targets["mastodon"].down = None
    bench.now = result.deferred_until + timedelta(seconds=1)
    bench.cycle()
    assert bench.texts("mastodon") == ["post 1", "post 2", "post 3"]  # in order, nothing twice
    assert bench.texts("second") == ["post 1", "post 2", "post 3"]


def test_a_revoked_target_needs_a_new_link_alone_while_the_other_goes_on(bench: Bench) -> None:
    bench.post("1", "post 1")
    bench.targets["second"].down = AuthError("the app password was revoked")
    result = bench.cycle()
    org = bench.ledger.get_org("coop")
    assert org is not None and org.state == "active"
    second = bench.ledger.get_target("coop", "second")
    assert second is not None and second.state == "needs_relink" and "revoked" in (second.state_reason or "")
    assert bench.texts("mastodon") == ["post 1"] and "second: the app password was revoked" in (result.error or "")
    # Posts read while it waits for a new link stay in its queue: nothing is lost.
    bench.post("2", "post 2")
    bench.cycle()
    assert bench.texts("mastodon") == ["post 1", "post 2"] and bench.states("second") == {"1": "posting", "2": "pending"}
    with bench.pipeline() as p:
        assert not p.has_due("coop")  # what waits for the new link is no work now: the organisation stays idle
    bench.targets["second"].down = None
    bench.ledger.add_target(SECOND, NOW)  # linked again
    bench.cycle()
    assert bench.texts("second") == ["post 1", "post 2"] and bench.texts("mastodon") == ["post 1", "post 2"]


def test_an_organisations_only_target_revoked_puts_the_organisation_into_needs_relink(bench: Bench) -> None:
    bench.ledger.update_target("coop", NOW, target="second", state="unlinked")
    bench.post("1", "post 1")
    bench.targets["mastodon"].down = AuthError("401: the access token was revoked")
    bench.cycle()
    org = bench.ledger.get_org("coop")
    assert org is not None and org.state == "needs_relink"


def test_a_rate_limited_target_is_deferred_alone(bench: Bench) -> None:
    bench.post("1", "post 1")
    until = NOW + timedelta(minutes=20)
    bench.targets["mastodon"].down = RateLimited("429 from the instance", retry_at=until)
    result = bench.cycle()
    assert bench.texts("second") == ["post 1"] and result.deferred_until == until
    mastodon = bench.ledger.get_target("coop", "mastodon")
    assert mastodon is not None and mastodon.deferred_until == until
    org = bench.ledger.get_org("coop")
    assert org is not None and org.post_deferred_until is None  # the organisation itself is not deferred
    bench.targets["mastodon"].down = None
    requests = bench.targets["mastodon"].request_count
    bench.post("2", "post 2")
    bench.cycle()  # still inside the deferral: not a single request to it
    assert bench.targets["mastodon"].request_count == requests and bench.texts("second") == ["post 1", "post 2"]
    bench.now = until + timedelta(seconds=1)
    bench.cycle()
    assert bench.texts("mastodon") == ["post 1", "post 2"]


def test_an_edit_is_recorded_not_propagated_on_a_target_without_edits(bench: Bench) -> None:
    bench.post("1", "first version")
    bench.cycle()
    bench.post("2", "second version", edit_history_ids=("1", "2"))
    bench.cycle()
    assert bench.texts("mastodon") == ["second version"]  # edited in place
    row = bench.ledger.get_post("coop", "2", target="second")
    assert row is not None and row.state == "skipped"
    assert row.last_error == "edit not propagated: keyed has no edits"
    assert bench.texts("second") == ["first version"]
    assert bench.targets["second"].deletes == []  # the default policy leaves the old copy


def _repost_edits(bench: Bench) -> None:
    bench.config.organisations["coop"] = Policy(edits_where_impossible="repost")


def test_an_edit_with_policy_repost_deletes_the_old_copy_once_and_posts_the_new_version_once(bench: Bench) -> None:
    _repost_edits(bench)
    bench.post("1", "first version")
    bench.cycle()
    old = bench.ledger.deliveries("coop", "1", target="second")[0].copy_id
    bench.post("2", "second version", edit_history_ids=("1", "2"))
    bench.cycle()
    # The process died after recording the new copy, before finishing the post: the re-run keeps it.
    bench.ledger.mark_posting("coop", "2", "k", NOW, target="second")
    bench.cycle()
    bench.cycle()  # another run changes nothing
    assert bench.texts("mastodon") == ["second version"]  # Mastodon still edits in place
    assert bench.texts("second") == ["second version"] and bench.targets["second"].deletes == [old]
    assert [i.text for i in bench.targets["second"].items] == ["first version", "second version"]
    row = bench.ledger.get_post("coop", "2", target="second")
    assert row is not None and row.state == "delivered" and "edit posted again" in (row.last_error or "")
    new = bench.ledger.deliveries("coop", "2", target="second")
    assert [(d.kind, d.deleted_at) for d in new] == [("status", None)]  # the new copy, under the edit's post id
    stand_in = bench.ledger.first_toot("coop", "1", target="second")  # the old copy is gone: the new one answers
    assert stand_in is not None and stand_in.post_id == "2" and stand_in.copy_id == new[0].copy_id
    assert bench.ledger.edits_not_propagated("coop", target="second") == 0


def test_a_second_edit_with_policy_repost_leaves_only_the_newest_version_and_replies_thread_under_it(
    bench: Bench,
) -> None:
    _repost_edits(bench)
    bench.post("1", "first version")
    bench.cycle()
    bench.post("2", "second version", edit_history_ids=("1", "2"))
    bench.cycle()
    bench.cycle()  # the first version's copy is deleted
    bench.post("3", "third version", edit_history_ids=("1", "2", "3"))
    bench.cycle()
    bench.cycle()
    assert bench.texts("second") == ["third version"] and len(bench.targets["second"].deletes) == 2
    newest = bench.ledger.deliveries("coop", "3", target="second")[0].copy_id
    # A later reply to the first version continues the thread below its newest copy, not standalone.
    bench.post("4", "a reply", in_reply_to_post_id="1", in_reply_to_user_id=ACCOUNT)
    bench.cycle()
    reply = bench.targets["second"].items[-1]
    assert reply.text == "a reply" and reply.in_reply_to == newest


def test_an_edit_posted_again_is_neither_lost_nor_posted_twice_when_the_target_fails_in_between(bench: Bench) -> None:
    _repost_edits(bench)
    bench.post("1", "first version")
    bench.cycle()
    old = bench.ledger.deliveries("coop", "1", target="second")[0].copy_id
    bench.post("2", "second version", edit_history_ids=("1", "2"))
    bench.targets["second"].down = TransientError("503 from the server")
    result = bench.cycle()
    # The intent is recorded before any request: the old copy is due for deletion, the new version queued.
    assert [c.copy_id for c in bench.ledger.due_deletes("coop", target="second")] == [old]
    assert bench.states("second")["2"] == "posting" and bench.texts("second") == ["first version"]
    bench.targets["second"].down = None
    bench.targets["second"].lose_answer.add("second version")  # posted, but the answer is lost once
    assert result.deferred_until is not None
    bench.now = result.deferred_until + timedelta(seconds=1)
    bench.cycle()
    bench.cycle()
    assert bench.texts("second") == ["second version"] and bench.targets["second"].deletes == [old]
    assert [i.text for i in bench.targets["second"].items] == ["first version", "second version"]
    assert bench.states("second")["2"] == "delivered"


def test_an_edit_is_left_on_a_target_that_can_neither_edit_nor_delete_even_with_policy_repost(bench: Bench) -> None:
    _repost_edits(bench)
    bench.targets["second"].capabilities = dataclasses.replace(bench.targets["second"].capabilities, deletes=False)
    bench.post("1", "first version")
    bench.cycle()
    bench.post("2", "second version", edit_history_ids=("1", "2"))
    bench.cycle()
    assert bench.texts("second") == ["first version"] and bench.targets["second"].deletes == []
    assert bench.ledger.edits_not_propagated("coop", target="second") == 1


def test_status_says_how_many_edits_each_target_did_not_propagate_and_under_which_policy(bench: Bench) -> None:
    bench.post("1", "first version")
    bench.cycle()
    bench.post("2", "second version", edit_history_ids=("1", "2"))
    bench.post("3", "third version", edit_history_ids=("1", "2", "3"))
    bench.cycle()
    report = status_report(bench.ledger, bench.config, NOW)
    second = next(t for t in report["organisations"][0]["targets"] if t["name"] == "second")
    assert second["edits_not_propagated"] == 2 and second["edits_policy"] == "leave"
    text = _render_status({**report, "daemon": {"healthy": True, "health_reason": ""}})
    assert "  second: 2 edits not propagated (policy leave)" in text.splitlines()
    assert text.count("not propagated") == 1  # Mastodon edits: nothing left behind there


def test_a_target_whose_keys_never_expire_is_never_searched_after_a_lost_answer(bench: Bench) -> None:
    bench.post("1", "said once")
    bench.targets["second"].lose_answer.add("said once")
    bench.targets["mastodon"].lose_answer.add("said once")
    bench.cycle()
    assert bench.texts("second") == ["said once"] and bench.targets["second"].searches == 0
    assert bench.texts("mastodon") == ["said once"] and bench.targets["mastodon"].searches == 1  # Mastodon: looked
    # Published, then the process died before recording it, days ago (past any Mastodon window):
    # the retry sends the same key, gets the same copy back, and still never searches.
    bench.post("2", "said before the crash")
    with bench.pipeline() as p:
        p.cycle("coop", deliver=False)
    bench.ledger.mark_posting("coop", "2", "k", NOW - timedelta(days=3), target="second")
    bench.targets["second"].publish(Draft(post_id="2", part=0, text="said before the crash", length=21),
                                    idempotency_key=idempotency_key("coop", "2", 0, target="second"))
    bench.cycle()
    assert bench.texts("second") == ["said once", "said before the crash"] and bench.targets["second"].searches == 0


def test_a_target_linked_later_receives_only_posts_read_after_it(bench: Bench) -> None:
    bench.ledger.update_target("coop", NOW, target="second", state="unlinked")
    bench.post("1", "before")
    bench.cycle()
    bench.ledger.add_target(SECOND, NOW)
    bench.post("2", "after")
    bench.cycle()
    assert bench.texts("mastodon") == ["before", "after"] and bench.texts("second") == ["after"]


def test_a_reply_on_each_target_points_at_that_targets_copy_of_its_parent(bench: Bench) -> None:
    bench.targets["second"]._ids = iter(range(500, 600))  # the two targets' ids never coincide
    bench.post("1", "thread start")
    bench.post("2", "thread end", in_reply_to_post_id="1", in_reply_to_user_id=ACCOUNT)
    bench.cycle()
    for target in ("mastodon", "second"):
        first, second = bench.targets[target].items
        assert second.in_reply_to == first.copy.id, target


def test_mentions_of_linked_organisations_are_mapped_per_target_kind(bench: Bench) -> None:
    bench.ledger.save_org(OrgRecord("other", "acct-2", "other_x", "https://geno.social", "5", "other", "u", token="t"),
                          NOW)
    bench.ledger.add_target(TargetAccount("other", "second", "keyed", "memory://keyed", "k2", "other.keyed", "u", "t"),
                            NOW)
    with bench.pipeline() as p:
        org = bench.ledger.get_org("coop")
        assert org is not None
        assert p.mention_map(org, "mastodon")["other_x"] == "other@geno.social"
        assert p.mention_map(org, "keyed")["other_x"] == "other.keyed"


def test_a_mention_is_looked_up_one_handle_at_a_time_as_the_whole_map_has_it(bench: Bench) -> None:
    bench.ledger.save_org(OrgRecord("other", "acct-2", "other_x", "https://geno.social", "5", "other", "u", token="t"),
                          NOW)
    with bench.pipeline() as p:
        org = bench.ledger.get_org("coop")
        assert org is not None
        whole = bench.ledger.linked_handles("mastodon")
        mentions = p.mention_map(org, "mastodon")
        assert mentions["@OTHER_X"] == whole["other_x"] == "other@geno.social"
        assert "nobody_x" not in mentions
        assert dict(mentions) == whole
        bench.ledger.update_org("other", NOW, state="unlinked")
        assert "other_x" not in p.mention_map(org, "mastodon")


def test_a_medium_is_downloaded_once_and_uploaded_to_each_target(bench: Bench) -> None:
    bench.source.media["photo-1"] = b"\x89PNG fake"
    bench.post("1", "with a photo", media=(MediaItemRef("photo-1", "photo", alt_text="a photo's alt"),))
    bench.post("2", "another photo", media=(MediaItemRef("photo-1", "photo", alt_text="the same file"),))
    bench.cycle()
    for target in ("mastodon", "second"):
        assert bench.texts(target) == ["with a photo", "another photo"], target
        assert sorted(bench.targets[target].uploads.values()) == ["a photo's alt", "the same file"], target
    assert bench.source.opens == 1  # one download, four uploads


def test_a_single_target_downloads_as_before(bench: Bench) -> None:
    bench.ledger.update_target("coop", NOW, target="second", state="unlinked")
    bench.source.media["photo-1"] = b"\x89PNG fake"
    bench.post("1", "with a photo", media=(MediaItemRef("photo-1", "photo", alt_text="alt"),))
    bench.cycle()
    assert bench.texts("mastodon") == ["with a photo"] and bench.source.opens == 1


def test_a_retweet_of_an_organisation_on_another_server_is_boosted_only_where_ids_are_shared(bench: Bench) -> None:
    """Bluesky's at:// URIs name their repository, so a repost of another PDS's record works; a Mastodon
    status id means something on its own instance only, so a boost there would need a search first."""
    other_mastodon = OrgRecord("other", "acct-2", "other", "memory://elsewhere", "2", "other", "memory://elsewhere/@other",
                               token="t3")
    bench.ledger.save_org(other_mastodon, NOW)
    bench.ledger.add_target(TargetAccount("other", "second", "keyed", "memory://another-pds", "k2", "other.keyed",
                                          "memory://another-pds/other", "t4"), NOW)
    bench.ledger.set_cursor("other", "0", NOW)
    original = memory_post("acct-2", "1", "the original", handle="other")
    bench.source.add(original)
    bench.targets = {"mastodon": MemoryTarget(), "second": keyed_target()}
    with bench.pipeline() as p:
        assert p.cycle("other").delivered == 2
    copy_there = bench.ledger.deliveries("other", "1", target="second")[0].copy_id

    bench.post("2", "", retweet_of=original, retweet_of_id="1", retweet_of_username="other")
    with bench.pipeline() as p:
        p.policy_for = lambda name: dataclasses.replace(p.config.policy_for(name), retweets="boost")  # type: ignore[method-assign]
        result = p.cycle("coop")
    assert bench.states("second")["2"] == "delivered"
    assert [i.boost_of for i in bench.targets["second"].items if i.boost_of] == [copy_there]
    assert bench.states("mastodon")["2"] == "failed" and result.failed == 1
    failure = bench.ledger.get_post("coop", "2", target="mastodon")
    assert failure is not None and "another instance" in (failure.last_error or "")
