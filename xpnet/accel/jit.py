"""numba's fused CPU updates: each optimizer's formula in ONE pass over the flat buffers, split across cores.

NumPy runs an update as one pass per operator (Adam: 12 over the parameters, its state and scratch), each a
trip through memory; here every element is read once and written once, and ``prange`` splits the buffer
between the cores. Each body does its class's ``step`` formula (:mod:`xpnet.optim`) element by element with
the same operations in the same order and in the array's dtype (the scalars rounded to it first, as NumPy
does with a Python float), and without fast-math (no reassociation, no fused multiply-adds), so the result is
bitwise the portable formula's (tests/test_accel_jit.py).

Optional and off the critical path: numba is the ``cpu`` extra; without it, with ``XPNET_NUMBA=0``, or where
compiling fails, :mod:`.host`'s NumPy updates run. Importing numba (~0.5 s) and compiling a kernel (seconds on
a cold cache) happen in a background thread the first time an update asks; until the kernel is ready the NumPy
update runs, which gives the same bits, so when the switch happens changes no result. Compiled kernels are
cached (``cache=True``: ``__pycache__`` beside this file, else numba's user cache or ``NUMBA_CACHE_DIR``);
where no cache location is writable (a read-only install, no home) they are compiled uncached.

Keyed by the ``formula`` name an optimizer class declares (:func:`xpnet.accel.formula`), like :mod:`.kernels`
and :mod:`.host`: on accel's lower floor, this module imports no xpnet module.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

prange = range  # numba.prange once numba is imported (_compile): plain Python loops until then


# The kernels: (p, g, *state, *scalars), every array 1-D, contiguous and of one dtype, every scalar rounded to
# it. Each line is the formula's line in xpnet.optim, one element at a time.

def sgd_kernel(p: np.ndarray, g: np.ndarray, lr: float) -> None:
    for i in prange(p.shape[0]):
        p[i] -= lr * g[i]


def momentum_kernel(p: np.ndarray, g: np.ndarray, v: np.ndarray, lr: float, momentum: float) -> None:
    for i in prange(p.shape[0]):
        vi = v[i] * momentum
        vi -= lr * g[i]
        v[i] = vi
        p[i] += vi


def nesterov_kernel(p: np.ndarray, g: np.ndarray, v: np.ndarray, lr: float, momentum: float, mm: float,
                    ml: float) -> None:
    for i in prange(p.shape[0]):
        vi = v[i] * momentum
        vi -= lr * g[i]
        v[i] = vi
        pi = p[i] + mm * vi
        p[i] = pi - ml * g[i]


def adagrad_kernel(p: np.ndarray, g: np.ndarray, h: np.ndarray, lr: float, eps: float) -> None:
    for i in prange(p.shape[0]):
        gi = g[i]
        hi = h[i] + gi * gi
        h[i] = hi
        p[i] -= lr * gi / (np.sqrt(hi) + eps)


def rmsprop_kernel(p: np.ndarray, g: np.ndarray, h: np.ndarray, lr: float, decay_rate: float, keep: float,
                   eps: float) -> None:
    for i in prange(p.shape[0]):
        gi = g[i]
        hi = h[i] * decay_rate
        hi += keep * gi * gi
        h[i] = hi
        p[i] -= lr * gi / (np.sqrt(hi) + eps)


def adam_kernel(p: np.ndarray, g: np.ndarray, m: np.ndarray, v: np.ndarray, lr_t: float, c1: float, c2: float,
                eps: float) -> None:
    for i in prange(p.shape[0]):
        gi = g[i]
        mi = m[i] + c1 * (gi - m[i])
        vi = v[i] + c2 * (gi * gi - v[i])
        m[i] = mi
        v[i] = vi
        p[i] -= lr_t * mi / (np.sqrt(vi) + eps)


# formula name -> (its kernel, its scalars from the formula's ``hyper()`` names, each a Python double that the
# kernel's caller rounds once to the arrays' dtype, as NumPy rounds a Python float).
KERNELS: dict[str, tuple[Callable[..., None], Callable[..., tuple[float, ...]]]] = {
    "sgd": (sgd_kernel, lambda lr: (lr,)),
    "momentum": (momentum_kernel, lambda lr, momentum: (lr, momentum)),
    "nesterov": (nesterov_kernel, lambda lr, momentum, momentum_sq, lr_ahead: (lr, momentum, momentum_sq, lr_ahead)),
    "adagrad": (adagrad_kernel, lambda lr: (lr, 1e-7)),
    "rmsprop": (rmsprop_kernel, lambda lr, decay_rate, one_minus_decay: (lr, decay_rate, one_minus_decay, 1e-7)),
    "adam": (adam_kernel, lambda lr_t, one_minus_beta1, one_minus_beta2: (lr_t, one_minus_beta1, one_minus_beta2,
                                                                         1e-7)),
}
DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

Key = tuple[str, str]  # (formula, dtype name)
_LOCK = threading.RLock()
_DISPATCH: dict[str, Any] = {}  # formula -> numba dispatcher
_BUILT: dict[Key, Any] = {}  # (formula, dtype) -> the dispatcher, once compiled for that dtype
_PENDING: dict[Key, threading.Thread] = {}
_FAILED: dict[Key, str] = {}  # why a kernel could not be compiled (the NumPy update runs instead)
_INSTALLED: list[bool] = []
_NUMBA: list[Any] = []  # the numba module once a compiling thread imported it


def installed() -> bool:
    """numba can be imported (looked up once; importing it is left to the compiling thread)."""
    if not _INSTALLED:
        _INSTALLED.append(importlib.util.find_spec("numba") is not None)
    return _INSTALLED[0]


def switched_off() -> bool:
    """``XPNET_NUMBA=0``: the NumPy updates run even where numba is installed (read at every update, so a
    test or a user can compare both paths in one process)."""
    return os.environ.get("XPNET_NUMBA", "1") == "0"


def threads() -> int:
    """Threads a kernel runs on: ``XPNET_NUMBA_THREADS``, default 1 (see docs/performance.md: on a busy
    two-core VM two OpenMP threads made Adam's update 5-10x slower; one thread already beats NumPy's passes)."""
    try:
        n = int(os.environ.get("XPNET_NUMBA_THREADS", "1"))
    except ValueError:
        n = 1
    return max(1, min(n, _NUMBA[0].config.NUMBA_NUM_THREADS)) if _NUMBA else max(1, n)


def wanted() -> bool:
    """numba is installed and not switched off: the fused updates will be used once compiled."""
    return installed() and not switched_off()


def _dispatcher(formula: str) -> Any:
    """``formula``'s numba dispatcher (one per formula; each dtype is compiled into it on first call)."""
    import numba

    with _LOCK:
        if formula not in _DISPATCH:
            _NUMBA[:] = [numba]
            global prange
            prange = numba.prange  # before the first compile: numba reads the kernels' globals then
            fn = KERNELS[formula][0]
            try:
                _DISPATCH[formula] = numba.njit(parallel=True, cache=True, fastmath=False)(fn)
            except RuntimeError:  # no writable cache location (a read-only install and no home): uncached
                _DISPATCH[formula] = numba.njit(parallel=True, cache=False, fastmath=False)(fn)
        return _DISPATCH[formula]


def _build(key: Key) -> None:
    """Compile (or load from the cache) ``formula``'s kernel for ``dtype`` by calling it on tiny arrays."""
    formula, dtype = key
    try:
        kernel = _dispatcher(formula)
        fn, scalars = KERNELS[formula]
        n_scalars = len(scalars(*[0.5] * scalars.__code__.co_argcount))
        arrays = [np.zeros(4, dtype) for _ in range(fn.__code__.co_argcount - n_scalars)]
        kernel(*arrays, *[np.dtype(dtype).type(0.5)] * n_scalars)
    except Exception as exc:  # noqa: BLE001 - any failure to compile leaves the NumPy update in place
        _FAILED[key] = f"{type(exc).__name__}: {exc}".splitlines()[0]
    else:
        _BUILT[key] = kernel


def start(formula: str | None, dtype: Any = np.float32) -> None:
    """Compile ``formula``'s kernel for ``dtype`` in a background thread, once (nothing when numba is not
    wanted, or for a formula or dtype without a kernel)."""
    key = (formula, np.dtype(dtype).name)
    if formula not in KERNELS or np.dtype(dtype) not in DTYPES or not wanted():
        return
    with _LOCK:
        if key in _BUILT or key in _PENDING or key in _FAILED:
            return
        t = threading.Thread(target=_build, args=(key,), name=f"xpnet-jit-{formula}", daemon=True)
        _PENDING[key] = t  # type: ignore[index]
    t.start()


def ready(formula: str | None, dtype: Any = np.float32) -> bool:
    """``formula``'s kernel for ``dtype`` is compiled (and numba not switched off)."""
    return (formula, np.dtype(dtype).name) in _BUILT and not switched_off()


def wait(formula: str | None, dtype: Any = np.float32) -> bool:
    """Block until ``formula``'s kernel for ``dtype`` is compiled (starting it if needed); True if ready."""
    start(formula, dtype)
    t = _PENDING.get((formula, np.dtype(dtype).name))  # type: ignore[arg-type]
    if t is not None:
        t.join()
    return ready(formula, dtype)


def status() -> str:
    """'ready', 'compiling', 'failed: <why>', 'off' (XPNET_NUMBA=0) or 'not installed', over all kernels asked."""
    if switched_off():
        return "off"
    if not installed():
        return "not installed"
    if _FAILED:
        return "failed: " + next(iter(_FAILED.values()))
    if any(k not in _BUILT for k in _PENDING):
        return "compiling"
    return "ready"


def update(formula: str | None, p: np.ndarray, g: np.ndarray, state: list[np.ndarray]
           ) -> Callable[..., None] | None:
    """A callable ``(p, g, *state, **hyper)`` running ``formula``'s fused kernel on these arrays, or None (no
    kernel for it, numba not wanted, the kernel still compiling, or arrays it does not take: other dtypes,
    mixed dtypes or shapes, not contiguous)."""
    if formula not in KERNELS or switched_off():
        return None
    arrays = (p, g, *state)
    if p.dtype not in DTYPES or any(a.dtype != p.dtype or a.shape != p.shape or not a.flags.c_contiguous
                                    for a in arrays):
        return None
    kernel = _BUILT.get((formula, p.dtype.name))
    if kernel is None:
        start(formula, p.dtype)
        return None
    scalars, dtype = KERNELS[formula][1], p.dtype.type
    set_threads, n = _NUMBA[0].set_num_threads, threads()

    def run(p: np.ndarray, g: np.ndarray, *state: np.ndarray, **hyper: float) -> None:
        set_threads(n)  # per calling thread in numba; cheap
        kernel(*[a.reshape(-1) for a in (p, g, *state)], *[dtype(s) for s in scalars(**hyper)])

    return run
