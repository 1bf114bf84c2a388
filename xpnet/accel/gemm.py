"""NumPy matrix products on one thread when they are small, on all of them otherwise.

OpenBLAS shares a product among its threads from 65,536·4 multiply-adds up. In a training step on
the CI machine (2 cores; OpenBLAS 0.3.31, Haswell kernel) its second thread costs more than it gives
well above that: the MLP 784-100-100-10 step ran 1.12× faster across 8 alternating processes (median
405 vs 459 µs) with its 100×100×100 products on one thread. At 3.3M multiply-adds (the main job's
100×256×128 layer) two threads win again (51 vs 32 µs alone; the job's wall time was 5% longer with
them on one). So once an application asks for it (:func:`enable`; the thread count is process-wide
OpenBLAS state), products under :data:`SMALL` multiply-adds run on one thread.

The rule is by shape only, never by timing: OpenBLAS's result changes in the last bits with its
thread count, so a timed choice could give two runs of the same seed different numbers. (A timed
choice was tried; so was a 4M threshold. This machine's timings also drift by the hour: a lone
100×100×100 product took 30 µs on two threads at 12:16 and 13 µs at 12:45.)
"""

from __future__ import annotations

import numpy as np

from xpnet.accel import tuning

SMALL = 2 * 2**20  # multiply-adds (m·k·n) below which a product runs on one thread
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
