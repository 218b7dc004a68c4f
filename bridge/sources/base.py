"""What a source of posts can do, whatever the network: the ``Source`` interface.

The pipeline, the backfill library, the preview and the daemon talk to sources
only through this interface (tests/test_boundaries.py checks it); each network
(X API v2 in ``x_api``, the X archive in ``archive``) implements it in its own
module and keeps its shapes there. ``bridge.registry`` maps a kind ("x",
"x-archive") to the implementation.

A source hands out ``SourcePost`` records (``bridge.model``): what the ledger
stores. ``neutral`` turns one into the network-neutral ``Post`` the converter
reads, so the converter knows no source's shapes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from bridge.errors import TransientError
from bridge.model import Post, SourcePost

# Caps for reading an export (zip bomb guard): one entry, and the whole file. X allows
# long videos and a tweets.js of 100k posts is < 1 GB; X splits archives at 50 GB parts.
DEFAULT_MAX_ENTRY_BYTES = 4 * 1024**3
DEFAULT_MAX_TOTAL_BYTES = 64 * 1024**3


class MediaTooSlow(TransientError):
    """A media download passed its overall deadline (a server that trickles bytes); a smaller variant may do.

    The pipeline tries the next candidate and, failing all, defers the post at once.
    """


@dataclass(frozen=True)
class SourceCapabilities:
    """What a source can tell (bridgy-fed's capability flags: ask, never ``if kind == ...``)."""

    edits: bool = False  # later versions of a post are read, with the id of the first
    deletes: bool = False  # deletions are reported
    reposts: bool = False  # reposts (retweets) are read as such
    quotes: bool = False  # quote posts name the quoted post
    alt_text: bool = False  # media carry their descriptions
    reach: int | None = None  # how many recent posts can be read back at most (None: all)


@dataclass(frozen=True)
class SourceAccount:
    """One account of a source, as the source names it."""

    id: str  # stable id (X user id)
    handle: str  # what people write after "@"


@dataclass(frozen=True)
class Unreadable:
    """A post the source returned but could not normalise: recorded as failed, never blocking the rest."""

    post_id: str  # "" when it has no usable id either: then it is only logged
    raw: dict[str, Any]  # what to keep of it in the ledger (JSON-ready)
    error: str


@dataclass
class ReadResult:
    """One read of new posts.

    ``entries`` are the posts read, in the order the source gave them, each
    normalised or ``Unreadable``. ``cursor`` is where the next read starts
    (None: keep the old one). ``complete`` is False when more posts than the
    source can reach are newer than the old cursor: those between are lost to
    this source.
    """

    entries: list[SourcePost | Unreadable] = field(default_factory=list)
    cursor: str | None = None
    complete: bool = True
    requests: int = 0
    oldest_id: str | None = None  # the oldest post read, for the message about an incomplete read
    deleted: list[str] = field(default_factory=list)

    @property
    def posts(self) -> list[SourcePost]:
        return [e for e in self.entries if isinstance(e, SourcePost)]

    @property
    def unreadable(self) -> list[Unreadable]:
        return [e for e in self.entries if isinstance(e, Unreadable)]


class Source(Protocol):
    """A source of one network's posts. Not thread-safe: one per worker."""

    kind: str  # registry kind, e.g. "x"
    name: str  # for messages, e.g. "X API"
    capabilities: SourceCapabilities

    def read_new(self, account: str, cursor: str | None) -> ReadResult:
        """Posts of ``account`` newer than ``cursor`` (an idle read should cost one request)."""
        ...

    def read_range(
        self,
        account: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = None,
        around: str | None = None,
    ) -> Iterator[SourcePost]:
        """Posts of ``account`` created in [since, until) (backfill), or the one post ``around`` names."""
        ...

    def sort_key(self, post_id: str) -> int:
        """Orders this source's ids oldest first (X: the snowflake itself)."""
        ...

    def cursor_at(self, when: datetime) -> str:
        """A cursor meaning "posts made after ``when``": the start of an account with no posts yet."""
        ...

    def open_media(self, ref: str, dest: Path, max_bytes: int) -> tuple[Path, str | None]:
        """A media item (``MediaDraft.source``) as a local file and its MIME type, at most ``max_bytes``.

        Downloads only from the source's own hosts; a path is a file the
        source extracted (an archive's). Raises PermanentError if too big or
        not allowed, TransientError if the host is down.
        """
        ...

    def permalink(self, handle: str | None, post_id: str) -> str:
        """The public URL of a post of this source."""
        ...

    def neutral(self, post: SourcePost, account: str) -> Post:
        """A post of ``account`` this source recorded, as the neutral ``Post`` the converter reads:
        links expanded with entities as data, media with candidates, references with permalinks."""
        ...

    def close(self) -> None:
        ...


class ArchiveSource(Source, Protocol):
    """A source read from a file (an export): it knows its owner and holds media files."""

    path: Path

    @property
    def is_zip(self) -> bool:
        """Whether media must be copied out of the export before they can be uploaded."""
        ...

    def owner(self) -> SourceAccount:
        """Whose export this is."""
        ...

    def with_local_media(
        self, post: SourcePost, into: Path | None, max_bytes: Mapping[str, int] | None = None
    ) -> SourcePost:
        """``post`` with its media as files in ``into`` and no remote URL (nothing is downloaded later).

        ``max_bytes`` caps a file by media type: a bigger one raises SourceError and is not copied."""
        ...

    def check_media(self, post: SourcePost, max_bytes: int) -> None:
        """Raise SourceError if a media file of ``post`` declares more than ``max_bytes`` (zip bomb)."""
        ...

    def __enter__(self) -> ArchiveSource:
        ...

    def __exit__(self, *exc: object) -> None:
        ...
