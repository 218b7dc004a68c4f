"""Every user-facing text of `bridge web` exists in German and English, with the same placeholders."""

from __future__ import annotations

import re
import string
from pathlib import Path

from bridge.web import text_de, text_en

TEMPLATES = Path(__file__).resolve().parent.parent / "bridge" / "web" / "templates"


def placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def test_both_languages_have_the_same_texts_with_the_same_placeholders() -> None:
    assert set(text_de.TEXT) == set(text_en.TEXT)
    for key, english in text_en.TEXT.items():
        assert placeholders(text_de.TEXT[key]) == placeholders(english), key


def test_every_text_a_template_names_exists() -> None:
    used = set()
    for template in TEMPLATES.glob("*.html"):
        used |= set(re.findall(r"\bt\.([a-z_0-9]+)", template.read_text(encoding="utf-8")))
    dynamic = {f"state_{s}" for s in ("active", "paused", "needs_relink", "unlinked")}
    dynamic |= {f"retweets_{c}" for c in ("auto", "boost", "link", "skip")} | {f"replies_{c}" for c in ("self", "all", "none")}
    dynamic |= {f"vis_{c}" for c in ("public", "unlisted", "private")}
    dynamic |= {f"plain_{c}" for c in ("media", "refused", "auth", "unreachable", "other")}
    missing = sorted((used | dynamic) - set(text_en.TEXT) - {"get"})
    assert not missing, missing
