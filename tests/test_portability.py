"""The portability rule: compute modules import neither NumPy nor CuPy; fast paths match portable ones."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import randn
from xpnet import conv
from xpnet.backend import Device, has_strided_views, to_host

COMPUTE_MODULES = ["functions", "layers", "conv", "init", "optim", "nets", "gradcheck"]
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


@pytest.mark.parametrize(("stride", "pad", "fh"), [(1, 0, 3), (2, 1, 3), (1, 1, 2), (2, 0, 5), (3, 2, 3)])
def test_fast_im2col_matches_portable(dev: Device, stride: int, pad: int, fh: int) -> None:
    x = randn(dev, 2, 3, 9, 8)
    portable = conv.im2col(x, fh, fh, stride, pad)
    if has_strided_views(x):
        np.testing.assert_array_equal(to_host(conv.fast_im2col(x, fh, fh, stride, pad)), to_host(portable))
    np.testing.assert_array_equal(to_host(conv.unfold(x, fh, fh, stride, pad)), to_host(portable))


def test_strict_backend_takes_the_portable_path(strict_dev: Device) -> None:
    assert not has_strided_views(randn(strict_dev, 1, 1, 3, 3))
