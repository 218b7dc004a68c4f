"""The only place that chains fetch, record, convert, publish and record.

Exactly-once, step by step (each step survives a crash at any point):
1. read new posts since the cursor from the ``Source`` (idle: one request);
2. in ONE ledger transaction, insert them as ``pending`` and advance the cursor;
3. deliver open posts oldest first: convert, open and upload media, mark
   ``posting`` with an idempotency key, publish each part, record each copy;
4. a ``posting`` row found later is resolved: within the target's idempotency
   window (Mastodon: 1 hour) the same key is sent again; older, or after an
   unclear answer (``UnsureOutcome``), the account's own items since the post
   was marked posting are searched first (``Target.find_published``), and only
   what is missing is published.

Sources and targets are reached only through ``bridge.sources.base.Source`` and
``bridge.targets.base.Target``, made by ``bridge.registry``: this module names
no network (tests/test_boundaries.py).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from bridge.config import Config
from bridge.convert import Conversion
from bridge.crashpoints import crash_point
from bridge.errors import (
    AuthError,
    BridgeError,
    LedgerError,
    PermanentError,
    RateLimited,
    SourceError,
    SourceGone,
    TransientError,
)
from bridge.http import host_session
from bridge.ledger import FetchedPost, Ledger, OrgRecord, PostRow, SourceAccount, TargetAccount
from bridge.logs import get_logger, masker
from bridge.mediatmp import media_dir
from bridge.model import BridgedToot, Draft, MediaDraft, SourcePost, post_from_dict, post_to_dict
from bridge.policy import InstanceLimits, Policy, with_overrides
from bridge.registry import delete_pace, make_source, make_target, renderer, target_name
from bridge.sources.base import MediaTooSlow, ReadResult, Source
from bridge.targets.base import Published, Target, UnsureOutcome, limits_from_dict, limits_to_dict

log = get_logger("bridge.pipeline")

# The kinds every organisation uses today; the ledger of copies will name them per organisation.
SOURCE_KIND = "x"
TARGET_KIND = "mastodon"
RECONCILE_SLACK = timedelta(minutes=10)  # how far the server's clock may lag ours when reading back to a mark
LIMITS_MAX_AGE = timedelta(days=1)
RETRY_ATTEMPTS = 3
MEDIA_CACHE_BYTES = 256 * 1024 * 1024  # media kept for the next target within one delivery; beyond it: fetched again


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def idempotency_key(org: str, post_id: str, part: int, kind: str = "status", target: str = "mastodon") -> str:
    """Derived from organisation, target, post and part, so every retry of a part sends the same key.

    The target "mastodon" keeps the form it had before organisations had several
    targets, so a post left ``posting`` by an older version is retried with its key.
    """
    where = org if target == TARGET_KIND else f"{org}:{target}"
    return f"geno-bridge:{where}:{post_id}:{part}:{kind}"


@dataclass
class CycleResult:
    org: str
    fetched: int = 0
    delivered: int = 0
    failed: int = 0
    skipped: int = 0
    deferred_until: datetime | None = None
    error: str | None = None
    x_requests: int = 0
    mastodon_requests: int = 0  # requests to every target of the organisation (their sum; per target below)
    polled: bool = False
    target_requests: dict[str, int] = field(default_factory=dict)  # target name -> requests this cycle
    deleted: int = 0  # copies deleted because their source post is gone

    def defer(self, until: datetime | None) -> None:
        """Remember a deferral; with several targets (or sources) the earliest is when to come back."""
        if until is not None and (self.deferred_until is None or until < self.deferred_until):
            self.deferred_until = until

    def add_error(self, error: str) -> None:
        self.error = f"{self.error}; {error}" if self.error else error


class _Stop(Exception):
    """Ends this organisation's delivery for this cycle (order within an organisation is kept)."""

    def __init__(self, reason: str, until: datetime | None = None) -> None:
        super().__init__(reason)
        self.until = until


@dataclass
class _Context:
    """One target of one organisation for one cycle: its account row, client, limits, renderer and mentions."""

    org: OrgRecord
    account: TargetAccount
    limits: InstanceLimits
    target: Target
    mentions: Mapping[str, str] = field(default_factory=dict)
    limits_refreshed: bool = False
    unsure: set[str] = field(default_factory=set)  # posts whose last write got a malformed answer

    @property
    def name(self) -> str:
        """The target's name within the organisation (the ledger's ``target``)."""
        return self.account.name


class LinkedMentions(Mapping[str, str]):
    """``Ledger.linked_handles(kind)`` with ``configured`` over it, looked up one handle at a time.

    Keys are lowercased source handles (any case and a leading "@" are accepted). A
    handle is asked of the ledger when a post first mentions it and kept for the life
    of this object (one organisation's delivery to one target: a link made meanwhile
    counts from the next cycle, as with the whole map read once per cycle). Iterating
    reads the whole map (for callers that want it all; the renderers only look up).
    """

    def __init__(self, ledger: Ledger, kind: str, configured: Mapping[str, str]) -> None:
        self._ledger = ledger
        self._kind = kind
        self._configured = {k.lstrip("@").lower(): v for k, v in configured.items()}
        self._seen: dict[str, str | None] = {}

    def __getitem__(self, handle: str) -> str:
        key = handle.lstrip("@").lower()
        if key in self._configured:
            return self._configured[key]
        if key not in self._seen:
            self._seen[key] = self._ledger.linked_handle(self._kind, key)
        found = self._seen[key]
        if found is None:
            raise KeyError(handle)
        return found

    def _whole(self) -> dict[str, str]:
        return {**self._ledger.linked_handles(self._kind), **self._configured}

    def __iter__(self) -> Iterator[str]:
        return iter(self._whole())

    def __len__(self) -> int:
        return len(self._whole())


class Pipeline:
    """One organisation cycle at a time. Not thread-safe: one per worker (it holds one ledger connection)."""

    def __init__(
        self,
        config: Config,
        ledger: Ledger,
        *,
        clock: Callable[[], datetime] = utcnow,
        stop: threading.Event | None = None,
        retry_wait_max: float = 4.0,
        source: Source | None = None,
        target_factory: Callable[[TargetAccount], Target] | None = None,
    ) -> None:
        """``source`` and ``target_factory`` replace the registry's (tests: in-memory fakes); the factory
        is given the target's account row and makes the target for it."""
        self.config = config
        self.ledger = ledger
        self.clock = clock
        self.stop = stop or threading.Event()
        self.retry_wait_max = retry_wait_max
        self._injected = source
        self._sources: dict[str, Source] = {}  # kind -> this worker's source of that kind
        self._kinds: dict[tuple[str, str], str] = {}  # (organisation, source name) -> its kind (from the ledger)
        self._target_factory = target_factory
        self._instances: dict[str, Any] = {}  # target server URL -> kept-alive HTTP session
        self._media_cache: _MediaCache | None = None  # while delivering to several targets
        masker.register(config.x.bearer_token)

    def close(self) -> None:
        """Close the source's and targets' connections (the ledger belongs to the caller)."""
        for source in self._sources.values():
            source.close()
        self._sources.clear()
        if self._injected is not None:
            self._injected.close()
        for session in self._instances.values():
            session.close()
        self._instances.clear()

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ sources and targets
    def source(self, org: OrgRecord | None = None, name: str = SOURCE_KIND) -> Source:
        """The source ``name`` of ``org`` reads from (its kind in the ledger; without one, X), kept across cycles.

        One per worker and kind, not one per cycle: its HTTP session keeps the
        connection alive, so an idle poll is one request and no TCP handshake,
        and the client's setup is paid once (bench/poll_scale.py: issue 8).
        """
        if self._injected is not None:
            return self._injected
        kind = SOURCE_KIND
        if org is not None:
            kind = self._kinds.get((org.name, name)) or ""
            if not kind:
                account = self.ledger.get_source(org.name, name)
                kind = self._kinds[(org.name, name)] = account.kind if account is not None else SOURCE_KIND
        source = self._sources.get(kind)
        if source is None:
            source = self._sources[kind] = make_source(kind, self.config)
        return source

    def target_for(self, account: TargetAccount) -> Target:
        """The client of one target account (made by the registry from its kind)."""
        if self._target_factory is not None:
            return self._target_factory(account)
        if not account.credentials:
            raise AuthError(f"organisation {account.org} has no {target_name(account.kind)} credentials")
        masker.register(account.credentials)
        # One session per server for all organisations this worker serves there: most
        # share one instance, so a delivery reuses the connection (and TLS) of the last.
        session = self._instances.get(account.base_url)
        if session is None:
            session = self._instances[account.base_url] = host_session(account.base_url)

        def save_credentials(credentials: str) -> None:
            masker.register(credentials)
            self.ledger.update_target(account.org, self.clock(), target=account.name, credentials=credentials)

        return make_target(account.kind, self.config, base_url=account.base_url, credentials=account.credentials,
                           account_id=account.account_id, handle=account.handle, session=session,
                           save_credentials=save_credentials)

    # ------------------------------------------------------------------ the cycle
    def cycle(self, name: str, *, poll: bool = True, deliver: bool = True) -> CycleResult:
        """Poll one organisation (unless deferred) and deliver what is due. Never raises for a post's sake.

        The daemon polls with ``deliver=False`` and delivers on a pool of its own
        (``poll=False``), so waiting for Mastodon never holds up reading X.
        """
        result = CycleResult(org=name)
        org = self.ledger.get_org(name)
        if org is None or org.state != "active":
            result.error = f"organisation {name} is {org.state if org else 'not linked'}"
            return result
        now = self.clock()
        if poll:
            self._poll(org, result, now)
            if result.deferred_until is not None or result.error is not None:  # the poll may have written: read again
                org = self.ledger.get_org(name) or org
        if deliver and org.state == "active" and not self.stop.is_set():
            # Backfilled history is delivered by `bridge backfill` itself (its pacing, its options), never here.
            self._deliver(org, result, origin="poll")
        # Only what this cycle did: a delivery may run while a poll of the same organisation does.
        done: dict[str, Any] = {"last_poll_at": now} if result.polled else {}
        if result.error is None:
            done["last_success_at"] = self.clock()
        if done:
            self.ledger.update_org(name, self.clock(), **done)
        # debug: the daemon logs each cycle itself (cycle_finished), `bridge poll` prints it
        log.debug(
            "cycle",
            org=name,
            fetched=result.fetched,
            delivered=result.delivered,
            failed=result.failed,
            skipped=result.skipped,
            x_requests=result.x_requests,
            mastodon_requests=result.mastodon_requests,
            error=result.error,
        )
        return result

    def _poll(self, org: OrgRecord, result: CycleResult, now: datetime) -> None:
        """Read every source of the organisation (active, or marked gone: it may come back), each from its
        own cursor; one source failing never stops the others (contract 2)."""
        if org.poll_deferred_until and org.poll_deferred_until > now:
            result.defer(org.poll_deferred_until)
            return
        accounts = [a for a in self.ledger.sources(org.name) if a.state in ("active", "needs_relink")]
        for account in accounts:
            if self.stop.is_set():
                return
            self._poll_source(org, account, result, alone=len(accounts) == 1)

    def _poll_source(self, org: OrgRecord, account: SourceAccount, result: CycleResult, *, alone: bool) -> None:
        source = self.source(org, account.name)
        network = _network(source)
        if not alone:
            network = f"{account.name} ({network})"
        try:
            cursor = account.cursor
            read = source.read_new(account.account_id, cursor)
            result.x_requests += read.requests
            result.polled = True
            if account.state == "needs_relink":
                self._source_back(org, account)
            if cursor is None:
                self._start_cursor(org, account, source, read)
                return
            if not read.complete:
                # More than the source's reach is newer than the cursor: the rest cannot be read at all.
                log.warning("fetch_incomplete", org=org.name, source=account.name, since_id=cursor,
                            oldest_read=read.oldest_id)
            crash_point("after_fetch")
            posts = fetched_posts(read, self.clock(), source.sort_key, source=account.name)
            result.fetched += self.ledger.record_fetched(org.name, posts, cursor=read.cursor, now=self.clock(),
                                                         source=account.name)
            result.failed += sum(1 for p in posts if p.error)
            crash_point("after_record")
            if read.deleted:
                skipped, due = self.ledger.mark_deleted_at_source(org.name, read.deleted, self.clock(),
                                                                  source=account.name)
                result.skipped += skipped
                if skipped or due:
                    log.info("deleted_at_source", org=org.name, source=account.name, skipped=skipped,
                             copies_to_delete=due)
        except RateLimited as exc:
            if alone:
                self._defer_org(org, "poll_deferred_until", exc, result)
            else:  # the other sources are read as usual; this one again next cycle
                result.add_error(f"{network}: {exc}")
                log.warning("rate_limited", org=org.name, source=account.name, error=str(exc))
        except SourceGone as exc:
            # A feed answering 404/410: the source needs a new link (status shows why); it is still polled,
            # so a site that comes back clears it, and no other organisation or source stops.
            result.add_error(str(exc) if alone else f"{account.name}: {exc}")
            self.ledger.set_source_state(org.name, "needs_relink", self.clock(), source=account.name)
            self.ledger.update_org(org.name, self.clock(), state_reason=str(exc))
            log.warning("source_gone", org=org.name, source=account.name, error=str(exc))
        except (TransientError, SourceError, AuthError) as exc:
            # The source is down or refused us: nothing is recorded, nothing lost; try next cycle.
            result.add_error(f"{network}: {exc}")
            log.warning("poll_failed", org=org.name, source=account.name, error=str(exc))
        except LedgerError:
            raise  # our own side (a full disk): the caller reports it; not the source's fault
        except Exception as exc:  # noqa: BLE001 - whatever the source sent, one organisation never stops the others
            result.add_error(f"{network}: the posts could not be read ({type(exc).__name__}: {exc}); nothing recorded,"
                             " trying again next cycle")
            log.exception("poll_crashed", org=org.name, source=account.name, error=str(exc))

    def _source_back(self, org: OrgRecord, account: SourceAccount) -> None:
        """A source marked gone (``needs_relink``) answered again: active; the organisation's reason is
        cleared once none of its sources is still gone."""
        self.ledger.set_source_state(org.name, "active", self.clock(), source=account.name)
        if org.state_reason and not any(a.state == "needs_relink" for a in self.ledger.sources(org.name)):
            self.ledger.update_org(org.name, self.clock(), state_reason=None)
        log.info("source_back", org=org.name, source=account.name)

    def _start_cursor(self, org: OrgRecord, account: SourceAccount, source: Source, read: ReadResult) -> None:
        """A source without a cursor: start it at the newest post and deliver nothing.

        Only a link cut short (or made by an older version) leaves no cursor. What
        is on the source then is history, not news: posting it would flood the timeline,
        so the first poll only sets the cursor (history is `bridge backfill`'s).
        With no post at all, the cursor is the moment of this poll.
        """
        start = read.cursor or source.cursor_at(self.clock())
        self.ledger.set_cursor(org.name, start, self.clock(), source=account.name)
        log.warning("cursor_started", org=org.name, source=account.name, cursor=start,
                    not_posted=len(read.posts) + len(read.unreadable),
                    reason="no cursor: the posts already there are not posted (bring them over with bridge backfill)")

    def _defer_org(self, org: OrgRecord, column: str, exc: RateLimited, result: CycleResult) -> None:
        until = exc.retry_at or (self.clock() + timedelta(minutes=5))
        result.deferred_until = until
        self.ledger.update_org(
            org.name, self.clock(), **{column: until, "deferrals": org.deferrals + 1, "last_deferral": f"{exc} (until {until:%H:%M:%SZ})"}
        )
        log.warning("rate_limited", org=org.name, until=until.isoformat(), error=str(exc))

    # ------------------------------------------------------------------ delivery
    def _deliver(self, org: OrgRecord, result: CycleResult, limit: int = 1000, origin: str | None = None) -> None:
        """Deliver each active target's queue on its own: one target failing, paced or rate limited never
        holds up another (each has its own state per post, pace and deferral)."""
        now = self.clock()
        if org.post_deferred_until and org.post_deferred_until > now:
            result.defer(org.post_deferred_until)
            return
        if not self.ledger.has_work(org.name, origin):
            return  # idle: one indexed query, no target made, not a single request
        accounts = [t for t in self.ledger.targets(org.name) if t.state == "active"]
        if len(accounts) < 2:
            for account in accounts:
                self._deliver_target(org, account, result, limit, origin, alone=True)
            return
        # Several targets: a medium is downloaded once and uploaded to each (kept in a locked folder).
        with media_dir() as folder:
            self._media_cache = _MediaCache(folder)
            try:
                for account in accounts:
                    if self.stop.is_set():
                        return
                    self._deliver_target(org, account, result, limit, origin, alone=False)
            finally:
                self._media_cache = None

    def _deliver_target(
        self, org: OrgRecord, account: TargetAccount, result: CycleResult, limit: int, origin: str | None, *, alone: bool
    ) -> None:
        if account.deferred_until and account.deferred_until > self.clock():
            result.defer(account.deferred_until)
            return
        queue = self.ledger.open_posts(org.name, limit, origin, source=None, target=account.name)
        deletes = self.ledger.due_deletes(org.name, target=account.name, limit=1)
        if not queue and not deletes:
            return  # idle: not a single request to this target
        ctx: _Context | None = None
        held: set[str] = set()  # sources whose next post waits: their later posts wait too (order kept)
        try:
            ctx = self._context(org, account)
            for row in queue:
                if self.stop.is_set():
                    return
                if row.source in held:
                    continue
                if row.next_attempt_at and row.next_attempt_at > self.clock():
                    result.defer(row.next_attempt_at)
                    held.add(row.source)
                    continue
                outcome = self._deliver_with_retries(ctx, row)
                if outcome == "delivered":
                    result.delivered += 1
                elif outcome == "skipped":
                    result.skipped += 1
                elif outcome == "failed":
                    result.failed += 1
            if deletes and not self.stop.is_set():
                self._delete_copies(ctx, result)
        except _Stop as stop:
            result.defer(stop.until)
            result.add_error(str(stop) if alone else f"{account.name}: {stop}")
        except AuthError as exc:
            if alone:  # the organisation's only target: the organisation needs a new link, as it always did
                self.ledger.update_org(org.name, self.clock(), state="needs_relink", state_reason=str(exc))
            else:  # only this target: the others go on
                self.ledger.update_target(org.name, self.clock(), target=account.name, state="needs_relink",
                                          state_reason=str(exc))
            result.add_error(str(exc) if alone else f"{account.name}: {exc}")
            log.error("needs_relink", org=org.name, target=account.name, error=str(exc))
        except RateLimited as exc:
            if alone:
                self._defer_org(org, "post_deferred_until", exc, result)
            else:
                until = exc.retry_at or (self.clock() + timedelta(minutes=5))
                self.ledger.update_target(org.name, self.clock(), target=account.name, deferred_until=until)
                result.defer(until)
                log.warning("rate_limited", org=org.name, target=account.name, until=until.isoformat(), error=str(exc))
        except TransientError as exc:  # the target's limits could not be read
            result.add_error(str(exc) if alone else f"{account.name}: {exc}")
        finally:
            if ctx is not None:
                result.target_requests[account.name] = result.target_requests.get(account.name, 0) + ctx.target.request_count
                result.mastodon_requests += ctx.target.request_count
                ctx.target.close()

    def has_due(self, name: str) -> bool:
        """Whether any target of ``name`` has a polled post or a deletion waiting (one indexed query)."""
        return self.ledger.has_work(name, "poll")

    def deliver(self, name: str, *, limit: int | None = None) -> CycleResult:
        """Only the delivery half of ``cycle``: no X request, no poll bookkeeping.

        ``bridge backfill`` calls it with ``limit=1`` to pace and report post by
        post; ``limit`` is how many queued posts (oldest first) this call looks at, per target.
        """
        result = CycleResult(org=name)
        org = self.ledger.get_org(name)
        if org is None or org.state != "active":
            result.error = f"organisation {name} is {org.state if org else 'not linked'}"
            return result
        if not self.stop.is_set():
            self._deliver(org, result, limit=limit or 1000)
        return result

    def _context(self, org: OrgRecord, account: TargetAccount) -> _Context:
        target = self.target_for(account)
        now = self.clock()
        fetched = account.limits_fetched_at
        if account.limits is None or fetched is None or now - fetched > LIMITS_MAX_AGE:
            try:
                limits = target.limits()
            except BaseException:
                target.close()
                raise
            self.ledger.update_target(org.name, now, target=account.name, limits=limits_to_dict(limits),
                                      limits_fetched_at=now)
        else:
            limits = limits_from_dict(account.limits)
        return _Context(org=org, account=account, limits=limits, target=target,
                        mentions=self.mention_map(org, account.kind))

    def _refresh_limits(self, ctx: _Context) -> None:
        ctx.limits_refreshed = True
        ctx.limits = ctx.target.limits()
        self.ledger.update_target(ctx.org.name, self.clock(), target=ctx.name, limits=limits_to_dict(ctx.limits),
                                  limits_fetched_at=self.clock())
        log.info("limits_refreshed", org=ctx.org.name, target=ctx.name, max_characters=ctx.limits.max_characters)

    def policy_for(self, name: str) -> Policy:
        """The configured policy with what the organisation set on its own page (`bridge web`) over it."""
        return with_overrides(self.config.policy_for(name), self.ledger.get_org_policy(name))

    def mention_map(self, org: OrgRecord, kind: str = TARGET_KIND) -> Mapping[str, str]:
        """Who a mention becomes on targets of ``kind``: linked organisations join the map automatically;
        for Mastodon the configured map (fediverse accounts, by its definition) wins on conflict.

        Answered per handle (``LinkedMentions``), not read whole: the whole map reads every
        organisation, once per organisation and target delivering (issue 18)."""
        configured = dict(self.config.policy_for(org.name).mention_map) if kind == TARGET_KIND else {}
        return LinkedMentions(self.ledger, kind, configured)

    def bridged(self, post_id: str, target: str = TARGET_KIND) -> BridgedToot | None:
        """The copy of ``post_id`` (any organisation's) on the target named ``target``: what a quote links."""
        toot = self.ledger.first_toot(None, post_id, source=None, target=target)
        if toot is None:
            return None
        owner = self.ledger.get_target(toot.org, toot.target)
        handle = ""
        if owner is not None:
            host = owner.base_url.split("://", 1)[-1].rstrip("/")
            handle = owner.handle if "@" in owner.handle or owner.kind != TARGET_KIND else f"{owner.handle}@{host}"
        return BridgedToot(status_id=toot.status_id, url=toot.url, account_acct=handle)

    def convert_row(
        self, org: OrgRecord, post: SourcePost, limits: InstanceLimits, backfill: bool,
        mentions: Mapping[str, str] | None = None, *, source: str = SOURCE_KIND, target: TargetAccount | None = None,
    ) -> Conversion:
        """The drafts of ``post`` (read by the organisation's source ``source``) for ``target``
        (default: the organisation's Mastodon target). ``mentions`` is the cycle's map (built once
        per cycle); without it, it is built here."""
        kind = target.kind if target is not None else TARGET_KIND
        name = target.name if target is not None else TARGET_KIND
        account = self.ledger.get_source(org.name, source)
        return renderer(kind)(
            self.source(org, source).neutral(post, account.account_id if account is not None else org.x_user_id),
            limits,
            self.policy_for(org.name),
            mentions=mentions if mentions is not None else self.mention_map(org, kind),
            bridged=lambda post_id: self.bridged(post_id, name),
            backfill=backfill,
        )

    def _deliver_with_retries(self, ctx: _Context, row: PostRow) -> str:
        """Deliver one post to one target; transient trouble is retried with backoff, then deferred."""
        retrying = Retrying(
            stop=stop_after_attempt(RETRY_ATTEMPTS),
            wait=wait_random_exponential(multiplier=0.25, max=self.retry_wait_max),
            # A download past its deadline already had its whole time: defer it rather than wait it out again now.
            retry=retry_if_exception(
                lambda e: isinstance(e, TransientError) and not isinstance(e, (RateLimited, MediaTooSlow))
            ),
            reraise=True,
        )
        where = {"source": row.source, "target": ctx.name}
        try:
            return retrying(self._deliver_one, ctx, row)
        except PermanentError as exc:
            if not ctx.limits_refreshed and ctx.target.is_limit_refusal(exc):
                # The instance may have changed its limits since we cached them: read them once and retry.
                self._refresh_limits(ctx)
                return self._deliver_with_retries(ctx, row)
            reason = str(exc)
            self.ledger.finish(row.org, row.post_id, "failed", self.clock(), reason, **where)
            log.warning("post_failed", org=row.org, post_id=row.post_id, target=ctx.name, reason=reason)
            return "failed"
        except RateLimited:
            raise
        except TransientError as exc:
            fresh = self.ledger.get_post(row.org, row.post_id, **where) or row
            delay = min(timedelta(seconds=30 * 2 ** min(fresh.attempts, 7)), timedelta(hours=1))
            until = self.clock() + delay
            self.ledger.defer(row.org, row.post_id, until, f"transient: {exc}", self.clock(), **where)
            log.warning("post_deferred", org=row.org, post_id=row.post_id, target=ctx.name, until=until.isoformat(),
                        error=str(exc))
            attempts = 1 if isinstance(exc, MediaTooSlow) else RETRY_ATTEMPTS
            raise _Stop(f"post {row.post_id} deferred after {attempts} attempt(s): {exc}", until) from exc

    def _deliver_one(self, ctx: _Context, row: PostRow) -> str:
        org, where = ctx.org, {"source": row.source, "target": ctx.name}
        started = time.monotonic()
        try:
            post = post_from_dict(row.post)
        except (KeyError, TypeError, ValueError) as exc:
            raise PermanentError(f"post {row.post_id}: the stored post cannot be read: {exc}") from exc
        conversion = self.convert_row(org, post, ctx.limits, row.origin == "backfill", ctx.mentions,
                                      source=row.source, target=ctx.account)
        if conversion.skipped:
            self.ledger.finish(org.name, row.post_id, "skipped", self.clock(), conversion.skipped, **where)
            log.info("post_skipped", org=org.name, post_id=row.post_id, target=ctx.name, reason=conversion.skipped)
            return "skipped"
        if not conversion.drafts:
            self.ledger.finish(org.name, row.post_id, "skipped", self.clock(), "nothing to post", **where)
            return "skipped"
        if not ctx.target.capabilities.edits and any(d.kind == "edit" for d in conversion.drafts):
            reposted = self._edit_as_new_post(ctx, row, conversion)
            if reposted is None:
                not_edited = f"edit not propagated: {target_name(ctx.account.kind)} has no edits"
                self.ledger.finish(org.name, row.post_id, "skipped", self.clock(), not_edited, **where)
                log.info("post_skipped", org=org.name, post_id=row.post_id, target=ctx.name, reason=not_edited)
                return "skipped"
            conversion = reposted
        window = ctx.target.idempotency_window
        expired = bool(row.state == "posting" and row.posting_since and self.clock() - row.posting_since > window)
        # An unclear answer may hide a copy that exists (and a server may ignore the idempotency key): look first.
        # A target whose keys never expire (timedelta.max: deterministic record keys) answers a retry with the
        # copy it has, so it is never searched.
        unsure = row.post_id in ctx.unsure or (row.state == "posting" and ctx.target.left_unsure(row.last_error))
        if (expired or unsure) and window != timedelta.max:
            self._reconcile(ctx, self.ledger.get_post(org.name, row.post_id, **where) or row, post, conversion.drafts)
        ctx.unsure.discard(row.post_id)
        self.ledger.mark_posting(org.name, row.post_id, idempotency_key(org.name, row.post_id, 0, target=ctx.name),
                                 self.clock(), **where)
        done = {d.part: d for d in self.ledger.deliveries(org.name, row.post_id, **where)}
        for draft in conversion.drafts:
            if draft.part in done:
                continue
            self._pace(ctx)
            try:
                posted_id, url = self._publish(ctx, row, post, draft, done)
            except UnsureOutcome:
                ctx.unsure.add(row.post_id)
                raise
            crash_point("after_status_post")
            self.ledger.record_delivery(org.name, row.post_id, draft.part, draft.kind, posted_id, url, self.clock(),
                                        **where)
            done = {d.part: d for d in self.ledger.deliveries(org.name, row.post_id, **where)}
            log.info(
                "delivered",
                org=org.name,
                target=ctx.name,
                post_id=row.post_id,
                part=draft.part,
                kind=draft.kind,
                toot_id=posted_id,
                attempt=(row.attempts + 1),
                duration=round(time.monotonic() - started, 3),
            )
            if len(done) < len(conversion.drafts):
                crash_point("mid_thread")
        reason = "; ".join(conversion.notes) if conversion.notes else None
        self.ledger.finish(org.name, row.post_id, "delivered", self.clock(), reason, **where)
        return "delivered"

    def _edit_as_new_post(self, ctx: _Context, row: PostRow, conversion: Conversion) -> Conversion | None:
        """Policy ``edits_where_impossible: repost`` on a target that cannot edit but can delete: the edited
        post's copies there become due for deletion (paced like deletes at the source, ``_delete_copies``)
        and the new version is returned as new statuses, recorded under the edit's post id. ``None``: leave
        the old copies (the policy says so, or the target cannot delete either).

        Exactly once: marking the old copies due is the intent, recorded before anything is posted and
        idempotent (a copy already due or deleted is left as it is); the new statuses are then published
        like any post (record keys or idempotency keys), so a crash anywhere is resumed, never repeated."""
        if self.policy_for(ctx.org.name).edits_where_impossible != "repost" or not ctx.target.capabilities.deletes:
            return None
        for edit_of in sorted({d.edit_of for d in conversion.drafts if d.kind == "edit" and d.edit_of}):
            due = self.ledger.mark_copies_due(ctx.org.name, edit_of, row.post_id, source=row.source, target=ctx.name)
            if due:
                log.info("edit_reposted", org=ctx.org.name, target=ctx.name, post_id=row.post_id, edit_of=edit_of,
                         copies_due=due)
        drafts = tuple(dataclasses.replace(d, kind="status", edit_of=None) if d.kind == "edit" else d
                       for d in conversion.drafts)
        note = f"edit posted again: {target_name(ctx.account.kind)} has no edits; the old copy is deleted"
        return dataclasses.replace(conversion, drafts=drafts, notes=(*conversion.notes, note))

    def _pace(self, ctx: _Context) -> None:
        """Stay inside the target's per-account write limits instead of running into 429s."""
        limit, window = ctx.target.status_pace.limit, ctx.target.status_pace.window
        recent = self.ledger.statuses_since(ctx.org.name, self.clock() - window, target=ctx.name)
        if len(recent) >= limit:
            raise _Stop(f"status pace: {limit} statuses in {window}", recent[-limit] + window)

    def _pace_media(self, ctx: _Context, count: int) -> None:
        limit, window = ctx.target.media_pace.limit, ctx.target.media_pace.window
        recent = self.ledger.uploads_since(ctx.org.name, self.clock() - window, target=ctx.name)
        if len(recent) + count > limit:
            until = recent[max(0, len(recent) + count - limit - 1)] + window if recent else self.clock() + window
            raise _Stop(f"media pace: {limit} uploads in {window}", until)

    # ------------------------------------------------------------------ deletes at the source
    def _delete_copies(self, ctx: _Context, result: CycleResult) -> None:
        """Delete the copies on this target whose source post is gone, within the target's delete pace;
        the rest wait for a later cycle. Each deleted copy is recorded at once (never deleted twice)."""
        if not ctx.target.capabilities.deletes:
            for copy in self.ledger.due_deletes(ctx.org.name, target=ctx.name, limit=10_000):
                self.ledger.record_deleted(copy, self.clock(), deleted=False)  # it stays; never asked again
                log.info("copy_not_deleted", org=ctx.org.name, target=ctx.name, post_id=copy.post_id,
                         reason=f"{target_name(ctx.account.kind)} cannot delete")
            return
        pace = delete_pace(ctx.account.kind) or ctx.target.status_pace
        room = pace.limit - len(self.ledger.deletes_since(ctx.org.name, self.clock() - pace.window, target=ctx.name))
        due = self.ledger.due_deletes(ctx.org.name, target=ctx.name, limit=max(room, 0))
        for copy in due:
            if self.stop.is_set():
                return
            ctx.target.delete(copy.copy_id)
            crash_point("after_delete")
            self.ledger.record_deleted(copy, self.clock())
            result.deleted += 1
            log.info("copy_deleted", org=ctx.org.name, target=ctx.name, post_id=copy.post_id, part=copy.part,
                     copy_id=copy.copy_id, reason="deleted at the source")
        if len(due) >= room and self.ledger.due_deletes(ctx.org.name, target=ctx.name, limit=1):
            recent = self.ledger.deletes_since(ctx.org.name, self.clock() - pace.window, target=ctx.name)
            until = recent[-pace.limit] + pace.window if len(recent) >= pace.limit else self.clock() + pace.window
            raise _Stop(f"delete pace: {pace.limit} deletes in {pace.window}", until)

    # ------------------------------------------------------------------ one action on the target
    def _resolve_status(self, ctx: _Context, row: PostRow, source_post_id: str) -> str | None:
        """The copy on this target a reply or quote of ``source_post_id`` points at: the organisation's own
        (the last part of its thread), else another linked organisation's."""
        toot = self.ledger.last_toot(ctx.org.name, source_post_id, source=row.source, target=ctx.name) or \
            self.ledger.first_toot(None, source_post_id, source=None, target=ctx.name)
        return toot.status_id if toot else None

    def _publish(
        self, ctx: _Context, row: PostRow, post: SourcePost, draft: Draft, done: dict[int, Any]
    ) -> tuple[str, str]:
        org, target = ctx.org, ctx.target
        key = idempotency_key(org.name, draft.post_id, draft.part, draft.kind, target=ctx.name)
        if draft.kind == "boost":
            original = self.ledger.first_toot(None, draft.boost_of or "", source=None, target=ctx.name)
            if original is None:
                raise PermanentError(f"post {draft.post_id}: the boosted post {draft.boost_of} was never bridged")
            owner = self.ledger.get_target(original.org, original.target)
            if owner is not None and owner.base_url != ctx.account.base_url and not target.capabilities.shared_ids:
                raise PermanentError(
                    f"post {draft.post_id}: the original toot is on {owner.base_url}, another instance; boosting it needs a search there"
                )
            posted = target.boost(original.status_id)
            return posted.id, posted.url
        if draft.kind == "edit":
            copies = {d.part: d for d in self.ledger.deliveries(org.name, draft.edit_of or "", source=row.source,
                                                                 target=ctx.name)}
            if draft.part not in copies:
                raise PermanentError(f"post {draft.post_id}: nothing to edit for part {draft.part} of {draft.edit_of}")
            media_ids = self._media(ctx, row, draft) if draft.media else None
            posted = target.edit(copies[draft.part].status_id, draft, media_ids)
            return posted.id, posted.url
        reply_to: str | None = None
        if draft.reply_to_part is not None:
            parent = done.get(draft.reply_to_part)
            if parent is None:
                raise TransientError(f"post {draft.post_id}: part {draft.reply_to_part} is not recorded yet")
            reply_to = parent.status_id
        elif draft.in_reply_to is not None:
            reply_to = self._resolve_status(ctx, row, draft.in_reply_to)
            if reply_to is None:
                draft = self._standalone(ctx, row, post, draft)
        quote_id = self._resolve_status(ctx, row, draft.quote_of) if draft.quote_of else None
        media_ids = self._media(ctx, row, draft)
        crash_point("after_media_upload")
        posted = target.publish(draft, idempotency_key=key, in_reply_to=reply_to, media_ids=media_ids, quote_of=quote_id)
        return posted.id, posted.url

    def _standalone(self, ctx: _Context, row: PostRow, post: SourcePost, draft: Draft) -> Draft:
        """A thread child whose parent never went out is posted on its own, linking the original."""
        parent_row = self.ledger.get_post(ctx.org.name, draft.in_reply_to or "", source=row.source, target=ctx.name)
        if parent_row is not None and parent_row.state in ("pending", "posting"):
            raise TransientError(f"post {draft.post_id}: its parent {draft.in_reply_to} is not delivered yet")
        text = self._standalone_text(ctx, row, post, draft)
        return dataclasses.replace(draft, text=text, in_reply_to=None, length=ctx.target.length(text, draft.spoiler_text))

    def _standalone_text(self, ctx: _Context, row: PostRow, post: SourcePost, draft: Draft) -> str:
        """The text of ``draft`` posted on its own: a link to the original parent below it, if it fits."""
        link = self.source(ctx.org, row.source).permalink(post.author_username, draft.in_reply_to or "")
        text = f"{draft.text}\n\n↪ {link}" if draft.text else link
        return draft.text if ctx.target.length(text, draft.spoiler_text) > ctx.limits.max_characters else text

    def _media(self, ctx: _Context, row: PostRow, draft: Draft) -> list[str]:
        if not draft.media:
            return []
        self._pace_media(ctx, len(draft.media))
        ids = []
        with media_dir() as tmp:  # locked, so a killed run's leftovers are cleaned at the next start
            for n, media in enumerate(draft.media):
                path, mime = self._fetch_media(ctx.org, row.source, media, Path(tmp) / f"m{n}", ctx.limits)
                media_id = ctx.target.upload_media(str(path), mime, media.description)
                self.ledger.record_upload(ctx.org.name, media_id, self.clock(), target=ctx.name)
                ids.append(media_id)
        return ids

    def _fetch_media(
        self, org: OrgRecord, source: str, media: MediaDraft, dest: Path, limits: InstanceLimits
    ) -> tuple[Path, str | None]:
        """The first candidate the source can open within the target's size limit (the source
        applies its own host allow-list and cap on top)."""
        cap = limits.video_size_limit if media.type != "photo" else limits.image_size_limit
        last: PermanentError | MediaTooSlow | None = None
        cache = self._media_cache
        for ref in (media.source, *media.fallbacks):
            key = (org.name, source, ref)
            kept = cache.get(key) if cache is not None else None
            if kept is not None:
                path, mime = kept
                if path.stat().st_size <= cap:
                    return path, mime  # downloaded for another target of this delivery
                last = PermanentError(f"media {ref} is {path.stat().st_size} bytes, over this target's {cap}")
                continue
            try:
                path, mime = self.source(org, source).open_media(ref, dest, cap)
            except (PermanentError, MediaTooSlow) as exc:  # too slow: a smaller fallback may come in time
                last = exc
                continue
            return cache.keep(key, path, mime) if cache is not None else (path, mime)
        raise last or PermanentError("no media source")

    # ------------------------------------------------------------------ crash reconciliation
    def _reconcile(self, ctx: _Context, row: PostRow, post: SourcePost, drafts: tuple[Draft, ...]) -> None:
        """A post left ``posting`` (over an hour, or after a malformed answer): find its copies on this
        target before posting.

        The window starts at this post's own mark (``posting_since``), not at the
        newest recorded copy: the poll and backfill queues deliver separately, so
        copies recorded while this post was stuck are newer than its own. Read
        upwards from the last copy recorded on this target before the mark; with none,
        read back to the mark itself. Copies recorded for any post are never claimed again.
        """
        org, target, name = ctx.org, ctx.target, ctx.name
        where = {"source": row.source, "target": name}
        mark = row.posting_since or self.clock()
        anchor = self.ledger.last_delivery(org.name, before=mark, target=name)
        if anchor is not None:
            statuses = target.find_published(ctx.account.account_id, anchor.status_id, oldest_first=True)
        else:
            newer = len(self.ledger.statuses_since(org.name, mark, target=name))  # recorded since: read past them
            statuses = target.find_published(
                ctx.account.account_id, None, not_before=mark - RECONCILE_SLACK, max_pages=25 + newer // 40 + 1
            )
        taken = self.ledger.known_statuses(org.name, [s.id for s in statuses], target=name)
        done = {d.part: d.status_id for d in self.ledger.deliveries(org.name, row.post_id, **where)}
        for draft in drafts:
            if draft.part in done:
                continue
            boosted = self._resolve_status(ctx, row, draft.boost_of) if draft.kind == "boost" and draft.boost_of else None
            parent = done.get(draft.reply_to_part) if draft.reply_to_part is not None else None
            forms = [draft]
            if (draft.in_reply_to is not None and draft.reply_to_part is None
                    and self._resolve_status(ctx, row, draft.in_reply_to) is None):
                # its parent never went out: it was posted on its own (``_standalone``)
                forms.append(dataclasses.replace(draft, text=self._standalone_text(ctx, row, post, draft)))
            for status in statuses:
                if status.id in taken or not any(_matches(target, form, status, boosted, parent) for form in forms):
                    continue
                self.ledger.record_delivery(org.name, row.post_id, draft.part, draft.kind, status.id, status.url,
                                            self.clock(), **where)
                taken.add(status.id)
                done[draft.part] = status.id
                log.info("reconciled", org=org.name, target=name, post_id=row.post_id, part=draft.part, toot_id=status.id)
                break

    # ------------------------------------------------------------------ previews and dry runs
    def preview_new(self, name: str) -> list[tuple[SourcePost, Conversion]]:
        """What the next cycle would post (for the organisation's Mastodon target), from every source,
        without recording or posting anything."""
        org = self.ledger.get_org(name)
        if org is None:
            raise BridgeError(f"no organisation named {name!r}")
        limits = limits_from_dict(org.limits) if org.limits else InstanceLimits()
        out: list[tuple[SourcePost, Conversion]] = []
        for account in self.ledger.sources(name):
            if account.state not in ("active", "needs_relink") or account.cursor is None:
                continue  # no cursor: the next cycle only sets it (see _start_cursor)
            source = self.source(org, account.name)
            read = source.read_new(account.account_id, account.cursor)
            posts = sorted(read.posts, key=lambda p: source.sort_key(p.id))
            out.extend((p, self.convert_row(org, p, limits, False, source=account.name)) for p in posts)
        return out


class _MediaCache:
    """Media downloaded during one delivery to several targets, so each is fetched from its source once
    and uploaded to every target. Bounded: past ``MEDIA_CACHE_BYTES`` a medium is not kept."""

    def __init__(self, folder: Path, budget: int = MEDIA_CACHE_BYTES) -> None:
        self.folder = folder
        self.budget = budget
        self.files: dict[tuple[str, str, str], tuple[Path, str | None]] = {}

    def get(self, key: tuple[str, str, str]) -> tuple[Path, str | None] | None:
        return self.files.get(key)

    def keep(self, key: tuple[str, str, str], path: Path, mime: str | None) -> tuple[Path, str | None]:
        size = path.stat().st_size
        if size > self.budget:
            return path, mime
        kept = self.folder / f"c{len(self.files)}"
        _copy(path, kept)
        self.budget -= size
        self.files[key] = (kept, mime)
        return kept, mime


def _copy(src: Path, dest: Path) -> None:
    """Move a downloaded file into the cache folder (another folder in $TMPDIR: usually one filesystem)."""
    try:
        src.replace(dest)
    except OSError:  # another filesystem: copy
        dest.write_bytes(src.read_bytes())


def _network(source: Source) -> str:
    """The network a source reads, for messages: "X" for the X API, "website" for a website feed."""
    return source.name.split()[0] if source.name else source.kind


def fetched_posts(
    read: ReadResult, now: datetime, sort_key: Callable[[str], int] | None = None, *, source: str = SOURCE_KIND
) -> list[FetchedPost]:
    """What the ledger records of a read, in read order: a post the source could not normalise is
    recorded as failed with its reason (never blocking the others); one without an id only logged.

    ``sort_key`` is the source's order of its ids (``Source.sort_key``); None leaves it to the ledger.
    ``source`` is the organisation's source the posts were read from (its name).
    """
    fetched = []
    for entry in read.entries:
        if isinstance(entry, SourcePost):
            key = sort_key(entry.id) if sort_key is not None else None
            fetched.append(FetchedPost(entry.id, entry.created_at, post_to_dict(entry), sort_key=key, source=source))
        elif not entry.post_id:
            log.error("unreadable_post", error=entry.error)
        else:
            # no sort key from the source for an id it could not read: the ledger's fallback orders it
            fetched.append(FetchedPost(entry.post_id, now, entry.raw, error=entry.error, source=source))
    return fetched


def _matches(target: Target, draft: Draft, item: Published, boost_copy_id: str | None, parent_id: str | None = None) -> bool:
    """Whether ``item`` (from ``find_published``) is the copy ``draft`` became.

    A thread part must also reply to its recorded parent part.
    """
    if draft.kind == "boost":
        return boost_copy_id is not None and item.boost_of == boost_copy_id
    if item.boost_of:
        return False
    if parent_id is not None and item.in_reply_to != parent_id:
        return False
    return target.same_text(draft.text, item)


@contextmanager
def open_pipeline(config: Config, **kwargs: Any) -> Iterator[Pipeline]:
    ledger = Ledger.open(config.database)
    try:
        with Pipeline(config, ledger, **kwargs) as pipeline:
            yield pipeline
    finally:
        ledger.close()
