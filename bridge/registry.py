"""Kinds of sources and targets, and how to make one: the only place that names the implementations.

Each factory imports its implementation when called, so importing the registry
loads neither tweepy nor Mastodon.py. Adding a network means one module under
``bridge/sources/`` or ``bridge/targets/`` and one factory here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from bridge.config import Config
from bridge.errors import ConfigError
from bridge.model import BridgedToot, Post
from bridge.policy import InstanceLimits, Policy
from bridge.sources.base import DEFAULT_MAX_ENTRY_BYTES, DEFAULT_MAX_TOTAL_BYTES, ArchiveSource, Source
from bridge.targets.base import Pace, Target

if TYPE_CHECKING:  # the converter is loaded only when a renderer is asked for
    from bridge.convert.engine import Conversion


def _x_api(config: Config) -> Source:
    from bridge.sources.x_api import x_source

    return x_source(config)


def _feed(config: Config) -> Source:
    from bridge.sources.feed import feed_source

    return feed_source(config)


def _bluesky(config: Config) -> Source:
    from bridge.sources.bluesky import bluesky_source

    return bluesky_source(config)


def _mastodon(
    config: Config,
    *,
    base_url: str,
    credentials: str,
    account_id: str = "",
    handle: str = "",
    session: Any = None,
    save_credentials: Callable[[str], None] | None = None,
) -> Target:
    """A Mastodon account: its instance and access token (a token never changes, so nothing is saved)."""
    from bridge.targets.mastodon import MastodonTarget

    m = config.mastodon
    return MastodonTarget(base_url, credentials, timeout=m.timeout, media_poll_timeout=m.media_poll_timeout,
                          session=session)


class TargetFactory(Protocol):
    def __call__(
        self,
        config: Config,
        *,
        base_url: str,
        credentials: str,
        account_id: str = "",
        handle: str = "",
        session: Any = None,
        save_credentials: Callable[[str], None] | None = None,
    ) -> Target: ...


class Renderer(Protocol):
    """What a target's posts look like: a neutral post to that target's drafts (``bridge.convert.engine.convert``)."""

    def __call__(
        self,
        post: Post,
        limits: InstanceLimits,
        policy: Policy,
        *,
        mentions: Mapping[str, str] | None = None,
        bridged: Callable[[str], BridgedToot | None] = ...,
        backfill: bool = False,
    ) -> Conversion: ...


def _mastodon_renderer() -> Renderer:
    from bridge.convert.engine import convert

    return convert


def _mastodon_paces() -> tuple[Pace, Pace]:
    from bridge.targets.mastodon import MEDIA_PACE, STATUS_PACE

    return STATUS_PACE, MEDIA_PACE


def _mastodon_delete_pace() -> Pace:
    from bridge.targets.mastodon import DELETE_PACE

    return DELETE_PACE


def _bluesky_target(
    config: Config,
    *,
    base_url: str,
    credentials: str,
    account_id: str = "",
    handle: str = "",
    session: Any = None,
    save_credentials: Callable[[str], None] | None = None,
) -> Target:
    """A Bluesky account: its PDS, app password and session (a refreshed session is saved)."""
    from bridge.targets.bluesky import bluesky_target

    return bluesky_target(config, base_url=base_url, credentials=credentials, account_id=account_id, handle=handle,
                          session=session, save_credentials=save_credentials)


def _bluesky_renderer() -> Renderer:
    from bridge.convert.bluesky import convert

    return convert


def _bluesky_paces() -> tuple[Pace, Pace]:
    from bridge.targets.bluesky import MEDIA_PACE, STATUS_PACE

    return STATUS_PACE, MEDIA_PACE


SOURCES: dict[str, Callable[[Config], Source]] = {"x": _x_api, "feed": _feed, "bluesky": _bluesky}
TARGETS: dict[str, TargetFactory] = {"mastodon": _mastodon, "bluesky": _bluesky_target}
RENDERERS: dict[str, Callable[[], Renderer]] = {"mastodon": _mastodon_renderer, "bluesky": _bluesky_renderer}
TARGET_PACES: dict[str, Callable[[], tuple[Pace, Pace]]] = {"mastodon": _mastodon_paces, "bluesky": _bluesky_paces}
# Deletes paced apart from posts where the network limits them apart (Mastodon); other kinds: as posts.
DELETE_PACES: dict[str, Callable[[], Pace]] = {"mastodon": _mastodon_delete_pace}


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


def make_target(
    kind: str,
    config: Config,
    *,
    base_url: str,
    credentials: str,
    account_id: str = "",
    handle: str = "",
    session: Any = None,
    save_credentials: Callable[[str], None] | None = None,
) -> Target:
    """A target of ``kind`` (e.g. "mastodon") for one account: its server, credentials and identity.

    ``session`` is an HTTP session for that server to reuse and leave open (keep-alive
    across the organisations a worker serves there); None: the target opens its own.
    ``save_credentials`` persists new credentials of that account (a refreshed session),
    so the next run starts from them.
    """
    factory = TARGETS.get(kind)
    if factory is None:
        raise ConfigError(f"unknown target kind {kind!r} (known: {', '.join(sorted(TARGETS))})")
    return factory(config, base_url=base_url, credentials=credentials, account_id=account_id, handle=handle,
                   session=session, save_credentials=save_credentials)


def renderer(kind: str) -> Renderer:
    """The renderer of a target kind: the signature of ``bridge.convert.engine.convert``."""
    factory = RENDERERS.get(kind)
    if factory is None:
        raise ConfigError(f"no renderer for target kind {kind!r} (known: {', '.join(sorted(RENDERERS))})")
    return factory()


TARGET_NAMES = {"mastodon": "Mastodon", "bluesky": "Bluesky"}


def target_name(kind: str) -> str:
    """How people call a target kind, for messages."""
    return TARGET_NAMES.get(kind, kind)


def delete_pace(kind: str) -> Pace | None:
    """How many deletes a target kind allows per account and window; None: counted like its posts."""
    factory = DELETE_PACES.get(kind)
    return factory() if factory is not None else None


def target_paces(kind: str) -> tuple[Pace, Pace]:
    """(posts, media uploads) write limits of a target kind, without making a target."""
    factory = TARGET_PACES.get(kind)
    if factory is None:
        raise ConfigError(f"unknown target kind {kind!r} (known: {', '.join(sorted(TARGET_PACES))})")
    return factory()
