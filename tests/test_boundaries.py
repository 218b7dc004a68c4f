"""The upper layers depend only on the Source and Target interfaces: checked on the source code with ``ast``.

The registry (bridge/registry.py) is the one module that names the
implementations, and it imports them inside its factories only.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
IMPLEMENTATIONS = ("bridge.sources.x_api", "bridge.sources.x_v2", "bridge.sources.archive", "bridge.targets.mastodon",
                   "bridge.targets.bluesky")
INTERFACE_ONLY = ("bridge/pipeline.py", "bridge/backfill.py", "bridge/daemon.py", "bridge/render.py")


def imported_modules(tree: ast.AST) -> set[str]:
    """Every module an ``import`` or ``from ... import`` names, at any depth (function bodies too).

    ``from bridge.sources import x_api`` counts as ``bridge.sources.x_api``.
    """
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_the_checker_sees_imports_at_any_depth_and_in_every_form() -> None:
    tree = ast.parse(
        "import bridge.targets.mastodon\n"
        "def f():\n    from bridge.sources import x_api\n"
        "class C:\n    def g(self):\n        from bridge.sources.archive import open_archive\n"
    )
    assert {"bridge.targets.mastodon", "bridge.sources.x_api", "bridge.sources.archive"} <= imported_modules(tree)


@pytest.mark.parametrize("path", INTERFACE_ONLY)
def test_upper_layers_import_no_source_or_target_implementation(path: str) -> None:
    tree = ast.parse((ROOT / path).read_text(encoding="utf-8"), filename=path)
    named = sorted(m for m in imported_modules(tree) if m.startswith(IMPLEMENTATIONS))
    assert named == [], f"{path} imports {named}: go through bridge.registry and the interfaces instead"


def test_the_registry_imports_implementations_only_inside_its_factories() -> None:
    tree = ast.parse((ROOT / "bridge/registry.py").read_text(encoding="utf-8"))
    top_level = imported_modules(ast.Module(body=[n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))], type_ignores=[]))
    assert not [m for m in top_level if m.startswith(IMPLEMENTATIONS)]
    assert {"bridge.sources.x_api", "bridge.sources.archive", "bridge.targets.mastodon"} <= imported_modules(tree)


def test_importing_the_registry_and_the_interfaces_loads_neither_tweepy_nor_mastodon_py() -> None:
    code = (
        "import sys, bridge.registry, bridge.sources.base, bridge.targets.base\n"
        "print(sorted(m for m in ('tweepy', 'mastodon') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# Shapes of X's data. (Writing "RT @user: " before a link-repost is the Mastodon renderer's way to credit
# the author; reading X's "RT @user:" prefix, "RT [@", is the source's.)
X_SHAPES = ("t.co", "x.com", "twitter.com", "twimg", "RT [@", "note_tweet", "snowflake")


@pytest.mark.parametrize("path", sorted(str(p.relative_to(ROOT)) for p in (ROOT / "bridge" / "convert").glob("*.py")))
def test_the_converter_knows_no_x_shapes(path: str) -> None:
    """Rule text aside (comments and docstrings may cite X), no string literal of the converter is an X shape."""
    tree = ast.parse((ROOT / path).read_text(encoding="utf-8"))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef)) and node.body
        and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)
    }
    literals = [
        node.value for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    ]
    found = sorted({shape for shape in X_SHAPES for text in literals if shape in text})
    assert found == [], f"{path} holds X shapes {found}: they belong in bridge/sources/"
