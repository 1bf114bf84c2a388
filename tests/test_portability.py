"""The portability rule: compute modules import neither NumPy nor CuPy; fast paths match portable ones."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.helpers import randn
from xpnet import accel
from xpnet.backend import Device

# The book facade's compute modules too: they re-export the book's ``np`` from xpnet.book._device, the
# facade's host-side bridge, and compute only through xpnet's own layers, functions, optimizers and nets.
COMPUTE_MODULES = ["functions", "layer", "layers", "conv", "init", "optim", "nets", "gradcheck",
                   "book/functions", "book/layers", "book/optimizer", "book/two_layer_net", "book/multi_layer_net",
                   "book/multi_layer_net_extend", "book/simple_convnet", "book/deep_convnet"]
PKG = Path(__file__).resolve().parents[1] / "xpnet"


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("module", COMPUTE_MODULES)
def test_compute_module_imports_no_array_library(module: str) -> None:
    bad = imported_roots(PKG / f"{module}.py") & {"numpy", "cupy", "torch", "jax"}
    assert not bad, f"xpnet/{module}.py imports {sorted(bad)}: use the array's namespace (array_namespace) instead"


def test_the_import_check_can_fail(tmp_path: Path) -> None:
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from numpy.lib import stride_tricks\n")
    assert "numpy" in imported_roots(f)


def test_strict_backend_takes_the_portable_path(strict_dev: Device) -> None:
    x = randn(strict_dev, 1, 1, 3, 3)
    assert accel.native(x) is None and not accel.on_gpu(x)
    assert accel.im2col_t(x, 2, 2, 1, 2, 2) is None


def test_only_accel_and_backend_import_array_libraries() -> None:
    """Library-specific code lives in xpnet/accel/ (and devices in backend.py), nowhere else in the core."""
    for path in PKG.glob("*.py"):
        if path.stem in ("backend", "diagnosis", "cuda_source"):  # devices; the doctor reports on the host; NVRTC
            continue
        bad = imported_roots(path) & {"cupy", "torch", "jax"}
        assert not bad, f"xpnet/{path.name} imports {sorted(bad)}: put library-specific code in xpnet/accel/"
