"""Every library-specific fast path below the book's layers, in one place.

The book's code (``functions``, ``layers``, ``conv``, ``optim``, ``nets``) is written once
against the Array API and is the definition of what xpnet computes. Where NumPy or CuPy can
do the same work faster, the compute modules make ONE visible call into this package, which
either does it or answers None / falls back to the plain code:

- :func:`kernel`: a fused CuPy kernel for an activation (:mod:`.kernels`);
- :func:`step`: an optimizer update as one CuPy kernel or through NumPy scratch arrays
  (:mod:`.kernels`, :mod:`.host`), keyed by the ``formula`` name the optimizer's class declares,
  else its Python formula;
- :func:`matmul` / :func:`sum`: results written straight into a net's flat gradient buffer;
- :func:`im2col_t`: one strided copy instead of a loop of slices (:mod:`.im2col`);
- :mod:`.flat`: parameters and gradients as views of one buffer; :mod:`.tuning`: BLAS threads
  and the host allocator; :mod:`.kernels`: the CUDA sources of the kernels.

Why this floor: the compute modules call it, so it must not call them. This package and the
modules listed above import only :mod:`xpnet.backend` (and numpy, cupy, array_api_compat): optimizers
are known here by the name of their formula, never by their class. What needs the layers sits
above them: the fused Convolution → ReLU → pool block in :mod:`xpnet.fusion`, the report of which
fast paths are on in :mod:`xpnet.fast_paths`, and :mod:`xpnet.cuda_source` (a command that
compiles every kernel without a GPU, naming each optimizer kernel's arguments from :mod:`xpnet.optim`).

Each fast path is tested against the plain code (``tests/test_accel_*.py``); within
:func:`portable_only` every one of them is off.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import array_api_compat
import numpy as np

from xpnet.backend import array_namespace

Array = Any

_FAST = [True]
_NATIVE: dict[type, ModuleType | None] = {}


@contextlib.contextmanager
def portable_only() -> Iterator[None]:
    """Within this block every fast path is off: the plain Array API code runs (tests compare the two)."""
    _FAST.append(False)
    try:
        yield
    finally:
        _FAST.pop()


def native(x: Any) -> ModuleType | None:
    """numpy or cupy itself (not the compat wrapper) when ``x`` is one of their arrays and fast paths are on."""
    if not _FAST[-1]:
        return None
    kind = type(x)
    if kind not in _NATIVE:
        if array_api_compat.is_numpy_array(x):
            _NATIVE[kind] = np
        elif array_api_compat.is_cupy_array(x):
            import cupy

            _NATIVE[kind] = cupy
        else:
            _NATIVE[kind] = None
    return _NATIVE[kind]


def on_gpu(x: Any) -> bool:
    """True for CuPy arrays (with fast paths on): each operation there is a kernel launch."""
    lib = native(x)
    return lib is not None and lib is not np


def matmul(a: Array, b: Array, out: Array = None, shape: tuple[int, ...] | None = None) -> Array:
    """``a @ b`` (reshaped to ``shape`` if given); with ``out``, written into that array and ``out`` returned.

    ``out`` is a view of a net's flat gradient buffer: NumPy and CuPy write the product there
    directly (``out=``); other libraries compute it and copy it in.
    """
    if out is None:
        r = a @ b
        return r if shape is None else array_namespace(r).reshape(r, shape)
    target = out if shape is None else array_namespace(out).reshape(out, (a.shape[0], b.shape[-1]))
    lib = native(out)
    if lib is not None:
        lib.matmul(a, b, out=target)
    else:
        target[...] = a @ b
    return out


def sum(a: Array, axis: int, out: Array = None) -> Array:
    """``xp.sum(a, axis=axis)`` (a bias gradient); with ``out``, written into that array and ``out`` returned."""
    if out is None:
        return array_namespace(a).sum(a, axis=axis)
    lib = native(out)
    if lib is not None:
        lib.sum(a, axis=axis, out=out)
    else:
        out[...] = array_namespace(a).sum(a, axis=axis)
    return out


def kernel(name: str, x: Array) -> Callable[..., Any] | None:
    """The fused CuPy kernel ``name`` (see :data:`.kernels.ACTIVATIONS`) when ``x`` is on a GPU, else None."""
    if not on_gpu(x):
        return None
    from xpnet.accel import kernels

    return kernels.activation(name)


def formula_class(opt: Any) -> type:
    """The class whose ``step`` formula ``opt`` runs: a subclass that only renames or wraps (the book's
    facade) runs its parent's formula, and one with its own ``step`` runs its own."""
    return next(c for c in type(opt).__mro__ if "step" in vars(c))


def formula(opt: Any) -> str | None:
    """The name fused versions of ``opt``'s update are keyed by: the ``formula`` its :func:`formula_class`
    declares itself (not inherited), so a subclass with its own ``step`` gets None and runs that ``step``."""
    return vars(formula_class(opt)).get("formula")


def step(opt: Any, p: Array, g: Array, state: list[Array], hyper: dict[str, float]) -> None:
    """One update of ``p`` and its optimizer state, in place: the fused version of ``opt``'s formula where
    there is one (a CuPy kernel; on the host a numba kernel once compiled, else NumPy scratch arrays), else the
    optimizer's own formula ``opt.step``."""
    lib = native(p)
    fast = None
    if lib is np:
        from xpnet.accel import host, jit

        name = formula(opt)
        fast = jit.update(name, p, g, state) or host.UPDATES.get(name)  # type: ignore[arg-type]
    elif lib is not None:
        from xpnet.accel import kernels

        fast = kernels.optimizer(formula(opt), opt.slots, hyper)
    if fast is None:
        opt.step(p, g, *state, **hyper)
    else:
        fast(p, g, *state, **hyper)


def prepare(opt: Any, wait: bool = False) -> bool:
    """Start compiling the host's fused update of ``opt``'s formula (numba, :mod:`.jit`) in the background,
    so that it is ready by the first steps instead of being compiled in them; ``wait``: block until it is.
    True when the fused update is ready (False: still compiling, no numba, switched off, or no formula)."""
    from xpnet.accel import jit

    name = formula(opt)
    if name is None:
        return False
    return jit.wait(name) if wait else (jit.start(name) or jit.ready(name))


def im2col_t(img: Array, filter_h: int, filter_w: int, stride: int, out_h: int, out_w: int) -> Array | None:
    """:func:`xpnet.conv.im2col_t` of a padded image as one strided copy where that pays (a GPU), else None."""
    if not on_gpu(img):
        return None
    from xpnet.accel import im2col

    return im2col.strided_im2col_t(img, filter_h, filter_w, stride, out_h, out_w)
