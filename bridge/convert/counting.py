"""Counting and cutting text the way Mastodon does: grapheme clusters, URLs as 23.

Mastodon's ``StatusLengthValidator`` counts ``spoiler_text + text`` in grapheme
clusters after replacing every URL with 23 characters and every ``@user@domain``
with ``@user`` (Mastodon source, app/validators/status_length_validator.rb).
Mastodon.py ships the same rule as ``Mastodon.get_status_length``; it needs the
optional ``grapheme`` module (the ``Mastodon.py[grapheme]`` extra, package
``graphemeu``). When that module is missing we count with the same URL regex
(Mastodon.py's ``_url_regex``) and a small UAX #29 approximation below, so the
bridge still works; ``tests/test_convert_counting.py`` checks both against
Mastodon.py's own test cases.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterator
from functools import cache, lru_cache

from mastodon import Mastodon
from mastodon._url_regex import url_regex as MASTODON_URL_RE

from bridge.convert.unicode_ranges import scan, stored

try:  # the module Mastodon.get_status_length itself uses
    import grapheme as _grapheme  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - depends on the environment
    _grapheme = None

HAVE_GRAPHEME_MODULE = _grapheme is not None

WORD_JOINER = "\u2060"

# Mastodon.py utility.get_status_length: a remote mention counts as "@user".
_REMOTE_USERNAME_RE = re.compile(r"(^|[^/\w])@(([a-z0-9_]+)@[a-z0-9\.\-]+[a-z0-9]+)", re.IGNORECASE)


@cache
def category_class(*prefixes: str) -> str:
    """A regex character class body of every code point whose Unicode category starts with a prefix.

    Python's ``re`` has no ``\\p{L}``; Mastodon (Ruby ``[[:word:]]``) and
    twitter-text rely on Unicode categories. The ranges come precomputed for the
    Unicode versions the bridge runs on (``unicode_ranges``); scanning every code
    point instead cost about 1 s per class and process (issue 18).
    """
    ranges: list[tuple[int, int]] = []
    for prefix in prefixes:
        ranges.extend(stored(prefix) or scan(prefix))
    merged: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if merged and lo <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
        else:
            merged.append((lo, hi))
    parts = []
    for lo, hi in merged:
        parts.append(re.escape(chr(lo)) if lo == hi else f"{re.escape(chr(lo))}-{re.escape(chr(hi))}")
    return "".join(parts)


@lru_cache(maxsize=1)
def mastodon_mention_re() -> re.Pattern[str]:
    """Mastodon's ``Account::MENTION_RE`` (app/models/account.rb, 4.x) in Python syntax.

    ``USERNAME_RE = /[a-z0-9_]+([.-]+[a-z0-9_]+)*/i`` and
    ``MENTION_RE = (?<![=/[:word:]])@((USERNAME_RE)(?:@[[:word:]]+([.-]+[[:word:]]+)*)?)``.
    Ruby's ``[[:word:]]`` is letters, marks, decimal digits and connector punctuation.
    Group 1 is the whole account, group 2 the username, group 3 the domain (or None).
    """
    word = category_class("L", "M", "Nd", "Pc")
    return re.compile(
        rf"(?<![=/{word}])@([a-z0-9_]+(?:[.-]+[a-z0-9_]+)*)(?:@([{word}]+(?:[.-]+[{word}]+)*))?",
        re.IGNORECASE,
    )


# --- grapheme clusters -----------------------------------------------------------------

_CONTROL, _EXTEND, _ZWJ, _RI, _PREPEND, _SPACING, _L, _V, _T, _LV, _LVT, _PICT, _OTHER, _CR, _LF = range(15)

_PREPEND_CPS = frozenset(
    [*range(0x0600, 0x0606), 0x06DD, 0x070F, 0x0890, 0x0891, 0x08E2, 0x0D4E, 0x110BD, 0x110CD, 0x111C2, 0x111C3,
     0x1193F, 0x11941, 0x11A3A, *range(0x11A84, 0x11A8A), 0x11D46]
)
# Viramas that are InCB=Linker (UAX #29 GB9c; Khmer and Myanmar since Unicode 17).
_LINKERS = frozenset([0x094D, 0x09CD, 0x0ACD, 0x0B4D, 0x0C4D, 0x0D4D, 0x17D2, 0x1039])
# UAX #29: Spacing_Mark except these (they stand alone).
_NOT_SPACING = frozenset([0x102B, 0x102C, 0x1038, *range(0x1062, 0x1065), *range(0x1067, 0x106E), 0x1083,
                          *range(0x1087, 0x108D), 0x108F, *range(0x109A, 0x109D), 0x1A61, 0x1A63, 0x1A64, 0xAA7B,
                          0xAA7D, 0x11720, 0x11721])
_LINKER_SCRIPTS = ((0x0900, 0x097F), (0x0980, 0x09FF), (0x0A80, 0x0AFF), (0x0B00, 0x0B7F), (0x0C00, 0x0C7F),
                   (0x0D00, 0x0D7F), (0x1780, 0x17FF), (0x1000, 0x109F))


def _is_pictographic(cp: int) -> bool:
    """Approximates Extended_Pictographic (emoji-data.txt): the emoji blocks plus a few symbols."""
    if 0x1F000 <= cp <= 0x1FAFF or 0x1FC00 <= cp <= 0x1FFFD:
        return not (0x1F1E6 <= cp <= 0x1F1FF or 0x1F3FB <= cp <= 0x1F3FF)
    if 0x2600 <= cp <= 0x27BF or 0x2300 <= cp <= 0x23FF or 0x2B00 <= cp <= 0x2BFF or 0x2190 <= cp <= 0x21FF:
        return unicodedata.category(chr(cp)) in ("So", "Sm")
    return cp in (0x00A9, 0x00AE, 0x203C, 0x2049, 0x2122, 0x2139, 0x24C2, 0x25AA, 0x25AB, 0x25B6, 0x25C0,
                  0x25FB, 0x25FC, 0x25FD, 0x25FE, 0x3030, 0x303D, 0x3297, 0x3299)


@lru_cache(maxsize=4096)
def _prop(ch: str) -> int:
    cp = ord(ch)
    if ch == "\r":
        return _CR
    if ch == "\n":
        return _LF
    if cp == 0x200D:
        return _ZWJ
    if 0x1F1E6 <= cp <= 0x1F1FF:
        return _RI
    if cp in _PREPEND_CPS:
        return _PREPEND
    if 0x1100 <= cp <= 0x115F or 0xA960 <= cp <= 0xA97C:
        return _L
    if 0x1160 <= cp <= 0x11A7 or 0xD7B0 <= cp <= 0xD7C6:
        return _V
    if 0x11A8 <= cp <= 0x11FF or 0xD7CB <= cp <= 0xD7FB:
        return _T
    if 0xAC00 <= cp <= 0xD7A3:
        return _LV if (cp - 0xAC00) % 28 == 0 else _LVT
    if 0x1F3FB <= cp <= 0x1F3FF or cp == 0x200C or 0xE0020 <= cp <= 0xE007F or 0xFF9E <= cp <= 0xFF9F:
        return _EXTEND
    cat = unicodedata.category(ch)
    if cat in ("Mn", "Me"):
        return _EXTEND
    if cat == "Mc":
        # A few Mc are Grapheme_Extend (e.g. U+09BE); both keep the cluster together.
        return _OTHER if cp in _NOT_SPACING else _SPACING
    if cat in ("Cc", "Zl", "Zp") or (cat == "Cf" and cp not in (0x200C, 0x200D)):
        return _CONTROL
    if cat == "Cn" and (0xFFF0 <= cp <= 0xFFF8 or 0xE0000 <= cp <= 0xE0FFF):
        return _CONTROL
    if _is_pictographic(cp):
        return _PICT
    return _OTHER


def _incb_consonant(cp: int) -> bool:
    return any(lo <= cp <= hi for lo, hi in _LINKER_SCRIPTS) and unicodedata.category(chr(cp)) == "Lo"


def _fallback_graphemes(text: str) -> Iterator[str]:
    """Extended grapheme clusters per UAX #29 rules GB3-GB13, with approximated properties."""
    if not text:
        return
    start = 0
    prev = _prop(text[0])
    ri_run = 1 if prev == _RI else 0
    pict_state = 1 if prev == _PICT else 0  # 1: in ExtPict Extend*, 2: just saw ZWJ after that
    # GB9c: 0 none, 1 consonant seen (Extend/Linker after it), 2 linker seen after consonant
    incb = 1 if _incb_consonant(ord(text[0])) else 0
    for i in range(1, len(text)):
        ch = text[i]
        cur = _prop(ch)
        cp = ord(ch)
        brk = True
        if prev == _CR and cur == _LF:
            brk = False
        elif prev in (_CONTROL, _CR, _LF) or cur in (_CONTROL, _CR, _LF):
            brk = True
        elif prev == _L and cur in (_L, _V, _LV, _LVT):
            brk = False
        elif prev in (_LV, _V) and cur in (_V, _T):
            brk = False
        elif prev in (_LVT, _T) and cur == _T:
            brk = False
        elif cur in (_EXTEND, _ZWJ, _SPACING):
            brk = False
        elif prev == _PREPEND:
            brk = False
        elif incb == 2 and _incb_consonant(cp):
            brk = False
        elif pict_state == 2 and cur == _PICT:
            brk = False
        elif prev == _RI and cur == _RI and ri_run % 2 == 1:
            brk = False
        if brk:
            yield text[start:i]
            start = i
        # update states
        ri_run = ri_run + 1 if cur == _RI else 0
        if cur == _PICT:
            pict_state = 1
        elif pict_state == 1 and cur == _EXTEND:
            pict_state = 1
        elif pict_state == 1 and cur == _ZWJ:
            pict_state = 2
        else:
            pict_state = 0
        if _incb_consonant(cp):
            incb = 1
        elif incb and cp in _LINKERS:
            incb = 2
        elif incb and (cur in (_EXTEND, _ZWJ)):
            pass
        else:
            incb = 0
        prev = cur
    yield text[start:]


def graphemes(text: str) -> list[str]:
    """Extended grapheme clusters: what Mastodon counts as one character."""
    if _grapheme is not None:
        return list(_grapheme.graphemes(text))
    return list(_fallback_graphemes(text))


def grapheme_length(text: str) -> int:
    return len(graphemes(text))


def _countable(text: str) -> str:
    # Both patterns need a literal "://" or "@": skip the (costly) regexes when it is absent.
    if "://" in text:
        text = MASTODON_URL_RE.sub(lambda m: m.group(2) + "x" * 23, text)
    if "@" in text:
        text = _REMOTE_USERNAME_RE.sub(r"\1@\3", text)
    return text


_JOINING_CATEGORIES = frozenset({"Mn", "Mc", "Me", "Cf", "Cs", "Co", "Cn", "Sk"})
# Code points outside those categories that still join (UAX #29): regional indicators,
# Lm/Lo with Extend or SpacingMark, Hangul jamo, Lo with Prepend.
_JOINING_RANGES = (
    (0x1F1E6, 0x1F1FF), (0xFF9E, 0xFF9F), (0x0D4E, 0x0D4E), (0x0E33, 0x0E33), (0x0EB3, 0x0EB3),
    (0x1100, 0x11FF), (0xA960, 0xA97F), (0xD7B0, 0xD7FF), (0x111C2, 0x111C3), (0x1193F, 0x1193F),
    (0x11941, 0x11941), (0x11A3A, 0x11A3A), (0x11A84, 0x11A89), (0x11D46, 0x11D46), (0x11F02, 0x11F02),
)


@lru_cache(maxsize=4096)
def _may_join(ch: str) -> bool:
    """Whether a code point can form a grapheme cluster with a neighbour (or is unassigned)."""
    cp = ord(ch)
    return unicodedata.category(ch) in _JOINING_CATEGORIES or any(lo <= cp <= hi for lo, hi in _JOINING_RANGES)


def _simple_length(text: str) -> int | None:
    """The grapheme count without segmenting, when no code point can join another; else None.

    Segmenting is by far the converter's largest cost (bench/convert.py), and most
    posts (ASCII, German, French, plain emoji ...) never need it: one cluster per
    code point, but CR LF.
    """
    if not text.isascii() and any(_may_join(ch) for ch in set(text) if not ch.isascii()):
        return None
    return len(text) - text.count("\r\n")


def status_length(text: str, spoiler_text: str = "") -> int:
    """The length Mastodon checks against ``max_characters``: text plus spoiler text.

    Spoiler text counts too (StatusLengthValidator joins spoiler_text and text).
    """
    countable = _countable(text)
    fast_text, fast_spoiler = _simple_length(countable), _simple_length(spoiler_text)
    if fast_text is not None and fast_spoiler is not None:
        return fast_text + fast_spoiler
    if _grapheme is not None:
        return Mastodon.get_status_length(text, spoiler_text)
    return grapheme_length(_countable(text)) + grapheme_length(spoiler_text)


def cut_graphemes(text: str, fits: Callable[[str], bool]) -> str:
    """The longest prefix of whole grapheme clusters that ``fits``."""
    out = ""
    for g in graphemes(text):
        if not fits(out + g):
            break
        out += g
    return out


def cut_description(text: str, limit: int) -> str:
    """Cut to ``limit`` at a grapheme boundary, counting code points too.

    Mastodon validates media descriptions with Ruby ``String#length`` (code
    points), so staying under the limit in code points also stays under it in
    graphemes.
    """
    if len(text) <= limit:
        return text
    return cut_graphemes(text, lambda s: len(s) <= limit)
