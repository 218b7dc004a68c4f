"""What to say for one post, whatever the target: the first, target-independent step of the converter.

Pure: no I/O, no clock. From a neutral ``Post`` and the organisation's policy it
decides whether the post is bridged at all, as what (a status, a boost, an
edit), which text with which links after it, whose media, which relations
(reply to, quote of, repost of) and which visibility. A target's renderer
(``bridge.convert.engine`` for Mastodon) then writes it in that target's terms:
its mentions, its length rules, its media limits, its threads. Rule numbers
are those of docs/conversion-rules.md.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Literal

from bridge.model import BridgedToot, Link, Poll, Post, article_text
from bridge.policy import Policy

Relation = Literal["original", "self_reply", "reply", "quote", "repost"]

CUT_IN_SOURCE = "the text is cut in the source (its whole text is missing), so it ends in \"…\"; the toot links the original post"


@dataclass(frozen=True)
class Message:
    """What to say for one post: the target-independent half of a conversion."""

    post: Post  # the post being bridged (its id numbers the drafts; its permalink is "the original")
    relation: Relation
    visibility: str
    kind: Literal["status", "boost"] = "status"
    header: str = ""  # said before the body: the date prefix of a backfilled post
    repost_author: str | None = None  # whose post a link-repost says (the renderer credits them)
    body_of: Post | None = None  # whose text (with its links and quote) is said; None: no text
    tails: tuple[str, ...] = ()  # links said after the body (the parent of a reply to someone else)
    link_tail: str | None = None  # a link said after the body unless the body has it already (a repost's origin)
    media_of: tuple[Post, ...] = ()  # whose media go along
    language: str | None = None  # as the source gives it (BCP 47)
    sensitive: bool = False
    in_reply_to: str | None = None  # source post id whose copy this replies to (a self-thread)
    boost_of: str | None = None  # source post id whose copy is boosted (kind "boost")
    edit_of: str | None = None  # source post id whose copies this post's drafts edit
    poll: Poll | None = None
    link_original: bool = False  # something could not be carried over: link the original post
    notes: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class Skip:
    """Nothing is said for this post, and why (policy, or a newer version)."""

    reason: str
    notes: tuple[str, ...] = ()


def say(
    post: Post,
    policy: Policy,
    *,
    bridged: Callable[[str], BridgedToot | None] = lambda _id: None,
    backfill: bool = False,
) -> Message | Skip:
    """The ``Message`` for ``post``, or why it is skipped.

    ``bridged`` answers which source posts already have a copy on the target
    (boosts, edits, threads refer to those copies).
    """
    date_prefix = f"{post.created_at:%Y-%m-%d}: " if backfill and policy.date_prefix else ""
    if post.article is not None:
        post = _as_article(post, policy)

    # Edits: the source keeps every version; only the newest one of a chain is bridged.
    if post.superseded_by is not None:
        return _skip(post, f"superseded by a later version {post.superseded_by} of the same post")
    edit_of = post.edit_of if post.edit_of is not None and bridged(post.edit_of) is not None else None

    # Rule 10: reposts.
    if post.repost_of is not None:
        return _repost(post, policy, bridged, backfill, date_prefix, edit_of)

    # Rule 12: replies.
    in_reply_to = None
    relation: Relation = "original"
    kind = "original"  # which visibility of the policy applies
    tails: list[str] = []
    if post.reply_to is not None:
        if policy.replies == "none":
            return _skip(post, "reply (policy replies: none)")
        if post.reply_to.own:
            in_reply_to = post.reply_to.id
            relation = kind = "self_reply"
        elif policy.replies == "self":
            return _skip(post, "reply to another account (policy replies: self)")
        else:
            relation = "reply"
            tails.append(post.reply_to.url)

    # Rule 11: quotes.
    if post.quote_of is not None:
        if policy.quotes == "skip":
            return _skip(post, "quote post (policy quotes: skip)")
        if kind == "original":
            kind = "quote"
        if relation == "original":
            relation = "quote"

    notes = post.notes
    if post.truncated:
        # A long post whose whole text the source lacks (an archive without its note): never posted as if whole.
        notes = (f"post {post.id}: {CUT_IN_SOURCE}", *notes)
    return Message(
        post=post,
        relation=relation,
        visibility=_visibility(policy, kind, backfill),
        header=date_prefix,
        body_of=post,
        tails=tuple(tails),
        media_of=(post,),
        language=post.lang,
        sensitive=post.sensitive,
        in_reply_to=in_reply_to,
        edit_of=edit_of,
        poll=post.poll,
        link_original=post.incomplete or post.truncated,
        notes=notes,
    )


def _repost(
    post: Post, policy: Policy, bridged: Callable[[str], BridgedToot | None], backfill: bool, date_prefix: str,
    edit_of: str | None,
) -> Message | Skip:
    ref = post.repost_of
    assert ref is not None
    original, rid, ruser, own = ref.post, ref.id, ref.author, ref.own
    visibility = _visibility(policy, "retweet", backfill)
    if policy.retweets == "skip":
        return _skip(post, "retweet (policy retweets: skip)")
    if rid and policy.retweets in ("auto", "boost", "link") and bridged(rid) is not None:
        if policy.retweets != "link" or own:
            return Message(post=post, relation="repost", visibility=visibility, kind="boost", boost_of=rid,
                           edit_of=edit_of)
    if own:
        # Re-posting one's own post as "RT @self: ..." would duplicate it; boost it once bridged.
        if rid:
            return _skip(post, f"retweet of own post {rid}, which is not bridged (yet)")
        return _skip(post, "retweet of an own post whose id the source does not give; nothing to boost")
    if policy.retweets in ("auto", "boost"):
        what = f"@{ruser}'s post" if ruser else "a post"
        what += f" {rid}" if rid else " (the source does not give its id)"
        return _skip(post, f"retweet of {what}: not bridged, nothing to boost (policy retweets: {policy.retweets})")
    # policy "link": the original's full text, credited to its author, with its media and a link to it.
    common = dict(post=post, relation="repost", visibility=visibility, header=date_prefix, repost_author=ruser,
                  link_tail=ref.url, edit_of=edit_of)
    if original is not None:
        return Message(
            body_of=original, media_of=(original,), language=original.lang or post.lang,
            sensitive=original.sensitive or post.sensitive, link_original=original.incomplete, notes=original.notes,
            **common,  # type: ignore[arg-type]
        )
    if post.truncated:
        # An archive retweet is cut at 140 code points with no original: never post it as if whole.
        note = f"post {post.id}: retweet text is truncated in the source; only the link is posted"
        return Message(language=post.lang, sensitive=post.sensitive, notes=(note,), **common)  # type: ignore[arg-type]
    return Message(
        body_of=post, media_of=(post,), language=post.lang, sensitive=post.sensitive, link_original=post.incomplete,
        notes=post.notes, **common,  # type: ignore[arg-type]
    )


_URL_RE = re.compile(r"https?://[^\s<>\"]+[^\s<>\".,;:!?)\]]")  # the feed source's own (bridge/sources/feed.py)


def _as_article(post: Post, policy: Policy) -> Post:
    """A feed entry said as the organisation's feed policy asks (``feed.post``, ``feed.categories_as_hashtags``)."""
    assert post.article is not None
    text = article_text(post.article, policy.feed_post, policy.feed_categories)
    if text == post.text:
        return post
    links = tuple(Link(m.group(0), m.start(), m.end()) for m in _URL_RE.finditer(text))
    return replace(post, text=text, links=links)


def _skip(post: Post, reason: str) -> Skip:
    return Skip(f"post {post.id}: {reason}")


def _visibility(policy: Policy, kind: str, backfill: bool) -> str:
    if backfill:
        return policy.visibility.backfill
    return str(getattr(policy.visibility, kind))
