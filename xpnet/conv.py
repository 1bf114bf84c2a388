"""Convolution and max-pooling through im2col/col2im (the book's ch. 7).

im2col unrolls every filter-sized patch into a row, so a convolution becomes a
single matrix product. ``im2col``/``col2im`` are the book's layout, one row per
patch. The layers use the same matrix transposed, ``im2col_t`` — one row per
(channel, filter row, filter column) and one column per output pixel of the
whole batch — because then every copy moves whole image rows, the convolution
is ONE matrix product for the batch, and its output comes out channel-major
(C, N, H, W) in memory: element-wise layers keep that layout, and the backward
pass reshapes it back for free. (Measured on the book's SimpleConvNet: building
the transposed matrix is ~10x faster than the book's im2col on NumPy.)

Everything here is slicing, which every Array API library has. NumPy and CuPy
can also build the patches as one strided view plus one copy (``fast_im2col_t``);
on CuPy that is one kernel launch instead of FH·FW, so it is used there; on
NumPy it is no faster than the slicing loop, which is used instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from xpnet.backend import as_strided, has_strided_views, launch_bound, matmul, reduce_sum
from xpnet.backend import namespace as array_namespace

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


def _offsets(filter_h: int, filter_w: int, stride: int, out_h: int, out_w: int
             ) -> Iterator[tuple[int, int, slice, slice]]:
    """For each position (y, x) inside the window: the slices of the image that position sees."""
    for y in range(filter_h):
        for x in range(filter_w):
            yield y, x, slice(y, y + stride * (out_h - 1) + 1, stride), slice(x, x + stride * (out_w - 1) + 1, stride)


def _block_offsets(filter_h: int, filter_w: int, stride: int, block: int, blocks_h: int, blocks_w: int
                   ) -> Iterator[tuple[int, int, int, int, slice, slice]]:
    """For each filter position (y, x) and position (py, px) inside a block × block group of output
    pixels: the slices of the image that feed the output pixels at that group position."""
    step = stride * block
    for y in range(filter_h):
        for x in range(filter_w):
            for py in range(block):
                for px in range(block):
                    r, c = y + stride * py, x + stride * px
                    yield y, x, py, px, slice(r, r + step * (blocks_h - 1) + 1, step), \
                        slice(c, c + step * (blocks_w - 1) + 1, step)


def im2col_t(x: Array, filter_h: int, filter_w: int, stride: int = 1, pad: int = 0, block: int = 1) -> Array:
    """(N, C, H, W) → (C·filter_h·filter_w, N·out_h·out_w): ``im2col(x).T``, built row block by row block.

    ``block`` = k > 1 orders the columns for k×k max pooling: output pixel (n, k·i + py, k·j + px)
    goes to column ((py·k + px)·N + n)·(out_h//k)·(out_w//k) + i·(out_w//k) + j, so each position
    inside the pooling window is one contiguous block of columns; pixels no window covers are left out.
    """
    xp = array_namespace(x)
    n, c, h, w = x.shape
    bh = out_size(h, filter_h, stride, pad) // block
    bw = out_size(w, filter_w, stride, pad) // block
    img = _pad(x, pad)
    cols = xp.empty((c, filter_h, filter_w, block, block, n, bh, bw), dtype=x.dtype, device=x.device)
    for y, x0, py, px, rows, columns in _block_offsets(filter_h, filter_w, stride, block, bh, bw):
        cols[:, y, x0, py, px, :, :, :] = xp.permute_dims(img[:, :, rows, columns], (1, 0, 2, 3))
    return xp.reshape(cols, (c * filter_h * filter_w, block * block * n * bh * bw))


def fast_im2col_t(x: Array, filter_h: int, filter_w: int, stride: int = 1, pad: int = 0, block: int = 1) -> Array:
    """Same result as :func:`im2col_t`, copied out of one strided view of the padded input (NumPy/CuPy)."""
    xp = array_namespace(x)
    n, c, h, w = x.shape
    bh = out_size(h, filter_h, stride, pad) // block
    bw = out_size(w, filter_w, stride, pad) // block
    img = _pad(x, pad)
    s0, s1, s2, s3 = img.strides
    step = stride * block
    patches = as_strided(img, (c, filter_h, filter_w, block, block, n, bh, bw),
                         (s1, s2, s3, s2 * stride, s3 * stride, s0, s2 * step, s3 * step))
    return xp.reshape(patches, (c * filter_h * filter_w, block * block * n * bh * bw))  # copies, in C order


def col2im_t(cols: Array, input_shape: tuple[int, ...], filter_h: int, filter_w: int,
             stride: int = 1, pad: int = 0, block: int = 1) -> Array:
    """The adjoint of :func:`im2col_t`: add every window position's block back into the image.

    The image is accumulated channel-major, (C, N, H, W), so each addition reads one contiguous
    block of ``cols``; it is returned as an (N, C, H, W) view of that memory.
    """
    xp = array_namespace(cols)
    n, c, h, w = input_shape
    bh = out_size(h, filter_h, stride, pad) // block
    bw = out_size(w, filter_w, stride, pad) // block
    cols = xp.reshape(cols, (c, filter_h, filter_w, block, block, n, bh, bw))
    img = xp.zeros((c, n, h + 2 * pad, w + 2 * pad), dtype=cols.dtype, device=cols.device)
    for y, x0, py, px, rows, columns in _block_offsets(filter_h, filter_w, stride, block, bh, bw):
        img[:, :, rows, columns] += cols[:, y, x0, py, px, :, :, :]
    return xp.permute_dims(img[:, :, pad:pad + h, pad:pad + w], (1, 0, 2, 3))


def fast_im2col(x: Array, filter_h: int, filter_w: int, stride: int = 1, pad: int = 0) -> Array:
    """Same result as :func:`im2col`, through the strided-view path (a transposed view of ``fast_im2col_t``)."""
    return fast_im2col_t(x, filter_h, filter_w, stride, pad).T


def unfold_t(x: Array, filter_h: int, filter_w: int, stride: int, pad: int, fast: bool = True,
             block: int = 1) -> Array:
    """:func:`im2col_t` through the strided view where that is faster, else slicing.

    Measured on NumPy: the slicing loop copies whole image rows and is as fast as the strided copy
    for ``block=1``; with ``block > 1`` its slices step by k and the single strided copy wins
    (0.85 vs 1.26 ms for the SimpleConvNet batch). On a GPU one copy is one kernel launch.
    """
    if fast and has_strided_views(x) and (launch_bound(x) or block > 1):
        return fast_im2col_t(x, filter_h, filter_w, stride, pad, block)
    return im2col_t(x, filter_h, filter_w, stride, pad, block)


def unfold(x: Array, filter_h: int, filter_w: int, stride: int, pad: int, fast: bool = True) -> Array:
    """The book's im2col layout (one row per patch), as a transposed view of :func:`unfold_t`."""
    if fast and has_strided_views(x):
        return fast_im2col(x, filter_h, filter_w, stride, pad)
    return im2col_t(x, filter_h, filter_w, stride, pad).T


class Convolution:
    """2-D convolution (cross-correlation, as in the book): W is (FN, C, FH, FW), b is (FN,)."""

    params = (("W", "dW"), ("b", "db"))
    weights = ("W",)
    has_train_flag = False
    grad_out: dict[str, Array] | None = None  # preallocated gradient arrays from a net (see layers.Layer)

    def __init__(self, W: Array, b: Array, stride: int = 1, pad: int = 0) -> None:
        self.W, self.b, self.stride, self.pad = W, b, int(stride), int(pad)
        self.dW: Array = None
        self.db: Array = None
        self.need_dx = True
        self.fast = True

    def forward(self, x: Array) -> Array:
        xp = array_namespace(x)
        fn = self.W.shape[0]
        n, out_h, out_w = self._check(x)
        self.x_shape = tuple(x.shape)
        out = self._product(x, block=1)  # (FN, N·OH·OW)
        return xp.permute_dims(xp.reshape(out, (fn, n, out_h, out_w)), (1, 0, 2, 3))

    def backward(self, dout: Array) -> Array:
        xp = array_namespace(dout)
        # (N, FN, OH, OW) → (FN, N·OH·OW): free when dout kept the forward's channel-major memory.
        return self._backward(xp.reshape(xp.permute_dims(dout, (1, 0, 2, 3)), (self.W.shape[0], -1)), block=1)

    # -- shared with ConvReluPool ---------------------------------------------------------------
    def _check(self, x: Array) -> tuple[int, int, int]:
        fn, c, fh, fw = self.W.shape
        if x.ndim != 4 or x.shape[1] != c:
            raise ValueError(f"Convolution: expected input (N, {c}, H, W), got shape {tuple(x.shape)}")
        return x.shape[0], out_size(x.shape[2], fh, self.stride, self.pad), out_size(x.shape[3], fw, self.stride,
                                                                                     self.pad)

    def _product(self, x: Array, block: int) -> Array:
        """W·cols + b for the whole batch: (FN, output pixels), pixels in ``im2col_t(..., block)`` order."""
        xp = array_namespace(x)
        fn, _, fh, fw = self.W.shape
        self.cols = unfold_t(x, fh, fw, self.stride, self.pad, self.fast, block)  # (C·FH·FW, pixels)
        out = xp.reshape(self.W, (fn, -1)) @ self.cols
        out += xp.reshape(self.b, (fn, 1))
        return out

    def _backward(self, dout: Array, block: int) -> Array:
        """Gradients from dL/d(output) laid out like :meth:`_product`'s result: (FN, pixels)."""
        xp = array_namespace(dout)
        fn, c, fh, fw = self.W.shape
        self.db = reduce_sum(dout, 1, out=self._out("db"))
        dW = self._out("dW")
        dW2 = matmul(dout, self.cols.T, out=None if dW is None else xp.reshape(dW, (fn, -1)))
        self.dW = dW if dW is not None else xp.reshape(dW2, (fn, c, fh, fw))
        if not self.need_dx:
            return None
        dcols = xp.reshape(self.W, (fn, -1)).T @ dout
        return col2im_t(dcols, self.x_shape, fh, fw, self.stride, self.pad, block)

    def _out(self, grad_attr: str) -> Array:
        return None if self.grad_out is None else self.grad_out.get(grad_attr)


class ConvReluPool:
    """Convolution → ReLU → k×k max pooling with stride k, run as one block (a fast path nets use).

    The same function and the same gradients as the three layers, in a pooling-friendly order:
    the convolution's output pixels are grouped by their position inside the pooling window
    (``im2col_t(..., block=k)``), so the window max is an element-wise maximum of k² contiguous
    blocks and its backward pass writes whole blocks — no strided passes. ReLU runs after the
    pooling, on k² times fewer numbers: max and ReLU commute, and a window whose max is ≤ 0
    passes no gradient either way. Output pixels no window covers are not computed.

    Nets use it only where the convolution needs no input gradient (the first layer): adding a
    window-major gradient back into the image strides by k and is slower than the plain layout's
    (measured: DeepConvNet's fused inner blocks made its step ~10% slower).
    """

    params: tuple[tuple[str, str], ...] = ()  # the convolution keeps its parameters and gradients
    has_train_flag = False

    def __init__(self, conv: Convolution, pool: Pooling) -> None:
        if not (pool.pad == 0 and pool.stride == pool.pool_h == pool.pool_w):
            raise ValueError("ConvReluPool needs k×k pooling windows with stride k and no padding")
        self.conv, self.pool, self.k = conv, pool, pool.pool_h

    def forward(self, x: Array) -> Array:
        xp = array_namespace(x)
        conv, k = self.conv, self.k
        fn = conv.W.shape[0]
        n, out_h, out_w = conv._check(x)
        bh, bw = out_size(out_h, k, k, 0), out_size(out_w, k, k, 0)  # the pooled size
        conv.x_shape = tuple(x.shape)
        self.blocks = xp.reshape(conv._product(x, block=k), (fn, k * k, n * bh * bw))
        m = self.blocks[:, 0, :]
        for j in range(1, k * k):
            m = xp.maximum(m, self.blocks[:, j, :])
        self.max = m
        self.mask = xp.astype(m > 0, x.dtype)
        return xp.permute_dims(xp.reshape(m * self.mask, (fn, n, bh, bw)), (1, 0, 2, 3))

    def backward(self, dout: Array) -> Array:
        xp = array_namespace(dout)
        fn, kk = self.conv.W.shape[0], self.k * self.k
        d = xp.reshape(xp.permute_dims(dout, (1, 0, 2, 3)), (fn, -1)) * self.mask  # ReLU
        dblocks = xp.empty_like(self.blocks)
        free = None  # 1 where no earlier window position has taken the gradient yet (the first max wins)
        for j in range(kk):
            hit = xp.astype(self.blocks[:, j, :] == self.max, dout.dtype)
            if free is not None:
                hit *= free
            if j + 1 < kk:
                if free is None:
                    free = 1.0 - hit
                else:
                    free -= hit
            hit *= d
            dblocks[:, j, :] = hit
        return self.conv._backward(xp.reshape(dblocks, (fn, -1)), block=self.k)


class Pooling:
    """Max pooling over pool_h × pool_w windows. Backward routes each gradient to its window's max
    (the first one, on ties, like the book's argmax).

    No im2col: the window maximum is a running ``maximum`` over one strided slice per window
    position, and the backward pass writes each position's share straight into that slice.
    """

    params: tuple[tuple[str, str], ...] = ()
    weights: tuple[str, ...] = ()
    has_train_flag = False

    def __init__(self, pool_h: int, pool_w: int, stride: int = 1, pad: int = 0) -> None:
        self.pool_h, self.pool_w, self.stride, self.pad = int(pool_h), int(pool_w), int(stride), int(pad)

    def _windows(self) -> list[tuple[slice, slice]]:
        _, _, h, w = self.img.shape
        out_h, out_w = out_size(h, self.pool_h, self.stride, 0), out_size(w, self.pool_w, self.stride, 0)
        return [(rows, cols) for _, _, rows, cols in _offsets(self.pool_h, self.pool_w, self.stride, out_h, out_w)]

    def forward(self, x: Array) -> Array:
        xp = array_namespace(x)
        if x.ndim != 4:
            raise ValueError(f"Pooling: expected input (N, C, H, W), got shape {tuple(x.shape)}")
        out_size(x.shape[2], self.pool_h, self.stride, self.pad)  # raises when the window does not fit
        out_size(x.shape[3], self.pool_w, self.stride, self.pad)
        self.x_shape = tuple(x.shape)
        self.img = _pad(x, self.pad)  # zero padding takes part in the max, as with the book's im2col
        (rows, cols), *rest = self._windows()
        out = self.img[:, :, rows, cols]
        for rows, cols in rest:
            out = xp.maximum(out, self.img[:, :, rows, cols])
        self.out = out if rest else xp.asarray(out, copy=True)
        return out

    def backward(self, dout: Array) -> Array:
        xp = array_namespace(dout)
        windows = self._windows()
        overlap = self.stride < self.pool_h or self.stride < self.pool_w
        dimg = xp.zeros_like(self.img)
        free = None  # 1 where no earlier window position has taken the gradient yet
        for k, (rows, cols) in enumerate(windows):
            hit = xp.astype(self.img[:, :, rows, cols] == self.out, dout.dtype)
            if free is not None:
                hit *= free
            if k + 1 < len(windows):
                if free is None:
                    free = 1.0 - hit
                else:
                    free -= hit
            if overlap:
                dimg[:, :, rows, cols] += dout * hit
            else:
                dimg[:, :, rows, cols] = dout * hit
        if self.pad:
            _, _, h, w = self.x_shape
            return dimg[:, :, self.pad:self.pad + h, self.pad:self.pad + w]
        return dimg
