"""DESIGN.md's layering, checked on the source: imports go down only (lazy imports inside functions included)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("evals", "simulator", "personas", "recsys")
#: What each package may import of ours (besides itself).
ALLOWED = {"evals": {"simulator", "personas", "recsys"}, "simulator": {"personas"}, "personas": set(), "recsys": set()}


def imports_of_ours(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                 else [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
        found |= {n.split(".")[0] for n in names} & set(PACKAGES)
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_go_down_only(package):
    files = sorted((ROOT / package).rglob("*.py"))
    assert files
    wrong = {f"{f.relative_to(ROOT)} imports {p}" for f in files for p in imports_of_ours(f) - ALLOWED[package] - {package}}
    assert not wrong, sorted(wrong)


def test_the_check_sees_a_lazy_import_inside_a_function(tmp_path):
    bad = tmp_path / "m.py"
    bad.write_text("def f():\n    from evals.cli import main\n    import recsys.models as m\n")
    assert imports_of_ours(bad) == {"evals", "recsys"}
