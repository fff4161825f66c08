"""DESIGN.md's layering, checked on the source: imports go down only, and no module imports itself back
through others (lazy imports inside functions included)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("evals", "simulator", "personas", "recsys")
#: What each package may import of ours (besides itself).
ALLOWED = {"evals": {"simulator", "personas", "recsys"}, "simulator": {"personas"}, "personas": set(), "recsys": set()}


def imported_names(path: Path, module: str) -> set[str]:
    """Every dotted name ``path`` (the module ``module``) imports, at module level or inside a function:
    ``import a.b`` gives a.b, ``from a import b`` gives a.b (b a module or a name in a); relative imports
    are resolved against ``module``."""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = ".".join([*package[:len(package) - node.level + 1], *([node.module] if node.module else [])]) \
                if node.level else node.module or ""
            found |= {f"{base}.{a.name}" for a in node.names}
    return found


def imports_of_ours(path: Path) -> set[str]:
    """The packages of ours that ``path`` imports (absolute imports; relative ones stay inside a package)."""
    return {n.split(".")[0] for n in imported_names(path, "_") if n} & set(PACKAGES)


def module_graph(root: Path, packages=PACKAGES) -> dict[str, set[str]]:
    """{module: the modules of ours it imports}; a package is its ``__init__``; ``from p import x`` points at
    p.x when that is a module, else at p."""
    modules = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {}
    for name, path in modules.items():
        found = {n if n in modules else n.rpartition(".")[0] for n in imported_names(path, name)}
        graph[name] = found & set(modules) - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Circles found by a depth-first search, each as a list of modules with the first repeated at the end."""
    found: list[list[str]] = []
    state: dict[str, str] = {}  # "open" while on the current path, then "done"

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                found.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, path)
        path.pop()
        state[node] = "done"

    for start in sorted(graph):
        if start not in state:
            visit(start, [])
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_go_down_only(package):
    files = sorted((ROOT / package).rglob("*.py"))
    assert files
    wrong = {f"{f.relative_to(ROOT)} imports {p}" for f in files for p in imports_of_ours(f) - ALLOWED[package] - {package}}
    assert not wrong, sorted(wrong)


def test_no_module_imports_itself_back():
    graph = module_graph(ROOT)
    assert {"evals.campaign.world", "simulator.user", "recsys.models"} <= set(graph)
    assert "simulator.user" in graph["simulator.grounded"]  # the graph sees imports at all
    found = cycles(graph)
    assert not found, "\n".join(" -> ".join(c) for c in found)


def test_the_check_sees_a_lazy_import_inside_a_function(tmp_path):
    bad = tmp_path / "m.py"
    bad.write_text("def f():\n    from evals.cli import main\n    import recsys.models as m\n")
    assert imports_of_ours(bad) == {"evals", "recsys"}


def test_the_check_sees_a_planted_circle_through_a_lazy_and_a_relative_import(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg.sub import b\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from .c import g\n")
    (pkg / "sub" / "c.py").write_text("from ..a import x\n")
    (pkg / "d.py").write_text("import pkg.a\n")  # reaches the circle but is not on it
    graph = module_graph(tmp_path, ("pkg",))
    assert graph["pkg.a"] == {"pkg.sub.b"} and graph["pkg.sub.b"] == {"pkg.sub.c"}
    assert graph["pkg.sub.c"] == {"pkg.a"}
    assert cycles(graph) == [["pkg.a", "pkg.sub.b", "pkg.sub.c", "pkg.a"]]
    (pkg / "sub" / "c.py").write_text("x = 1\n")
    assert cycles(module_graph(tmp_path, ("pkg",))) == []
