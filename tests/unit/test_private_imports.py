"""No module imports another package's private (`_name`) module: src, tests and bench.

import-linter checks the direction of imports (the `layers` contract in pyproject.toml);
this checks the other half of the rule, which import-linter cannot express: a package's
`_private` modules are its own. A test under tests/<kind>/<pkg>/ is white-box for <pkg>
and may import that package's private modules, and only that package's.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def owner(path: Path) -> str | None:
    """The lamina package a file belongs to (None: it belongs to none)."""
    rel = path.relative_to(ROOT).parts
    if rel[:2] == ("src", "lamina") and len(rel) > 3:
        return rel[2]
    if rel[0] == "tests" and len(rel) > 3 and rel[1] in ("unit", "integration"):
        return rel[2]
    return None


def private_imports(tree: ast.AST) -> list[tuple[int, str, str]]:
    """(line, package, module) for each import that names a `_private` part of lamina."""
    found: list[tuple[int, str, str]] = []
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        for target in targets:
            parts = target.split(".")
            if parts[0] != "lamina" or len(parts) < 3:
                continue
            private = [p for p in parts[2:] if p.startswith("_") and not p.startswith("__")]
            if private:
                found.append((node.lineno, parts[1], target))
    return found


def violations(files: list[Path]) -> list[str]:
    out = []
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        mine = owner(path)
        for line, package, target in private_imports(tree):
            if package != mine:
                out.append(f"{path.relative_to(ROOT)}:{line}: imports {target}")
    return out


def test_no_package_imports_another_packages_private_modules() -> None:
    files = sorted(
        p for d in ("src", "tests", "bench") for p in (ROOT / d).rglob("*.py") if p.is_file()
    )
    assert len(files) > 50
    assert violations(files) == []


@pytest.mark.parametrize(
    ("where", "code", "bad"),
    [
        ("src/lamina/api/_x.py", "from lamina.builder._options import timestamp", True),
        ("src/lamina/api/_x.py", "from lamina.builder import _options", True),
        ("src/lamina/api/_x.py", "import lamina.builder._sources as s", True),
        ("src/lamina/api/_x.py", "from lamina.api._lamina import Lamina", False),
        ("src/lamina/api/_x.py", "from lamina.builder import timestamp", False),
        ("tests/unit/store/test_x.py", "from lamina.store._schema import migrate", False),
        ("tests/unit/store/test_x.py", "from lamina.api._build import build_image", True),
        ("tests/conftest.py", "from lamina.cli._main import main", True),
    ],
)
def test_the_check_catches_what_it_should(tmp_path: Path, where: str, code: str, bad: bool) -> None:
    path = ROOT / where
    tree = ast.parse(code)
    mine = owner(path)
    hits = [t for _, pkg, t in private_imports(tree) if pkg != mine]
    assert bool(hits) is bad
