"""The CLI is a thin leaf: nothing imports it, the backfill library knows no click, and `bridge --help` stays light.

Why: `bridge --help`, `bridge status` and the container's health check should not pay for (or break on)
tweepy, Mastodon.py and the converter; and a library that imports its own command line cannot be reused.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "bridge"
HEAVY = ("tweepy", "mastodon", "bridge.convert", "bridge.pipeline", "bridge.sources.x_api", "bridge.targets.mastodon",
         "geno_bridge_standins")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside a function (``from a import b`` gives ``a`` and ``a.b``)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def bridge_graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: (imported(path) & modules.keys()) - {name} for name, path in modules.items()}


def test_the_backfill_library_imports_neither_click_nor_the_cli() -> None:
    names = imported(PACKAGE / "backfill.py")
    assert not {n for n in names if n == "click" or n.startswith("click.")}
    assert not {n for n in names if n == "bridge.cli" or n.startswith("bridge.cli.")}


def test_no_bridge_module_imports_the_cli() -> None:
    graph = bridge_graph()
    assert [name for name, deps in graph.items() if "bridge.cli" in deps] == []


def test_the_bridge_package_has_no_import_cycle() -> None:
    graph = bridge_graph()
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        for dep in sorted(graph[name]):
            assert dep not in path, "import cycle: " + " -> ".join([*path[path.index(dep):], dep])
            if dep not in done:
                visit(dep, [*path, dep])
        done.add(name)

    for name in sorted(graph):
        visit(name, [name])


def loaded_heavy(stderr: str) -> list[str]:
    """The heavy modules named in ``-X importtime`` output (one line per module imported)."""
    found = set()
    for line in stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            module = line.rsplit("|", 1)[1].strip()
            if module.startswith(HEAVY):
                found.add(module)
    return sorted(found)


def test_importing_the_cli_loads_neither_tweepy_nor_mastodon_py_nor_the_converter() -> None:
    code = f"import bridge.cli, sys; print(sorted(m for m in sys.modules if m.startswith({HEAVY!r})))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert r.stdout.strip() == "[]"


def test_bridge_help_loads_neither_tweepy_nor_mastodon_py_nor_the_converter() -> None:
    """The installed `bridge` command itself, with Python reporting every import it makes."""
    exe = Path(sys.executable).parent / "bridge"
    env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}
    for args in (["--help"], ["backfill", "--help"], ["status", "--help"]):
        r = subprocess.run([str(exe), *args], capture_output=True, text=True, cwd=ROOT, env=env)
        assert r.returncode == 0, r.stderr[-2000:]
        assert "Usage: bridge" in r.stdout
        assert "import time:" in r.stderr  # the check below looks at real data
        assert loaded_heavy(r.stderr) == [], args
