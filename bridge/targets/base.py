"""What a destination of posts can do, whatever the network: the ``Target`` interface.

The pipeline and the backfill library talk to targets only through this
interface (tests/test_boundaries.py checks it); Mastodon implements it in
``bridge.targets.mastodon``, registered in ``bridge.registry``. A copy of a
source post on a target is a ``Copy`` (bridgy-fed's ``Object.copies``): the
ledger keeps it per part, and boosts, edits, deletes and reconciliation refer
to it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timedelta
from typing import Any, Protocol

from bridge.errors import TransientError
from bridge.model import Draft
from bridge.policy import InstanceLimits


@dataclass(frozen=True)
class TargetCapabilities:
    """What a target can do (ask the flag, never the kind)."""

    edits: bool = False
    quotes: bool = False  # native quote posts (may also depend on the server's version: see ``limits``)
    polls: bool = False
    boosts: bool = False
    deletes: bool = False
    max_parts: int | None = None  # None: a post may be split into any number of replies
    shared_ids: bool = False  # a copy's id names it on every server of the network (Bluesky's at:// URIs), not one instance


@dataclass(frozen=True)
class Copy:
    """One published item on a target: its id there and its public URL."""

    id: str
    url: str


@dataclass(frozen=True)
class Published:
    """An item found on the target's account, for reconciliation after a crash."""

    id: str
    url: str
    text: str  # plain text, as the target shows it
    boost_of: str | None = None  # id of the boosted item, for a boost
    in_reply_to: str | None = None  # id of the item it replies to


class UnsureOutcome(TransientError):
    """The target answered a write unclearly (a malformed 2xx): it may have acted all the same.

    The pipeline looks for the copy (``find_published``) before writing again.
    """


@dataclass(frozen=True)
class Pace:
    """A write limit of the target: at most ``limit`` actions per ``window`` and account."""

    limit: int
    window: timedelta

    @property
    def seconds_each(self) -> float:
        """Spacing that never runs into the limit (e.g. 36 s for 300 per 3 hours)."""
        return self.window.total_seconds() / self.limit


class Target(Protocol):
    """One account on one destination server. Not thread-safe: one per organisation or worker."""

    kind: str  # registry kind, e.g. "mastodon"
    capabilities: TargetCapabilities
    status_pace: Pace  # posts per account and window
    media_pace: Pace  # media uploads per account and window
    idempotency_window: timedelta  # how long a retried publish with the same key is recognised
    request_count: int  # HTTP requests sent so far, for request-economy checks

    def limits(self) -> InstanceLimits:
        """The server's limits, read from the server (cache them: they change rarely)."""
        ...

    def length(self, text: str, spoiler_text: str = "") -> int:
        """How the target counts a post's length against ``limits().max_characters``."""
        ...

    def mention(self, handle: str) -> str:
        """How a mention of an account of this target is written in a post."""
        ...

    def is_limit_refusal(self, error: Exception) -> bool:
        """Whether a refusal suggests the server's limits changed since they were read."""
        ...

    def upload_media(self, path: str, mime_type: str | None = None, description: str | None = None) -> str:
        """Upload one media file; returns its id for ``publish``."""
        ...

    def publish(
        self,
        draft: Draft,
        *,
        idempotency_key: str,
        in_reply_to: str | None = None,
        media_ids: list[str] | None = None,
        quote_of: str | None = None,
    ) -> Copy:
        """Publish one part. The same ``idempotency_key`` within ``idempotency_window`` returns the
        copy already made instead of a second one."""
        ...

    def find_published(
        self,
        account_id: str,
        since_id: str | None,
        *,
        not_before: datetime | None = None,
        max_pages: int = 25,
        oldest_first: bool = False,
    ) -> list[Published]:
        """Items the account published after ``since_id``, sorted oldest first (reconciliation).

        Reading is bounded: ``max_pages`` pages, none created before ``not_before``;
        ``oldest_first`` reads upwards from ``since_id`` (so the bound drops the newest).
        """
        ...

    def same_text(self, sent: str, item: Published) -> bool:
        """Whether ``item`` shows the text the bridge sent (the target may render it differently)."""
        ...

    def left_unsure(self, error: str | None) -> bool:
        """Whether a recorded error says a write was answered unclearly (``UnsureOutcome``)."""
        ...

    def boost(self, copy_id: str) -> Copy:
        """Repost an item (idempotent: boosting twice gives the same boost)."""
        ...

    def edit(self, copy_id: str, draft: Draft, media_ids: list[str] | None = None) -> Copy:
        """Replace an item's text (and media when ``media_ids`` is given)."""
        ...

    def delete(self, copy_id: str) -> None:
        """Delete an item; one already gone counts as deleted."""
        ...

    def close(self) -> None:
        ...


def limits_to_dict(limits: InstanceLimits) -> dict[str, Any]:
    """JSON-ready form, for the ledger's cache."""
    out = asdict(limits)
    out["supported_mime_types"] = list(limits.supported_mime_types)
    return out


def limits_from_dict(data: Mapping[str, Any]) -> InstanceLimits:
    """Inverse of ``limits_to_dict``; unknown keys are ignored and missing ones take defaults,
    so a cache written by an older version still loads."""
    known = {f.name for f in fields(InstanceLimits)}
    kwargs = {k: v for k, v in data.items() if k in known}
    if "supported_mime_types" in kwargs:
        kwargs["supported_mime_types"] = tuple(kwargs["supported_mime_types"] or ())
    return InstanceLimits(**kwargs)
