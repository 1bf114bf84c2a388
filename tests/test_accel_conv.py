"""im2col, pooling and the fused conv block: fast and plain paths against the book's definitions.

- the transposed im2col/col2im (plain slicing and, where the library has strided views, one
  strided copy) vs the book's im2col/col2im;
- max pooling vs the book's im2col + argmax pooling, ties and overlaps included;
- the fused Convolution → ReLU → max-pool block vs the three layers, and nets with and without it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tests.helpers import labels, randn
from xpnet import accel, backend, conv, fusion, nets, optim
from xpnet.accel.im2col import strided_im2col_t
from xpnet.backend import Device, to_device, to_host
from xpnet.layers import Relu

GEOMETRIES = [(1, 0, 3), (2, 1, 3), (1, 1, 2), (2, 0, 5), (3, 2, 3), (1, 0, 1)]


def book_im2col(x: np.ndarray, fh: int, fw: int, stride: int, pad: int) -> np.ndarray:
    """The book's im2col, written independently here in NumPy as the reference."""
    n, c, h, w = x.shape
    oh, ow = (h + 2 * pad - fh) // stride + 1, (w + 2 * pad - fw) // stride + 1
    img = np.pad(x, [(0, 0), (0, 0), (pad, pad), (pad, pad)])
    col = np.zeros((n, c, fh, fw, oh, ow), dtype=x.dtype)
    for y in range(fh):
        for x0 in range(fw):
            col[:, :, y, x0, :, :] = img[:, :, y:y + stride * oh:stride, x0:x0 + stride * ow:stride]
    return col.transpose(0, 4, 5, 1, 2, 3).reshape(n * oh * ow, -1)


@pytest.mark.parametrize(("stride", "pad", "fh"), GEOMETRIES)
def test_im2col_plain_strided_and_transposed_match_the_book(dev: Device, stride: int, pad: int, fh: int) -> None:
    x = randn(dev, 2, 3, 9, 8)
    book = book_im2col(to_host(x), fh, fh, stride, pad)
    np.testing.assert_array_equal(to_host(conv.im2col(x, fh, fh, stride, pad)), book)
    np.testing.assert_array_equal(to_host(conv.im2col_t(x, fh, fh, stride, pad)), book.T)
    with accel.portable_only():
        np.testing.assert_array_equal(to_host(conv.im2col_t(x, fh, fh, stride, pad)), book.T)
    if accel.native(x) is not None:  # NumPy and CuPy: the strided copy the GPU uses
        oh, ow = conv.out_size(9, fh, stride, pad), conv.out_size(8, fh, stride, pad)
        img = conv.pad_image(x, pad)
        np.testing.assert_array_equal(to_host(strided_im2col_t(img, fh, fh, stride, oh, ow)), book.T)


@pytest.mark.parametrize(("stride", "pad", "fh"), GEOMETRIES)
def test_col2im_is_the_adjoint_of_im2col(dev: Device, stride: int, pad: int, fh: int) -> None:
    """<im2col(x), c> = <x, col2im(c)> for both layouts: col2im adds every patch back where it came from."""
    shape = (2, 3, 9, 8)
    x = randn(dev, *shape, seed=4)
    oh, ow = conv.out_size(9, fh, stride, pad), conv.out_size(8, fh, stride, pad)
    col = randn(dev, 2 * oh * ow, 3 * fh * fh, seed=5)
    back = conv.col2im(col, shape, fh, fh, stride, pad)
    assert tuple(back.shape) == shape
    xp = dev.xp
    assert float(xp.sum(conv.im2col(x, fh, fh, stride, pad) * col)) == pytest.approx(float(xp.sum(x * back)),
                                                                                    rel=1e-12)
    back_t = conv.col2im_t(xp.asarray(col.T, copy=True), shape, fh, fh, stride, pad)
    np.testing.assert_allclose(to_host(back_t), to_host(back), rtol=1e-13, atol=1e-13)


def book_pooling(x: np.ndarray, dout: np.ndarray, ph: int, pw: int, stride: int, pad: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The book's Pooling: im2col, max and argmax per row, col2im of the routed gradient (NumPy)."""
    n, c, h, w = x.shape
    oh, ow = conv.out_size(h, ph, stride, pad), conv.out_size(w, pw, stride, pad)
    col = book_im2col(x, ph, pw, stride, pad).reshape(-1, ph * pw)
    arg = np.argmax(col, axis=1)
    out = np.max(col, axis=1).reshape(n, oh, ow, c).transpose(0, 3, 1, 2)
    dmax = np.zeros((dout.size, ph * pw))
    dmax[np.arange(arg.size), arg] = dout.transpose(0, 2, 3, 1).ravel()
    dx = to_host(conv.col2im(dmax.reshape(n * oh * ow, -1), x.shape, ph, pw, stride, pad))
    return out, dx


@pytest.mark.parametrize(("size", "stride", "pad"), [(2, 2, 0), (3, 1, 0), (2, 1, 1), (3, 2, 1), (2, 3, 0)])
@pytest.mark.parametrize("ties", [False, True])
def test_pooling_matches_the_books_argmax_pooling(dev: Device, size: int, stride: int, pad: int, ties: bool) -> None:
    host = np.random.default_rng(3).standard_normal((2, 3, 7, 7))
    if ties:  # few distinct values: many windows hold their max twice; the first one must win
        host = np.floor(host * 1.5)
    dout_shape = (2, 3, conv.out_size(7, size, stride, pad), conv.out_size(7, size, stride, pad))
    dout = np.random.default_rng(4).standard_normal(dout_shape)
    out_ref, dx_ref = book_pooling(host, dout, size, size, stride, pad)
    layer = conv.Pooling(size, size, stride=stride, pad=pad)
    np.testing.assert_array_equal(to_host(layer.forward(to_device(host, dev))), out_ref)
    np.testing.assert_allclose(to_host(layer.backward(to_device(dout, dev))), dx_ref, rtol=1e-13, atol=1e-13)


# -- the fused Convolution → ReLU → max-pool block ------------------------------------------------------

def conv_nets(dev: Device, fuse: bool) -> list[nets.Sequential]:
    """Conv nets whose pooling fits the block, including sizes the pooling does not tile; in the deep
    one every conv → ReLU → pool run is fused, although nets only fuse the first (the input gradient)."""
    kw: dict[str, Any] = {"device": dev, "dtype": "float64", "seed": 7}
    made = [
        nets.SimpleConvNet((2, 9, 9), {"filter_num": 3, "filter_size": 3}, hidden_size=5, output_size=4,
                           weight_init_std=0.3, **kw),  # 7×7 conv output: the 2×2 pooling drops a row and a column
        nets.SimpleConvNet((1, 10, 10), {"filter_num": 2, "filter_size": 3, "stride": 2, "pad": 2}, hidden_size=5,
                           output_size=4, weight_init_std=0.3, weight_decay_lambda=0.1, **kw),
        nets.DeepConvNet((1, 8, 8), *[{"filter_num": 2}] * 6, hidden_size=5, output_size=4, dropout_ratio=0.0, **kw),
    ]
    for net in made:
        net.fuse = fuse
    if fuse:
        made[2].plan = fusion.plan(made[2].layers, every=True)
    return made


def test_conv_nets_run_fused_blocks() -> None:
    simple, _, deep = conv_nets(backend.cpu(), True)
    assert [type(b).__name__ for b in simple.plan][:2] == ["ConvReluPool", "Flatten"]
    # A net fuses only runs whose conv needs no input gradient: the inner ones are not worth it.
    assert not any(isinstance(b, fusion.ConvReluPool) for b in fusion.plan(deep.layers))
    assert sum(isinstance(b, fusion.ConvReluPool) for b in deep.plan) == 3  # conv_nets forced them
    assert [type(layer).__name__ for layer in simple.layers][:3] == ["Convolution", "Relu", "Pooling"]
    assert fusion.has_fused_block(simple)
    simple.fuse = False
    assert not fusion.has_fused_block(simple) and simple.plan is simple.layers


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_fused_and_unfused_conv_nets_train_identically(dev: Device, name: str) -> None:
    for fused, plain in zip(conv_nets(dev, True), conv_nets(dev, False), strict=True):
        opt_f, opt_p = optim.create(name, 0.05), optim.create(name, 0.05)
        losses = []
        for net, opt in ((fused, opt_f), (plain, opt_p)):
            out = []
            for i in range(3):
                x, t = randn(dev, 5, *net.input_shape, seed=i), labels(dev, 5, 4, seed=i)
                opt.update(net.params, net.gradient(x, t))
                out.append(float(net.last_loss))
            losses.append(out)
        np.testing.assert_allclose(losses[0], losses[1], rtol=1e-12)
        for k in plain.params:
            np.testing.assert_allclose(to_host(fused.params[k]), to_host(plain.params[k]), rtol=1e-11, atol=1e-13,
                                       err_msg=f"{type(plain).__name__}: {k}")


@pytest.mark.parametrize(("k", "stride", "pad"), [(2, 1, 0), (3, 1, 1), (2, 2, 1)])
def test_fused_block_matches_the_three_layers_with_ties(dev: Device, k: int, stride: int, pad: int) -> None:
    """Integer inputs give many equal values (and many windows that are all ≤ 0): the first max must win."""
    host = np.floor(np.random.default_rng(5).standard_normal((3, 2, 11, 10)) * 2.0)
    W = np.floor(np.random.default_rng(6).standard_normal((4, 2, 3, 3)) * 1.5)
    b = np.array([0.0, 1.0, -1.0, 0.5])
    x = to_device(host, dev)

    def layers() -> tuple[conv.Convolution, Relu, conv.Pooling]:
        return conv.Convolution(to_device(W, dev), to_device(b, dev), stride, pad), Relu(), conv.Pooling(k, k, k)

    c1, r1, p1 = layers()
    y_ref = p1.forward(r1.forward(c1.forward(x)))
    c2, _, p2 = layers()
    block = fusion.ConvReluPool(c2, p2)
    y = block.forward(x)
    np.testing.assert_array_equal(to_host(y), to_host(y_ref))
    dout = to_device(np.random.default_rng(7).standard_normal(tuple(y.shape)), dev)
    dx_ref, dx = c1.backward(r1.backward(p1.backward(dout))), block.backward(dout)
    np.testing.assert_allclose(to_host(dx), to_host(dx_ref), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(to_host(c2.dW), to_host(c1.dW), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(to_host(c2.db), to_host(c1.db), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("block", "stride", "pad", "fh"), [(2, 1, 0, 3), (3, 1, 1, 2), (2, 2, 1, 3)])
def test_window_im2col_is_a_column_permutation_and_col2im_its_adjoint(
        dev: Device, block: int, stride: int, pad: int, fh: int) -> None:
    x = randn(dev, 2, 3, 9, 8)
    n, oh, ow = 2, conv.out_size(9, fh, stride, pad), conv.out_size(8, fh, stride, pad)
    bh, bw = oh // block, ow // block
    plain = to_host(conv.im2col_t(x, fh, fh, stride, pad)).reshape(-1, n, oh, ow)
    ordered = fusion.window_im2col_t(x, fh, fh, stride, pad, block)
    expect = plain[:, :, :bh * block, :bw * block].reshape(-1, n, bh, block, bw, block).transpose(0, 3, 5, 1, 2, 4)
    np.testing.assert_array_equal(to_host(ordered), expect.reshape(plain.shape[0], -1))
    with accel.portable_only():  # the slicing version (what array_api_strict always runs)
        np.testing.assert_array_equal(to_host(fusion.window_im2col_t(x, fh, fh, stride, pad, block)),
                                      to_host(ordered))
    cols = randn(dev, *ordered.shape, seed=9)
    lhs = float(dev.xp.sum(ordered * cols))
    rhs = float(dev.xp.sum(x * fusion.window_col2im_t(cols, tuple(x.shape), fh, fh, stride, pad, block)))
    assert lhs == pytest.approx(rhs, rel=1e-12)  # <im2col_t(x), c> = <x, col2im_t(c)>
