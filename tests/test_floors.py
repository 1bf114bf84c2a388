"""The floors of ``xpnet/`` (docs: each module's docstring says why it sits where it does).

Every import is read, those inside functions too: a lazy import is still a dependency.
- no import circle anywhere in the package;
- ``backend`` imports no other xpnet module (it is the floor);
- accel's lower floor imports only ``backend`` (optimizers are known there by formula name).
"""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "xpnet"
LOWER_ACCEL = ("xpnet.accel", "xpnet.accel.flat", "xpnet.accel.kernels", "xpnet.accel.host",
               "xpnet.accel.im2col", "xpnet.accel.tuning")


def _modules() -> dict[str, Path]:
    out = {}
    for path in PKG.rglob("*.py"):
        parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, mods: dict[str, Path]) -> set[str]:
    """The xpnet modules ``name`` imports anywhere in its file (``from pkg import mod`` names mod)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                base = ".".join(here[: len(here) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in mods:
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    return {m: _imports(m, p, mods) for m, p in mods.items()}


def test_backend_imports_no_xpnet_module() -> None:
    assert _graph()["xpnet.backend"] == set()


def test_accels_lower_floor_imports_only_the_backend() -> None:
    g = _graph()
    for m in LOWER_ACCEL:
        assert g[m] <= {"xpnet.backend", *LOWER_ACCEL}, f"{m} imports {sorted(g[m] - {'xpnet.backend'})}"


def test_no_import_circle() -> None:
    g = _graph()
    done: set[str] = set()

    def visit(m: str, path: list[str]) -> None:
        if m in path:
            raise AssertionError("import circle: " + " -> ".join([*path[path.index(m):], m]))
        if m in done:
            return
        for d in sorted(g.get(m, ())):
            visit(d, [*path, m])
        done.add(m)

    for m in sorted(g):
        visit(m, [])
