"""Every CUDA kernel xpnet ships, compiled with NVRTC on a machine without a GPU (issue 11).

CuPy compiles a kernel the first time it runs, so these tests build the translation unit CuPy's
own code generation makes (:mod:`xpnet.cuda_source`) and compile it with NVRTC from the pip
wheels (nvidia-cuda-nvrtc-cu12, nvidia-cuda-runtime-cu12's headers) for sm_80 and sm_90, float32
and float64. They skip only where CuPy or NVRTC is not installed, which ``make test`` never is
(backends/test.txt carries both); with XPNET_REQUIRE_CUPY=1 that skip is a failure.
"""

from __future__ import annotations

import importlib.util
import re

import numpy as np
import pytest

from tests.helpers import REQUIRE_CUPY, no_cuda
from xpnet import accel, backend
from xpnet.layers import Relu

cuda_source = pytest.importorskip("xpnet.cuda_source")


def _not_installed_errors() -> tuple[type[BaseException], ...]:
    """What a missing NVRTC raises: CuPy's nvrtc module cannot be imported, or libnvrtc cannot be found
    (cuda-pathfinder's error, a RuntimeError) or loaded. Anything else is a bug, and fails the tests."""
    try:
        from cuda.pathfinder import DynamicLibNotFoundError
    except ImportError:
        return ImportError, OSError
    return ImportError, OSError, DynamicLibNotFoundError


def nvrtc_or_skip() -> tuple[int, int]:
    if importlib.util.find_spec("cupy") is None:
        no_cuda("the nvrtc tests use CuPy's code generation: CuPy is not installed (backends/test.txt has it)")
    try:
        return cuda_source.nvrtc_version()
    except _not_installed_errors() as exc:  # libnvrtc.so.12 not found
        no_cuda(f"NVRTC is not installed (pip install nvidia-cuda-nvrtc-cu12): {exc}")


@pytest.fixture(scope="module")
def nvrtc() -> tuple[int, int]:
    return nvrtc_or_skip()


def test_only_a_missing_nvrtc_is_a_skip(monkeypatch: pytest.MonkeyPatch) -> None:
    """A missing library skips the NVRTC tests; a bug in the version probe fails them."""
    monkeypatch.delenv(REQUIRE_CUPY, raising=False)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object())  # as if CuPy were installed
    missing = _not_installed_errors()[-1]("libnvrtc.so.12: cannot open shared object file")

    def not_found() -> tuple[int, int]:
        raise missing

    def buggy() -> tuple[int, int]:
        raise TypeError("getVersion() takes no arguments (1 given)")

    monkeypatch.setattr(cuda_source, "nvrtc_version", not_found)
    with pytest.raises(pytest.skip.Exception, match="NVRTC is not installed"):
        nvrtc_or_skip()
    monkeypatch.setattr(cuda_source, "nvrtc_version", buggy)
    try:
        with pytest.raises(TypeError, match="getVersion"):
            nvrtc_or_skip()
    except pytest.skip.Exception:
        pytest.fail("a bug in nvrtc_version() was turned into a skip of every NVRTC test")


KERNELS = cuda_source.every_kernel()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kernel", KERNELS, ids=[k.name for k in KERNELS])
def test_nvrtc_compiles_every_kernel_for_sm80_and_sm90(nvrtc: tuple[int, int], kernel: object,
                                                        dtype: str) -> None:
    src = cuda_source.elementwise_source(kernel, dtype)
    assert f'extern "C" __global__ void {kernel.name}(' in src
    for arch in ("80", "90"):
        cubin = cuda_source.compile_source(src, arch)
        assert cubin[:4] == b"\x7fELF", f"{kernel.name} sm_{arch}: NVRTC did not return a cubin"


def test_nvrtc_catches_a_broken_kernel_body(nvrtc: tuple[int, int]) -> None:
    """The compile check can fail: an undefined name in a body is NVRTC's error, with its log."""
    bad = cuda_source.Kernel("xpnet_bad", "T x", "T y", "y = x * no_such_name")
    with pytest.raises(RuntimeError, match="no_such_name"):
        cuda_source.compile_source(cuda_source.elementwise_source(bad, "float32"), "80")


def _float_ops(ptx: str) -> list[str]:
    return [m.group(1) for m in re.finditer(r"^\s*((?:mul|add|sub|fma|div|sqrt)[.\w]*\.f(?:32|64))\s", ptx, re.M)]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kernel", KERNELS, ids=[k.name for k in KERNELS])
def test_nvrtc_kernels_round_every_operation_like_the_formula(nvrtc: tuple[int, int], kernel: object,
                                                               dtype: str) -> None:
    """Defect 4: no fused multiply-add. NVRTC contracts by default (PTX ``mul.f64`` that ptxas may fuse,
    or ``fma``); with ``--fmad=false`` every operation is an explicitly rounded ``.rn``, as in NumPy."""
    ptx = cuda_source.compile_source(cuda_source.elementwise_source(kernel, dtype), "80", ptx=True).decode()
    ops = _float_ops(ptx)
    assert ops, f"{kernel.name}: no floating-point arithmetic in the PTX (a body that computes nothing?)"
    assert [op for op in ops if op.startswith("fma") or ".rn" not in op] == [], kernel.name


def test_nvrtc_fused_relu_multiplies_by_the_mask_so_nan_stays_nan(nvrtc: tuple[int, int]) -> None:
    """Defect 7: the fused ReLU computes ``y = x * mask`` (a multiply: NaN * 0 and -inf * 0 are NaN), the
    same formula as the portable layer, never a select that would turn NaN into 0."""
    relu = next(k for k in KERNELS if k.name == "xpnet_relu")
    assert relu.body.replace(" ", "").endswith("y=x*mask")
    ptx = cuda_source.compile_source(cuda_source.elementwise_source(relu, "float32"), "80", ptx=True).decode()
    assert any(op.startswith("mul.rn") for op in _float_ops(ptx))
    x = np.array([np.nan, -np.inf, np.inf, -1.0, 0.0, 2.0], dtype=np.float32)
    with accel.portable_only(), np.errstate(invalid="ignore"):
        y = backend.to_host(Relu().forward(x.copy()))
    np.testing.assert_array_equal(y, [np.nan, np.nan, np.inf, -0.0, 0.0, 2.0])


def test_nvrtc_command_line_compiles_all(nvrtc: tuple[int, int], capsys: pytest.CaptureFixture[str]) -> None:
    assert cuda_source.main(["--arch", "80", "--dtype", "float32"]) == 0
    assert f"compiled {len(KERNELS)} kernels" in capsys.readouterr().out
