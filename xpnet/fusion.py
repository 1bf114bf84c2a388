"""The fused Convolution → ReLU → k×k max-pool block, and the plan that puts it into a net.

Same function and same gradients as the three layers, in a pooling-friendly order: the
convolution's output pixels are grouped by their position inside the pooling window
(:func:`window_im2col_t`), so the window max is an element-wise maximum of k² contiguous
blocks and its backward pass writes whole blocks — no strided passes. The bias and ReLU come after
the pooling, on k² times fewer numbers: max commutes with both, and a window whose max is ≤ 0
passes no gradient either way. Output pixels no window covers are not computed. The gradient goes
to the first position holding the window's maximum before the bias is added; the three layers
compare after it, which can differ where rounding makes two values within one ulp equal. The
backward pass never builds the gradient of the whole convolution output (three quarters zeros for
2×2 windows): each window position's share goes through the products while it is in cache
(SimpleConvNet's step: 5.53 → 4.96 ms, medians of 6 alternating processes).

Nets use it only where the convolution needs no input gradient (the first layer): adding a
window-major gradient back into the image strides by k and is slower than the plain layout's
(measured: DeepConvNet's fused inner blocks made its step ~10% slower).

Why this floor: the block is made of the layers it fuses (:mod:`xpnet.conv`, :mod:`xpnet.layers`),
so it sits above them and below :mod:`xpnet.nets`, which runs the plan; the library-specific
pieces it uses (products into flat views, the strided copy) come from :mod:`xpnet.accel` below.
"""

from __future__ import annotations

from typing import Any

from xpnet import accel
from xpnet.accel.im2col import strided_im2col_t
from xpnet.backend import array_namespace
from xpnet.conv import Convolution, Pooling, out_size, pad_image
from xpnet.layer import Layer
from xpnet.layers import Relu

Array = Any


def _block_slices(filter_h: int, filter_w: int, stride: int, k: int, bh: int, bw: int
                  ) -> list[tuple[int, int, int, int, slice, slice]]:
    """For filter position (y, x) and position (py, px) inside a k×k pooling window: the image slices
    that feed the output pixels at that window position."""
    step = stride * k
    out = []
    for y in range(filter_h):
        for x in range(filter_w):
            for py in range(k):
                for px in range(k):
                    r, c = y + stride * py, x + stride * px
                    out.append((y, x, py, px, slice(r, r + step * (bh - 1) + 1, step),
                                slice(c, c + step * (bw - 1) + 1, step)))
    return out


def window_im2col_t(x: Array, filter_h: int, filter_w: int, stride: int, pad: int, k: int) -> Array:
    """``im2col_t`` with the columns in pooling-window order: (C·FH·FW, k·k·N·bh·bw).

    Output pixel (n, k·i + py, k·j + px) goes to column ((py·k + px)·N + n)·bh·bw + i·bw + j, so each
    position inside the window is one contiguous block of columns; pixels no window covers are left out.
    """
    xp = array_namespace(x)
    n, c, h, w = x.shape
    bh, bw = out_size(h, filter_h, stride, pad) // k, out_size(w, filter_w, stride, pad) // k
    img = pad_image(x, pad)
    if accel.native(img) is not None:  # NumPy and CuPy: one strided copy beats k-strided slices
        return strided_im2col_t(img, filter_h, filter_w, stride, bh, bw, block=k)
    cols = xp.empty((c, filter_h, filter_w, k, k, n, bh, bw), dtype=x.dtype, device=x.device)
    for y, x0, py, px, rows, columns in _block_slices(filter_h, filter_w, stride, k, bh, bw):
        cols[:, y, x0, py, px, :, :, :] = xp.permute_dims(img[:, :, rows, columns], (1, 0, 2, 3))
    return xp.reshape(cols, (c * filter_h * filter_w, k * k * n * bh * bw))


def window_col2im_t(cols: Array, input_shape: tuple[int, ...], filter_h: int, filter_w: int,
                    stride: int, pad: int, k: int) -> Array:
    """The adjoint of :func:`window_im2col_t`, returned as an (N, C, H, W) view of channel-major memory."""
    xp = array_namespace(cols)
    n, c, h, w = input_shape
    bh, bw = out_size(h, filter_h, stride, pad) // k, out_size(w, filter_w, stride, pad) // k
    cols = xp.reshape(cols, (c, filter_h, filter_w, k, k, n, bh, bw))
    img = xp.zeros((c, n, h + 2 * pad, w + 2 * pad), dtype=cols.dtype, device=cols.device)
    for y, x0, py, px, rows, columns in _block_slices(filter_h, filter_w, stride, k, bh, bw):
        img[:, :, rows, columns] += cols[:, y, x0, py, px, :, :, :]
    return xp.permute_dims(img[:, :, pad:pad + h, pad:pad + w], (1, 0, 2, 3))


class ConvReluPool(Layer):
    """Convolution → ReLU → k×k max pooling with stride k as one block; the convolution keeps its
    parameters and receives its gradients (``conv.dW``, ``conv.db``) as if it had run alone."""

    def __init__(self, conv: Convolution, pool: Pooling) -> None:
        if not fits(pool):
            raise ValueError("ConvReluPool needs k×k pooling windows with stride k and no padding")
        self.conv, self.pool, self.k = conv, pool, pool.pool_h

    def forward(self, x: Array) -> Array:
        xp = array_namespace(x)
        conv, k = self.conv, self.k
        fn, _, fh, fw = conv.W.shape
        n, out_h, out_w = conv.output_shape(x)
        bh, bw = out_h // k, out_w // k  # the pooled size
        conv.x_shape = tuple(x.shape)
        conv.col = window_im2col_t(x, fh, fw, conv.stride, conv.pad, k)
        out = xp.reshape(conv.W, (fn, -1)) @ conv.col
        self.blocks = xp.reshape(out, (fn, k * k, n * bh * bw))
        m = self.blocks[:, 0, :]
        for j in range(1, k * k):
            m = xp.maximum(m, self.blocks[:, j, :])
        self.max = m
        # The bias is the same across a window, and rounding is monotonic: adding it after the max gives
        # the same numbers on k² times fewer of them.
        z = m + xp.reshape(conv.b, (fn, 1))
        self.mask = xp.astype(z > 0, x.dtype)
        return xp.permute_dims(xp.reshape(z * self.mask, (fn, n, bh, bw)), (1, 0, 2, 3))

    def backward(self, dout: Array) -> Array:
        xp = array_namespace(dout)
        conv, kk = self.conv, self.k * self.k
        fn, _, fh, fw = conv.W.shape
        d = xp.reshape(xp.permute_dims(dout, (1, 0, 2, 3)), (fn, -1)) * self.mask  # ReLU
        # Each window's gradient goes to exactly one position, so the bias gradient is the sum of d itself.
        conv.db = accel.sum(d, axis=1, out=conv.grad_view("db"))
        # Window position j's share of the gradient, g_j, goes through the products while it is fresh in
        # cache: dW = Σ_j g_j · col_jᵀ, never the whole (mostly zero) gradient of the convolution's output.
        w2 = xp.reshape(conv.W, (fn, -1))
        view = conv.grad_view("dW")  # where the net wants dW written (a view of its flat gradient buffer)
        dW = xp.reshape(view, (fn, -1)) if view is not None else None
        dcols = xp.empty_like(conv.col) if conv.need_dx else None
        cols = d.shape[1]
        taken = None  # True where an earlier window position has taken the gradient (the first max wins)
        for j in range(kk):
            hit = self.blocks[:, j, :] == self.max
            if taken is not None:
                hit = xp.logical_and(hit, xp.logical_not(taken))
            if j + 1 < kk:
                taken = hit if taken is None else xp.logical_or(taken, hit)
            g = d * xp.astype(hit, d.dtype)  # NumPy's where: 20x slower on random masks
            col_j = conv.col[:, j * cols:(j + 1) * cols]
            if j == 0:
                dW = accel.matmul(g, col_j.T, out=dW)
            else:
                dW += g @ col_j.T
            if dcols is not None:
                dcols[:, j * cols:(j + 1) * cols] = w2.T @ g
        conv.dW = view if view is not None else xp.reshape(dW, tuple(conv.W.shape))
        if dcols is None:
            return None
        return window_col2im_t(dcols, conv.x_shape, fh, fw, conv.stride, conv.pad, self.k)


def fits(pool: Any) -> bool:
    """A pooling layer the block can take: k×k windows, stride k, no padding."""
    return isinstance(pool, Pooling) and pool.pad == 0 and pool.stride == pool.pool_h == pool.pool_w


def plan(layers: list[Any], every: bool = False) -> list[Any]:
    """The layers a net runs: each Convolution → Relu → max-pool run the block can take becomes one
    ConvReluPool where it pays — the convolution needs no input gradient — or everywhere (``every``)."""
    out: list[Any] = []
    i = 0
    while i < len(layers):
        conv, relu, pool = (layers[i:i + 3] + [None, None])[:3]
        if isinstance(conv, Convolution) and (every or not conv.need_dx) and type(relu) is Relu and fits(pool):
            out.append(ConvReluPool(conv, pool))
            i += 3
        else:
            out.append(layers[i])
            i += 1
    return out


def has_fused_block(net: Any) -> bool:
    """Whether ``net`` runs at least one fused block."""
    return any(isinstance(block, ConvReluPool) for block in getattr(net, "plan", ()))
