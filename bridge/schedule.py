"""How often to poll each organisation: adaptive to activity, capped by the X read budget.

Reading X costs money (pay-per-use per post read, or a monthly cap), and X
allows 10,000 requests / 15 min per app on the user-timeline endpoint (X API
docs, rate limits). An organisation that rarely posts is polled less often, an
active one more often, and the sum over all organisations never exceeds the
configured budget. Pure functions: the daemon and `bridge status` share them.

Only organisations that read X share that budget. One whose sources are all
free to read (website feeds, Bluesky accounts: an idle poll is one conditional
or public request) is polled at its sources' own configured interval
(``feed.poll_interval``, ``bluesky.poll_interval``; the shortest when it has
both) and counts nothing against X. One with an X source beside a free one
follows the X plan: every poll reads all of its sources.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from bridge.config import Config, XConfig

SECONDS_PER_MONTH = 30 * 86400
POLLS_PER_POST = 24  # aim: about one new post per 24 polls, i.e. a post per day -> hourly polls
# X allows one app 10,000 user-timeline requests per 15 minutes (X API docs, rate limits: GET /2/users/:id/tweets).
X_REQUESTS_PER_15MIN = 10_000
# Seconds between first polls at a start: X's rate (11 a second) unless the budget sets another
# (start_gap); a few organisations are polled all at once.
START_GAP = 900 / X_REQUESTS_PER_15MIN


@dataclass(frozen=True)
class Plan:
    intervals: dict[str, int]  # organisation -> seconds between polls (those reading no X too)
    requests_per_15min: float  # X reads only
    requests_per_month: int
    posts_per_month: int
    budget_limited: bool  # the budget, not activity, set the intervals


def activity_interval(posts_per_day: float, x: XConfig) -> int:
    """The interval an organisation's activity alone asks for, within [poll_interval, max_poll_interval]."""
    if posts_per_day <= 0:
        return x.max_poll_interval
    wanted = 86400 / (posts_per_day * POLLS_PER_POST)
    return int(min(x.max_poll_interval, max(x.poll_interval, wanted)))


def free_interval(kinds: Collection[str], config: Config) -> int | None:
    """The fixed interval of an organisation whose sources (their kinds) cost no X reads; None when
    it reads X (or a kind without an interval of its own): then the X budget plans it."""
    own = {"feed": config.feed.poll_interval, "bluesky": config.bluesky.poll_interval}
    if not kinds or any(kind not in own for kind in kinds):
        return None
    return min(own[kind] for kind in kinds)


def plan(activity: Mapping[str, float], x: XConfig, free: Mapping[str, int] | None = None) -> Plan:
    """Intervals for every organisation; ``activity`` is posts per day over a recent window of the
    organisations that read X, ``free`` the fixed intervals of those that read no X (see
    ``free_interval``): they are in ``intervals`` but take no share of the budget nor its projections."""
    intervals = {name: activity_interval(ppd, x) for name, ppd in activity.items()}
    limited = False
    budget = x.budget.requests_per_15min
    if budget > 0 and intervals:
        total = sum(900 / i for i in intervals.values())
        if total > budget:
            factor = total / budget
            intervals = {name: math.ceil(i * factor) for name, i in intervals.items()}
            limited = True
    per_15 = sum(900 / i for i in intervals.values())
    # Each post is read exactly once (since_id), so reads follow activity, not the poll rate.
    posts_month = int(round(sum(activity.values()) * 30))
    requests_month = int(sum(SECONDS_PER_MONTH / i for i in intervals.values()))
    intervals.update({name: i for name, i in (free or {}).items() if name not in intervals})
    return Plan(
        intervals=intervals,
        requests_per_15min=round(per_15, 2),
        requests_per_month=requests_month,
        posts_per_month=posts_month,
        budget_limited=limited,
    )


def start_gap(x: XConfig) -> float:
    """Seconds between the first polls of organisations reading X that are due at once: the rate of
    the configured budget (``x.budget.requests_per_15min``), or X's own limit when none is set. The plan
    keeps every interval at least count x this gap, so the first round never outpaces what follows."""
    budget = x.budget.requests_per_15min
    return 900 / budget if budget > 0 else START_GAP


def start_offsets(intervals: list[int], gap: float = START_GAP) -> list[float]:
    """Seconds from now for the first polls of organisations all due at once (a start, a long stop).

    Without it 10,000 organisations were all due in the same second: 10,000 jobs
    queued at once, a burst of X requests and of CPU, and the same burst every
    interval after (issue 18). The k-th waits k gaps; a gap is ``gap`` (start_gap for
    organisations reading X), or less where that would not fit the organisation's
    interval, so the first round takes at most one interval and a steady rhythm follows.
    """
    count = len(intervals)
    return [k * min(gap, interval / count) for k, interval in enumerate(intervals)]
