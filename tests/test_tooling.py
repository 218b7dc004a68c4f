"""The lint step: ruff and mypy run in CI through dev.py, with mypy strict on the model and the interfaces."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests import bluesky_pds

ROOT = Path(__file__).resolve().parent.parent
STRICT_MODULES = {"bridge.model", "bridge.sources.base", "bridge.targets.base", "bridge.registry"}


def test_ci_runs_ruff_and_mypy_through_dev_py() -> None:
    steps = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.startswith("python3")]
    assert "python3 dev.py lint" in steps
    dev = (ROOT / "dev.py").read_text()
    assert '"ruff", "check", "."' in dev and '"mypy"' in dev


def test_the_test_extra_installs_the_linters() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    names = {spec.split(">")[0].split("=")[0].strip() for spec in project["project"]["optional-dependencies"]["test"]}
    assert {"ruff", "mypy", "types-PyYAML"} <= names


def test_mypy_is_strict_on_the_model_and_the_interfaces() -> None:
    mypy = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    strict = [o for o in mypy["overrides"] if STRICT_MODULES <= set(o["module"])]
    assert len(strict) == 1
    for flag in ("disallow_untyped_defs", "disallow_any_generics", "disallow_untyped_calls", "warn_return_any",
                 "no_implicit_reexport", "strict_equality"):
        assert strict[0][flag] is True, flag


def test_ci_installs_the_bluesky_pds_before_the_tests() -> None:
    steps = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.startswith("python3")]
    assert steps.index("python3 dev.py pds") < steps.index("python3 dev.py test")


def test_the_pds_folder_is_ignored_by_git_and_docker() -> None:
    assert "/.pds/" in (ROOT / ".gitignore").read_text().splitlines()
    assert ".pds" in (ROOT / ".dockerignore").read_text().splitlines()


def test_dev_py_pds_without_npm_says_what_is_missing(tmp_path: Path) -> None:
    # A copy of dev.py installs beside itself, so this never touches the real .pds/.
    shutil.copy(ROOT / "dev.py", tmp_path / "dev.py")
    done = subprocess.run([sys.executable, "dev.py", "pds"], cwd=tmp_path, env={"PATH": str(tmp_path)},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "npm not found" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_bluesky_fixture_names_the_install_command_when_the_pds_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bluesky_pds, "PDS_DIR", tmp_path / ".pds")
    with pytest.raises(bluesky_pds.PdsNotInstalled, match=r"run `python3 dev\.py pds`"):
        bluesky_pds.start_pds(tmp_path)
