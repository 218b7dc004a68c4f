"""`bridge demo`, the README's first command: runs end to end on local stand-ins and tells the story."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


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
    # A cooperative without X: its website's feed, served locally; only the entry published after linking.
    assert "linked baeckerei: feed 'Bäckerei Vollkorn eG'" in out
    assert "Bread subscription for members" in out and "Last year's party" not in out
    assert "Feed requests served:" in out
    # Bluesky: bridged when the reference PDS is installed, else one line says how to install it.
    from geno_bridge_standins.bluesky import pds_installed

    if pds_installed():
        assert "linked windgeno: Bluesky @windgeno.test" in out
        assert "Vote on the new wind park on Friday! #Energiewende" in out
        assert "An old Bluesky post" not in out
    else:
        assert "skipped: the local Bluesky PDS is not installed" in out and "python3 dev.py pds" in out


def test_demo_without_the_bluesky_pds_says_so_in_one_line_and_still_bridges_the_rest(tmp_path: Path) -> None:
    env = {**os.environ, "GENO_BRIDGE_DEMO_PDS_DIR": str(tmp_path / "no-pds")}
    r = subprocess.run([sys.executable, "-m", "bridge.cli", "demo"], capture_output=True, text=True, timeout=120,
                       check=False, env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    [line] = [x for x in r.stdout.splitlines() if "Bluesky PDS" in x and "skipped" in x]
    assert "python3 dev.py pds" in line and str(tmp_path / "no-pds") in line
    assert "Bread subscription for members" in r.stdout
