"""What `bridge orgs` and `bridge status` show, as plain data (the CLI only formats it)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from bridge.config import Config
from bridge.ledger import Ledger, OrgRecord, OrgTiming, TargetAccount
from bridge.registry import target_name
from bridge.schedule import free_interval, plan

ACTIVITY_WINDOW = timedelta(days=14)


def _t(value: datetime | None) -> str | None:
    return value.strftime("%Y-%m-%d %H:%M:%SZ") if value else None


def org_rows(ledger: Ledger) -> list[dict[str, Any]]:
    """One row per organisation: its sources ("x" column) and targets ("fediverse" column), each with its
    state when not active; the queue and failures summed over its targets (per target: ``targets``)."""
    rows = []
    for org in ledger.list_orgs():
        counts = ledger.counts(org.name, target=None)
        targets = ledger.targets(org.name)
        lasts = [d for d in (ledger.last_delivery(org.name, target=t.name) for t in targets) if d is not None]
        last = max(lasts, key=lambda d: d.created_at, default=None)
        rows.append(
            {
                "name": org.name,
                "x": ", ".join(_source_label(ledger, org, name) for name in _source_names(ledger, org)),
                "fediverse": ", ".join(target_label(org, t) for t in targets) or f"@{org.fediverse_handle}",
                "state": org.state,
                "last_delivery": _t(last.created_at) if last else None,
                "pending": counts["pending"] + counts["posting"],
                "failed": counts["failed"],
                "targets": [_target_report(ledger, t, brief=True) for t in targets],
            }
        )
    return rows


def _source_names(ledger: Ledger, org: OrgRecord) -> list[str]:
    return [s.name for s in ledger.sources(org.name)] or ["x"]


TITLE_CHARS = 60  # a feed's title is the website's text: one short line in a listing


def source_label(kind: str, account: str, handle: str, *, brief: bool = False) -> str:
    """How a source reads for people: ``@handle`` on X (``X @handle`` in full), ``bluesky @handle``
    (its handle, not its DID: the DID only when no handle is known), ``feed URL`` (in full with its
    title, on one line and shortened)."""
    if kind == "x":
        return f"@{handle}" if brief else f"X @{handle}"
    if kind == "bluesky":
        name = handle.strip().lstrip("@")
        return f"bluesky @{name}" if name and not name.startswith("did:") else f"bluesky {account}"
    title = " ".join(handle.split())
    if len(title) > TITLE_CHARS:
        title = title[: TITLE_CHARS - 1].rstrip() + "…"
    return f"{kind} {account}" if brief or not title or title == account else f"{kind} {account} ({title})"


def _source_label(ledger: Ledger, org: OrgRecord, name: str = "x") -> str:
    """How an organisation's source reads in a table (``source_label``, brief), with its state when not active."""
    src = ledger.get_source(org.name, name)
    if src is None:
        return f"@{org.x_username}"
    label = source_label(src.kind, src.account_id, src.handle, brief=True)
    return label + (f" ({src.state})" if src.state != "active" else "")


def target_label(org: OrgRecord, target: TargetAccount, *, with_state: bool = True) -> str:
    """``@user@instance`` for Mastodon, ``kind handle`` for other networks, with its state when not active."""
    if target.kind == "mastodon":
        host = target.base_url.split("://", 1)[-1].rstrip("/")
        label = "@" + (target.handle if "@" in target.handle else f"{target.handle}@{host}")
    else:
        label = f"{target.kind} {target.handle}"
    return label + (f" ({target.state})" if with_state and target.state != "active" else "")


def _target_report(ledger: Ledger, target: TargetAccount, *, brief: bool = False) -> dict[str, Any]:
    """One target of an organisation: who it is, its state, its queue (``brief``: counts only)."""
    counts = ledger.counts(target.org, target=target.name)
    out: dict[str, Any] = {
        "name": target.name,
        "kind": target.kind,
        "network": target_name(target.kind),
        "handle": target.handle,
        "url": target.account_url,
        "state": target.state,
        "state_reason": target.state_reason,
        "pending": counts["pending"] + counts["posting"],
        "failed": counts["failed"],
    }
    if not brief:
        newest = ledger.last_delivery(target.org, target=target.name)
        out.update(
            counts=counts,
            latest_failures=ledger.latest_failures(target.org, target=target.name),
            deferred_until=_t(target.deferred_until),
            newest_copy={"post_id": newest.post_id, "url": newest.url} if newest else None,
        )
    return out


def _edits_not_propagated(ledger: Ledger, config: Config, target: TargetAccount) -> dict[str, Any]:
    """Edits this target left as they were (it has no edits: Bluesky), and the policy that says what
    an edit does there (``edits_where_impossible``): ``edits_line`` is what `status` prints, or None."""
    count = ledger.edits_not_propagated(target.org, target=target.name)
    policy = config.policy_for(target.org).edits_where_impossible
    line = f"{target.name}: {count} edit{'' if count == 1 else 's'} not propagated (policy {policy})" if count else None
    return {"edits_not_propagated": count, "edits_policy": policy, "edits_line": line}


def activity(ledger: Ledger, orgs: Sequence[OrgRecord | OrgTiming], now: datetime) -> dict[str, float]:
    """Posts per day per organisation, from the posts the ledger saw in the recent window."""
    # One grouped count for all of them (issue 18: one query per organisation cost 10,000 at a refresh).
    counted = ledger.posts_since_by_org(now - ACTIVITY_WINDOW)
    return {org.name: counted.get(org.name, 0) / ACTIVITY_WINDOW.days for org in orgs}


def status_report(ledger: Ledger, config: Config, now: datetime, only: str | None = None) -> dict[str, Any]:
    orgs = ledger.list_orgs()
    # The X read budget: only organisations that read X cost reads (feeds and Bluesky are free and
    # poll at their own interval), as the daemon plans it.
    active = [o for o in orgs if o.state == "active"]
    kinds = ledger.source_kinds_by_org()
    free = {o.name: i for o in active
            if (i := free_interval(kinds.get(o.name, set()), config)) is not None}
    p = plan(activity(ledger, [o for o in active if o.name not in free], now), config.x, free)
    report: dict[str, Any] = {
        "daemon": read_heartbeat(config.heartbeat_path) or {},
        "budget": {
            "requests_per_15min": config.x.budget.requests_per_15min,
            "posts_per_month": config.x.budget.posts_per_month,
            "projected_requests_per_15min": p.requests_per_15min,
            "projected_requests_per_month": p.requests_per_month,
            "projected_posts_per_month": p.posts_per_month,
            "budget_limited": p.budget_limited,
            "over_posts_budget": bool(config.x.budget.posts_per_month and p.posts_per_month > config.x.budget.posts_per_month),
        },
        "organisations": [],
    }
    for org in orgs:
        if only is not None and org.name != only:
            continue
        newest = ledger.last_delivery(org.name)
        report["organisations"].append(
            {
                "name": org.name,
                "state": org.state,
                "state_reason": org.state_reason,
                "x_username": org.x_username,
                "sources": [{"name": a.name, "kind": a.kind, "account": a.account_id, "handle": a.handle,
                             "label": source_label(a.kind, a.account_id, a.handle), "state": a.state}
                            for a in ledger.sources(org.name)],
                "targets": [{**_target_report(ledger, t), "label": target_label(org, t),
                             "account": target_label(org, t, with_state=False),
                             **_edits_not_propagated(ledger, config, t)}
                            for t in ledger.targets(org.name)],
                "fediverse": f"@{org.fediverse_handle}",
                "last_poll": _t(org.last_poll_at),
                "last_success": _t(org.last_success_at),
                "next_poll": _t(org.next_poll_at),
                "poll_interval": p.intervals.get(org.name),
                "newest_toot": {"post_id": newest.post_id, "url": newest.url} if newest else None,
                "counts": ledger.counts(org.name, target=None),  # summed over its targets (each: "targets")
                "latest_failures": ledger.latest_failures(org.name, target=None),
                "deferrals": org.deferrals,
                "last_deferral": org.last_deferral,
                "deferred_until": _t(max(filter(None, [org.poll_deferred_until, org.post_deferred_until]), default=None)),
            }
        )
    return report


def read_heartbeat(path: Path) -> dict[str, Any] | None:
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return None


def health(config: Config, now: datetime) -> tuple[bool, str]:
    """Healthy when the daemon finished a successful cycle within three intervals."""
    beat = read_heartbeat(config.heartbeat_path)
    if beat is None:
        return False, f"no daemon heartbeat at {config.heartbeat_path} (is `bridge run` running?)"
    last = beat.get("last_success_at")
    interval = float(beat.get("interval") or max(config.x.poll_interval, config.daemon.refresh_interval))
    if not last:
        return False, "the daemon has not completed a successful cycle yet"
    age = (now - datetime.fromisoformat(last)).total_seconds()
    if age > 3 * interval:
        return False, f"last successful cycle {int(age)} s ago, more than 3 intervals ({int(3 * interval)} s)"
    return True, f"last successful cycle {int(age)} s ago"
