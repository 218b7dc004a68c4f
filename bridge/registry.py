"""Kinds of sources and targets, and how to make one: the only place that names the implementations.

Each factory imports its implementation when called, so importing the registry
loads neither tweepy nor Mastodon.py. Adding a network means one module under
``bridge/sources/`` or ``bridge/targets/`` and one factory here.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from bridge.config import Config
from bridge.errors import ConfigError
from bridge.sources.base import DEFAULT_MAX_ENTRY_BYTES, DEFAULT_MAX_TOTAL_BYTES, ArchiveSource, Source
from bridge.targets.base import Pace, Target


def _x_api(config: Config) -> Source:
    from bridge.sources.x_api import x_source

    return x_source(config)


def _feed(config: Config) -> Source:
    from bridge.sources.feed import feed_source

    return feed_source(config)


def _bluesky(config: Config) -> Source:
    from bridge.sources.bluesky import bluesky_source

    return bluesky_source(config)


def _mastodon(config: Config, instance: str, token: str, session: Any) -> Target:
    from bridge.targets.mastodon import MastodonTarget

    m = config.mastodon
    return MastodonTarget(instance, token, timeout=m.timeout, media_poll_timeout=m.media_poll_timeout, session=session)


def _mastodon_paces() -> tuple[Pace, Pace]:
    from bridge.targets.mastodon import MEDIA_PACE, STATUS_PACE

    return STATUS_PACE, MEDIA_PACE


def _bluesky_paces() -> tuple[Pace, Pace]:
    from bridge.targets.bluesky import MEDIA_PACE, STATUS_PACE

    return STATUS_PACE, MEDIA_PACE


SOURCES: dict[str, Callable[[Config], Source]] = {"x": _x_api, "feed": _feed, "bluesky": _bluesky}
TARGETS: dict[str, Callable[[Config, str, str, Any], Target]] = {"mastodon": _mastodon}
TARGET_PACES: dict[str, Callable[[], tuple[Pace, Pace]]] = {"mastodon": _mastodon_paces, "bluesky": _bluesky_paces}


def make_source(kind: str, config: Config) -> Source:
    """A live source of ``kind`` (e.g. "x") configured from ``config``."""
    factory = SOURCES.get(kind)
    if factory is None:
        raise ConfigError(f"unknown source kind {kind!r} (known: {', '.join(sorted(SOURCES))})")
    return factory(config)


def open_archive_source(
    path: str | Path, *, max_entry_bytes: int = DEFAULT_MAX_ENTRY_BYTES, max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES
) -> ArchiveSource:
    """An export file or folder of posts (today: the X archive), read as a source."""
    from bridge.sources.archive import open_archive

    return open_archive(path, max_entry_bytes=max_entry_bytes, max_total_bytes=max_total_bytes)


def make_target(kind: str, config: Config, *, instance: str, token: str, session: Any = None) -> Target:
    """A target of ``kind`` (e.g. "mastodon") for one account: its server and token.

    ``session`` is an HTTP session for that server to reuse and leave open (keep-alive
    across the organisations a worker serves there); None: the target opens its own.
    """
    factory = TARGETS.get(kind)
    if factory is None:
        raise ConfigError(f"unknown target kind {kind!r} (known: {', '.join(sorted(TARGETS))})")
    return factory(config, instance, token, session)


TARGET_NAMES = {"mastodon": "Mastodon", "bluesky": "Bluesky"}


def target_name(kind: str) -> str:
    """How people call a target kind, for messages."""
    return TARGET_NAMES.get(kind, kind)


def target_paces(kind: str) -> tuple[Pace, Pace]:
    """(posts, media uploads) write limits of a target kind, without making a target."""
    factory = TARGET_PACES.get(kind)
    if factory is None:
        raise ConfigError(f"unknown target kind {kind!r} (known: {', '.join(sorted(TARGET_PACES))})")
    return factory()
