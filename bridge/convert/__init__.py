"""The conversion engine: X posts to Mastodon drafts (issue 3). Pure functions only."""

from bridge.convert.counting import graphemes, mastodon_mention_re, status_length
from bridge.convert.engine import Conversion, convert, mastodon_language, rewrite_mentions
from bridge.convert.tokens import Token, tokenize

__all__ = [
    "Conversion",
    "Token",
    "convert",
    "graphemes",
    "mastodon_language",
    "mastodon_mention_re",
    "rewrite_mentions",
    "status_length",
    "tokenize",
]
