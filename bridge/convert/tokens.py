"""Finding URLs, mentions, hashtags and cashtags in post text, as twitter-text does.

The splitter must never cut inside one of these, and the mention rewriter must
never touch text inside a URL. The rules follow twitter-text's extractor
(conformance suite ``extract.yml``, checked in ``tests/test_convert_tokens.py``):

- URLs: only URLs with an ``http(s)://`` scheme. The regex is Mastodon.py's
  ``url_regex``, which is twitter-text's ``validUrl`` as Mastodon uses it to
  count a URL as 23 characters and to link it. Mastodon never links a URL
  without scheme (``example.com``), so to the bridge such text is a plain word;
  twitter-text's scheme-less cases are skipped on purpose.
- t.co links take no extra path characters (twitter-text ``validTcoUrl``).
- Mentions: twitter-text ``validMentionOrList`` / ``endMentionMatch``.
- Hashtags: twitter-text ``validHashtag`` / ``endHashtagMatch``; cashtags:
  ``validCashtag``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from mastodon._url_regex import url_regex as _URL_RE

from bridge.convert.counting import category_class

TokenKind = Literal["url", "mention", "hashtag", "cashtag"]


@dataclass(frozen=True)
class Token:
    kind: TokenKind
    start: int  # code point offsets into the text, end exclusive
    end: int
    value: str  # url as written; handle, tag or symbol without the sigil


# twitter-text validTcoUrl: a t.co link takes a query but no further path characters.
_TCO_RE = re.compile(
    r"^https?://t\.co/([a-z0-9]+)(?:\?[a-z0-9!?*'@();:&=+$/%#\[\]\-_.,~|]*[a-z0-9\-_&=#/])?", re.IGNORECASE
)
_TCO_PATH_MAX = 40  # twitter-text: longer t.co paths are not t.co links

_LATIN_ACCENTS = (
    "\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u00ff\u0100-\u024f\u0253\u0254\u0256\u0257\u0259\u025b\u0263\u0268"
    "\u026f\u0272\u0289\u028b\u02bb\u0300-\u036f\u1e00-\u1eff"
)
_MENTION_RE = re.compile(
    r"(?:^|[^a-zA-Z0-9_!#$%&*@＠]|(?:^|[^a-zA-Z0-9_+~.-])(?:rt|RT|rT|Rt):?)"
    r"[@＠]([a-zA-Z0-9_]{1,20})(/[a-zA-Z][a-zA-Z0-9_-]{0,24})?"
)
_END_MENTION_RE = re.compile(rf"[@＠{_LATIN_ACCENTS}]|://")

_HASHTAG_EXTRA = "_\u200c\u200d\ua67e\u05be\u05f3\u05f4\uff5e\u301c\u309b\u309c\u30a0\u30fb\u3003\u0f0b\u0f0c\u00b7"
_WHITESPACE = "\u0009-\u000d\u0020\u0085\u00a0\u1680\u180e\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_PUNCT = r"!'#%&'\(\)*\+,\\\-\./:;<=>\?@\[\]\^_{|}~\$"
_CASHTAG_RE = re.compile(
    rf"(?:^|(?<=[{_WHITESPACE}]))[$＄]([a-z]{{1,6}}(?:[._][a-z]{{1,2}})?)(?=$|[{_WHITESPACE}]|[{_PUNCT}])",
    re.IGNORECASE,
)


@lru_cache(maxsize=1)
def _hashtag_re() -> re.Pattern[str]:
    alpha = category_class("L", "M")
    alnum = category_class("L", "M", "Nd") + re.escape(_HASHTAG_EXTRA)
    return re.compile(rf"(?:^|[\ufe0e\ufe0f]|[^&{alnum}])[#＃](?![\ufe0f\u20e3])([{alnum}]*[{alpha}][{alnum}]*)")


def _valid_domain(domain: str) -> bool:
    """twitter-text isValidUrl: the domain must convert to ASCII (IDNA), each label at most 63 long."""
    for label in domain.split("."):
        if label.isascii():
            ascii_label = label
        elif label.lower().startswith("xn--"):
            return False
        else:
            try:
                ascii_label = "xn--" + label.encode("punycode").decode("ascii")
            except UnicodeError:
                return False
        if len(ascii_label) > 63:
            return False
    return True


def extract_urls(text: str) -> list[Token]:
    """URLs with a scheme, where Mastodon (and twitter-text) find them."""
    tokens: list[Token] = []
    for m in _URL_RE.finditer(text):
        url, start = m.group(3), m.start(3)
        if not m.group(4):
            continue
        tco = _TCO_RE.match(url)
        if tco:
            url = tco.group(0)
            if len(tco.group(1)) > _TCO_PATH_MAX:
                continue
        if not _valid_domain(m.group(5)):
            continue
        tokens.append(Token("url", start, start + len(url), url))
    return tokens


def extract_mentions(text: str) -> list[Token]:
    """@handles as X sees them (not lists, not e-mail addresses)."""
    tokens: list[Token] = []
    for m in _MENTION_RE.finditer(text):
        if m.group(2):  # @user/list: a list, not a mention
            continue
        if _END_MENTION_RE.match(text, m.end()):
            continue
        at = m.start(1) - 1
        tokens.append(Token("mention", at, m.end(1), m.group(1)))
    return tokens


def extract_hashtags(text: str) -> list[Token]:
    """Hashtags, except those inside a URL (twitter-text checks the overlap too)."""
    urls = extract_urls(text)
    tokens: list[Token] = []
    for m in _hashtag_re().finditer(text):
        if re.match(r"[#＃]|://", text[m.end():]):
            continue
        if any(u.start <= m.start(1) < u.end for u in urls):
            continue
        tokens.append(Token("hashtag", m.start(1) - 1, m.end(1), m.group(1)))
    return tokens


def extract_cashtags(text: str) -> list[Token]:
    return [Token("cashtag", m.start(1) - 1, m.end(1), m.group(1)) for m in _CASHTAG_RE.finditer(text)]


def tokenize(text: str) -> list[Token]:
    """Every entity, in text order, without overlaps (an earlier entity wins, as in twitter-text)."""
    found = extract_urls(text) + extract_mentions(text) + extract_hashtags(text) + extract_cashtags(text)
    found.sort(key=lambda t: (t.start, 0 if t.kind == "url" else 1))
    out: list[Token] = []
    for tok in found:
        if out and tok.start < out[-1].end:
            continue
        out.append(tok)
    return out
