"""Golden tests: the sample archive and the v2 pages convert to exactly the reviewed files in tests/golden/.

After a deliberate change run ``.venv/bin/python -m tests.golden.regen`` and review the diff.
"""

from __future__ import annotations

from collections import Counter

import pytest

from bridge.policy import InstanceLimits, Policy
from tests.golden import regen
from tests.x_convert import convert

pytestmark = pytest.mark.usefixtures("fixtures_dir")


def _cases() -> list[tuple[str, str]]:
    return list(regen.all_cases())


def test_every_golden_file_matches() -> None:
    cases = _cases()
    assert len([n for n, _ in cases if n.startswith("archive/")]) == 33
    mismatched = []
    for name, text in cases:
        path = regen.HERE / name
        assert path.is_file(), f"{path}: golden file missing; run python -m tests.golden.regen and review it"
        if path.read_text(encoding="utf-8") != text:
            mismatched.append(name)
    assert not mismatched, f"conversion differs from the golden files: {mismatched}"


def test_no_stale_golden_files() -> None:
    names = {name for name, _ in _cases()}
    on_disk = {str(p.relative_to(regen.HERE)) for p in regen.HERE.glob("*_out/*.txt")}
    on_disk |= {str(p.relative_to(regen.HERE)) for p in (regen.HERE / "archive").glob("*.txt")}
    assert on_disk == names


def test_whole_archive_expectations() -> None:
    """EXPECTED.md: 26 new statuses (T24 split in N parts gives 25 + N drafts) and 1 boost; 9 media files."""
    limits, policy, bridge = InstanceLimits(), Policy(), regen._Bridge()
    kinds: Counter[str] = Counter()
    skipped, posted, sources = set(), set(), []
    replies = {}
    for post in regen.archive_posts():
        c = convert(post, limits, policy, own_user_id=regen.OWN_ID, bridged=bridge)
        bridge.record(post, c)
        if c.skipped:
            skipped.add(post.id)
            assert not c.drafts
        for d in c.drafts:
            kinds[d.kind] += 1
            sources += [m.source for m in d.media]
            if d.in_reply_to:
                replies[post.id] = d.in_reply_to
        if any(d.kind == "status" for d in c.drafts):
            posted.add(post.id)
    assert skipped == {
        "1764954551922106539", "1764955431286919910",  # superseded edit versions
        "1668200699661199910", "1824177142366869606", "1836405681617046147",  # replies to others
        "1674672877940463297",  # retweet of an account that is not bridged
    }
    assert len(posted) == 26
    long_parts = 2  # T24: 722 characters at 500
    assert kinds == {"status": 25 + long_parts, "boost": 1}
    assert len(sources) == len(set(sources)) == 9
    assert replies == {"1661820039082832020": "1661819687590113148", "1661820471721131233": "1661820039082832020"}
