"""The CLI as a user meets it: help with examples, exit codes, masked secrets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from bridge import __version__
from bridge.cli import main

ROOT = Path(__file__).resolve().parent.parent


def write_config(tmp_path: Path, extra: str = "") -> Path:
    p = tmp_path / "config.yaml"
    p.write_text(f"database: {tmp_path / 'ledger.db'}\nx:\n  bearer_token: AAAA-very-secret-bearer\n{extra}")
    return p


def test_version_and_help_with_examples() -> None:
    runner = CliRunner()
    r = runner.invoke(main, ["--version"])
    assert r.exit_code == 0 and __version__ in r.output
    r = runner.invoke(main, ["--help"])
    assert r.exit_code == 0
    for name in main.commands:
        r = runner.invoke(main, [name, "--help"])
        assert r.exit_code == 0, name
        assert "Example" in r.output, f"`bridge {name} --help` has no example"


def test_check_config_ok_masks_secrets(tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["--config", str(write_config(tmp_path)), "check-config"])
    assert r.exit_code == 0, r.output
    assert "AAAA-very-secret-bearer" not in r.output
    assert "configuration OK" in r.output and "bearer_token: '***" in r.output


def test_check_config_error_exit_2_without_traceback(tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["--config", str(write_config(tmp_path, "daemon:\n  concurency: 3\n")), "check-config"])
    assert r.exit_code == 2
    assert "daemon.concurency" in r.output and "did you mean 'concurrency'" in r.output
    assert "Traceback" not in r.output


def test_missing_config_is_exit_2(tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["--config", str(tmp_path / "none.yaml"), "status"])
    assert r.exit_code == 2 and "not found" in r.output


def test_usage_error_is_exit_2() -> None:
    r = CliRunner().invoke(main, ["no-such-command"])
    assert r.exit_code == 2


def test_status_and_orgs_on_a_fresh_ledger(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    r = CliRunner().invoke(main, ["--config", str(config), "orgs"])
    assert r.exit_code == 0 and "No organisations linked yet" in r.output
    r = CliRunner().invoke(main, ["--config", str(config), "status", "--json"])
    assert r.exit_code == 0
    data = json.loads(r.output)
    assert data["organisations"] == [] and data["daemon"]["healthy"] is False
    r = CliRunner().invoke(main, ["--config", str(config), "status", "--check"])
    assert r.exit_code == 1
    r = CliRunner().invoke(main, ["--config", str(config), "status", "nobody"])
    assert r.exit_code == 2 and "no organisation named 'nobody'" in r.output
    assert (tmp_path / "ledger.db").stat().st_mode & 0o777 == 0o600


def test_console_script_runs(tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "bridge"
    if not exe.exists():
        pytest.skip("console script not installed")
    r = subprocess.run([str(exe), "--config", str(write_config(tmp_path)), "check-config"], capture_output=True, text=True, env={**os.environ}, check=False)
    assert r.returncode == 0, r.stderr
