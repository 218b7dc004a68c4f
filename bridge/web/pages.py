"""What the organisation's page and the operator's page show and do, as plain data over the ledger."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bridge import accounts
from bridge.config import Config
from bridge.convert import Conversion, convert
from bridge.ledger import Ledger, OrgRecord, WebJob
from bridge.model import post_from_dict
from bridge.policy import VISIBILITY_CHOICES, InstanceLimits, Policy, with_overrides
from bridge.report import org_rows, source_label, status_report
from bridge.targets.base import limits_from_dict
from bridge.web.flows import PageError, now

RECENT = 20  # bridged posts and failures listed on the organisation's page


@dataclass
class OrgPage:
    org: OrgRecord
    sources: list[str]  # how each source reads (report.source_label: a Bluesky handle, a feed's URL and title)
    counts: dict[str, int]
    recent: list[dict[str, Any]]
    failed: list[dict[str, Any]]
    policy: dict[str, str]
    preview: dict[str, Any] | None
    previewing: bool = False
    choices: dict[str, tuple[str, ...]] = field(default_factory=dict)


def plain_reason(reason: str | None) -> str:
    """The text key of a failure reason in plain words; the technical reason is shown beside it.

    Status codes are matched as whole numbers: a reason may name a URL whose port holds "401" or "500"."""
    text = (reason or "").lower()

    def code(*codes: str) -> bool:
        return re.search(rf"(?<![\d:])(?:{'|'.join(codes)})(?!\d)", text) is not None

    if any(w in text for w in ("media", "too large", "image", "video", "file")):
        return "plain_media"
    if code("401", "403") or any(w in text for w in ("refused the token", "revoked", "unauthorized")):
        return "plain_auth"
    if code("500", "502", "503") or any(w in text for w in ("timeout", "timed out", "reach", "connect")):
        return "plain_unreachable"
    if code("422") or "refused" in text or "rejected" in text:
        return "plain_refused"
    return "plain_other"


def current_policy(config: Config, ledger: Ledger, org: str) -> Policy:
    return with_overrides(config.policy_for(org), ledger.get_org_policy(org))


def policy_form_values(policy: Policy) -> dict[str, str]:
    return {"retweets": policy.retweets, "replies": policy.replies, "visibility": policy.visibility.original,
            "footer": policy.footer, "content_warning": policy.content_warning}


def policy_from_form(values: dict[str, str]) -> dict[str, str]:
    """Only known choices are kept; free text is capped (``with_overrides`` checks again when it is used)."""
    out: dict[str, str] = {}
    if values.get("retweets") in ("auto", "boost", "link", "skip"):
        out["retweets"] = values["retweets"]
    if values.get("replies") in ("self", "all", "none"):
        out["replies"] = values["replies"]
    if values.get("visibility") in VISIBILITY_CHOICES:
        out["visibility"] = values["visibility"]
    for key in ("footer", "content_warning"):
        text = values.get(key, "")
        out[key] = " ".join(text.split())[:200]
    return out


def _preview(config: Config, ledger: Ledger, org: OrgRecord, policy: Policy) -> dict[str, Any] | None:
    """The newest bridged post converted under ``policy``: what it would look like on Mastodon now."""
    from bridge.pipeline import Pipeline

    recent = ledger.recent_copies(org.name, 1)
    if not recent:
        return None
    _, row = recent[0]
    limits = limits_from_dict(org.limits) if org.limits else InstanceLimits()
    with Pipeline(config, ledger) as pipeline:
        post = post_from_dict(row.post)
        conversion: Conversion = convert(pipeline.source(org).neutral(post, org.x_user_id), limits, policy,
                                         mentions=pipeline.mention_map(org), bridged=pipeline.bridged, backfill=False)
    return {
        "post_id": row.post_id,
        "skipped": conversion.skipped,
        "drafts": [{"part": d.part, "kind": d.kind, "text": d.text, "spoiler": d.spoiler_text,
                    "visibility": d.visibility, "media": len(d.media), "length": d.length}
                   for d in conversion.drafts],
        "limit": limits.max_characters,
    }


def org_page(config: Config, ledger: Ledger, name: str, trial: dict[str, str] | None) -> OrgPage | None:
    """None when the organisation is gone (unlinked meanwhile): the visitor signs in again."""
    org = ledger.get_org(name)
    if org is None or org.state == "unlinked":
        return None
    policy = current_policy(config, ledger, name)
    if trial:
        policy = with_overrides(policy, trial)
    recent = [
        {"post_id": copy.post_id, "url": copy.url, "when": copy.created_at, "text": str(row.post.get("text", ""))[:280]}
        for copy, row in ledger.recent_copies(name, RECENT)
    ]
    failed = [
        {"post_id": row.post_id, "source": row.source, "reason": row.last_error or "", "plain": plain_reason(row.last_error),
         "text": str(row.post.get("text", ""))[:280], "when": row.created_at}
        for row in ledger.failed_posts(name, RECENT)
    ]
    return OrgPage(
        org=org, sources=[source_label(s.kind, s.account_id, s.handle) for s in ledger.sources(name)],
        counts=ledger.counts(name), recent=recent, failed=failed,
        policy=policy_form_values(policy), preview=_preview(config, ledger, org, policy), previewing=trial is not None,
        choices={"retweets": ("auto", "boost", "link", "skip"), "replies": ("self", "all", "none"),
                 "visibility": VISIBILITY_CHOICES},
    )


def org_action(config: Config, ledger: Ledger, name: str, action: str, values: dict[str, str]) -> str | None:
    """One button of the organisation's page; returns the text key of the note shown after it."""
    org = ledger.get_org(name)
    if org is None or org.state == "unlinked":
        raise PageError("signin_needed", status=403)
    when = now()
    if action == "pause":
        if org.state == "active":
            ledger.update_org(name, when, state="paused", state_reason="paused on the organisation's page")
        return "paused_note"
    if action == "resume":
        if org.state == "paused":
            ledger.update_org(name, when, state="active", state_reason=None)
        return "resumed_note"
    if action == "retry":
        post_id, source = values.get("post", ""), values.get("source", "x")
        row = ledger.get_post(name, post_id, source=source)
        if row is None or row.state != "failed":
            raise PageError("problem", f"post {post_id[:40]} is not a failed post of {name}")
        ledger.reopen(name, post_id, when, source=source)
        return "queued_again"
    if action == "policy":
        ledger.set_org_policy(name, policy_from_form(values), when)
        return "saved"
    if action == "unlink":
        if values.get("confirm") != "yes":
            raise PageError("problem", "unlink_intro")
        accounts.unlink(ledger, config, name, keep_history=True, now=when)
        return None
    raise PageError("notfound", status=404)


def job_view(job: WebJob | None, when: datetime) -> dict[str, Any] | None:
    """What the archive page shows of a job: progress in percent, the ETA counted down since the last post."""
    if job is None or job.state == "cancelled":
        return None
    from bridge.backfill import duration

    eta = max(0.0, (job.eta_seconds or 0.0) - (when - job.updated_at).total_seconds()) if job.state == "running" else (
        job.eta_seconds or 0.0)
    percent = int(100 * job.done / job.total) if job.total else (100 if job.state == "done" else 0)
    return {"percent": percent, "eta": duration(eta), "active": job.state in ("queued", "running")}


@dataclass
class AdminPage:
    rows: list[dict[str, Any]]
    budget: dict[str, Any]
    generated: datetime


def admin_page(config: Config, ledger: Ledger) -> AdminPage:
    report = status_report(ledger, config, now())
    return AdminPage(rows=org_rows(ledger), budget=report["budget"], generated=now())
