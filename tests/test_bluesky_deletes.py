"""Deletes at the source (issue 15, contract 3): the Bluesky source reports the posts that disappeared from the account
in ``ReadResult.deleted``, against the reference PDS (records deleted through com.atproto.repo.deleteRecord)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from bridge.sources.base import ReadResult
from bridge.sources.bluesky import TRACKED, BlueskyCursor, BlueskySource
from tests.bluesky_pds import BlueskyPds
from tests.test_bluesky_pds import auth
from tests.test_bluesky_source import POST, REPOST, create, rkey

pytestmark = pytest.mark.bluesky


class Account:
    """One fresh account on the PDS and a source reading it from just before its first post."""

    def __init__(self, pds: BlueskyPds, handle: str, **source: Any) -> None:
        self.pds = pds
        self.did, self.jwt, _ = pds.create_account(handle)
        self.source = BlueskySource(plc_url=pds.plc_url, appview_url=pds.url, timeout=10, **source)
        self.cursor: str | None = self.source.cursor_at(datetime.now(timezone.utc) - timedelta(seconds=1))

    def post(self, text: str) -> str:
        return rkey(create(self.pds, self.did, self.jwt, POST, {"text": text}))

    def delete(self, key: str, collection: str = POST) -> None:
        r = self.pds.client.post(self.pds.xrpc("com.atproto.repo.deleteRecord"), headers=auth(self.jwt),
                                 json={"repo": self.did, "collection": collection, "rkey": key})
        assert r.status_code == 200, r.text

    def read(self) -> ReadResult:
        result = self.source.read_new(self.did, self.cursor)
        if result.cursor is not None:
            self.cursor = result.cursor
        return result


def test_a_deleted_post_is_reported_once_by_the_next_read(bluesky_pds: BlueskyPds) -> None:
    a = Account(bluesky_pds, "coop-del1.test")
    first, second, third = a.post("one"), a.post("two"), a.post("three")
    assert [p.id for p in a.read().posts] == [third, second, first]

    a.delete(second)
    gone = a.read()

    assert (gone.deleted, gone.entries) == ([second], [])
    idle = a.read()
    assert (idle.deleted, idle.requests) == ([], 1)  # nothing changed: one request, nothing reported again
    fourth = a.post("four")
    later = a.read()
    assert ([p.id for p in later.posts], later.deleted) == ([fourth], [])
    assert set(BlueskyCursor.load(a.cursor).keys[POST]) == {first, third, fourth}


def test_deleting_the_oldest_post_is_reported_once_an_empty_page_confirms_the_end(bluesky_pds: BlueskyPds) -> None:
    a = Account(bluesky_pds, "coop-del2.test")
    first, second = a.post("one"), a.post("two")
    a.read()

    a.delete(first)  # older than every record the listing returns: the short page alone does not prove it gone
    gone = a.read()

    assert gone.deleted == [first]
    # getLatestCommit, the posts' page, the empty page after it, the reposts' page.
    assert gone.requests == 4
    assert BlueskyCursor.load(a.cursor).keys[POST] == [second]


def test_a_deleted_repost_is_reported_by_its_record_key(bluesky_pds: BlueskyPds) -> None:
    a = Account(bluesky_pds, "coop-del3.test")
    post = create(bluesky_pds, a.did, a.jwt, POST, {"text": "boost me"})
    repost = rkey(create(bluesky_pds, a.did, a.jwt, REPOST, {"subject": post}))
    a.read()

    a.delete(repost, REPOST)

    assert a.read().deleted == [repost]


def test_new_posts_that_push_old_ones_past_the_pages_read_never_make_them_look_deleted(bluesky_pds: BlueskyPds) -> None:
    a = Account(bluesky_pds, "coop-del4.test", page_size=2, max_pages=2)
    old = [a.post(f"old {i}") for i in range(3)]
    assert sorted(p.id for p in a.read().posts) == sorted(old)

    new = [a.post(f"new {i}") for i in range(6)]  # 6 new posts; 2 pages of 2 reach only the newest 4
    pushed = a.read()

    assert pushed.deleted == []
    assert not pushed.complete
    assert [p.id for p in pushed.posts] == new[:1:-1]
    tracked = BlueskyCursor.load(a.cursor).keys[POST]
    assert set(old) <= set(tracked)  # still tracked, unjudged


def test_a_listing_that_pages_past_new_posts_still_judges_the_tracked_ones(bluesky_pds: BlueskyPds) -> None:
    a = Account(bluesky_pds, "coop-del5.test", page_size=2)
    old = [a.post(f"old {i}") for i in range(3)]
    a.read()
    a.delete(old[1])
    new = [a.post(f"new {i}") for i in range(5)]

    result = a.read()

    assert result.deleted == [old[1]]
    assert [p.id for p in result.posts] == new[::-1]
    assert result.complete


def test_the_tracked_keys_are_bounded(bluesky_pds: BlueskyPds) -> None:
    cursor = BlueskyCursor(rev="3" + "a" * 12, keys={POST: ["3" + "b" * 12] * (TRACKED + 30)})
    assert len(BlueskyCursor.load(cursor.dump()).keys[POST]) == TRACKED
    assert BlueskyCursor.load("3" + "a" * 12).rev == "3" + "a" * 12  # a bare revision still reads
    assert not BlueskyCursor.load("{not json").valid
