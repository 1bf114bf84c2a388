"""NumPy matrix products on one thread when they are small, on all of them otherwise.

OpenBLAS shares a product among its threads once it has 65,536·4 multiply-adds; on the CI machine
(2 cores; OpenBLAS 0.3.31, Haswell kernel) its threads cost more than they give well above that:
100×100×100, the MLP's hidden layer, takes 17 µs on one thread and 30 µs on two, while
784×100×100 (its first weight gradient) halves from 125 to 65 µs. So once an application asks for
it (:func:`enable`; the thread count is process-wide OpenBLAS state), products under :data:`SMALL`
multiply-adds run on one thread. Measured with ``scripts/bench.py --threads 2``: the MLP step went
from 1.13–1.15× PyTorch's speed to 1.24–1.26×.

The rule is by shape only, never by timing: OpenBLAS's result changes in the last bits with its
thread count, so a timed choice could give two runs of the same seed different numbers.
"""

from __future__ import annotations

import numpy as np

from xpnet.accel import tuning

SMALL = 4 * 2**20  # multiply-adds (m·k·n) below which a product runs on one thread
_THREADS = [0]  # the cores products may use; 0 = planning off


def enable(threads: int | None = None) -> bool:
    """Plan NumPy products from now on, on up to ``threads`` cores (default: OpenBLAS's current count).

    False, and nothing changes, where NumPy's BLAS is not an OpenBLAS that xpnet can reach.
    """
    if threads is None:
        threads = tuning.blas_info()["threads"]
    if not threads or not tuning.set_blas_threads(threads):
        return False
    _THREADS[0] = int(threads)
    return True


def disable() -> None:
    """Back to plain ``np.matmul`` (on the thread count it was last enabled with)."""
    _THREADS[0] = 0


def enabled() -> bool:
    return _THREADS[0] > 0


def threads_for(m: int, k: int, n: int, threads: int) -> int:
    """The thread count an (m×k)·(k×n) product runs on: one when it is small, else all of them."""
    return 1 if m * k * n < SMALL else threads


def matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``np.matmul(a, b, out=out)``, on the planned thread count when :func:`enable` was called."""
    threads = _THREADS[0]
    if threads <= 1 or a.ndim != 2 or b.ndim != 2:
        return np.matmul(a, b, out=out)
    if threads_for(a.shape[0], a.shape[1], b.shape[1], threads) == threads:
        return np.matmul(a, b, out=out)
    tuning.set_blas_threads(1)
    try:
        return np.matmul(a, b, out=out)
    finally:
        tuning.set_blas_threads(threads)
