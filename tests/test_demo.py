"""`bridge demo`, the README's first command: runs end to end on local stand-ins and tells the story."""

from __future__ import annotations

import subprocess
import sys


def test_demo_runs_end_to_end() -> None:
    r = subprocess.run([sys.executable, "-m", "bridge.cli", "demo"], capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = r.stdout
    assert "linked wohnen-eg" in out and "linked solargeno" in out
    assert "[boost] of @solargeno" in out  # the retweet between the two cooperatives
    assert "[image: The new timber-frame house" in out  # alt text arrived
    assert "[reply to" in out  # the long post became a thread
    assert "Paragraph 8" in out  # nothing of the long post was lost
    assert "@\u2060someone_unlinked" in out  # an unmapped handle is not a mention
    assert "An old post from 2024" not in out  # no flood of old posts
    assert "posts read from X: 10 (each exactly once)" in out
