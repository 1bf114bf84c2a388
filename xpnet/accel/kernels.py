"""CuPy's fused kernels: one GPU kernel per activation backward and per optimizer step.

The plain code launches one kernel per operator and round-trips every temporary through
GPU memory; each kernel below does the whole formula in one pass. Every body is the C
transcription of the Python formula it replaces — the layer's ``backward`` or the
optimizer class's ``step`` — and tests check each against that formula.

Optimizer kernels are keyed by the formula's name (the ``formula`` an optimizer class declares,
see :func:`xpnet.accel.formula`) and take the formula's own names, handed in by the caller: ``g``
and the names of ``Optimizer.hyper()`` in, ``p`` and the optimizer's ``slots`` read-modified-written.
So this module knows no optimizer class: it sits on accel's lower floor and imports no xpnet module.

Every kernel is compiled with :data:`OPTIONS`: NVRTC contracts ``a * b + c`` into one fused
multiply-add by default, which rounds once instead of twice; the tests promise the kernels agree
with the portable formula to 1e-12, and a contracted ``momentum * v - lr * g`` can lose every
digit when the two products nearly cancel. :mod:`xpnet.cuda_source` compiles all of them without a GPU.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# name -> (inputs, outputs, body); see Relu/Sigmoid/Tanh in xpnet.layers.
ACTIVATIONS: dict[str, tuple[str, str, str]] = {
    "relu": ("T x", "T y, T mask", "mask = x > (T)0 ? (T)1 : (T)0; y = x * mask"),
    "sigmoid_backward": ("T y, T dout", "T dx", "dx = dout * ((T)1 - y) * y"),
    "tanh_backward": ("T y, T dout", "T dx", "dx = dout * ((T)1 - y * y)"),
}

# formula name -> body; the C form of the ``step`` of the optimizer class declaring that ``formula``
# (SGD, Momentum, Nesterov, AdaGrad, RMSprop, Adam in xpnet.optim).
OPTIMIZERS: dict[str, str] = {
    "sgd": "p -= lr * g",
    "momentum": "v = momentum * v - lr * g; p += v",
    "nesterov": "v = momentum * v - lr * g; p += momentum_sq * v; p -= lr_ahead * g",
    "adagrad": "h += g * g; p -= lr * g / (sqrt(h) + (T)1e-7)",
    "rmsprop": "h = decay_rate * h + one_minus_decay * g * g; p -= lr * g / (sqrt(h) + (T)1e-7)",
    "adam": "m += one_minus_beta1 * (g - m); v += one_minus_beta2 * (g * g - v); "
            "p -= lr_t * m / (sqrt(v) + (T)1e-7)",
}

# NVRTC options of every kernel: no fused multiply-adds, so each step rounds as the portable formula does.
OPTIONS = ("--fmad=false",)

_BUILT: dict[Any, Callable[..., Any]] = {}


def source(formula: str, slots: tuple[str, ...], hyper_names: list[str]) -> tuple[str, str, str]:
    """(inputs, outputs, body) of ``formula``'s kernel: parameters named after the Python formula
    (its optimizer's ``slots`` and the names of its ``hyper()``)."""
    ins = ", ".join(f"T {n}" for n in ["g", *hyper_names])
    outs = ", ".join(f"T {n}" for n in ["p", *slots])
    return ins, outs, OPTIMIZERS[formula]


def _elementwise(ins: str, outs: str, body: str, name: str) -> Any:
    import cupy

    return cupy.ElementwiseKernel(ins, outs, body, f"xpnet_{name}", options=OPTIONS)


def activation(name: str) -> Callable[..., Any] | None:
    """The compiled kernel for activation ``name`` (None if there is none)."""
    if name not in ACTIVATIONS:
        return None
    if name not in _BUILT:
        _BUILT[name] = _elementwise(*ACTIVATIONS[name], name)
    return _BUILT[name]


def optimizer(formula: str | None, slots: tuple[str, ...], hyper: dict[str, float]
              ) -> Callable[..., None] | None:
    """A callable ``(p, g, *state, **hyper)`` running ``formula``'s kernel, or None for a formula without
    one (None: an optimizer class with its own ``step`` and no ``formula`` of its own)."""
    if formula not in OPTIMIZERS:
        return None
    key = ("optimizer", formula, tuple(slots), tuple(hyper))
    if key not in _BUILT:
        ins, outs, body = source(formula, slots, list(hyper))
        k = _elementwise(ins, outs, body, formula)
        names = [n.split()[-1] for n in f"{ins}, {outs}".split(", ")]

        def run(p: Any, g: Any, *state: Any, **h: float) -> None:
            args = {"p": p, "g": g, **dict(zip(slots, state, strict=True)), **h}
            k(*[args[n] for n in names])  # by name: the formula's names are the kernel's

        _BUILT[key] = run
    return _BUILT[key]
