"""Convolution and max pooling (the book's ch. 7): im2col/col2im, ``Convolution``, ``Pooling``.

im2col unrolls every filter-sized patch of the input so that a convolution becomes
ONE matrix product. The book's ``im2col`` puts one patch per row. The layers use the
same matrix transposed, ``im2col_t``: one row per (channel, filter row, filter
column), one column per output pixel of the whole batch. Then every copy moves whole
image rows, the product for the batch comes out channel-major (C, N, H, W) in memory,
and the backward pass turns it back for free. (Measured on the book's SimpleConvNet:
building the transposed matrix is ~10x faster than the book's layout on NumPy.)

Everything here is slicing, which every Array API library has. Where one strided
copy beats a loop of slices (a GPU, where each slice is a kernel launch),
:mod:`xpnet.accel.im2col` takes over, behind one call in ``im2col_t``. A compute module: it builds
on ``layer`` and the floor below (``accel``, ``backend``); the fused conv block is above, in ``fusion``.
"""

from __future__ import annotations

from typing import Any

from xpnet import accel
from xpnet.backend import array_namespace
from xpnet.layer import Layer

Array = Any


def out_size(size: int, filter_size: int, stride: int, pad: int) -> int:
    """Output height/width of a convolution or pooling window; raises if the window does not fit."""
    span = size + 2 * pad - filter_size
    if span < 0 or stride < 1:
        raise ValueError(f"a {filter_size}-wide window with pad {pad} and stride {stride} "
                         f"does not fit an input of size {size}")
    return span // stride + 1


def pad_image(x: Array, pad: int) -> Array:
    """(N, C, H, W) with ``pad`` zeros around each image."""
    if pad == 0:
        return x
    xp = array_namespace(x)
    n, c, h, w = x.shape
    out = xp.zeros((n, c, h + 2 * pad, w + 2 * pad), dtype=x.dtype, device=x.device)
    out[:, :, pad:pad + h, pad:pad + w] = x
    return out


def window_slices(filter_h: int, filter_w: int, stride: int, out_h: int, out_w: int
                  ) -> list[tuple[int, int, slice, slice]]:
    """For each position (y, x) inside the window: the rows and columns of the image it sees."""
    return [(y, x, slice(y, y + stride * (out_h - 1) + 1, stride), slice(x, x + stride * (out_w - 1) + 1, stride))
            for y in range(filter_h) for x in range(filter_w)]


def im2col_t(x: Array, filter_h: int, filter_w: int, stride: int = 1, pad: int = 0) -> Array:
    """(N, C, H, W) → (C·filter_h·filter_w, N·out_h·out_w): the transpose of the book's im2col."""
    xp = array_namespace(x)
    n, c, h, w = x.shape
    out_h, out_w = out_size(h, filter_h, stride, pad), out_size(w, filter_w, stride, pad)
    img = pad_image(x, pad)
    fast = accel.im2col_t(img, filter_h, filter_w, stride, out_h, out_w)  # GPU: one strided copy
    if fast is not None:
        return fast
    col = xp.empty((c, filter_h, filter_w, n, out_h, out_w), dtype=x.dtype, device=x.device)
    for y, x0, rows, cols in window_slices(filter_h, filter_w, stride, out_h, out_w):
        col[:, y, x0, :, :, :] = xp.permute_dims(img[:, :, rows, cols], (1, 0, 2, 3))
    return xp.reshape(col, (c * filter_h * filter_w, n * out_h * out_w))


def col2im_t(col: Array, input_shape: tuple[int, ...], filter_h: int, filter_w: int,
             stride: int = 1, pad: int = 0) -> Array:
    """The adjoint of :func:`im2col_t`: add every window position's row block back into the image.

    The image is accumulated channel-major, (C, N, H, W), so each addition reads one contiguous
    block of ``col``; it is returned as an (N, C, H, W) view of that memory.
    """
    xp = array_namespace(col)
    n, c, h, w = input_shape
    out_h, out_w = out_size(h, filter_h, stride, pad), out_size(w, filter_w, stride, pad)
    col = xp.reshape(col, (c, filter_h, filter_w, n, out_h, out_w))
    img = xp.zeros((c, n, h + 2 * pad, w + 2 * pad), dtype=col.dtype, device=col.device)
    for y, x0, rows, cols in window_slices(filter_h, filter_w, stride, out_h, out_w):
        img[:, :, rows, cols] += col[:, y, x0, :, :, :]
    return xp.permute_dims(img[:, :, pad:pad + h, pad:pad + w], (1, 0, 2, 3))


def im2col(x: Array, filter_h: int, filter_w: int, stride: int = 1, pad: int = 0) -> Array:
    """The book's layout: (N·out_h·out_w, C·filter_h·filter_w), one row per patch."""
    return im2col_t(x, filter_h, filter_w, stride, pad).T


def col2im(col: Array, input_shape: tuple[int, ...], filter_h: int, filter_w: int,
           stride: int = 1, pad: int = 0) -> Array:
    """The book's col2im: the adjoint of :func:`im2col` (patch rows added back into the image)."""
    return col2im_t(col.T, input_shape, filter_h, filter_w, stride, pad)


class Convolution(Layer):
    """2-D convolution (cross-correlation, as in the book): W is (FN, C, FH, FW), b is (FN,)."""

    params = (("W", "dW"), ("b", "db"))
    weights = ("W",)

    def __init__(self, W: Array, b: Array, stride: int = 1, pad: int = 0) -> None:
        self.W, self.b, self.stride, self.pad = W, b, int(stride), int(pad)
        self.dW: Array = None
        self.db: Array = None
        self.need_dx = True  # a net turns this off for its first layer: nobody reads dL/d(input)

    def output_shape(self, x: Array) -> tuple[int, int, int]:
        """(N, out_h, out_w) for input ``x``; raises if x does not fit W."""
        _, c, fh, fw = self.W.shape
        if x.ndim != 4 or x.shape[1] != c:
            raise ValueError(f"Convolution: expected input (N, {c}, H, W), got shape {tuple(x.shape)}")
        return (x.shape[0], out_size(x.shape[2], fh, self.stride, self.pad),
                out_size(x.shape[3], fw, self.stride, self.pad))

    def forward(self, x: Array) -> Array:
        xp = array_namespace(x)
        fn, _, fh, fw = self.W.shape
        n, out_h, out_w = self.output_shape(x)
        self.x_shape = tuple(x.shape)
        self.col = im2col_t(x, fh, fw, self.stride, self.pad)  # (C·FH·FW, N·out_h·out_w)
        out = xp.reshape(self.W, (fn, -1)) @ self.col
        out += xp.reshape(self.b, (fn, 1))
        return xp.permute_dims(xp.reshape(out, (fn, n, out_h, out_w)), (1, 0, 2, 3))

    def backward(self, dout: Array) -> Array:
        xp = array_namespace(dout)
        fn, _, fh, fw = self.W.shape
        # (N, FN, OH, OW) → (FN, N·OH·OW): free when dout kept the forward's channel-major memory.
        dout = xp.reshape(xp.permute_dims(dout, (1, 0, 2, 3)), (fn, -1))
        self.db = accel.sum(dout, axis=1, out=self.grad_view("db"))
        self.dW = accel.matmul(dout, self.col.T, out=self.grad_view("dW"), shape=tuple(self.W.shape))
        if not self.need_dx:
            return None
        dcol = xp.reshape(self.W, (fn, -1)).T @ dout
        return col2im_t(dcol, self.x_shape, fh, fw, self.stride, self.pad)


class Pooling(Layer):
    """Max pooling over pool_h × pool_w windows; backward routes each gradient to its window's max
    (the first one on ties, like the book's argmax).

    The book's im2col + max, without materialising the columns: the window maximum is an
    element-wise maximum over one image slice per window position (argmax over a short axis is
    ~50x slower than max on NumPy), and the backward pass writes each position's share into
    its slice, which is what col2im does.
    """

    def __init__(self, pool_h: int, pool_w: int, stride: int = 1, pad: int = 0) -> None:
        self.pool_h, self.pool_w, self.stride, self.pad = int(pool_h), int(pool_w), int(stride), int(pad)

    def forward(self, x: Array) -> Array:
        xp = array_namespace(x)
        if x.ndim != 4:
            raise ValueError(f"Pooling: expected input (N, C, H, W), got shape {tuple(x.shape)}")
        self.x_shape = tuple(x.shape)
        out_h = out_size(x.shape[2], self.pool_h, self.stride, self.pad)
        out_w = out_size(x.shape[3], self.pool_w, self.stride, self.pad)
        self.img = pad_image(x, self.pad)  # zero padding takes part in the max, as with the book's im2col
        self.windows = [(rows, cols) for *_, rows, cols in
                        window_slices(self.pool_h, self.pool_w, self.stride, out_h, out_w)]
        out = self.img[:, :, self.windows[0][0], self.windows[0][1]]
        for rows, cols in self.windows[1:]:
            out = xp.maximum(out, self.img[:, :, rows, cols])
        self.out = out if len(self.windows) > 1 else xp.asarray(out, copy=True)
        return self.out

    def backward(self, dout: Array) -> Array:
        xp = array_namespace(dout)
        dimg = xp.zeros_like(self.img)
        free = xp.ones_like(dout)  # 1 where no earlier window position has taken the gradient yet
        for rows, cols in self.windows:
            hit = xp.astype(self.img[:, :, rows, cols] == self.out, dout.dtype) * free
            free -= hit
            dimg[:, :, rows, cols] += dout * hit
        if self.pad:
            _, _, h, w = self.x_shape
            return dimg[:, :, self.pad:self.pad + h, self.pad:self.pad + w]
        return dimg
