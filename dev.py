#!/usr/bin/env python3
"""Newcomer entry point: needs only Python 3.11+.

    python3 dev.py demo    # run the bridge end to end on built-in local stand-ins
    python3 dev.py test    # run the test suite
    python3 dev.py bench [--quick]   # run the benchmarks in bench/
    python3 dev.py lint    # ruff and mypy, configured in pyproject.toml
    python3 dev.py ops     # lint systemd unit and Dockerfile (needs systemd-analyze; installs hadolint)

Each creates .venv on first use and installs what it needs (again when a pyproject.toml changes):
the bridge with its test extra and, beside it, the local stand-ins from standins/.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / "python"
# What .venv is installed from: a change to either reinstalls it.
PROJECTS = (ROOT / "pyproject.toml", ROOT / "standins" / "pyproject.toml")


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


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(__doc__)
        return 0
    command, rest = argv[0], argv[1:]
    if command not in ("demo", "test", "bench", "lint", "ops"):
        print(__doc__)
        return 2
    ensure_venv()
    if command == "demo":
        return run(BIN / "bridge", "demo", *rest, check=False)
    if command == "test":
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
