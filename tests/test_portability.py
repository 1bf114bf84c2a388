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


ARRAY_LIBRARIES = {"cupy", "cupyx", "cupy_backends", "torch", "jax"}
# Where a GPU library may be imported: the fast paths (accel/), the devices (backend.py), the CUDA kernels'
# compile check (cuda_source.py), the doctor's report on the host's GPU stack (diagnosis.py), and data-parallel
# training's device collective (dist/nccl.py: CuPy's NCCL binding, the GPU twin of the MPI allreduce).
MAY_IMPORT_ARRAY_LIBRARIES = ("accel/", "backend.py", "cuda_source.py", "diagnosis.py", "dist/nccl.py")


def gpu_library_imports(pkg: Path) -> dict[str, list[str]]:
    """Every module of ``pkg`` and its subpackages, outside the allowed places, that imports a GPU array library."""
    found = {}
    for path in sorted(pkg.rglob("*.py")):
        rel = path.relative_to(pkg).as_posix()
        if rel.startswith(MAY_IMPORT_ARRAY_LIBRARIES):
            continue
        bad = imported_roots(path) & ARRAY_LIBRARIES
        if bad:
            found[rel] = sorted(bad)
    return found


def test_only_accel_and_backend_import_array_libraries() -> None:
    """Library-specific code lives in xpnet/accel/ (and devices in backend.py), nowhere else: subpackages
    (train/, data/, cli/, book/, search/, model_io/) included, lazy imports inside functions included."""
    assert "train/trainer.py" in {p.relative_to(PKG).as_posix() for p in PKG.rglob("*.py")}
    bad = gpu_library_imports(PKG)
    assert not bad, f"{bad} import GPU array libraries: put library-specific code in xpnet/accel/"


def test_the_library_check_reads_subpackages(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    (tmp_path / "accel").mkdir()
    (tmp_path / "train" / "loop.py").write_text("def f():\n    import cupyx.scipy\n")
    (tmp_path / "accel" / "fast.py").write_text("import cupy\n")
    assert gpu_library_imports(tmp_path) == {"train/loop.py": ["cupyx"]}
