"""The lint step: ruff and mypy run in CI through dev.py, with mypy strict on the model and the interfaces."""

from __future__ import annotations

import tomllib
from pathlib import Path

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
