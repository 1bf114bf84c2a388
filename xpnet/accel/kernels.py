"""CuPy's fused kernels: one GPU kernel per activation backward and per optimizer step.

The plain code launches one kernel per operator and round-trips every temporary through
GPU memory; each kernel below does the whole formula in one pass. Every body is the C
transcription of the Python formula it replaces — the layer's ``backward`` or the
optimizer class's ``step`` — and tests check each against that formula.

Optimizer kernels are keyed by class and take the formula's own names: ``g`` and the
names of :meth:`Optimizer.hyper` in, ``p`` and the optimizer's ``slots`` read-modified-written.

Every kernel is compiled with :data:`OPTIONS`: NVRTC contracts ``a * b + c`` into one fused
multiply-add by default, which rounds once instead of twice; the tests promise the kernels agree
with the portable formula to 1e-12, and a contracted ``momentum * v - lr * g`` can lose every
digit when the two products nearly cancel. :mod:`.cuda_source` compiles all of them without a GPU.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

from xpnet import optim

# name -> (inputs, outputs, body); see Relu/Sigmoid/Tanh in xpnet.layers.
ACTIVATIONS: dict[str, tuple[str, str, str]] = {
    "relu": ("T x", "T y, T mask", "mask = x > (T)0 ? (T)1 : (T)0; y = x * mask"),
    "sigmoid_backward": ("T y, T dout", "T dx", "dx = dout * ((T)1 - y) * y"),
    "tanh_backward": ("T y, T dout", "T dx", "dx = dout * ((T)1 - y * y)"),
}

# optimizer class -> body; the C form of the class's ``step``.
OPTIMIZERS: dict[type[optim.Optimizer], str] = {
    optim.SGD: "p -= lr * g",
    optim.Momentum: "v = momentum * v - lr * g; p += v",
    optim.Nesterov: "v = momentum * v - lr * g; p += momentum * momentum * v; p -= ((T)1 + momentum) * lr * g",
    optim.AdaGrad: "h += g * g; p -= lr * g / (sqrt(h) + (T)1e-7)",
    optim.RMSprop: "h = decay_rate * h + ((T)1 - decay_rate) * g * g; p -= lr * g / (sqrt(h) + (T)1e-7)",
    optim.Adam: "m += ((T)1 - beta1) * (g - m); v += ((T)1 - beta2) * (g * g - v); "
                "p -= lr_t * m / (sqrt(v) + (T)1e-7)",
}

# NVRTC options of every kernel: no fused multiply-adds, so each step rounds as the portable formula does.
OPTIONS = ("--fmad=false",)

_BUILT: dict[Any, Callable[..., Any]] = {}


def source(cls: type[optim.Optimizer], hyper_names: list[str]) -> tuple[str, str, str]:
    """(inputs, outputs, body) of ``cls``'s kernel: parameters named after its formula."""
    ins = ", ".join(f"T {n}" for n in ["g", *hyper_names])
    outs = ", ".join(f"T {n}" for n in ["p", *cls.slots])
    return ins, outs, OPTIMIZERS[cls]


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


def optimizer(cls: type[optim.Optimizer], hyper: dict[str, float]) -> Callable[..., None] | None:
    """A callable ``(p, g, *state, **hyper)`` running ``cls``'s kernel, or None for a class without one
    (a subclass with its own formula does not inherit its parent's kernel)."""
    if cls not in OPTIMIZERS:
        return None
    if cls not in _BUILT:
        ins, outs, body = source(cls, list(hyper))
        k = _elementwise(ins, outs, body, cls.__name__.lower())
        names = [n.split()[-1] for n in f"{ins}, {outs}".split(", ")]

        def run(p: Any, g: Any, *state: Any, **h: float) -> None:
            args = {"p": p, "g": g, **dict(zip(cls.slots, state, strict=True)), **h}
            k(*[args[n] for n in names])  # by name: the formula's names are the kernel's

        _BUILT[cls] = run
    return _BUILT[cls]


_PROBE: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()  # the cupy module -> '' or why not


def probe() -> str:
    """'' when GPU 0 compiles and runs an elementwise kernel and draws random numbers, else why not.

    Counting devices is not enough: CuPy compiles every elementwise operation (``astype`` too) with
    NVRTC against the CUDA headers, which a bare driver host or a ``-runtime`` image lacks, and cuRAND
    is one more library that can be missing. ``backend.cuda_status`` asks; the answer is kept."""
    import cupy

    if cupy not in _PROBE:
        try:
            with cupy.cuda.Device(0):
                x = cupy.arange(4, dtype=cupy.float32)
                y = _elementwise("T x", "T y", "y = x * x + (T)1", "probe")(x)
                r = cupy.random.Generator(cupy.random.Philox4x3210(0)).random(4, dtype=cupy.float32)
                ok = y.get().tolist() == [1.0, 2.0, 5.0, 10.0] and bool(((r >= 0) & (r < 1)).all())
            _PROBE[cupy] = "" if ok else "a compiled CuPy kernel returned wrong numbers on cuda:0"
        except Exception as exc:  # the reason is the answer: CUDA is then unusable, and says why
            text = (str(exc).strip().splitlines() or [""])[0]
            _PROBE[cupy] = (f"CuPy cannot compile or run a kernel on cuda:0 ({exc.__class__.__name__}: "
                                f"{text}); install CuPy with its CUDA toolkit wheels: pip install 'xpnet[cuda12]' "
                                "(or 'xpnet[cuda13]' on a CUDA 13 driver)")
    return _PROBE[cupy]
