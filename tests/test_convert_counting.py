"""Status length exactly as Mastodon counts it, and Mastodon's mention regex."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.convert import counting, unicode_ranges
from bridge.convert.counting import (
    WORD_JOINER,
    _fallback_graphemes,
    cut_description,
    graphemes,
    mastodon_mention_re,
    status_length,
)


def _cases(fixtures_dir: Path) -> list[dict]:
    return json.loads((fixtures_dir / "mastodon-api" / "status_length_cases.json").read_text(encoding="utf-8"))["cases"]


def test_every_mastodon_py_length_case(fixtures_dir: Path) -> None:
    cases = _cases(fixtures_dir)
    assert len(cases) >= 30
    for case in cases:
        assert status_length(case["text"]) == case["expected"], case["text"]
        # The fixture's note: with spoiler_text "what" the count is 4 more (spoilers count, too).
        assert status_length(case["text"], "what") == case["expected"] + 4, case["text"]


def test_fallback_counter_agrees_with_the_cases(fixtures_dir: Path) -> None:
    """Without the optional grapheme module the same numbers come out."""
    for case in _cases(fixtures_dir):
        got = len(list(_fallback_graphemes(counting._countable(case["text"]))))
        assert got == case["expected"], case["text"]


@pytest.mark.skipif(not counting.HAVE_GRAPHEME_MODULE, reason="grapheme module (Mastodon.py[grapheme]) not installed")
@settings(derandomize=True, max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=40))
def test_fallback_graphemes_agree_with_the_grapheme_module(text: str) -> None:
    import grapheme

    assert list(_fallback_graphemes(text)) == list(grapheme.graphemes(text))


def test_graphemes_keep_emoji_sequences_whole() -> None:
    for cluster in ["👨\u200d👩\u200d👧\u200d👦", "🧑\u200d🍳", "👋🏽", "🇩🇪", "🏳️\u200d🌈", "☀️", "e\u0301", "क्षि", "\r\n"]:
        assert graphemes(cluster) == [cluster]
        assert list(_fallback_graphemes(cluster)) == [cluster]
    assert graphemes("🇩🇪🇺🇦") == ["🇩🇪", "🇺🇦"]


def test_description_cut_at_a_grapheme_boundary_within_code_points() -> None:
    family = "👨\u200d👩\u200d👧\u200d👦"  # 7 code points, 1 grapheme
    text = "abc" + family
    assert cut_description(text, 9) == "abc"
    assert cut_description(text, 10) == text
    assert cut_description("short", 1500) == "short"


@pytest.mark.parametrize(
    ("text", "account"),
    [  # Mastodon spec/models/account_spec.rb, MENTION_RE
        ("Hello to @alice from me", "alice"),
        ("@alice Hey how are you?", "alice"),
        ("@alice@example.com", "alice@example.com"),
        ("Hello @alice@example.com and", "alice@example.com"),
        ("Hello to @alice_bob from me", "alice_bob"),
        ("Hello to @al.ice from me", "al.ice"),
        ("(@alice)", "alice"),
    ],
)
def test_mastodon_mention_regex_matches(text: str, account: str) -> None:
    m = mastodon_mention_re().search(text)
    assert m is not None and m.group(0)[1:] == account


@pytest.mark.parametrize(
    "text",
    [
        "Drink more water@alice",  # after a word character
        "https://example.com/@alice",  # after a slash
        "?user=@alice",  # after "="
        "@" + WORD_JOINER + "alice",  # the bridge's neutral form
        "@ alice",
    ],
)
def test_mastodon_mention_regex_does_not_match(text: str) -> None:
    assert mastodon_mention_re().search(text) is None


from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from mastodon import Mastodon  # noqa: E402


@settings(derandomize=True, max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=80) | st.text(alphabet="aäé ñ\r\n🇩🇪👋🏽🌱🏠住宅\u200d\u0301\u1100\u1161가\uff76\uff9e\u0e01\u0e33\ufe0f.#@https://x.org/", max_size=80),
       st.text(max_size=10))
def test_fast_count_agrees_with_mastodon_py(text: str, spoiler: str) -> None:
    """The shortcut for text that needs no segmentation gives exactly Mastodon.py's count."""
    from bridge.convert.counting import HAVE_GRAPHEME_MODULE

    if not HAVE_GRAPHEME_MODULE:
        return
    assert status_length(text, spoiler) == Mastodon.get_status_length(text, spoiler)


def test_the_precomputed_category_ranges_equal_a_scan_of_this_pythons_unicode_data() -> None:
    """The character classes come from a table (a scan cost ~1 s per class and process); it must not drift."""
    assert unicodedata.unidata_version in unicode_ranges.TABLES, "regenerate: python3 -m bridge.convert.unicode_ranges"
    for prefix in unicode_ranges.ATOMS:
        assert unicode_ranges.stored(prefix) == unicode_ranges.scan(prefix), prefix
