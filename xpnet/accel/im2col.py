"""im2col as ONE strided copy (NumPy and CuPy): a view whose strides walk the patches, then a copy.

The plain ``xpnet.conv.im2col_t`` copies one image slice per filter position. On a GPU each
of those is a kernel launch, so one strided copy is faster; on NumPy the slice loop copies
whole rows and is as fast (measured), so only the GPU and the window-major layout of the
fused conv block (:mod:`xpnet.fusion`, whose slices step by k) use this.
On accel's lower floor: a copy of array strides, below the conv layers that call it.
"""

from __future__ import annotations

from typing import Any

import array_api_compat
import numpy as np

from xpnet.backend import array_namespace

Array = Any


def as_strided(x: Array, shape: tuple[int, ...], strides: tuple[int, ...]) -> Array:
    """A read-only view of a NumPy or CuPy array with the given shape and byte strides."""
    if array_api_compat.is_cupy_array(x):
        from cupy.lib.stride_tricks import as_strided as cupy_as_strided

        return cupy_as_strided(x, shape=shape, strides=strides)
    return np.lib.stride_tricks.as_strided(x, shape=shape, strides=strides, subok=True, writeable=False)


def strided_im2col_t(img: Array, filter_h: int, filter_w: int, stride: int, out_h: int, out_w: int,
                     block: int = 1) -> Array:
    """``im2col_t`` of the padded image ``img`` (N, C, H, W) as one copy: (C·FH·FW, k·k·N·bh·bw).

    ``block`` = k > 1 gives the window-major column order of :func:`xpnet.fusion.window_im2col_t`
    (out_h and out_w are then the pooled sizes bh, bw); k = 1 is the plain ``im2col_t``.
    """
    xp = array_namespace(img)
    n, c = img.shape[:2]
    s0, s1, s2, s3 = img.strides
    step = stride * block
    patches = as_strided(img, (c, filter_h, filter_w, block, block, n, out_h, out_w),
                         (s1, s2, s3, s2 * stride, s3 * stride, s0, s2 * step, s3 * step))
    return xp.reshape(patches, (c * filter_h * filter_w, block * block * n * out_h * out_w))  # copies, in C order
