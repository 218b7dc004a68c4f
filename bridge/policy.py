"""Per-organisation policy and per-instance limits: the converter's non-post inputs.

Plain frozen dataclasses with documented defaults. ``bridge.config`` builds
``Policy`` from YAML; ``bridge.targets.mastodon`` builds ``InstanceLimits`` from
``GET /api/v2/instance``. Defaults mirror a stock Mastodon 4.x instance
(Mastodon docs, "instance": configuration.statuses / media_attachments / polls)
and are only used until the real limits are read; nothing hard-codes 500.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

Visibility = Literal["public", "unlisted", "private", "direct"]


@dataclass(frozen=True)
class InstanceLimits:
    max_characters: int = 500
    max_media_attachments: int = 4
    characters_reserved_per_url: int = 23
    image_size_limit: int = 16 * 1024 * 1024
    video_size_limit: int = 99 * 1024 * 1024
    description_limit: int = 1500  # Mastodon 4.x: media descriptions up to 1500 characters
    poll_max_options: int = 4
    poll_max_characters_per_option: int = 50
    poll_min_expiration: int = 300
    poll_max_expiration: int = 2629746
    supports_quotes: bool = False  # Mastodon 4.5+ exposes quote posts
    supported_mime_types: tuple[str, ...] = ()


@dataclass(frozen=True)
class VisibilityPolicy:
    """Visibility per kind of post. Backfill defaults to unlisted so timelines are not flooded."""

    original: Visibility = "public"
    self_reply: Visibility = "public"
    retweet: Visibility = "public"
    quote: Visibility = "public"
    backfill: Visibility = "unlisted"


@dataclass(frozen=True)
class Policy:
    visibility: VisibilityPolicy = field(default_factory=VisibilityPolicy)
    retweets: Literal["auto", "boost", "link", "skip"] = "auto"  # auto: boost if bridged, else skip
    quotes: Literal["auto", "link", "skip"] = "auto"  # auto: native quote if possible, else link
    replies: Literal["self", "all", "none"] = "self"
    mentions_unmapped: Literal["plain", "domain", "link"] = "plain"
    mention_map: tuple[tuple[str, str], ...] = ()  # (x handle lowercased, "user@instance")
    footer: str = ""  # "{url}" is replaced by the original post's URL
    content_warning: str = ""  # spoiler text on every post, empty = none
    thread_counters: bool = False  # add "1/3" to split parts
    max_thread_parts: int = 10  # a longer post is cut after this many toots; the last links the original
    date_prefix: bool = False  # backfill: put the original date first
    # Website feeds (issue 14): what an article becomes, and whether its categories become hashtags.
    feed_post: Literal["title_link", "full"] = "title_link"  # title, a short summary, the link; or the whole text
    feed_categories: bool = False
    # An edit on a target that cannot edit (Bluesky): leave the old copy (the edit is recorded as not
    # propagated), or repost: delete the old copy and post the new version as a new post.
    edits_where_impossible: Literal["leave", "repost"] = "leave"



# What an organisation may set for itself on its page (`bridge web`), stored in the ledger (org_policies).
ORG_SETTABLE = ("retweets", "replies", "visibility", "footer", "content_warning")
MAX_FOOTER = 200  # characters: a footer longer than that eats the post
VISIBILITY_CHOICES: tuple[Visibility, ...] = ("public", "unlisted", "private")


def with_overrides(policy: Policy, overrides: Mapping[str, object] | None) -> Policy:
    """The organisation's own choices (``ORG_SETTABLE``) over the configured policy.

    ``visibility`` sets the visibility of new posts (originals, self-replies,
    retweets, quotes); backfilled posts keep the configured one. Values that are
    not valid any more (an older version wrote them) are ignored, never fatal.
    """
    if not overrides:
        return policy
    changes: dict[str, object] = {}
    if overrides.get("retweets") in ("auto", "boost", "link", "skip"):
        changes["retweets"] = overrides["retweets"]
    if overrides.get("replies") in ("self", "all", "none"):
        changes["replies"] = overrides["replies"]
    vis = overrides.get("visibility")
    if vis in VISIBILITY_CHOICES:
        changes["visibility"] = replace(policy.visibility, original=vis, self_reply=vis, retweet=vis, quote=vis)
    for text in ("footer", "content_warning"):
        value = overrides.get(text)
        if isinstance(value, str):
            changes[text] = value[:MAX_FOOTER]
    return replace(policy, **changes)  # type: ignore[arg-type]
