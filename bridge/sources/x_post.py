"""An X post (``SourcePost`` from the API or the archive) as the neutral ``Post`` the converter reads.

Every X shape the converter used to know lives here (docs/conversion-rules.md
numbers the rules): t.co links and their expansion (rule 2), X's reply
addressing "@a @b " (rule 3), x.com / twitter.com status URLs and permalinks
(rules 10-12), the "RT @user: " prefix of archive retweets (rule 10), pbs.twimg
size suffixes of photos (rule 7), edit chains (``edit_history_tweet_ids``).
Pure: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bridge.model import Handle, Link, Media, MediaItem, Post, PostRef, SourcePost, UrlEntity
from bridge.sources.x_v2 import x_permalink

NETWORK = "x"
TCO_RE = re.compile(r"https?://t\.co/[A-Za-z0-9]+", re.IGNORECASE)
_STATUS_URL_RE = re.compile(r"^https?://(?:www\.|mobile\.)?(?:twitter|x)\.com/([^/?#]+)/status(?:es)?/(\d+)", re.I)
_LEADING_MENTIONS_RE = re.compile(r"^(?:[@＠][A-Za-z0-9_]{1,20}(?:\s+|$))+")
_RT_PREFIX_RE = re.compile(r"^RT [@＠][A-Za-z0-9_]{1,20}:\s*")
_LINE_END_SPACES_RE = re.compile(r"[ \t]+\n")
_NAME_PARAM_RE = re.compile(r"([?&])name=[^&]*&?")
_PHOTO_SIZES = ("orig", "large", "medium")  # pbs.twimg.com ?name=: the largest first
_IMAGE_MIME = {"jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png", "gif": "image/gif",
               "webp": "image/webp"}


def neutral_post(post: SourcePost, account: str) -> Post:
    """``post`` of the X account ``account`` (its user id) as a neutral ``Post``."""
    return _neutral(post, account)


@dataclass
class _Text:
    text: str
    links: list[Link]
    notes: list[str]
    incomplete: bool


def _neutral(post: SourcePost, account: str) -> Post:
    repost: PostRef | None = None
    if post.is_retweet or post.retweet_of_username is not None:
        repost = _repost(post, account)
    if repost is not None and (repost.post is not None or post.truncated):
        # The retweet's own text is X's cut "RT @user: ..." copy: the original (or nothing) is said instead.
        text = _Text("", [], [], False)
    else:
        text = _expand(post)
        if repost is not None:
            _drop_prefix(text, _RT_PREFIX_RE)
    return Post(
        id=post.id,
        author=post.author_username,
        created_at=post.created_at,
        text=text.text,
        permalink=x_permalink(post.author_username, post.id),
        network=NETWORK,
        home="x.com",
        links=tuple(text.links),
        mentions=tuple(Handle(NETWORK, m.username) for m in post.mentions),
        tags=tuple(h.tag for h in post.hashtags),
        media=tuple(_media(m) for m in post.media),
        reply_to=_reply_to(post, account),
        quote_of=_quote_of(post),
        repost_of=repost,
        lang=post.lang,
        sensitive=post.sensitive,
        poll=post.poll,
        edit_of=post.original_id if post.id != post.original_id else None,
        superseded_by=(
            post.edit_history_ids[-1] if post.edit_history_ids and post.id != post.edit_history_ids[-1] else None
        ),
        truncated=post.truncated,
        incomplete=text.incomplete,
        notes=tuple(text.notes),
    )


def _quote_id(post: SourcePost) -> str | None:
    return post.quote_of_id or (post.quote_of.id if post.quote_of else None)


def _reply_to(post: SourcePost, account: str) -> PostRef | None:
    """Rule 12: a reply names its parent post; the parent's author only when X says who it is."""
    if not post.in_reply_to_post_id:
        return None
    own = post.in_reply_to_user_id is not None and post.in_reply_to_user_id == account
    parent_user = next((m.username for m in post.mentions if m.user_id and m.user_id == post.in_reply_to_user_id), None)
    return PostRef(post.in_reply_to_post_id, x_permalink(parent_user, post.in_reply_to_post_id), parent_user, own)


def _quote_of(post: SourcePost) -> PostRef | None:
    qid = _quote_id(post)
    if not qid:
        return None
    user = post.quote_of.author_username if post.quote_of else None
    return PostRef(qid, x_permalink(user, qid), user, False)


def _repost(post: SourcePost, account: str) -> PostRef:
    """Rule 10: archive retweets may only name the author ("RT @user:"), with no id and no original."""
    original = post.retweet_of
    rid = post.retweet_of_id or (original.id if original else None)
    ruser = post.retweet_of_username or (original.author_username if original else None)
    own = (original is not None and original.author_id == account) or (
        ruser is not None and ruser.lower() == post.author_username.lower()
    )
    url = x_permalink(ruser, rid) if rid else x_permalink(post.author_username, post.id)
    return PostRef(rid, url, ruser, own, _neutral(original, account) if original is not None else None)


def _expand(post: SourcePost) -> _Text:
    """Rule 2: every t.co link becomes its expanded_url, the trailing media link is removed,
    and no t.co link survives (an unknown one is removed, noted, and the original post is linked)."""
    text = post.text
    if post.in_reply_to_post_id:
        # Rule 3: the leading "@a @b " of a reply is X's addressing, not content.
        text = _LEADING_MENTIONS_RE.sub("", text)
    by_url: dict[str, UrlEntity] = {}
    for entity in post.urls:
        by_url[entity.url] = entity
        by_url[_tco_key(entity.url)] = entity
    out = _Text("", [], [], False)
    pieces: list[str] = []
    length = 0
    spans: list[Link] = []
    last = 0
    for m in TCO_RE.finditer(text):
        ent: UrlEntity | None = by_url.get(m.group(0)) or by_url.get(_tco_key(m.group(0)))
        pieces.append(text[last : m.start()])
        length += m.start() - last
        last = m.end()
        is_last_token = not text[m.end():].strip()
        if ent is not None and ent.media_key is not None:
            continue
        if ent is None or TCO_RE.fullmatch(ent.expanded_url or "") or not ent.expanded_url:
            if post.media and is_last_token:
                continue  # the trailing link of attached media
            out.notes.append(f"post {post.id}: link {m.group(0)} has no expansion; removed, original post linked")
            out.incomplete = True
            continue
        status = _STATUS_URL_RE.match(ent.expanded_url)
        spans.append(Link(ent.expanded_url, length, length + len(ent.expanded_url), status.group(2) if status else None))
        pieces.append(ent.expanded_url)
        length += len(ent.expanded_url)
    pieces.append(text[last:])
    out.text, out.links = tidy("".join(pieces), spans)
    return out


def _tco_key(url: str) -> str:
    return "t.co/" + url.split("t.co/", 1)[-1]


def tidy(text: str, links: list[Link]) -> tuple[str, list[Link]]:
    """Strip the ends and the spaces a removed link leaves at line ends, keeping link offsets right."""
    if not text or (not text[0].isspace() and not text[-1].isspace() and " \n" not in text and "\t\n" not in text):
        return text, links  # the common case: nothing to cut
    cuts = [(m.start(), m.end() - 1) for m in _LINE_END_SPACES_RE.finditer(text)]  # the spaces, not the "\n"
    lead = len(text) - len(text.lstrip())
    end = len(text.rstrip())
    cuts.append((0, lead))
    cuts.append((end, len(text)))
    merged: list[tuple[int, int]] = []
    for a, b in sorted(c for c in cuts if c[1] > c[0]):
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(b, merged[-1][1]))
        else:
            merged.append((a, b))
    kept, pos = [], 0
    for a, b in merged:
        kept.append(text[pos:a])
        pos = b
    kept.append(text[pos:])

    def shift(at: int) -> int:
        return at - sum(min(b, at) - a for a, b in merged if a < at)

    return "".join(kept), [Link(k.url, shift(k.start), shift(k.end), k.post_id) for k in links]


def _drop_prefix(text: _Text, prefix: re.Pattern[str]) -> None:
    m = prefix.match(text.text)
    if m is None:
        return
    cut = m.end()
    text.text = text.text[cut:]
    text.links = [Link(k.url, k.start - cut, k.end - cut, k.post_id) for k in text.links if k.start >= cut]


def _media(m: Media) -> MediaItem:
    """Rule 7: photo candidates are pbs.twimg sizes, largest first; videos keep X's variants."""
    candidates: tuple[str, ...] = ()
    mime = None
    if m.type == "photo":
        candidates = tuple(_photo_url(m.url, s) for s in _PHOTO_SIZES) if m.url else ()
        mime = _photo_mime(m)
    return MediaItem(
        key=m.key, type=m.type, alt_text=m.alt_text, candidates=candidates, mime_type=mime, variants=m.variants,
        duration_ms=m.duration_ms, local_path=m.local_path, size_bytes=m.size_bytes,
    )


def _photo_url(url: str, size: str) -> str:
    base = _NAME_PARAM_RE.sub(r"\1", url).rstrip("?&")
    return f"{base}{'&' if '?' in base else '?'}name={size}"


def _photo_mime(m: Media) -> str:
    name = (m.local_path or m.url or "").split("?")[0]
    ext = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    fmt = re.search(r"[?&]format=([a-z]+)", m.url or "")
    return _IMAGE_MIME.get(ext) or _IMAGE_MIME.get(fmt.group(1) if fmt else "", "image/jpeg")
