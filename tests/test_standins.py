"""The local stand-ins (fake X API, mastodon-mock launcher) are a separate distribution, not part of the runtime package."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def imports_of(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_the_runtime_package_carries_no_test_server() -> None:
    assert not (ROOT / "bridge" / "standins").exists()
    servers = [p.relative_to(ROOT).as_posix() for p in (ROOT / "bridge").rglob("*.py") if "http.server" in imports_of(p)]
    assert servers == []
    # Only `bridge demo` uses the stand-ins, importing them when it runs (test_cli_boundaries checks the import).
    users = [p.relative_to(ROOT).as_posix() for p in (ROOT / "bridge").rglob("*.py")
             if any(n.split(".")[0] == "geno_bridge_standins" for n in imports_of(p))]
    assert sorted(users) == ["bridge/cli.py", "bridge/demo.py"]


def test_the_docker_image_installs_the_bridge_without_the_standins() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    copies = [line.split()[1:-1] for line in dockerfile.splitlines() if line.startswith("COPY") and "--from" not in line]
    assert copies == [["pyproject.toml", "README.md"], ["bridge"]]
    assert "standins" not in dockerfile
    assert "standins" in (ROOT / ".dockerignore").read_text().split()


def test_dev_py_installs_the_standins_and_reinstalls_when_their_pyproject_changes() -> None:
    source = (ROOT / "dev.py").read_text()
    assert '"-e", "./standins"' in source
    assert 'ROOT / "standins" / "pyproject.toml"' in source
    assert (ROOT / "standins" / "pyproject.toml").is_file()


def test_bridge_demo_without_the_standins_says_in_one_line_how_to_install_them() -> None:
    # sys.modules[name] = None makes `import name` fail exactly as if the distribution were not installed.
    code = "import sys; sys.modules['geno_bridge_standins'] = None; from bridge.cli import main; main(['demo'])"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 2
    assert r.stdout == ""
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("error: bridge demo needs the local stand-ins")
    assert "pip install -e ./standins" in lines[0] and "python3 dev.py demo" in lines[0]
