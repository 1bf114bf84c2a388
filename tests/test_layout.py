"""The house's floors, read from the source: no import circle (imports inside functions counted), the backend
imports no xpnet module, accel's lower floor imports no compute module, one cli package, short files, a short
README that links its pages."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "xpnet"
# The book's compute modules and what is built on them: accel's lower floor sits below all of these.
COMPUTE = {"xpnet.functions", "xpnet.layer", "xpnet.layers", "xpnet.conv", "xpnet.init", "xpnet.optim",
           "xpnet.gradcheck", "xpnet.nets"}
SUBCOMMANDS = ["train", "eval", "predict", "export", "search", "doctor"]


def module_names(pkg: Path) -> dict[str, Path]:
    """Dotted name -> file, for every module under ``pkg`` (a package is named by its __init__.py)."""
    names = {}
    for path in pkg.rglob("*.py"):
        parts = list(path.relative_to(pkg.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The modules of ``modules`` that ``name`` imports anywhere in its file (top level or inside functions).

    ``from a import b`` counts as importing ``a.b`` when that is a module, else ``a``."""
    is_pkg = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                here = name.split(".") if is_pkg else name.split(".")[:-1]
                here = here[: len(here) - node.level + 1]
                base = ".".join([*here, base] if base else here)
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        for t in targets:
            while t and t not in modules:
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


def imported_roots(path: Path) -> set[str]:
    """Top-level names of every module ``path`` imports, anywhere in the file."""
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            roots.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            roots.add(node.module.split(".")[0])
    return roots


def import_graph(pkg: Path = PKG, parents: bool = False) -> dict[str, set[str]]:
    """Module -> the modules it imports; with ``parents``, also the packages whose ``__init__`` Python runs first
    (importing ``a.b.c`` runs ``a`` and ``a.b``), except a module's own enclosing packages."""
    modules = module_names(pkg)
    graph = {name: imports_of(name, path, modules) for name, path in modules.items()}
    if parents:
        for name, deps in graph.items():
            for d in list(deps):
                parts = d.split(".")
                deps.update(p for i in range(1, len(parts)) if (p := ".".join(parts[:i])) in modules
                            and not name.startswith(p + ".") and p != name)
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module, or a module importing itself (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while not comp or comp[-1] != v:
                comp.append(stack.pop())
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_circle() -> None:
    found = circles(import_graph())
    assert not found, "import circles (lazy imports counted): " + "; ".join(" <-> ".join(c) for c in found)


def test_no_import_circle_through_package_inits() -> None:
    """``import xpnet`` inside a module runs xpnet/__init__.py, and ``from xpnet.train.checkpoint import ...`` runs
    xpnet/train/__init__.py: counted too, there is still no circle."""
    found = circles(import_graph(parents=True))
    assert not found, "import circles through package __init__s: " + "; ".join(" <-> ".join(c) for c in found)


def test_the_circle_check_can_fail(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg.sub import b\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from .. import a\n")  # lazy and relative: still a circle
    assert circles(import_graph(pkg)) == [["pkg.a", "pkg.sub.b"]]
    (pkg / "sub" / "b.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("import pkg.a\n")  # a.py -> sub/b.py runs sub/__init__ -> a.py
    assert circles(import_graph(pkg)) == []
    assert circles(import_graph(pkg, parents=True)) == [["pkg.a", "pkg.sub"]]


def test_backend_is_the_floor() -> None:
    assert not import_graph()["xpnet.backend"], "xpnet/backend.py must import no other xpnet module"


def test_accel_lower_floor_imports_no_compute_module() -> None:
    graph = import_graph()
    lower = [m for m in graph if m == "xpnet.accel" or m.startswith("xpnet.accel.")]
    assert lower, "xpnet/accel is gone?"
    for m in lower:
        bad = {d for d in graph[m] if d in COMPUTE or not (d == "xpnet.backend" or d.startswith("xpnet.accel"))}
        assert not bad, f"{m} imports {sorted(bad)}: accel's lower floor may import only xpnet.backend and accel"


def test_one_cli_package_with_a_module_per_subcommand() -> None:
    assert (PKG / "cli" / "__init__.py").is_file()
    missing = [s for s in SUBCOMMANDS if not (PKG / "cli" / f"{s}.py").is_file()]
    assert not missing, f"xpnet/cli/ lacks a module for {missing}"
    graph = import_graph()
    for lib in ("xpnet.train", "xpnet.model_io", "xpnet.search", "xpnet.data"):
        for m, path in module_names(PKG).items():
            if (m == lib or m.startswith(lib + ".")) and not m.endswith(".__main__"):  # __main__: an entry point
                assert "argparse" not in imported_roots(path), f"{path.relative_to(ROOT)}: library knows no argparse"
                assert not any(d.startswith("xpnet.cli") for d in graph[m]), f"{m} imports the cli"


@pytest.mark.parametrize("folder", ["xpnet", "scripts"])
def test_no_source_file_over_500_lines(folder: str) -> None:
    long = {str(p.relative_to(ROOT)): n for p in (ROOT / folder).rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 500}
    assert not long, f"files over 500 lines: {long}"


def test_readme_is_a_landing_page_linking_the_docs() -> None:
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 200, "README.md is a landing page: at most 200 lines, the rest under docs/"
    pages = {m for m in re.findall(r"\]\((docs/[^)#\s]+\.md)", text) if (ROOT / m).is_file()}
    assert len(pages) >= 5, f"README.md links only {sorted(pages)} under docs/"
