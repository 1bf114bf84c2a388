"""numba's fused CPU updates (:mod:`xpnet.accel.jit`) are the formulas, bit for bit, and optional.

- every optimizer's kernel against its portable ``step`` (``accel.portable_only``): bitwise equal, float32 and
  float64, on a net's flat buffers and on per-key arrays, also when the kernel takes over mid-run;
- ``XPNET_NUMBA=0`` (and no numba) leaves the NumPy updates in place, and says so;
- arrays a kernel does not take (mixed dtypes, strided views) fall back to the NumPy path;
- no writable cache location (a read-only install) still compiles.

Where numba is not installed the kernel tests skip with the reason; the ``test`` extra installs it, so CI runs
both paths (the NumPy path through ``XPNET_NUMBA=0``, here and in tests/test_accel_kernels.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import randn
from xpnet import accel, backend, fast_paths, optim
from xpnet.accel import flat, jit

ROOT = Path(__file__).resolve().parents[1]
needs_numba = pytest.mark.skipif(not jit.installed(), reason="numba is not installed (the cpu extra)")
OPTIMIZERS = list(optim.OPTIMIZERS)


def test_every_optimizer_formula_has_a_kernel() -> None:
    assert set(jit.KERNELS) == {c.formula for c in optim.OPTIMIZERS.values()}


def _flat_pair(dev: backend.Device, dtype: str) -> tuple[flat.FlatParams, flat.FlatParams]:
    shapes = {"W1": (61, 97), "b1": (97,), "W2": (97, 13), "b2": (13,)}  # 7,289 numbers: several SIMD blocks
    params = flat.FlatParams(shapes, dev, np.dtype(dtype), order=["W1", "W2", "b1", "b2"])
    params.flat[...] = randn(dev, params.flat.shape[0], dtype=dtype)
    twin = flat.FlatParams.like(params)
    twin.flat[...] = params.flat
    return params, twin


def _run(name: str, dtype: str, flat_buffers: bool, numba_from: int, monkeypatch: pytest.MonkeyPatch,
         steps: int = 6) -> tuple[dict, dict]:
    """``steps`` updates through accel (numba from step ``numba_from`` on) and through the formula alone."""
    dev = backend.cpu()
    if flat_buffers:
        params, twin = _flat_pair(dev, dtype)
    else:
        params = {"W": randn(dev, 50, 31, dtype=dtype), "b": randn(dev, 31, seed=2, dtype=dtype)}
        twin = {k: v.copy() for k, v in params.items()}
    fast_opt, formula_opt = optim.create(name, 0.05), optim.create(name, 0.05)
    for i in range(steps):
        if flat_buffers:
            grads = flat.FlatParams.like(params)
            grads.flat[...] = randn(dev, grads.flat.shape[0], seed=10 + i, dtype=dtype, scale=3.0)
        else:
            grads = {k: randn(dev, *v.shape, seed=10 + i, dtype=dtype, scale=3.0) for k, v in params.items()}
        monkeypatch.setenv("XPNET_NUMBA", "1" if i >= numba_from else "0")
        fast_opt.update(params, grads)
        with accel.portable_only():
            formula_opt.update(twin, grads)
    return params, twin


@needs_numba
@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("flat_buffers", [True, False], ids=["flat", "per-key"])
def test_numba_updates_are_bitwise_the_formula(name: str, dtype: str, flat_buffers: bool,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    formula = optim.OPTIMIZERS[name].formula
    assert jit.wait(formula, dtype), jit.status()
    calls = []
    kernel = jit._BUILT[(formula, dtype)]
    monkeypatch.setitem(jit._BUILT, (formula, dtype), lambda *a: calls.append(1) or kernel(*a))
    params, twin = _run(name, dtype, flat_buffers, numba_from=0, monkeypatch=monkeypatch)
    assert len(calls) == (6 if flat_buffers else 12)  # the kernel ran every update (per key: two arrays)
    for k in params:  # the same operations in the same order, no fused multiply-adds: bitwise the same
        assert params[k].dtype == twin[k].dtype == np.dtype(dtype)
        np.testing.assert_array_equal(params[k], twin[k], err_msg=k)


@needs_numba
@pytest.mark.parametrize("name", ["momentum", "adam"])
def test_the_kernel_can_take_over_mid_run(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The NumPy update runs while the kernel compiles; switching later changes no bit."""
    assert jit.wait(optim.OPTIMIZERS[name].formula)
    params, twin = _run(name, "float32", True, numba_from=3, monkeypatch=monkeypatch)
    np.testing.assert_array_equal(params.flat, twin.flat)


@needs_numba
def test_the_kernel_is_what_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """With numba on the update goes through the kernel; with XPNET_NUMBA=0 it does not."""
    assert jit.wait("adam")
    p, g, m, v = (np.zeros(10, np.float32) for _ in range(4))
    monkeypatch.setenv("XPNET_NUMBA", "1")
    assert jit.update("adam", p, g, [m, v]) is not None and jit.status() == "ready"
    monkeypatch.setenv("XPNET_NUMBA", "0")
    assert jit.update("adam", p, g, [m, v]) is None and jit.status() == "off"


@needs_numba
def test_arrays_a_kernel_does_not_take_fall_back() -> None:
    assert jit.wait("sgd")
    p = np.zeros((4, 6), np.float32)
    assert jit.update("sgd", p, np.zeros((4, 6), np.float64), []) is None  # mixed dtypes
    assert jit.update("sgd", p[:, ::2], np.zeros((4, 3), np.float32), []) is None  # a strided view
    assert jit.update("sgd", p.astype(np.float16), np.zeros((4, 6), np.float16), []) is None
    assert jit.update(None, p, p, []) is None  # a subclass with its own step has no formula
    assert jit.update("sgd", p, np.ones((4, 6), np.float32), []) is not None


def test_switched_off_the_numpy_updates_run_and_say_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XPNET_NUMBA", "0")
    p = np.zeros(8, np.float32)
    assert jit.update("adam", p, p.copy(), [p.copy(), p.copy()]) is None
    on = fast_paths.describe(backend.cpu())
    assert on["NumPy out= updates"] and not on["numba updates"]
    monkeypatch.setenv("XPNET_NUMBA", "1")
    assert fast_paths.describe(backend.cpu())["numba updates"] is jit.installed()


@needs_numba
def test_no_writable_cache_still_compiles(tmp_path: Path) -> None:
    """A read-only install with no writable home: numba finds no cache location, and the kernel compiles
    uncached (root ignores file modes, so the test takes every location away instead)."""
    code = ("import numba.core.caching as c\n"
            "def nowhere(self): raise PermissionError('read-only')\n"
            "c._CacheLocator.ensure_cache_path = nowhere\n"
            "from xpnet.accel import jit\n"
            "print(jit.wait('rmsprop'), jit.status())\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["True", "ready"], p.stdout + p.stderr
