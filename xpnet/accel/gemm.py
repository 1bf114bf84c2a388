"""NumPy matrix products on the number of threads that pays for their shape, decided by shape alone.

OpenBLAS shares a product among its threads by splitting the result's rows or columns, and each
thread then reads all of the other operand (as a model, this module assumes the longer side is
split). On the CI machine (2 cores of a virtual machine; OpenBLAS 0.3.31, Haswell kernel) data
moving between the cores is dear, so a second thread pays only where that shared operand is small:
the MLP's weight gradient 784×100·100×100 (each core reads the 100×100 output gradient) halves from
125 to 65 µs, but its forward product 100×784·784×100 (each core would read all of W1) gains
nothing alone (123 vs 125 µs) and slows the next SGD update, which writes W1 back.

So once an application asks for it (:func:`enable`; the thread count is process-wide OpenBLAS
state), products run on one thread when they are under :data:`SMALL` multiply-adds or their shared
operand is at least half the size of the split one.

Measured per training step, medians of 6 fresh processes each, alternating: MLP 784-100-100-10
459 → 412 µs with the size rule alone, → 363 µs with both; SimpleConvNet 6.23 → 5.77 ms from the
shared-operand rule.

The rule is by shape only, never by timing: OpenBLAS's result changes in the last bits with its
thread count, so a timed choice could give two runs of the same seed different numbers. (A timed
choice was tried. This machine's timings also drift by the hour: a lone 100×100×100 product took
30 µs on two threads at 12:16 and 13 µs at 12:45.)
"""

from __future__ import annotations

import numpy as np

from xpnet.accel import tuning

SMALL = 2 * 2**20  # multiply-adds (m·k·n) below which a product runs on one thread (100×256×128 is above)
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
    """The thread count an (m×k)·(k×n) product runs on: all of them only when it is large and the operand
    every thread reads whole (the one OpenBLAS does not split) is under half the size of the split one."""
    if m * k * n < SMALL:
        return 1
    shared, split = (k * n, m * k) if m >= n else (m * k, k * n)
    return threads if 2 * shared <= split else 1


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
