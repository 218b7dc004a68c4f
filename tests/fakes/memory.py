"""A tiny in-memory source and target for testing the generic pipeline (like bridgy-fed's ``Fake`` protocol).

They implement ``bridge.sources.base.Source`` and ``bridge.targets.base.Target``
with lists and dicts and no network, so tests of the pipeline's own promises
(exactly once, order, a failed post not blocking, the cursor moving with the
posts) run without X's or Mastodon's shapes. The real networks keep their own
real-HTTP tests.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from bridge.errors import PermanentError
from bridge.model import Draft, MediaItem, Post, PostRef, SourcePost
from bridge.policy import InstanceLimits
from bridge.sources.base import ReadResult, SourceCapabilities, Unreadable
from bridge.targets.base import Copy, Pace, Published, TargetCapabilities, UnsureOutcome

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def memory_post(account: str, post_id: str, text: str, *, handle: str = "coop", **kw: object) -> SourcePost:
    """A plain post of the memory network; ids are decimal strings in time order."""
    return SourcePost(
        id=post_id, author_id=account, author_username=handle, created_at=T0 + timedelta(minutes=int(post_id)),
        text=text, **kw,  # type: ignore[arg-type]
    )


@dataclass
class MemorySource:
    """Posts per account, in memory. ``read_new`` returns them newest first, as real APIs do."""

    kind: str = "memory"
    name: str = "memory source"
    capabilities: SourceCapabilities = SourceCapabilities(reposts=True, alt_text=True)
    posts: dict[str, list[SourcePost]] = field(default_factory=dict)
    unreadable: dict[str, list[Unreadable]] = field(default_factory=dict)
    media: dict[str, bytes] = field(default_factory=dict)  # ref -> content
    deleted: dict[str, list[str]] = field(default_factory=dict)  # account -> ids seen gone (told at every read)
    down: Exception | None = None  # raised by every read while set
    reads: int = 0
    opens: int = 0  # open_media calls (downloads)
    closed: bool = False

    def add(self, post: SourcePost) -> SourcePost:
        self.posts.setdefault(post.author_id, []).append(post)
        return post

    def delete(self, account: str, post_id: str) -> None:
        """The post disappears from the account; reads report it as deleted from now on."""
        self.posts[account] = [p for p in self.posts.get(account, []) if p.id != post_id]
        self.deleted.setdefault(account, []).append(post_id)

    def read_new(self, account: str, cursor: str | None) -> ReadResult:
        self.reads += 1
        if self.down is not None:
            raise self.down
        after = self.sort_key(cursor) if cursor else -1
        new = sorted((p for p in self.posts.get(account, []) if self.sort_key(p.id) > after),
                     key=lambda p: self.sort_key(p.id), reverse=True)
        bad = [u for u in self.unreadable.get(account, []) if self.sort_key(u.post_id) > after]
        ids = [p.id for p in new] + [u.post_id for u in bad]
        newest = max(ids, key=self.sort_key, default=None)
        return ReadResult(entries=[*new, *bad], cursor=newest, complete=True, requests=1,
                          deleted=list(self.deleted.get(account, [])))

    def read_range(
        self, account: str, *, since: datetime | None = None, until: datetime | None = None,
        limit: int | None = None, around: str | None = None,
    ) -> Iterator[SourcePost]:
        for p in self.posts.get(account, []):
            if around is not None and p.id != around:
                continue
            if (since is None or p.created_at >= since) and (until is None or p.created_at < until):
                yield p

    def sort_key(self, post_id: str) -> int:
        return int(post_id)

    def cursor_at(self, when: datetime) -> str:
        return "0"

    def open_media(self, ref: str, dest: Path, max_bytes: int) -> tuple[Path, str | None]:
        self.opens += 1
        data = self.media.get(ref)
        if data is None:
            raise PermanentError(f"memory media {ref} does not exist")
        if len(data) > max_bytes:
            raise PermanentError(f"memory media {ref} is {len(data)} bytes, over {max_bytes}")
        dest.write_bytes(data)
        return dest, "image/png"

    def permalink(self, handle: str | None, post_id: str) -> str:
        return f"memory://{handle or 'unknown'}/{post_id}"

    def neutral(self, post: SourcePost, account: str) -> Post:
        """Memory posts are plain already: the text as written, media by their key, replies by id."""
        reply = None
        if post.in_reply_to_post_id:
            reply = PostRef(post.in_reply_to_post_id, self.permalink(None, post.in_reply_to_post_id),
                            own=post.in_reply_to_user_id == account)
        return Post(
            id=post.id, author=post.author_username, created_at=post.created_at, text=post.text,
            permalink=self.permalink(post.author_username, post.id), network="memory", home="memory.example",
            media=tuple(MediaItem(m.key, m.type, m.alt_text, candidates=(m.key,), mime_type="image/png")
                        for m in post.media),
            reply_to=reply,
            repost_of=PostRef(post.retweet_of_id, self.permalink(post.retweet_of_username, post.retweet_of_id),
                              author=post.retweet_of_username) if post.retweet_of_id else None,
            edit_of=post.original_id if post.original_id != post.id else None,
        )

    def close(self) -> None:
        self.closed = True


@dataclass
class Item:
    """One thing on the memory target: a post, or a boost of another item."""

    copy: Copy
    text: str
    key: str | None = None
    in_reply_to: str | None = None
    boost_of: str | None = None
    media_ids: tuple[str, ...] = ()
    deleted: bool = False


@dataclass
class MemoryTarget:
    """One account on an in-memory server. ``refuse`` maps a text to the permanent error its
    publish raises; ``lose_answer`` names texts whose publish succeeds but whose answer is lost
    once (a crash or a timeout right after the server acted)."""

    kind: str = "memory"
    capabilities: TargetCapabilities = TargetCapabilities(edits=True, boosts=True, deletes=True)
    status_pace: Pace = Pace(300, timedelta(hours=3))
    media_pace: Pace = Pace(30, timedelta(minutes=30))
    idempotency_window: timedelta = timedelta(hours=1)
    request_count: int = 0
    items: list[Item] = field(default_factory=list)
    uploads: dict[str, str] = field(default_factory=dict)  # media id -> description
    refuse: dict[str, str] = field(default_factory=dict)
    lose_answer: set[str] = field(default_factory=set)
    honour_keys: bool = True  # False: a server that ignores idempotency keys
    max_characters: int = 500
    down: Exception | None = None  # raised by every write while set (a server that is down, a revoked token...)
    searches: int = 0  # find_published calls
    deletes: list[str] = field(default_factory=list)  # every copy id a delete was asked for, in order
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    # -- what the tests read
    def texts(self) -> list[str]:
        """Texts of the live posts, in publishing order."""
        return [i.text for i in self.items if not i.deleted and i.boost_of is None]

    # -- the Target interface
    def limits(self) -> InstanceLimits:
        self.request_count += 1
        return InstanceLimits(max_characters=self.max_characters)

    def length(self, text: str, spoiler_text: str = "") -> int:
        return len(text) + len(spoiler_text)

    def mention(self, handle: str) -> str:
        return "@" + handle.lstrip("@")

    def is_limit_refusal(self, error: Exception) -> bool:
        return "too long" in str(error)

    def upload_media(self, path: str, mime_type: str | None = None, description: str | None = None) -> str:
        self.request_count += 1
        media_id = f"m{next(self._ids)}"
        self.uploads[media_id] = description or ""
        return media_id

    def _new(self, **kw: object) -> Item:
        n = next(self._ids)
        item = Item(copy=Copy(str(n), f"memory://target/{n}"), **kw)  # type: ignore[arg-type]
        self.items.append(item)
        return item

    def _write(self) -> None:
        self.request_count += 1
        if self.down is not None:
            raise self.down

    def publish(
        self, draft: Draft, *, idempotency_key: str, in_reply_to: str | None = None,
        media_ids: list[str] | None = None, quote_of: str | None = None,
    ) -> Copy:
        self._write()
        if draft.text in self.refuse:
            raise PermanentError(self.refuse[draft.text])
        same = next((i for i in self.items if i.key == idempotency_key), None) if self.honour_keys else None
        item = same or self._new(text=draft.text, key=idempotency_key, in_reply_to=in_reply_to,
                                 media_ids=tuple(media_ids or ()))
        if draft.text in self.lose_answer:
            self.lose_answer.discard(draft.text)
            raise UnsureOutcome(f"memory target: the answer to {draft.text!r} was lost")
        return item.copy

    def find_published(
        self, account_id: str, since_id: str | None, *, not_before: datetime | None = None, max_pages: int = 25,
        oldest_first: bool = False,
    ) -> list[Published]:
        self.request_count += 1
        self.searches += 1
        after = int(since_id) if since_id else 0
        return [Published(i.copy.id, i.copy.url, i.text, i.boost_of, i.in_reply_to) for i in self.items
                if not i.deleted and int(i.copy.id) > after]

    def same_text(self, sent: str, item: Published) -> bool:
        return " ".join(sent.split()) == " ".join(item.text.split())

    def left_unsure(self, error: str | None) -> bool:
        return "answer was lost" in (error or "")

    def boost(self, copy_id: str) -> Copy:
        self._write()
        same = next((i for i in self.items if i.boost_of == copy_id and not i.deleted), None)
        return (same or self._new(text="", boost_of=copy_id)).copy

    def edit(self, copy_id: str, draft: Draft, media_ids: list[str] | None = None) -> Copy:
        self._write()
        item = next(i for i in self.items if i.copy.id == copy_id)
        item.text = draft.text
        return item.copy

    def delete(self, copy_id: str) -> None:
        self._write()
        self.deletes.append(copy_id)
        for i in self.items:
            if i.copy.id == copy_id:
                i.deleted = True

    def close(self) -> None:
        pass


def keyed_target() -> MemoryTarget:
    """A second kind of memory target, shaped like Bluesky: no edits, ids valid on every server, record keys that never expire
    (``idempotency_window`` is ``timedelta.max``): a retried publish returns the copy it made, so the
    pipeline must never search its account (``searches`` stays 0)."""
    return MemoryTarget(kind="keyed", capabilities=TargetCapabilities(boosts=True, deletes=True, shared_ids=True),
                        idempotency_window=timedelta.max, status_pace=Pace(1000, timedelta(hours=1)))
