"""What the poller records of a fetched page: every readable post, and every unreadable one that has an id
as failed with its reason; nothing in a page stops the posts after it.

Written to kill the mutants of ``bridge.pipeline.fetched_posts`` that survived the pipeline tests (issue 12).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

from tests.fakes.x_api import make_tweet
from tests.x_convert import fetched_posts

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)
CREATED = datetime(2026, 11, 22, 11, 0, tzinfo=timezone.utc)


def tweet(post_id: str, text: str) -> dict:
    return make_tweet(post_id, "100", text, created_at=CREATED)


def test_an_unreadable_post_is_recorded_failed_and_the_posts_after_it_go_on() -> None:
    no_text = {"id": "102", "author_id": "100"}
    pages = [
        {"data": [tweet("101", "first"), no_text, "not an object", {"text": "no id"}, {"id": "x1"}, tweet("105", "after")]},
        {"data": [tweet("106", "next page")]},
    ]
    got = list(fetched_posts(pages, NOW))
    # "x1" is no X id, but it is recorded failed under it (never silently dropped); only id-less posts are left out.
    assert [p.post_id for p in got] == ["101", "102", "x1", "105", "106"]
    good, bad = got[0], got[1]
    assert good.error is None and good.created_at == CREATED and good.post["text"] == "first"
    assert bad.error is not None and bad.error.startswith("unreadable X post:") and "text" in bad.error
    assert json.loads(bad.post["raw_json"]) == no_text and bad.created_at == NOW  # no creation time to trust: when it was read
