"""`bridge backfill`: bring a cooperative's history over, from its X archive or from the X API.

Nothing here posts on its own: selected posts are recorded in the ledger with
``origin="backfill"`` (no cursor, so the poller's cursor is untouched) and then
go out through ``Pipeline.deliver``, the same delivery code the poller uses,
one post at a time so the run can be paced, shown and stopped between posts.
The ledger's key (organisation, post id) makes a post seen by both the poller
and a backfill go out once, and makes a stopped or killed run resumable.

Everything that can be wrong with the input is found before anything is
recorded: the archive is read once, to check and count; what it found is
kept in a temp file (a dry run records it straight into its scratch ledger,
unless ``--limit`` is given) and recorded from there, the API's pages (at most X's 3,200 most recent posts) are all read
before the first one is recorded.

Pacing: Mastodon allows 300 statuses per 3 hours and 30 media uploads per 30
minutes per account (Mastodon docs, "Rate limits"). The pipeline stops a cycle
when either is reached; a backfill instead waits after each post, by default
36 s per status and 60 s per upload made, which keeps it under both.
"""

from __future__ import annotations

import dataclasses
import heapq
import json
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from itertools import islice
from pathlib import Path
from typing import IO, Any, TypeVar, cast

from bridge.config import Config
from bridge.crashpoints import crash_point
from bridge.errors import BridgeError, ConfigError, RateLimited, SourceError
from bridge.ledger import FetchedPost, Ledger, OrgRecord
from bridge.model import SourcePost, post_from_dict, post_to_dict
from bridge.pipeline import SOURCE_KIND, TARGET_KIND, Pipeline, utcnow
from bridge.policy import InstanceLimits, Policy, Visibility
from bridge.registry import make_source, open_archive_source, target_name, target_paces
from bridge.render import render_text
from bridge.sources.base import DEFAULT_MAX_ENTRY_BYTES, DEFAULT_MAX_TOTAL_BYTES, ArchiveSource
from bridge.targets.base import limits_from_dict

T = TypeVar("T")
RECORD_BATCH = 500  # posts per ledger transaction while recording an archive
MAX_LISTED = 50  # warnings and failures listed one by one in the summary; the rest are counted
OPEN_STATES = ("pending", "posting")


# --------------------------------------------------------------------------- options and results


@dataclass(frozen=True)
class BackfillOptions:
    """What the command line asked for. ``since`` is inclusive, ``until`` exclusive (UTC)."""

    archive: Path | None = None
    api: bool = False
    since: datetime | None = None
    until: datetime | None = None
    limit: int | None = None
    retweets: bool | None = None  # None: the organisation's policy
    replies: str | None = None
    visibility: str | None = None
    date_prefix: bool | None = None
    pace: float | None = None  # seconds after each delivered post; None: automatic (Mastodon's limits)
    dry_run: bool = False
    force: bool = False
    max_entry_bytes: int = DEFAULT_MAX_ENTRY_BYTES
    max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES


@dataclass
class Plan:
    """What a run will do, known before anything is recorded or posted."""

    source: str
    in_range: int = 0
    new: int = 0  # not in the ledger yet: recorded by this run
    resumed: int = 0  # recorded by an earlier backfill and not finished: continued
    done_before: int = 0  # already in the ledger and finished (by the poller or an earlier backfill)
    media: int = 0  # media files of the new and resumed posts
    posts_by_media: Counter[int] = field(default_factory=Counter)  # new and resumed posts by their media files
    missing_media: list[str] = field(default_factory=list)
    missing_media_count: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def to_deliver(self) -> int:
        return self.new + self.resumed


@dataclass
class Summary:
    delivered: int = 0
    skipped: int = 0
    failed: int = 0
    statuses: int = 0
    uploads: int = 0
    skip_reasons: Counter[str] = field(default_factory=Counter)
    failures: list[tuple[str, str]] = field(default_factory=list)
    cut: list[str] = field(default_factory=list)  # posts going out cut, their whole text missing from the source
    stopped: bool = False
    error: str | None = None
    paced_seconds: float = 0.0  # the waits after the delivered posts (dry run: the waits they would need)

    @property
    def processed(self) -> int:
        return self.delivered + self.skipped + self.failed


# --------------------------------------------------------------------------- small helpers


def parse_date(value: str, option: str, *, end: bool = False) -> datetime:
    """``YYYY-MM-DD`` (a whole day: ``--until`` includes it) or an ISO 8601 time (UTC unless given)."""
    text = value.strip()
    try:
        if len(text) == 10:
            day = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=timezone.utc)
            return day + timedelta(days=1) if end else day
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"{option}: {value!r} is not a date (expected YYYY-MM-DD or an ISO 8601 time)") from None
    return parsed.replace(tzinfo=timezone.utc) if parsed.tzinfo is None else parsed.astimezone(timezone.utc)


def parse_pace(value: str) -> float | None:
    """``auto`` (None) or a number of seconds to wait after each delivered post."""
    if value.strip().lower() == "auto":
        return None
    try:
        seconds = float(value)
    except ValueError:
        raise ConfigError(f"--pace: {value!r} is neither 'auto' nor a number of seconds") from None
    if seconds < 0 or seconds != seconds:
        raise ConfigError(f"--pace: {value!r} must be 0 or more seconds")
    return seconds


def backfill_policy(policy: Policy, options: BackfillOptions) -> Policy:
    """The organisation's policy with this run's overrides (the configuration file is not changed)."""
    changes: dict[str, Any] = {}
    if options.visibility is not None:
        changes["visibility"] = dataclasses.replace(policy.visibility, backfill=cast(Visibility, options.visibility))
    if options.retweets is False:
        changes["retweets"] = "skip"
    elif options.retweets is True and policy.retweets == "skip":
        changes["retweets"] = "auto"
    if options.replies is not None:
        changes["replies"] = options.replies
    if options.date_prefix is not None:
        changes["date_prefix"] = options.date_prefix
    return dataclasses.replace(policy, **changes)


def backfill_config(config: Config, name: str, options: BackfillOptions) -> Config:
    policy = backfill_policy(config.policy_for(name), options)
    return dataclasses.replace(config, organisations={**config.organisations, name: policy})


def duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{days}d {text}" if days else text


def _pace_seconds() -> tuple[float, float]:
    """Seconds per status and per upload that keep under the target's limits
    (Mastodon: 36 s for 300 statuses per 3 hours, 60 s for 30 uploads per 30 minutes)."""
    statuses, uploads = target_paces(TARGET_KIND)
    return statuses.seconds_each, uploads.seconds_each


def _state_word(state: str | None) -> str:
    """A ledger state as a backfill sees it: ``new`` (not recorded), ``open`` or ``done``."""
    if state is None:
        return "new"
    return "open" if state in OPEN_STATES else "done"


def _reason(text: str | None) -> str:
    """A skip reason without its ``post ID:`` prefix, so equal reasons group in the summary."""
    if not text:
        return "nothing to post"
    if text.startswith("post ") and ": " in text:
        return text.split(": ", 1)[1]
    return text


# --------------------------------------------------------------------------- the run


class Backfill:
    """One backfill run for one organisation: ``plan()``, then ``record()`` and ``deliver()``, or ``dry_run()``."""

    def __init__(
        self,
        config: Config,
        ledger: Ledger,
        name: str,
        options: BackfillOptions,
        *,
        stop: threading.Event | None = None,
        clock: Callable[[], datetime] = utcnow,
        retry_wait_max: float = 4.0,
    ) -> None:
        if options.archive is not None and options.api:
            raise ConfigError("give exactly one of --archive PATH or --api, not both")
        if options.archive is None and not options.api:
            raise ConfigError("give exactly one of --archive PATH or --api")
        if options.since and options.until and options.since >= options.until:
            raise ConfigError(
                f"--since {options.since:%Y-%m-%d %H:%M:%S}Z is not before --until (exclusive end "
                f"{options.until:%Y-%m-%d %H:%M:%S}Z): the range is empty"
            )
        if options.limit is not None and options.limit < 1:
            raise ConfigError(f"--limit: {options.limit} must be 1 or more")
        org = ledger.get_org(name)
        if org is None or org.state == "unlinked":
            raise ConfigError(f"no organisation named {name!r} (see: bridge orgs)")
        if org.state != "active" and not options.dry_run:
            raise ConfigError(f"organisation {name} is {org.state}" + (f" ({org.state_reason})" if org.state_reason else "")
                              + "; nothing can be posted (see: bridge status)")
        self.config = config
        self.ledger = ledger
        self.name = name
        self.org = org
        self.options = options
        self.stop = stop or threading.Event()
        self.clock = clock
        self.retry_wait_max = retry_wait_max
        # The organisation's first source: X, or a website feed / Bluesky account (their posts still on the source).
        first = ledger.get_source(name)
        self.source_kind = first.kind if first is not None else SOURCE_KIND
        if options.archive is not None and self.source_kind != SOURCE_KIND:
            raise ConfigError(f"--archive: organisation {name} reads a {self.source_kind} source, not X; bring over what"
                              " it still holds with --api instead")
        self.bf_config = backfill_config(config, name, options)
        self.media_dir = config.database.parent / "backfill-media" / name
        self._limit_key: tuple[int, str] | None = None  # (source sort key, id) of the newest chosen post
        self._sort_key: Callable[[str], int] = lambda _id: 0  # the source's, once it is opened
        self._api_posts: list[SourcePost] = []
        self.plan_: Plan | None = None
        self.record_failures: list[tuple[str, str]] = []  # (post id, reason): failed while recording (media too big)
        self._eta_left = 0.0  # live ETA (eta_now): the planned waits of the posts not processed yet
        self._caps: dict[str, int] | None = None
        self._next_at = 0.0
        self._scratch: tuple[tempfile.TemporaryDirectory[str], Ledger] | None = None  # a dry run's, once opened
        self._scratch_added: int | None = None  # posts recorded into it (None: not recorded yet)
        self._staged: IO[str] | None = None  # the plan's posts to record, one line each (a temp file; see _stage)

    # ------------------------------------------------------------------ choosing posts

    def _in_range(self, post: SourcePost) -> bool:
        o = self.options
        return (o.since is None or post.created_at >= o.since) and (o.until is None or post.created_at < o.until)

    def _with_states(self, posts: Iterable[SourcePost]) -> Iterator[tuple[SourcePost, str]]:
        """Each post with its state: ``new`` (not in the ledger), ``open`` (recorded, not finished) or
        ``done``, looked up RECORD_BATCH posts per ledger query (one per post was a tenth of recording: issue 18)."""
        return self._with_states_of((p.id, p) for p in posts)

    def _with_states_of(self, items: Iterable[tuple[str, T]]) -> Iterator[tuple[T, str]]:
        """``_with_states`` for anything with a post id: (post id, item) pairs in, (item, state) out."""
        it = iter(items)
        while chunk := list(islice(it, RECORD_BATCH)):
            states = self.ledger.post_states(self.name, [post_id for post_id, _ in chunk])
            for post_id, item in chunk:
                yield item, _state_word(states.get(post_id))

    def _chosen(self, post_id: str, state: str) -> bool:
        """Whether a new post is within ``--limit`` (the oldest N new posts, found by ``plan``)."""
        return state == "new" and (self._limit_key is None or self._key(post_id) <= self._limit_key)

    def _key(self, post_id: str) -> tuple[int, str]:
        """Oldest first, by the source's own order of its ids (``Source.sort_key``)."""
        return (self._sort_key(post_id), post_id)

    def plan(self) -> Plan:
        """Read and check the whole input and count what will be done; records and posts nothing."""
        try:
            self.plan_ = self._plan_archive() if self.options.archive is not None else self._plan_api()
        except BaseException:
            self.close_scratch()  # a dry run's scratch ledger, half filled
            raise
        return self.plan_

    @contextmanager
    def _archive(self) -> Iterator[ArchiveSource]:
        assert self.options.archive is not None
        archive = open_archive_source(
            self.options.archive, max_entry_bytes=self.options.max_entry_bytes, max_total_bytes=self.options.max_total_bytes
        )
        self._sort_key = archive.sort_key
        try:
            yield archive
        finally:
            archive.close()

    def _check_account(self, archive: ArchiveSource) -> None:
        account = archive.owner()
        if account.id != self.org.x_user_id and not self.options.force:
            raise SourceError(
                f"{archive.path}: this archive belongs to @{account.handle} (X id {account.id}), not to "
                f"organisation {self.name}'s X account @{self.org.x_username} (X id {self.org.x_user_id}); "
                "nothing was posted (use --force if that is really intended)"
            )

    def _plan_archive(self) -> Plan:
        plan = Plan(source=f"archive {self.options.archive}")
        limit = self.options.limit
        heap: list[tuple[tuple[int, str], int, tuple[str, ...]]] = []  # the N oldest new posts, as a max-heap
        # A dry run records into its scratch ledger in this same pass (issue 18: reading the archive a
        # second time was a third of the dry run). With --limit the chosen posts are known only at the
        # end, so they are recorded by a second pass as in a real run.
        self.close_scratch()  # planned again: from an empty scratch ledger
        scratch = self._scratch_ledger() if self.options.dry_run and limit is None else None
        # What a real run (or a dry run with --limit) records, kept as the plan reads it: recording
        # then needs no second read of the archive (issue 18: that read was a third of recording).
        if self._staged is not None:
            self._staged.close()
        staged = self._staged = None if scratch is not None else tempfile.TemporaryFile("w+", encoding="utf-8")
        now = self.clock()
        batch: list[FetchedPost] = []
        added = 0
        with self._archive() as archive:
            self._check_account(archive)
            posts = archive.read_range(self.org.x_user_id, since=self.options.since, until=self.options.until)
            for post, state in self._with_states(p for p in posts if self._in_range(p)):
                if self.stop.is_set():
                    raise BridgeError("interrupted while reading the archive; nothing was recorded or posted")
                plan.in_range += 1
                archive.check_media(post, self.options.max_entry_bytes)
                if scratch is not None and state != "done":
                    added += self._add(archive, scratch, post, state, batch, now, extract=False)
                elif staged is not None and state != "done":
                    self._stage(archive, staged, post, state)
                if state != "done":
                    self._note_media_over_limits(plan, post)
                missing = tuple(f"post {post.id}: media {m.key} ({m.type})" for m in post.media if m.local_path is None)
                if state == "done":
                    plan.done_before += 1
                elif state == "open":
                    plan.resumed += 1
                    self._count_media(plan, len(post.media), missing)
                elif limit is None:
                    plan.new += 1
                    self._count_media(plan, len(post.media), missing)
                else:
                    key = self._key(post.id)
                    entry = ((-key[0], key[1]), len(post.media), missing)  # negated: heap[0] is the newest kept
                    if len(heap) < limit:
                        heapq.heappush(heap, entry)  # type: ignore[arg-type]
                    elif entry[0] > heap[0][0]:
                        heapq.heapreplace(heap, entry)  # type: ignore[arg-type]
            if scratch is not None:
                self._scratch_added = added + self._flush(scratch, batch, now)
        if limit is not None:
            for _neg, count, missing in heap:
                plan.new += 1
                self._count_media(plan, count, missing)
            # heap[0] holds the newest of the N oldest: new posts up to its key are recorded
            self._limit_key = (-heap[0][0][0], heap[0][0][1]) if heap else (-1, "")
        return plan

    @staticmethod
    def _stage(archive: ArchiveSource, staged: IO[str], post: SourcePost, state: str) -> None:
        """Keep a post for ``record()``: one line ``READY<TAB>id<TAB>created_at<TAB>JSON``.

        A post that needs the archive again (a zip's media files to check and extract, or
        a resumed post's media paths to refresh) is kept as read (READY ``w``); any other is
        kept exactly as ``_add`` would record it (READY ``-``: X's media URLs dropped), and
        ``record()`` writes its JSON text as it is, unparsed (issue 18: parsing it again and
        serialising it a second time were a fifth of recording). A resumed post without
        media needs nothing, so it is not kept. Ids are digits and the JSON escapes every
        control character, so neither holds a tab or a line break.
        """
        files = archive.is_zip and any(m.local_path is not None for m in post.media)
        if state == "open":
            if not post.media:
                return
            ready = False
        else:
            ready = not files
        if ready:
            post = archive.with_local_media(post, None)
        text = json.dumps(post_to_dict(post), ensure_ascii=False, separators=(",", ":"))
        staged.write(f"{'-' if ready else 'w'}\t{post.id}\t{post.created_at.isoformat()}\t{text}\n")

    def _note_media_over_limits(self, plan: Plan, post: SourcePost) -> None:
        """A file over x.max_media_bytes or the instance's limit fails its post (and is never extracted): say so first."""
        caps = self._media_caps()
        for m in post.media:
            cap = caps.get(m.type)
            if m.size_bytes is not None and cap is not None and m.size_bytes > cap and len(plan.notes) < MAX_LISTED:
                plan.notes.append(f"post {post.id}: media {m.key} ({m.type}) is {m.size_bytes} bytes, over the limit of {cap}; "
                                  "that post will fail")

    @staticmethod
    def _count_media(plan: Plan, count: int, missing: tuple[str, ...]) -> None:
        plan.media += count - len(missing)
        plan.posts_by_media[count - len(missing)] += 1
        plan.missing_media_count += len(missing)
        room = MAX_LISTED - len(plan.missing_media)
        if room > 0:
            plan.missing_media.extend(missing[:room])

    def _plan_api(self) -> Plan:
        o = self.options
        source = make_source(self.source_kind, self.config)
        plan = Plan(source=f"the {source.name}")
        self._sort_key = source.sort_key
        fetched: list[SourcePost] = []
        try:
            for post in source.read_range(self.org.x_user_id, since=o.since, until=o.until, limit=o.limit):
                fetched.append(post)
                if self.stop.is_set():
                    raise BridgeError(f"interrupted while reading from the {source.name}; nothing was recorded or posted")
        except RateLimited as exc:
            when = f"{exc.retry_at:%Y-%m-%d %H:%M:%S} UTC" if exc.retry_at else "later"
            raise BridgeError(
                f"{source.name} rate limit reached while reading @{self.org.x_username}'s timeline for {self.name} "
                f"(after {len(fetched)} posts); it resets at {when}. Nothing was recorded or posted: "
                "run the same command again after that"
            ) from exc
        finally:
            source.close()
        reach = source.capabilities.reach
        if o.limit is None and reach is not None and len(fetched) >= reach:
            plan.notes.append(
                f"the {source.name} serves only the {reach:,} most recent posts; older ones need the archive (--archive)"
            )
        new: list[SourcePost] = []
        for post, state in self._with_states(p for p in fetched if self._in_range(p)):  # newest first
            plan.in_range += 1
            if state == "done":
                plan.done_before += 1
            elif state == "open":
                plan.resumed += 1
                plan.media += len(post.media)
                plan.posts_by_media[len(post.media)] += 1
            elif o.limit is None or len(new) < o.limit:
                new.append(post)
                plan.media += len(post.media)
                plan.posts_by_media[len(post.media)] += 1
        plan.new = len(new)
        self._api_posts = sorted(new, key=lambda p: self._key(p.id))
        return plan

    # ------------------------------------------------------------------ recording

    def record(self) -> int:
        """Record the planned posts as ``pending`` (origin backfill); resumed rows get fresh media paths."""
        if self.plan_ is None:
            self.plan()
        added = self._record_into(self.ledger, extract=True)
        crash_point("backfill_recorded")  # all recorded, nothing delivered yet
        return added

    def _record_into(self, ledger: Ledger, *, extract: bool) -> int:
        now = self.clock()
        if self.options.archive is None:
            return ledger.record_fetched(
                self.name,
                [FetchedPost(p.id, p.created_at, post_to_dict(p), sort_key=self._sort_key(p.id)) for p in self._api_posts],
                cursor=None,
                now=now,
                origin="backfill",
            )
        added = 0
        batch: list[FetchedPost] = []
        assert self._staged is not None, "plan() first"
        self._staged.seek(0)
        with self._archive() as archive:
            while lines := [line.rstrip("\n").split("\t", 3) for line in islice(self._staged, RECORD_BATCH)]:
                if self.stop.is_set():
                    break
                # The states of the posts needing the archive are looked up again: the poller may have
                # recorded or finished one since the plan. The others need no look-up: record_fetched
                # leaves a post already in the ledger as it is.
                states = self.ledger.post_states(self.name, [post_id for ready, post_id, _, _ in lines if ready == "w"])
                for ready, post_id, created_at, text in lines:
                    if ready == "-":
                        if self._chosen(post_id, "new"):  # staged ready only as a new post
                            batch.append(FetchedPost(post_id, datetime.fromisoformat(created_at), text,
                                                     sort_key=self._sort_key(post_id)))
                            if len(batch) >= RECORD_BATCH:
                                added += self._flush(ledger, batch, now)
                        continue
                    state = _state_word(states.get(post_id))
                    if state == "done" or (state == "new" and not self._chosen(post_id, state)):
                        continue
                    added += self._add(archive, ledger, post_from_dict(json.loads(text)), state, batch, now,
                                       extract=extract)
        return added + self._flush(ledger, batch, now)

    def _add(
        self, archive: ArchiveSource, ledger: Ledger, post: SourcePost, state: str, batch: list[FetchedPost],
        now: datetime, *, extract: bool,
    ) -> int:
        """Record one new or open post: into ``batch``, written RECORD_BATCH posts per transaction; returns how many were new."""
        error = None
        into = None
        if extract and archive.is_zip and post.media:
            self.media_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            into = self.media_dir
        try:
            post = archive.with_local_media(post, into, max_bytes=self._media_caps())
        except SourceError as exc:  # too big or a bad entry: only this post fails, nothing extracted
            error = str(exc)
            if ledger is self.ledger:
                self.record_failures.append((post.id, error))
            post = archive.with_local_media(post, None)
        if state == "open" and ledger is self.ledger:
            if error is not None:
                ledger.finish(self.name, post.id, "failed", now, error)
            elif post.media:  # a resumed run: media paths of this run's archive
                ledger.refresh_post(self.name, post.id, post_to_dict(post), now)
            return 0
        batch.append(FetchedPost(post.id, post.created_at, post_to_dict(post), error=error, sort_key=self._sort_key(post.id)))
        return self._flush(ledger, batch, now) if len(batch) >= RECORD_BATCH else 0

    def _flush(self, ledger: Ledger, batch: list[FetchedPost], now: datetime) -> int:
        """Write ``batch`` in one ledger transaction and empty it; returns how many posts were new."""
        if not batch:
            return 0
        added = ledger.record_fetched(self.name, batch, cursor=None, now=now, origin="backfill")
        batch.clear()
        return added

    def _media_caps(self) -> dict[str, int]:
        """The most bytes a media file may have, by type: as the pipeline checks them before upload.

        Worked out once per run (per post it was 7 % of recording an archive: issue 18).
        """
        if self._caps is None:
            limits = limits_from_dict(self.org.limits) if self.org.limits else InstanceLimits()
            cap = self.config.x.max_media_bytes
            video = min(cap, limits.video_size_limit)
            self._caps = {"photo": min(cap, limits.image_size_limit), "video": video, "animated_gif": video}
        return self._caps

    # ------------------------------------------------------------------ delivering

    def eta_seconds(self, posts: int, media: int) -> float:
        if self.options.pace is None:
            status_seconds, media_seconds = _pace_seconds()
            return max(posts * status_seconds, media * media_seconds)
        return posts * self.options.pace

    def plan_seconds(self, plan: Plan) -> float:
        """The run's waits: ``pause_after`` each planned post, one status and its media files each.

        Threads and skipped posts make the real figure differ a little; the dry
        run's summary gives the exact one.
        """
        return sum(n * self.pause_after(1, media) for media, n in plan.posts_by_media.items())

    def eta_now(self) -> float:
        """Seconds left in a running ``deliver``: the waits of the posts still to come and the one under way."""
        return self._eta_left + max(0.0, self._next_at - time.monotonic())

    def deliver(self, on_post: Callable[[Summary, str, str], None] | None = None) -> Summary:
        """Deliver the queue oldest first, one post at a time, pacing between posts.

        Posts the poller recorded go through a pipeline with the organisation's
        own policy; backfill rows through one with this run's overrides.
        Stops when this run's posts are done (later poller posts are left to
        the daemon), when ``stop`` is set, or on an error that needs a person.
        """
        def pipeline(config: Config) -> Pipeline:
            return Pipeline(config, self.ledger, clock=self.clock, stop=self.stop, retry_wait_max=self.retry_wait_max)

        with pipeline(self.bf_config) as backfill, pipeline(self.config) as plain:
            return self._deliver(backfill, plain, on_post)

    def _deliver(
        self, backfill: Pipeline, plain: Pipeline, on_post: Callable[[Summary, str, str], None] | None
    ) -> Summary:
        plan = self.plan_ or Plan(source="")
        expected = plan.to_deliver
        summary = Summary()
        for post_id, reason in self.record_failures:
            self._count(summary, "failed", post_id, reason, 0, 0)
        next_at = 0.0
        self._eta_left = self.plan_seconds(plan)
        while True:
            if self.stop.is_set():
                summary.stopped = True
                break
            head = self.ledger.open_posts(self.name, 1)
            if not head:
                break
            row = head[0]
            if row.origin != "backfill" and summary.processed >= expected:
                break  # the rest of the queue is the poller's, newer than everything backfilled
            wait = next_at - time.monotonic()
            if wait > 0 and self.stop.wait(wait):
                summary.stopped = True
                break
            before = self.clock()
            pipeline = backfill if row.origin == "backfill" else plain
            result = pipeline.deliver(self.name, limit=1)
            after = self.ledger.get_post(self.name, row.post_id)
            if after is not None and after.state not in OPEN_STATES:
                statuses = len(self.ledger.statuses_since(self.name, before))
                uploads = len(self.ledger.uploads_since(self.name, before))
                self._count(summary, after.state, row.post_id, after.last_error, statuses, uploads)
                if after.state == "delivered":
                    pause = self.pause_after(statuses, uploads)
                    summary.paced_seconds += pause
                    next_at = self._next_at = time.monotonic() + pause
                # its planned share of the waits is done with (a skipped post has no media files to wait for)
                self._eta_left = max(0.0, self._eta_left - self.pause_after(1, uploads))
                if on_post is not None:
                    on_post(summary, row.post_id, after.state)
                continue
            if result.deferred_until is not None:
                # A rate limit, Mastodon's pace or a transient failure: wait (interruptibly) instead of giving up.
                seconds = (result.deferred_until - self.clock()).total_seconds()
                why = result.error or (after.last_error if after is not None else None) or "deferred"
                print(
                    f"{self.name}: waiting until {result.deferred_until:%Y-%m-%d %H:%M:%S} UTC ({why});"
                    f" then about {duration(self._eta_left)} more; Ctrl-C stops, running again continues",
                    file=sys.stderr,
                    flush=True,
                )
                if self.stop.wait(max(0.0, seconds)):
                    summary.stopped = True
                    break
                continue
            if result.error:
                summary.error = result.error
                break
            if self.stop.is_set():
                summary.stopped = True
            else:
                summary.error = f"post {row.post_id} stayed {after.state if after else 'missing'}; see: bridge status {self.name}"
            break
        if not summary.stopped and summary.error is None:
            self._clean_media_dir()
        return summary

    def pause_after(self, statuses: int, uploads: int) -> float:
        """Seconds to wait after a post that made ``statuses`` toots and ``uploads`` uploads."""
        if self.options.pace is None:
            status_seconds, media_seconds = _pace_seconds()
            return max(statuses * status_seconds, uploads * media_seconds)
        return self.options.pace

    @staticmethod
    def _count(summary: Summary, state: str, post_id: str, reason: str | None, statuses: int, uploads: int) -> None:
        summary.statuses += statuses
        summary.uploads += uploads
        if state == "delivered":
            summary.delivered += 1
        elif state == "skipped":
            summary.skipped += 1
            summary.skip_reasons[_reason(reason)] += 1
        else:
            summary.failed += 1
            summary.failures.append((post_id, reason or "unknown reason"))

    def _clean_media_dir(self) -> None:
        """Extracted archive media are kept only while some backfill row may still need them."""
        if not self.media_dir.exists():
            return
        if any(r.origin == "backfill" for r in self.ledger.posts(self.name, OPEN_STATES)):
            return
        shutil.rmtree(self.media_dir, ignore_errors=True)

    # ------------------------------------------------------------------ dry run

    def _scratch_ledger(self) -> Ledger:
        """The dry run's ledger: a temp file (so a huge archive needs no memory) with the organisations, no tokens."""
        if self._scratch is None:
            tmp = tempfile.TemporaryDirectory(prefix="bridge-backfill-dry-run-")
            scratch = Ledger.open(Path(tmp.name) / "dry-run.db")
            self._scratch = (tmp, scratch)
            now = self.clock()
            for org in self.ledger.list_orgs():
                scratch.save_org(dataclasses.replace(org, token=None), now)
        return self._scratch[1]

    def close_scratch(self) -> None:
        """Remove the dry run's scratch ledger (``dry_run`` does; a caller that stops after ``plan`` should)."""
        if self._scratch is not None:
            tmp, scratch = self._scratch
            self._scratch = self._scratch_added = None
            scratch.close()
            tmp.cleanup()

    def record_scratch(self) -> int:
        """Have the planned posts in the scratch ledger (recorded by ``plan`` unless ``--limit``); returns how many."""
        if self.plan_ is None:
            self.plan()
        scratch = self._scratch_ledger()
        if self._scratch_added is None:
            self._scratch_added = self._record_into(scratch, extract=False)
        return self._scratch_added

    def dry_run(self, echo: Callable[[str], None]) -> Summary:
        """Print each post's drafts, oldest first, as if delivered; the real ledger is only read.

        Posts are recorded in a scratch ledger (a temp file, so a huge archive
        needs no memory); a toot is pretended for each draft there, so threads
        and boosts of own posts are shown as they will be made.
        """
        summary = Summary()
        try:
            self.record_scratch()
            scratch = self._scratch_ledger()
            now = self.clock()
            pipeline = Pipeline(self.bf_config, scratch, clock=self.clock, stop=self.stop)  # converts only: no request
            org = scratch.get_org(self.name) or self.org
            limits = limits_from_dict(org.limits) if org.limits else InstanceLimits()
            while not self.stop.is_set():
                rows = scratch.open_posts(self.name, 200)
                if not rows:
                    break
                for row in rows:
                    if self.stop.is_set():
                        summary.stopped = True
                        break
                    post = post_from_dict(row.post)
                    conversion = pipeline.convert_row(org, post, limits, row.origin == "backfill")
                    echo(f"== post {post.id} ({post.created_at:%Y-%m-%d %H:%M} UTC)")
                    echo(render_text(conversion, limits.max_characters))
                    if conversion.skipped or not conversion.drafts:
                        scratch.finish(self.name, row.post_id, "skipped", now, conversion.skipped or "nothing to post")
                        self._count(summary, "skipped", row.post_id, conversion.skipped, 0, 0)
                        continue
                    for d in conversion.drafts:
                        scratch.record_delivery(self.name, row.post_id, d.part, d.kind, f"dry-run:{row.post_id}:{d.part}", "", now)
                    scratch.finish(self.name, row.post_id, "delivered", now)
                    uploads = sum(len(d.media) for d in conversion.drafts)
                    statuses = sum(1 for d in conversion.drafts if d.kind != "edit")
                    self._count(summary, "delivered", row.post_id, None, statuses, uploads)
                    if post.truncated and not post.is_retweet:
                        summary.cut.append(post.id)
                    summary.paced_seconds += self.pause_after(statuses, uploads)
            if self.stop.is_set():
                summary.stopped = True
        finally:
            self.close_scratch()
        return summary


# --------------------------------------------------------------------------- output


def _window(window: timedelta) -> str:
    minutes = int(window.total_seconds() // 60)
    return f"{minutes // 60} h" if minutes % 60 == 0 else f"{minutes} min"


def limits_text() -> str:
    """The target's write limits in words: "Mastodon's limits of 300 statuses per 3 h and 30 media uploads per 30 min"."""
    statuses, uploads = target_paces(TARGET_KIND)
    return (f"{target_name(TARGET_KIND)}'s limits of {statuses.limit} statuses per {_window(statuses.window)} and"
            f" {uploads.limit} media uploads per {_window(uploads.window)}")


def about(seconds: float) -> str:
    """A duration for people: "9:26:00 (about 9.4 h)"."""
    if seconds >= 3600:
        return f"{duration(seconds)} (about {seconds / 3600:.1f} h)"
    return duration(seconds)


def estimate_text(seconds: float, statuses: int, uploads: int, pace: float | None) -> str:
    """Why a run takes as long as it does (issue 12 item 8: 566 media files take about 9.5 h)."""
    if pace is not None:
        return f"{about(seconds)} at {pace:g} s after each post"
    status_seconds, media_seconds = _pace_seconds()
    return (f"{about(seconds)} at {limits_text()} ({statuses} statuses need {about(statuses * status_seconds)} on their"
            f" own, {uploads} media uploads {about(uploads * media_seconds)}; each post waits for the tighter limit)")


def plan_text(name: str, org: OrgRecord, plan: Plan, eta: float, options: BackfillOptions, policy: Policy) -> str:
    lines = [
        f"Backfill {name} (@{org.x_username} -> @{org.acct}) from {plan.source}:",
        f"  {plan.in_range} posts in range: {plan.new} new, {plan.resumed} left open by an earlier run,"
        f" {plan.done_before} already handled",
        f"  visibility {policy.visibility.backfill}, retweets {policy.retweets}, replies {policy.replies},"
        f" date prefix {'on' if policy.date_prefix else 'off'}",
        f"  {plan.media} media files in these posts" + (f", {plan.missing_media_count} missing from the source" if plan.missing_media_count else ""),
    ]
    if plan.to_deliver:
        # Before anything is posted (and in a dry run, before the drafts): how long the run will take.
        lines.append(f"  estimated time about {estimate_text(eta, plan.to_deliver, plan.media, options.pace)}"
                     + (" (at least one status a post; the summary below counts them exactly)" if options.dry_run else ""))
    lines.extend(f"  note: {n}" for n in plan.notes)
    return "\n".join(lines)


def summary_text(name: str, plan: Plan, summary: Summary, *, dry_run: bool, pace: float | None = None) -> str:
    verb = "would deliver" if dry_run else "delivered"
    lines = [
        f"{name}: {verb} {summary.delivered} posts ({summary.statuses} statuses, {summary.uploads} media uploads),"
        f" skipped {summary.skipped}, failed {summary.failed}"
        + (f"; {plan.done_before} were already handled before" if plan.done_before else "")
    ]
    if dry_run and summary.delivered:
        lines.append(f"estimated time about {estimate_text(summary.paced_seconds, summary.statuses, summary.uploads, pace)}")
    if summary.skip_reasons:
        lines.append("skipped:")
        lines.extend(f"  {n} x {reason}" for reason, n in summary.skip_reasons.most_common())
    if summary.failures:
        lines.append("failed (see: bridge retry):")
        lines.extend(f"  post {pid}: {reason}" for pid, reason in summary.failures[:MAX_LISTED])
        if len(summary.failures) > MAX_LISTED:
            lines.append(f"  ... and {len(summary.failures) - MAX_LISTED} more")
    if summary.cut:
        lines.append(f"warning: {len(summary.cut)} long posts are cut in the source (their whole text is missing from"
                     " data/note-tweet.js); each goes out ending in \"…\" with a link to the original:")
        lines.extend(f"  post {pid}" for pid in summary.cut[:MAX_LISTED])
        if len(summary.cut) > MAX_LISTED:
            lines.append(f"  ... and {len(summary.cut) - MAX_LISTED} more")
    if plan.missing_media_count:
        lines.append(f"warning: {plan.missing_media_count} media files are missing from the source;"
                     " those posts go out with a note and a link to the original:")
        lines.extend(f"  {m}" for m in plan.missing_media)
        if plan.missing_media_count > len(plan.missing_media):
            lines.append(f"  ... and {plan.missing_media_count - len(plan.missing_media)} more")
    lines.extend(f"note: {n}" for n in plan.notes)
    if summary.error:
        lines.append(f"stopped: {summary.error}")
    elif summary.stopped:
        lines.append("stopped before the end; nothing was lost: run the same command again to continue")
    return "\n".join(lines)
