"""The book's ``common.util``: loss-curve smoothing, shuffling, and im2col/col2im (ch. 7).

``im2col``/``col2im`` are xpnet's (:mod:`xpnet.conv`, the book's layout, any array library);
``shuffle_dataset`` keeps device arrays on their device and draws its order from NumPy's
global generator, as the book's does (so ``np.random.seed`` makes it repeatable).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from xpnet.book._device import book_array, is_host, take_rows
from xpnet.conv import col2im, im2col, out_size

__all__ = ["smooth_curve", "shuffle_dataset", "conv_output_size", "im2col", "col2im", "np"]

_WINDOW, _BETA = 11, 2.0


def smooth_curve(x: Any) -> np.ndarray:
    """The book's loss-curve smoothing: a Kaiser window (11 wide, β = 2) run over the values with
    mirrored ends, so the result has the input's length. Takes a list of floats (``net.loss``)."""
    y = np.asarray([float(v) for v in x], dtype=np.float64)
    if y.size < _WINDOW:
        return y
    w = np.kaiser(_WINDOW, _BETA)
    half = _WINDOW // 2
    return np.convolve(np.pad(y, half, mode="reflect"), w / w.sum(), mode="valid")


def shuffle_dataset(x: Any, t: Any) -> tuple[Any, Any]:
    """``x`` and ``t`` in one random order, on the device they live on."""
    if x.shape[0] != t.shape[0]:
        raise ValueError(f"shuffle_dataset: x has {x.shape[0]} samples but t has {t.shape[0]}")
    permutation = np.random.permutation(x.shape[0])
    return _like(x, take_rows(x, permutation)), _like(t, take_rows(t, permutation))


def _like(src: Any, out: Any) -> Any:
    return out if is_host(out) or type(src) is type(out) else book_array(out)


def conv_output_size(input_size: int, filter_size: int, stride: int = 1, pad: int = 0) -> int:
    """Output height/width of a convolution (an int; the book's returns the same number as a float)."""
    return out_size(input_size, filter_size, stride, pad)
