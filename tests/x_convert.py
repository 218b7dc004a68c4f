"""The converter and the poller's recording on X data, as the tests knew them, through the interfaces.

``convert``: the X source's neutral step, then ``bridge.convert.convert``.
``fetched_posts``: raw X pages read by the X source, then recorded by the pipeline.

The converter reads neutral posts only; the tests of the conversion rules are
written with X posts (t.co links, note_tweets, "RT @"), so they go through
the X source's ``neutral_post`` first, exactly as the pipeline does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from bridge.convert import Conversion
from bridge.convert import convert as convert_neutral
from bridge.ledger import FetchedPost
from bridge.model import BridgedToot, SourcePost
from bridge.pipeline import fetched_posts as pipeline_fetched_posts
from bridge.policy import InstanceLimits, Policy
from bridge.sources.x_api import read_pages
from bridge.sources.x_post import neutral_post


def convert(
    post: SourcePost,
    limits: InstanceLimits,
    policy: Policy,
    *,
    own_user_id: str,
    mentions: Mapping[str, str] | None = None,
    bridged: Callable[[str], BridgedToot | None] = lambda _id: None,
    backfill: bool = False,
) -> Conversion:
    return convert_neutral(
        neutral_post(post, own_user_id), limits, policy, mentions=mentions, bridged=bridged, backfill=backfill
    )


def fetched_posts(pages: list[dict[str, Any]], now: datetime) -> list[FetchedPost]:
    """What the poller records of raw X API v2 pages: the X source reads them, the pipeline records the read."""
    return pipeline_fetched_posts(read_pages(pages), now)
