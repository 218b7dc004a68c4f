"""Golden files for the conversion engine: one readable file per source post.

Run ``.venv/bin/python -m tests.golden.regen`` to rewrite them after a deliberate
change, then review the diff line by line: the files are the specification.
``tests/test_convert_golden.py`` asserts that conversion still produces exactly
these files.

Inputs: every post of ``../shared/fixtures/x-archive/sample-coop/`` (default
policy and limits, in id order, as an import would see them) and the v2 pages in
``tests/golden/v2/*.json`` (built after the X API v2 data dictionary; each names
its policy, limits, mention map and already bridged posts).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, fields
from pathlib import Path

from bridge.convert import Conversion
from bridge.model import BridgedToot, SourcePost, post_id_key
from bridge.policy import InstanceLimits, Policy, VisibilityPolicy
from bridge.render import render_json, render_text
from tests.conftest import FIXTURES
from tests.x_convert import convert

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
ARCHIVE = FIXTURES / "x-archive" / "sample-coop"
OWN_ID = "1400000000000000001"
TOOT_BASE = "https://wohnen.social.example/@wohngenonord/"


def render_golden(title: str, conversion: Conversion, limit: int, archive_root: Path | None = None) -> str:
    """The golden text: the human preview, then every field of every draft as JSON."""
    data = {
        "skipped": conversion.skipped,
        "notes": list(conversion.notes),
        "preview_json": render_json(conversion),
        "drafts": [asdict(d) for d in conversion.drafts],
    }
    text = f"# {title}\n\n{render_text(conversion, limit)}\n{json.dumps(data, ensure_ascii=False, indent=1)}\n"
    if archive_root is not None:
        # the archive reports its files under the resolved path: the fixtures folder may be a symlink
        text = text.replace(str(archive_root.resolve()), "<archive>").replace(str(archive_root), "<archive>")
    return text.replace("\u2060", "{WJ}")  # make the word joiner visible


class _Bridge:
    """Stands in for the ledger: what was bridged earlier in the same run."""

    def __init__(self, initial: tuple[str, ...] = ()) -> None:
        self.toots = {pid: BridgedToot(f"9{pid[-6:]}", TOOT_BASE + f"9{pid[-6:]}") for pid in initial}

    def __call__(self, post_id: str) -> BridgedToot | None:
        return self.toots.get(post_id)

    def record(self, post: SourcePost, conversion: Conversion) -> None:
        if any(d.kind in ("status", "edit") for d in conversion.drafts):
            key = post.original_id if post.original_id in self.toots else post.id
            self.toots.setdefault(key, BridgedToot(f"1{post.id[-6:]}", TOOT_BASE + f"1{post.id[-6:]}"))


def archive_posts() -> list[SourcePost]:
    from bridge.sources.archive import open_archive

    with open_archive(ARCHIVE) as archive:
        return sorted(archive.iter_posts(), key=lambda p: post_id_key(p.id))


def archive_cases() -> Iterator[tuple[str, str]]:
    """(file name, golden text) for every archive post, converted in id order with the defaults."""
    limits, policy, bridge = InstanceLimits(), Policy(), _Bridge()
    for post in archive_posts():
        conversion = convert(post, limits, policy, own_user_id=OWN_ID, bridged=bridge)
        bridge.record(post, conversion)
        yield f"archive/{post.id}.txt", render_golden(f"archive post {post.id}", conversion, limits.max_characters, ARCHIVE)


def _policy(overrides: dict) -> Policy:
    overrides = dict(overrides)
    if "visibility" in overrides:
        overrides["visibility"] = VisibilityPolicy(**overrides["visibility"])
    if "mention_map" in overrides:
        overrides["mention_map"] = tuple(tuple(p) for p in overrides["mention_map"])
    return Policy(**overrides)


def _limits(overrides: dict) -> InstanceLimits:
    known = {f.name for f in fields(InstanceLimits)}
    return InstanceLimits(**{k: v for k, v in overrides.items() if k in known})


def v2_cases() -> Iterator[tuple[str, str]]:
    from bridge.sources.x_v2 import normalise_page

    for path in sorted((HERE / "v2").glob("*.json")):
        case = json.loads(path.read_text(encoding="utf-8"))
        limits, policy = _limits(case.get("limits", {})), _policy(case.get("policy", {}))
        bridge = _Bridge(tuple(case.get("bridged", ())))
        for post in normalise_page(case["page"]):
            conversion = convert(
                post,
                limits,
                policy,
                own_user_id=OWN_ID,
                mentions=case.get("mentions", {}),
                bridged=bridge,
                backfill=case.get("backfill", False),
            )
            bridge.record(post, conversion)
            title = f"v2 {path.stem} post {post.id}: {case['description']}"
            yield f"v2_out/{path.stem}-{post.id}.txt", render_golden(title, conversion, limits.max_characters)


def all_cases() -> Iterator[tuple[str, str]]:
    yield from archive_cases()
    yield from v2_cases()


def main() -> None:
    for name, text in all_cases():
        target = HERE / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        print("wrote", target.relative_to(ROOT))


if __name__ == "__main__":
    main()
