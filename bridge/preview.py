"""`bridge preview`: what one post (of X, an archive, a feed or Bluesky) would become, without posting or recording anything."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bridge.config import Config
from bridge.convert import Conversion
from bridge.errors import ConfigError, SourceError
from bridge.ledger import MASTODON_TARGET, Ledger, OrgRecord
from bridge.model import SourcePost, post_from_dict
from bridge.pipeline import SOURCE_KIND, Pipeline
from bridge.policy import InstanceLimits
from bridge.registry import make_source, open_archive_source
from bridge.report import target_label
from bridge.targets.base import limits_from_dict


def _limits(org: OrgRecord | None) -> InstanceLimits:
    return limits_from_dict(org.limits) if org is not None and org.limits else InstanceLimits()


def _org(ledger: Ledger, name: str) -> OrgRecord:
    org = ledger.get_org(name)
    if org is None:
        raise ConfigError(f"--org: no organisation named {name!r} (see: bridge orgs)")
    return org


def preview_archive_post(
    config: Config, ledger: Ledger, archive_path: str, post_id: str, org_name: str | None
) -> tuple[Conversion, int]:
    org = _org(ledger, org_name) if org_name else None
    with open_archive_source(archive_path) as archive:
        account = archive.owner()
        found: SourcePost | None = next(archive.read_range(account.id, around=post_id), None)
        if found is None:
            raise SourceError(f"{Path(archive_path)}: no post with id {post_id} in the archive")
        if org is None:
            org = OrgRecord(
                name="(preview)", x_user_id=account.id, x_username=account.handle, instance="",
                account_id="", acct="", account_url="",
            )
        limits = _limits(org)
        conversion = Pipeline(config, ledger).convert_row(org, found, limits, backfill=True)
    return conversion, limits.max_characters


@dataclass(frozen=True)
class TargetPreview:
    """One post's drafts for one of the organisation's targets (each kind has its own renderer and limits)."""

    name: str  # the target's name in the ledger ("mastodon", "bluesky", ...)
    account: str  # who would post it: "@coop@geno.social", "bluesky coop.bsky.social"
    conversion: Conversion
    max_characters: int


def preview_live_post(config: Config, ledger: Ledger, org_name: str, post_id: str) -> list[TargetPreview]:
    """The post's drafts for each linked target of the organisation (its Mastodon target first), from
    the ledger's copy if the post was fetched already, else from one timeline request around its id."""
    org = _org(ledger, org_name)
    if not post_id.isdigit():
        raise ConfigError(f"--post: expected a numeric X post id, got {post_id!r}")
    pipeline = Pipeline(config, ledger)
    row = ledger.get_post(org.name, post_id, target=None)  # recorded, whichever targets it has a state on
    if row is not None:
        post = post_from_dict(row.post)
    else:
        source = make_source(SOURCE_KIND, config)
        try:
            posts = list(source.read_range(org.x_user_id, around=post_id))
        finally:
            source.close()
        if not posts:
            raise SourceError(f"X: post {post_id} is not among the recent posts of @{org.x_username} (deleted, or older than X's 3,200-post reach)")
        post = posts[0]
    targets = sorted(ledger.targets(org.name), key=lambda t: (t.name != MASTODON_TARGET, t.name))
    if not targets:  # nothing linked to post to: what its Mastodon account would get
        limits = _limits(org)
        conversion = pipeline.convert_row(org, post, limits, backfill=False)
        return [TargetPreview(MASTODON_TARGET, f"@{org.fediverse_handle}", conversion, limits.max_characters)]
    out = []
    for target in targets:
        limits = limits_from_dict(target.limits) if target.limits else InstanceLimits()
        try:
            conversion = pipeline.convert_row(org, post, limits, backfill=False, target=target)
        except ConfigError as exc:  # a target kind this version cannot render: said, not fatal to the others
            conversion = Conversion(skipped=str(exc))
        out.append(TargetPreview(target.name, target_label(org, target), conversion, limits.max_characters))
    return out


def preview_feed_post(
    config: Config, ledger: Ledger, feed_url: str, post_id: str, org_name: str | None
) -> tuple[Conversion, int]:
    """One entry of a feed (its guid/id, or its link), read now, under the organisation's policies if given."""
    return _preview_read("feed", config, ledger, feed_url, post_id, org_name,
                         f"feed {feed_url}: no entry with id {post_id!r} (the feed holds only its recent entries)")


def preview_bluesky_post(
    config: Config, ledger: Ledger, account: str, post: str, org_name: str | None
) -> tuple[Conversion, int]:
    """One post (or repost) of a Bluesky account (handle or DID), read now: ``post`` is its record key, its
    at:// URI or its bsky.app URL; under the organisation's policies if given."""
    rkey = post.strip().rstrip("/").rsplit("/", 1)[-1]
    return _preview_read("bluesky", config, ledger, account, rkey, org_name,
                         f"Bluesky account {account}: no post or repost with record key {rkey!r}"
                         " (deleted, or not this account's)")


def _preview_read(
    kind: str, config: Config, ledger: Ledger, account: str, around: str, org_name: str | None, missing: str
) -> tuple[Conversion, int]:
    """The post ``around`` of ``account`` on a source of ``kind``, read now and converted (``missing``: the
    error when the source no longer holds it)."""
    org = _org(ledger, org_name) if org_name else None
    source = make_source(kind, config)
    try:
        found = next(source.read_range(account, around=around), None)
        if found is None:
            raise SourceError(missing)
        if org is None:  # a feed's posts name the feed itself as their author
            org = OrgRecord(name="(preview)", x_user_id=found.author_id, x_username=found.author_username, instance="",
                            account_id="", acct="", account_url="")
        limits = _limits(org)
        conversion = Pipeline(config, ledger, source=source).convert_row(org, found, limits, backfill=False)
    finally:
        source.close()
    return conversion, limits.max_characters
