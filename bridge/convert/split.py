"""Splitting a long text into thread parts that each fit the instance limit.

Cuts go at the best boundary that still fills a part reasonably: paragraph,
then line, then sentence, then word; only a single word longer than a whole
part is cut inside, at a grapheme boundary, and then not inside a URL, mention
or hashtag when that can be avoided. Every part is an exact slice of the text;
only the whitespace at a cut is dropped, so nothing is lost.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from bridge.convert.counting import graphemes
from bridge.convert.tokens import tokenize

_WS_RUN = re.compile(r"\s+")
_SENTENCE_END = re.compile(r"[.!?…][\"'”’»)\]]*$")
PARAGRAPH, LINE, SENTENCE, WORD = 3, 2, 1, 0
# A higher-level cut is taken when its part is at least this share of the longest possible part.
_MIN_FILL = 0.5


def _cut_candidates(text: str, protected: Sequence[tuple[int, int]]) -> list[tuple[int, int, int]]:
    """(part end, next part start, level) for every whitespace run outside a protected span."""
    out: list[tuple[int, int, int]] = []
    for m in _WS_RUN.finditer(text):
        a, b = m.span()
        if a == 0 or b == len(text):
            continue
        if any(lo < b and a < hi for lo, hi in protected):
            continue
        run = m.group(0)
        newlines = run.count("\n")
        if newlines >= 2:
            level = PARAGRAPH
        elif newlines == 1:
            level = LINE
        elif _SENTENCE_END.search(text[max(0, a - 8):a]):
            level = SENTENCE
        else:
            level = WORD
        out.append((a, b, level))
    return out


def _hard_cut(text: str, start: int, fits: Callable[[str], bool]) -> int:
    """End of the longest grapheme-aligned piece from ``start`` that fits, avoiding cuts inside tokens."""
    word_end = len(text)
    m = _WS_RUN.search(text, start)
    if m:
        word_end = m.start()
    word = text[start:word_end]
    offsets: list[int] = []  # possible ends, relative to start
    pos = 0
    for g in graphemes(word):
        pos += len(g)
        offsets.append(pos)
    inside = [(t.start, t.end) for t in tokenize(word)]
    best = 0
    best_outside = 0
    lo, hi = 0, len(offsets) - 1
    while lo <= hi:  # longest fitting prefix (length grows with the prefix)
        mid = (lo + hi) // 2
        if fits(word[: offsets[mid]]):
            best = offsets[mid]
            lo = mid + 1
        else:
            hi = mid - 1
    for off in offsets:
        if off > best:
            break
        if not any(a < off < b for a, b in inside):
            best_outside = off
    end = best_outside or best or (offsets[0] if offsets else 1)
    return start + end


def split_text(
    text: str,
    fits: Callable[[str], bool],
    protected: Sequence[tuple[int, int]] = (),
    max_parts: int | None = None,
) -> list[tuple[int, int]]:
    """Spans ``(start, end)`` of ``text`` whose slices each satisfy ``fits``.

    ``text`` must not start or end with whitespace. ``fits`` must grow false
    monotonically as a part grows (true for Mastodon's count at word cuts).
    Returns one span covering everything when the whole text fits.
    ``max_parts`` stops after that many spans (the last then ends before the
    text does), so a huge text costs no more than the parts that are used.
    """
    if not text:
        return [(0, 0)]
    if fits(text):
        return [(0, len(text))]
    cands = _cut_candidates(text, protected)
    spans: list[tuple[int, int]] = []
    pos = 0
    while pos < len(text):
        if max_parts is not None and len(spans) >= max_parts:
            break
        if fits(text[pos:]):
            spans.append((pos, len(text)))
            break
        usable = [c for c in cands if c[0] > pos]
        # binary search the farthest candidate whose part fits
        lo, hi, best = 0, len(usable) - 1, -1
        while lo <= hi:
            mid = (lo + hi) // 2
            if fits(text[pos : usable[mid][0]]):
                best = mid
                lo = mid + 1
            else:
                hi = mid - 1
        if best < 0:
            end = _hard_cut(text, pos, fits)
            spans.append((pos, end))
            nxt = end
            m = _WS_RUN.match(text, nxt)
            pos = m.end() if m else nxt
            continue
        longest = usable[best][0] - pos
        choice = usable[best]
        for level in (PARAGRAPH, LINE, SENTENCE):
            at_level = [c for c in usable[: best + 1] if c[2] >= level]
            if at_level and (at_level[-1][0] - pos) >= _MIN_FILL * longest:
                choice = at_level[-1]
                break
        spans.append((pos, choice[0]))
        pos = choice[1]
    return spans
