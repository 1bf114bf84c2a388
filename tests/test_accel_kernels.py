"""Each optimizer formula is written once (``Optimizer.step``); every fused variant computes it.

- NumPy's scratch-array updates vs the formula: bitwise equal, float32 and float64;
- CuPy's kernels vs the formula (skipped, with the reason, where CUDA is absent);
- the kernels' parameters are the formula's names, derived from ``step``'s signature and ``hyper()``;
- ``accel.matmul``/``accel.sum`` write into the arrays they are given.
"""

from __future__ import annotations

import contextlib
import inspect

import numpy as np
import pytest

from tests.helpers import no_cuda, randn
from xpnet import accel, backend, optim
from xpnet.accel import host, kernels
from xpnet.backend import Device, to_host
from xpnet.layers import Relu, Sigmoid, Tanh

OPTIMIZERS = list(optim.OPTIMIZERS)


def run_both(dev: Device, name: str, dtype: str = "float64", steps: int = 5) -> tuple[dict, dict]:
    """The same updates through accel (fast where it can) and through the formula alone."""
    params = {"W": randn(dev, 50, 30, dtype=dtype), "b": randn(dev, 30, seed=2, dtype=dtype)}
    twin = {k: dev.xp.asarray(v, copy=True) for k, v in params.items()}
    fast_opt, formula_opt = optim.create(name, 0.05), optim.create(name, 0.05)
    for i in range(steps):
        grads = {"W": randn(dev, 50, 30, seed=10 + i, dtype=dtype), "b": randn(dev, 30, seed=20 + i, dtype=dtype)}
        fast_opt.update(params, grads)
        with accel.portable_only():
            formula_opt.update(twin, grads)
    return params, twin


@pytest.mark.parametrize("name", ["adagrad", "rmsprop", "adam"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_numpy_scratch_updates_are_bitwise_the_formula(name: str, dtype: str, monkeypatch: pytest.MonkeyPatch
                                                       ) -> None:
    monkeypatch.setenv("XPNET_NUMBA", "0")  # the NumPy path, also where numba is installed (tests/test_accel_jit.py)
    assert optim.OPTIMIZERS[name].formula in host.UPDATES
    params, twin = run_both(backend.cpu(), name, dtype)
    for k in params:  # the same operations in the same order: bitwise the same
        assert params[k].dtype == twin[k].dtype
        np.testing.assert_array_equal(params[k], twin[k], err_msg=k)


@pytest.mark.parametrize("cls", [c for c in optim.OPTIMIZERS.values() if c.formula in kernels.OPTIMIZERS])
def test_kernel_parameters_are_the_formulas_names(cls: type[optim.Optimizer]) -> None:
    """The kernel takes g and hyper()'s names in, p and the slots out: the names ``step`` itself uses."""
    sig = inspect.signature(cls.step)
    positional = [p.name for p in sig.parameters.values() if p.kind is p.POSITIONAL_OR_KEYWORD][1:]  # no self
    keywords = [p.name for p in sig.parameters.values() if p.kind is p.KEYWORD_ONLY]
    opt = cls(0.1)
    opt.iter = 1
    assert positional == ["p", "g", *cls.slots]
    assert sorted(keywords) == sorted(opt.hyper())
    ins, outs, body = kernels.source(cls.formula, cls.slots, list(opt.hyper()))
    assert ins.split(", ") == [f"T {n}" for n in ["g", *opt.hyper()]]
    assert outs.split(", ") == [f"T {n}" for n in ["p", *cls.slots]]
    names = {n.split()[-1] for n in f"{ins}, {outs}".split(", ")}
    used = {w for w in body.replace("(", " ").replace(")", " ").replace(";", " ").split() if w.isidentifier()}
    assert used - {"sqrt", "T"} <= names, f"{cls.__name__}'s kernel uses names its formula does not have"


def test_every_optimizer_has_its_fused_variants_keyed_by_formula_name() -> None:
    assert set(kernels.OPTIMIZERS) == {c.formula for c in optim.OPTIMIZERS.values()}

    class MySGD(optim.SGD):  # a subclass with its own formula must not run its parent's kernel
        def step(self, p: object, g: object, *, lr: float) -> None:
            p -= 2 * lr * g  # type: ignore[operator]

    assert accel.formula_class(MySGD(0.1)) is MySGD
    assert accel.formula(MySGD(0.1)) is None  # it inherits SGD's ``formula`` attribute, not its kernel
    assert kernels.optimizer(accel.formula(MySGD(0.1)), MySGD.slots, {"lr": 0.1}) is None
    assert accel.formula(MySGD(0.1)) not in host.UPDATES

    class Renamed(optim.Adam):  # no formula of its own (the book's facade): the parent's fast versions run
        pass

    assert accel.formula_class(Renamed()) is optim.Adam
    assert accel.formula(Renamed()) == "adam"
    p, g = np.ones(3), np.ones(3)
    MySGD(0.25).update({"p": p}, {"p": g})
    np.testing.assert_array_equal(p, 0.5)


@pytest.fixture
def cuda_dev() -> Device:
    ok, reason, _ = backend.cuda_status()
    if not ok:
        no_cuda(f"CuPy fused kernels need CUDA: {reason}")
    return backend.device("cuda:0")


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_fused_optimizer_kernels_match_the_formula(cuda_dev: Device, name: str) -> None:
    params, twin = run_both(cuda_dev, name)
    for k in params:
        np.testing.assert_allclose(to_host(params[k]), to_host(twin[k]), rtol=1e-10, atol=1e-12, err_msg=k)


@pytest.mark.parametrize("cls", [Relu, Sigmoid, Tanh])
def test_fused_activation_kernels_match_the_portable_layers(cuda_dev: Device, cls: type) -> None:
    x, dout = randn(cuda_dev, 40, 30, scale=3.0), randn(cuda_dev, 40, 30, seed=1)
    fast, slow = cls(), cls()
    y_fast, dx_fast = fast.forward(x), fast.backward(dout)
    with accel.portable_only():
        y_slow, dx_slow = slow.forward(x), slow.backward(dout)
    np.testing.assert_allclose(to_host(y_fast), to_host(y_slow), rtol=1e-12)
    np.testing.assert_allclose(to_host(dx_fast), to_host(dx_slow), rtol=1e-12)


def test_fused_kernels_are_off_where_they_cannot_run(dev: Device) -> None:
    x = randn(dev, 2, 2)
    assert (accel.kernel("relu", x) is not None) == (dev.backend == "cupy")
    assert accel.kernel("no-such-kernel", x) is None
    with accel.portable_only():
        assert accel.kernel("relu", x) is None
        assert accel.native(x) is None


def test_out_helpers_write_in_place_or_copy_in(dev: Device) -> None:
    a, b = randn(dev, 3, 4), randn(dev, 4, 2, seed=1)
    for fast in (True, False):
        with accel.portable_only() if not fast else contextlib.nullcontext():
            out = dev.xp.zeros((3, 2), dtype=a.dtype, device=dev.native)
            assert accel.matmul(a, b, out=out) is out
            np.testing.assert_allclose(to_host(out), to_host(a @ b), rtol=1e-13)
            flat_out = dev.xp.zeros(6, dtype=a.dtype, device=dev.native)
            assert accel.matmul(a, b, out=flat_out, shape=(6,)) is flat_out
            np.testing.assert_allclose(to_host(flat_out), to_host(a @ b).ravel(), rtol=1e-13)
            s = dev.xp.zeros(4, dtype=a.dtype, device=dev.native)
            assert accel.sum(a, axis=0, out=s) is s
            np.testing.assert_allclose(to_host(s), to_host(dev.xp.sum(a, axis=0)), rtol=1e-13)
    assert (accel.native(a) is not None) == (dev.backend in ("numpy", "cupy"))

