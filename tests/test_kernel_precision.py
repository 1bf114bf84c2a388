"""The fused optimizer kernels compute what the Python formula computes, in float32 too (issue 23, item 6).

A kernel that forms ``(T)1 - beta2`` in float32 gets 0.0009999871 for beta2 = 0.999, where the formula's
``1.0 - beta2`` is computed in double and rounded once (0.001). On the CPU each kernel body is run with
float32 rounding (tests/kernel_emulator.py) on the scalars the code passes it, and must agree bit for bit
with the optimizer's own ``step``; on a GPU the compiled kernels are compared with the formula in float32."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import no_cuda
from tests.kernel_emulator import run_body
from xpnet import accel, backend, cuda_source, optim

KERNELS = {k.name: k for k in cuda_source.every_kernel()}


def _optimizer_kernels() -> list[tuple[type[optim.Optimizer], object]]:
    out = []
    for cls in optim.OPTIMIZERS.values():
        k = KERNELS.get(f"xpnet_{cls.formula}")
        if k is not None:
            out.append((cls, k))
    return out


def _tricky(cls: type[optim.Optimizer]) -> optim.Optimizer:
    """Hyper-parameters whose float32 forms round badly: 1 - 0.999 in float32 is 1.3e-5 off, relatively."""
    kw = {"Adam": {"beta1": 0.9, "beta2": 0.999}, "RMSprop": {"decay_rate": 0.999},
          "Momentum": {"momentum": 0.9}, "Nesterov": {"momentum": 0.9}}.get(cls.__name__, {})
    return cls(0.0123, **kw)


def test_the_emulator_rounds_like_float32() -> None:
    out = {"y": np.zeros(1, np.float32)}
    run_body("y = (T)1 - b", "float32", out, {"b": 0.999})
    assert out["y"][0] == np.float32(1) - np.float32(0.999) != np.float32(1.0 - 0.999)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(("cls", "kernel"), _optimizer_kernels(),
                         ids=lambda v: v.__name__ if isinstance(v, type) else "kernel")
def test_each_kernel_body_is_bitwise_the_formula(cls: type[optim.Optimizer], kernel: object, dtype: str) -> None:
    rng = np.random.default_rng(0)
    p = rng.standard_normal(500).astype(dtype)
    state = [np.abs(rng.standard_normal(500)).astype(dtype) for _ in cls.slots]
    fast, formula = _tricky(cls), _tricky(cls)
    arrays = {"p": p.copy(), **{s: a.copy() for s, a in zip(cls.slots, state, strict=True)}}
    want = {"p": p.copy(), **{s: a.copy() for s, a in zip(cls.slots, state, strict=True)}}
    for step in range(1, 4):
        g = rng.standard_normal(500).astype(dtype)
        fast.iter = formula.iter = step
        run_body(kernel.body, dtype, {**arrays, "g": g}, fast.hyper())
        with accel.portable_only():
            formula.step(want["p"], g, *[want[s] for s in cls.slots], **formula.hyper())
    for name in want:
        np.testing.assert_array_equal(arrays[name], want[name], err_msg=f"{cls.__name__} {name} ({dtype})")


@pytest.mark.parametrize("name", list(optim.OPTIMIZERS))
def test_fused_cuda_kernels_match_the_formula_in_float32(name: str) -> None:
    ok, reason, _ = backend.cuda_status()
    if not ok:
        no_cuda(f"CuPy fused kernels need CUDA: {reason}")
    dev = backend.device("cuda:0")
    rng = np.random.default_rng(0)
    params = {"W": dev.asarray(rng.standard_normal((50, 30)).astype(np.float32))}
    twin = {k: dev.xp.asarray(v, copy=True) for k, v in params.items()}
    fast, formula = _tricky(optim.OPTIMIZERS[name]), _tricky(optim.OPTIMIZERS[name])
    for i in range(5):
        grads = {"W": dev.asarray(np.random.default_rng(10 + i).standard_normal((50, 30)).astype(np.float32))}
        fast.update(params, grads)
        with accel.portable_only():
            formula.update(twin, grads)
    np.testing.assert_array_equal(backend.to_host(params["W"]), backend.to_host(twin["W"]))
