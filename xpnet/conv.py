"""Convolution and max-pooling through im2col/col2im (the book's ch. 7).

im2col unrolls every filter-sized patch into a row, so a convolution becomes a
single matrix product. The portable version below uses only slicing, which
every Array API library has; NumPy and CuPy can instead build the same patches
as a strided view without copying (``fast_im2col``), used when available.
"""

from __future__ import annotations

from typing import Any

from array_api_compat import array_namespace

from xpnet.backend import as_strided, has_strided_views

Array = Any


def out_size(size: int, filter_size: int, stride: int, pad: int) -> int:
    """Output height/width of a convolution or pooling window; raises if the window does not fit."""
    span = size + 2 * pad - filter_size
    if span < 0 or stride < 1:
        raise ValueError(f"a {filter_size}-wide window with pad {pad} and stride {stride} "
                         f"does not fit an input of size {size}")
    return span // stride + 1


def _pad(x: Array, pad: int) -> Array:
    if pad == 0:
        return x
    xp = array_namespace(x)
    n, c, h, w = x.shape
    out = xp.zeros((n, c, h + 2 * pad, w + 2 * pad), dtype=x.dtype, device=x.device)
    out[:, :, pad:pad + h, pad:pad + w] = x
    return out


def im2col(x: Array, filter_h: int, filter_w: int, stride: int = 1, pad: int = 0) -> Array:
    """(N, C, H, W) → (N·out_h·out_w, C·filter_h·filter_w); each row is one patch."""
    xp = array_namespace(x)
    n, c, h, w = x.shape
    out_h, out_w = out_size(h, filter_h, stride, pad), out_size(w, filter_w, stride, pad)
    img = _pad(x, pad)
    col = xp.zeros((n, c, filter_h, filter_w, out_h, out_w), dtype=x.dtype, device=x.device)
    for y in range(filter_h):
        y_stop = y + stride * (out_h - 1) + 1
        for x0 in range(filter_w):
            x_stop = x0 + stride * (out_w - 1) + 1
            col[:, :, y, x0, :, :] = img[:, :, y:y_stop:stride, x0:x_stop:stride]
    col = xp.permute_dims(col, (0, 4, 5, 1, 2, 3))
    return xp.reshape(col, (n * out_h * out_w, -1))


def col2im(col: Array, input_shape: tuple[int, ...], filter_h: int, filter_w: int,
           stride: int = 1, pad: int = 0) -> Array:
    """The adjoint of im2col: scatter-add every patch row back into an (N, C, H, W) image."""
    xp = array_namespace(col)
    n, c, h, w = input_shape
    out_h, out_w = out_size(h, filter_h, stride, pad), out_size(w, filter_w, stride, pad)
    col = xp.reshape(col, (n, out_h, out_w, c, filter_h, filter_w))
    col = xp.permute_dims(col, (0, 3, 4, 5, 1, 2))
    img = xp.zeros((n, c, h + 2 * pad, w + 2 * pad), dtype=col.dtype, device=col.device)
    for y in range(filter_h):
        y_stop = y + stride * (out_h - 1) + 1
        for x0 in range(filter_w):
            x_stop = x0 + stride * (out_w - 1) + 1
            img[:, :, y:y_stop:stride, x0:x_stop:stride] += col[:, :, y, x0, :, :]
    return img[:, :, pad:pad + h, pad:pad + w]


def fast_im2col(x: Array, filter_h: int, filter_w: int, stride: int = 1, pad: int = 0) -> Array:
    """Same result as :func:`im2col`, built from one strided view of the padded input (one copy)."""
    xp = array_namespace(x)
    n, c, h, w = x.shape
    out_h, out_w = out_size(h, filter_h, stride, pad), out_size(w, filter_w, stride, pad)
    img = _pad(x, pad)
    s0, s1, s2, s3 = img.strides
    shape = (n, out_h, out_w, c, filter_h, filter_w)
    strides = (s0, s2 * stride, s3 * stride, s1, s2, s3)
    patches = as_strided(img, shape, strides)
    return xp.reshape(xp.asarray(patches, copy=True), (n * out_h * out_w, -1))


def unfold(x: Array, filter_h: int, filter_w: int, stride: int, pad: int, fast: bool = True) -> Array:
    """im2col through the fast path when the array library allows it, else the portable one."""
    if fast and has_strided_views(x):
        return fast_im2col(x, filter_h, filter_w, stride, pad)
    return im2col(x, filter_h, filter_w, stride, pad)


class Convolution:
    """2-D convolution (cross-correlation, as in the book): W is (FN, C, FH, FW), b is (FN,)."""

    params = (("W", "dW"), ("b", "db"))
    weights = ("W",)
    has_train_flag = False

    def __init__(self, W: Array, b: Array, stride: int = 1, pad: int = 0) -> None:
        self.W, self.b, self.stride, self.pad = W, b, int(stride), int(pad)
        self.dW: Array = None
        self.db: Array = None
        self.need_dx = True
        self.fast = True

    def forward(self, x: Array) -> Array:
        xp = array_namespace(x)
        fn, c, fh, fw = self.W.shape
        if x.ndim != 4 or x.shape[1] != c:
            raise ValueError(f"Convolution: expected input (N, {c}, H, W), got shape {tuple(x.shape)}")
        n, _, h, w = x.shape
        out_h, out_w = out_size(h, fh, self.stride, self.pad), out_size(w, fw, self.stride, self.pad)
        self.x_shape = tuple(x.shape)
        self.col = unfold(x, fh, fw, self.stride, self.pad, self.fast)
        self.col_W = xp.matrix_transpose(xp.reshape(self.W, (fn, -1)))
        out = self.col @ self.col_W + self.b
        return xp.permute_dims(xp.reshape(out, (n, out_h, out_w, fn)), (0, 3, 1, 2))

    def backward(self, dout: Array) -> Array:
        xp = array_namespace(dout)
        fn, c, fh, fw = self.W.shape
        dout = xp.reshape(xp.permute_dims(dout, (0, 2, 3, 1)), (-1, fn))
        self.db = xp.sum(dout, axis=0)
        self.dW = xp.reshape(xp.matrix_transpose(xp.matrix_transpose(self.col) @ dout), (fn, c, fh, fw))
        if not self.need_dx:
            return None
        dcol = dout @ xp.matrix_transpose(self.col_W)
        return col2im(dcol, self.x_shape, fh, fw, self.stride, self.pad)


class Pooling:
    """Max pooling over pool_h × pool_w windows. Backward routes each gradient to its window's max."""

    params: tuple[tuple[str, str], ...] = ()
    weights: tuple[str, ...] = ()
    has_train_flag = False

    def __init__(self, pool_h: int, pool_w: int, stride: int = 1, pad: int = 0) -> None:
        self.pool_h, self.pool_w, self.stride, self.pad = int(pool_h), int(pool_w), int(stride), int(pad)
        self.fast = True

    def forward(self, x: Array) -> Array:
        xp = array_namespace(x)
        if x.ndim != 4:
            raise ValueError(f"Pooling: expected input (N, C, H, W), got shape {tuple(x.shape)}")
        n, c, h, w = x.shape
        out_h = out_size(h, self.pool_h, self.stride, self.pad)
        out_w = out_size(w, self.pool_w, self.stride, self.pad)
        col = unfold(x, self.pool_h, self.pool_w, self.stride, self.pad, self.fast)
        col = xp.reshape(col, (-1, self.pool_h * self.pool_w))
        self.x_shape = tuple(x.shape)
        self.arg_max = xp.argmax(col, axis=1)
        out = xp.max(col, axis=1)
        return xp.permute_dims(xp.reshape(out, (n, out_h, out_w, c)), (0, 3, 1, 2))

    def backward(self, dout: Array) -> Array:
        xp = array_namespace(dout)
        size = self.pool_h * self.pool_w
        dout = xp.reshape(xp.permute_dims(dout, (0, 2, 3, 1)), (-1, 1))
        window = xp.reshape(xp.arange(size, device=dout.device), (1, size))
        hit = xp.astype(xp.reshape(self.arg_max, (-1, 1)) == window, dout.dtype)
        dcol = xp.reshape(hit * dout, (-1, self.x_shape[1] * size))
        return col2im(dcol, self.x_shape, self.pool_h, self.pool_w, self.stride, self.pad)
