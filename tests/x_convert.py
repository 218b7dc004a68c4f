"""The converter on X posts, as the tests knew it: the X source's neutral step, then ``bridge.convert.convert``.

The converter reads neutral posts only; the tests of the conversion rules are
written with X posts (t.co links, note_tweets, "RT @"), so they go through
the X source's ``neutral_post`` first, exactly as the pipeline does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from bridge.convert import Conversion
from bridge.convert import convert as convert_neutral
from bridge.model import BridgedToot, SourcePost
from bridge.policy import InstanceLimits, Policy
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
