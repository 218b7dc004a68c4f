"""What ``bridge preview`` and ``--dry-run`` print: the drafts exactly as they would be posted.

``render_text`` is for people (draft by draft, counted length against the
limit, media with descriptions, targets, notes); ``render_json`` is the same
as plain data with a fixed set of keys, for scripts and tests.
"""

from __future__ import annotations

from typing import Any

from bridge.convert import Conversion
from bridge.model import Draft

JSON_KEYS = (
    "text",
    "spoiler_text",
    "language",
    "sensitive",
    "visibility",
    "in_reply_to",
    "quote_of",
    "boost_of",
    "media",
    "length",
)


def _target(d: Draft) -> str | None:
    if d.kind == "boost":
        return f"boost of the toot of post {d.boost_of}"
    bits = []
    if d.kind == "edit":
        bits.append(f"edits the toot of post {d.edit_of} (part {d.part + 1})")
    if d.in_reply_to:
        bits.append(f"reply to the toot of post {d.in_reply_to}")
    if d.reply_to_part is not None:
        bits.append(f"reply to part {d.reply_to_part + 1}")
    if d.quote_of:
        bits.append(f"quotes the toot of post {d.quote_of}")
    return "; ".join(bits) or None


def render_text(conversion: Conversion, max_characters: int | None = None) -> str:
    """Readable preview. ``max_characters`` (the instance limit) is shown beside each length."""
    lines: list[str] = []
    if conversion.skipped:
        lines.append(f"SKIPPED: {conversion.skipped}")
    total = len(conversion.drafts)
    for d in conversion.drafts:
        head = f"--- draft {d.part + 1}/{total} ({d.kind}) post {d.post_id}"
        lines.append(head)
        target = _target(d)
        if target:
            lines.append(f"target: {target}")
        if d.kind == "boost":
            lines.append(f"visibility: {d.visibility}")
            continue
        limit = f" / {max_characters}" if max_characters is not None else ""
        lines.append(
            f"length: {d.length}{limit}   visibility: {d.visibility}   language: {d.language or '-'}"
            f"   sensitive: {'yes' if d.sensitive else 'no'}"
        )
        if d.spoiler_text:
            lines.append(f"content warning: {d.spoiler_text}")
        lines.append("text:")
        lines.extend(f"  | {line}" for line in d.text.split("\n")) if d.text else lines.append("  (empty)")
        raw = d.text.encode()
        for f in d.facets:  # Bluesky: links, mentions, tags in UTF-8 byte offsets
            shown = raw[f.byte_start : f.byte_end].decode(errors="replace")
            lines.append(f"facet {f.kind} bytes {f.byte_start}-{f.byte_end} {shown!r}" + (f" -> {f.value}" if f.kind == "link" else ""))
        if d.labels:
            lines.append(f"labels: {', '.join(d.labels)}")
        for i, m in enumerate(d.media, 1):
            lines.append(f"media {i}: {m.type} {m.source}")
            lines.append(f"  description: {m.description if m.description else '(none)'}")
            for fb in m.fallbacks:
                lines.append(f"  fallback: {fb}")
        if d.poll:
            lines.append(f"poll ({d.poll.expires_in} s): " + " | ".join(d.poll.options))
    for note in conversion.notes:
        lines.append(f"note: {note}")
    if not conversion.drafts and not conversion.skipped:
        lines.append("nothing to post")
    return "\n".join(lines) + "\n"


def draft_to_dict(d: Draft) -> dict[str, Any]:
    """One draft as JSON-ready data with exactly ``JSON_KEYS``."""
    return {
        "text": d.text,
        "spoiler_text": d.spoiler_text,
        "language": d.language,
        "sensitive": d.sensitive,
        "visibility": d.visibility,
        "in_reply_to": d.in_reply_to,
        "quote_of": d.quote_of,
        "boost_of": d.boost_of,
        "media": [{"type": m.type, "source": m.source, "description": m.description} for m in d.media],
        "length": d.length,
    }


def render_json(conversion: Conversion) -> list[dict[str, Any]]:
    """The drafts as a JSON list (empty when the post is skipped)."""
    return [draft_to_dict(d) for d in conversion.drafts]
