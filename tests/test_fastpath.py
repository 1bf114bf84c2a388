"""Fast paths give the same numbers as the portable ones (issue 6).

- flat-buffer nets vs per-key nets: same parameters after several steps, for every optimizer;
- optimizer state moves between the flat and the per-key layout (state_dict both ways);
- the transposed im2col (fast strided view and portable slicing) vs the book's im2col/col2im;
- slice-wise max pooling vs the book's im2col + argmax pooling, ties and overlaps included;
- the fused softmax cross-entropy vs the unfused book composition;
- NumPy's ``out=`` paths vs ``backend.portable_only()``;
- everything stays float32 in a float32 net;
- CuPy's fused kernels vs the portable formulas (skipped, with the reason, where CUDA is absent).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.helpers import FixedRNG, labels, randn
from xpnet import backend, conv, nets, optim
from xpnet import functions as F
from xpnet.backend import Device, FlatParams, to_device, to_host
from xpnet.layers import Relu, Sigmoid, SoftmaxWithLoss, Tanh

OPTIMIZERS = list(optim.OPTIMIZERS)


def build(kind: str, dev: Device, flat: bool | None, dtype: str = "float64") -> nets.Sequential:
    """Small versions of the book's nets, with every kind of parameterised layer and weight decay."""
    kw: dict[str, Any] = {"device": dev, "dtype": dtype, "seed": 4, "flat": flat}
    if kind == "mlp":
        net = nets.MultiLayerNet(12, [9, 7], 4, use_batchnorm=True, use_dropout=True, dropout_ratio=0.2,
                                 weight_decay_lambda=0.05, **kw)
        for layer in net.layers:
            if hasattr(layer, "rng"):
                layer.rng = FixedRNG(dev)
        return net
    if kind == "conv":
        return nets.SimpleConvNet((2, 8, 8), {"filter_num": 3, "filter_size": 3, "pad": 1}, hidden_size=6,
                                  output_size=4, weight_init_std=0.3, weight_decay_lambda=0.02, **kw)
    return nets.DeepConvNet((1, 8, 8), *[{"filter_num": 2}] * 6, hidden_size=5, output_size=4, dropout_ratio=0.0,
                            **kw)


def batch(net: nets.Sequential, seed: int) -> tuple[Any, Any]:
    return randn(net.device, 6, *net.input_shape, seed=seed, dtype=net.dtype), labels(net.device, 6, 4, seed=seed)


def train(net: nets.Sequential, opt: optim.Optimizer, steps: int = 4) -> list[float]:
    losses = []
    for i in range(steps):
        x, t = batch(net, i)
        opt.update(net.params, net.gradient(x, t))
        losses.append(float(net.last_loss))
    return losses


@pytest.mark.parametrize("kind", ["mlp", "conv", "deep"])
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_flat_and_per_key_nets_train_identically(dev: Device, kind: str, name: str) -> None:
    flat, per_key = build(kind, dev, flat=True), build(kind, dev, flat=False)
    assert isinstance(flat.params, FlatParams) and not isinstance(per_key.params, FlatParams)
    assert list(flat.params) == list(per_key.params)  # the book's names, in the book's order
    opt_flat, opt_keys = optim.create(name, 0.05), optim.create(name, 0.05)
    losses_flat, losses_keys = train(flat, opt_flat), train(per_key, opt_keys)
    np.testing.assert_allclose(losses_flat, losses_keys, rtol=1e-10)
    assert opt_flat._flat or not opt_flat.slots, "the flat net must take the one-buffer update"
    for k in flat.params:
        np.testing.assert_allclose(to_host(flat.params[k]), to_host(per_key.params[k]), rtol=1e-12, atol=1e-15,
                                   err_msg=f"{kind}/{name}: {k}")


def test_flat_params_are_views_of_one_buffer_the_layers_use(dev: Device) -> None:
    net = build("conv", dev, flat=None)
    assert backend.views_share_memory(dev)
    params = net.params
    assert isinstance(params, FlatParams) and params.intact()
    assert params.flat.shape[0] == sum(int(np.prod(p.shape)) for p in params.values())
    conv_layer = net.layers[0]
    assert conv_layer.W is params["W1"]
    params.flat[...] = 0.0 * params.flat + 1.0  # through the buffer ...
    assert float(dev.xp.min(conv_layer.W)) == 1.0  # ... into the layer's own array
    # Weights lead the buffer, so weight decay is one slice.
    a, _ = params.span("W1")
    assert a == 0 and all(params.span(k)[0] >= net._n_decayed for k in params if k.startswith("b"))
    grads = net.gradient(*batch(net, 0))
    assert isinstance(grads, FlatParams) and grads.layout is params.layout
    assert conv_layer.dW is grads["W1"]  # the layer wrote its gradient straight into the flat view


def test_rebinding_a_param_falls_back_to_per_key_updates(dev: Device) -> None:
    net = build("mlp", dev, flat=True)
    grads = net.gradient(*batch(net, 0))
    params = net.params
    assert isinstance(params, FlatParams)
    before = to_host(params.flat, copy=True)
    replacement = params["b1"] + 0.0
    params["b1"] = replacement  # a user rebinding a key: the buffer no longer holds every parameter
    assert not params.intact()
    optim.SGD(lr=0.5).update(params, grads)
    b1 = slice(*params.span("b1"))
    w1 = slice(*params.span("W1"))
    after = to_host(params.flat)
    np.testing.assert_allclose(to_host(replacement), before[b1] - 0.5 * to_host(grads["b1"]).ravel(), rtol=1e-12)
    np.testing.assert_array_equal(after[b1], before[b1])  # the detached view was left alone
    np.testing.assert_allclose(after[w1], before[w1] - 0.5 * to_host(grads["W1"]).ravel(), rtol=1e-12)


def test_a_layer_that_allocates_its_own_gradient_still_works_in_a_flat_net(dev: Device) -> None:
    net = build("mlp", dev, flat=True)
    reference = build("mlp", dev, flat=False)
    net.layers[0].grad_out = None  # as a layer written without grad_out support would behave
    g, ref = net.gradient(*batch(net, 1)), reference.gradient(*batch(reference, 1))
    for k in ref:
        np.testing.assert_allclose(to_host(g[k]), to_host(ref[k]), rtol=1e-12, err_msg=k)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_optimizer_state_moves_between_flat_and_per_key(dev: Device, name: str) -> None:
    """Train 3 steps flat, save, resume per-key (and the reverse): both go on exactly alike."""
    for first, second in ((True, False), (False, True)):
        a, opt_a = build("mlp", dev, flat=first), optim.create(name, 0.05)
        train(a, opt_a, 3)
        b, opt_b = build("mlp", dev, flat=second), optim.create(name, 0.05)
        b.load_state_dict(a.state_dict())
        opt_b.load_state_dict(opt_a.state_dict())
        assert set(opt_b.state_dict()) == set(opt_a.state_dict())
        for net, opt in ((a, opt_a), (b, opt_b)):
            for i in range(3, 5):
                x, t = batch(net, i)
                opt.update(net.params, net.gradient(x, t))
        for k in a.params:
            np.testing.assert_allclose(to_host(b.params[k]), to_host(a.params[k]), rtol=1e-12, atol=1e-15,
                                       err_msg=f"{name} flat={first}->{second}: {k}")


def test_numpy_out_paths_match_portable_only() -> None:
    dev = backend.cpu()
    fast_net, slow_net = build("conv", dev, flat=True), build("conv", dev, flat=True)
    fast_opt, slow_opt = optim.Adam(0.01), optim.Adam(0.01)
    fast = train(fast_net, fast_opt)
    with backend.portable_only():
        assert not backend.has_out(fast_net.params.flat)
        slow = train(slow_net, slow_opt)
    assert backend.has_out(fast_net.params.flat)
    np.testing.assert_allclose(fast, slow, rtol=1e-12)
    for k in fast_net.params:
        np.testing.assert_allclose(to_host(fast_net.params[k]), to_host(slow_net.params[k]), rtol=1e-12, err_msg=k)


# -- im2col / col2im ------------------------------------------------------------------------------

GEOMETRIES = [(1, 0, 3), (2, 1, 3), (1, 1, 2), (2, 0, 5), (3, 2, 3), (1, 0, 1)]


@pytest.mark.parametrize(("stride", "pad", "fh"), GEOMETRIES)
def test_transposed_im2col_fast_and_portable_match_the_book(dev: Device, stride: int, pad: int, fh: int) -> None:
    x = randn(dev, 2, 3, 9, 8)
    book = to_host(conv.im2col(x, fh, fh, stride, pad))
    portable = conv.im2col_t(x, fh, fh, stride, pad)
    np.testing.assert_array_equal(to_host(portable), book.T)
    np.testing.assert_array_equal(to_host(conv.unfold_t(x, fh, fh, stride, pad)), book.T)
    np.testing.assert_array_equal(to_host(conv.unfold(x, fh, fh, stride, pad, fast=False)), book)
    if backend.has_strided_views(x):
        np.testing.assert_array_equal(to_host(conv.fast_im2col_t(x, fh, fh, stride, pad)), book.T)


@pytest.mark.parametrize(("stride", "pad", "fh"), GEOMETRIES)
def test_transposed_col2im_matches_the_book(dev: Device, stride: int, pad: int, fh: int) -> None:
    shape = (2, 3, 9, 8)
    oh, ow = conv.out_size(9, fh, stride, pad), conv.out_size(8, fh, stride, pad)
    col = randn(dev, 2 * oh * ow, 3 * fh * fh, seed=5)
    book = to_host(conv.col2im(col, shape, fh, fh, stride, pad))
    mine = conv.col2im_t(dev.xp.asarray(col.T, copy=True), shape, fh, fh, stride, pad)
    assert tuple(mine.shape) == shape
    np.testing.assert_allclose(to_host(mine), book, rtol=1e-13, atol=1e-13)


# -- pooling ---------------------------------------------------------------------------------------

def book_pooling(x: np.ndarray, dout: np.ndarray, ph: int, pw: int, stride: int, pad: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The book's Pooling: im2col, max and argmax per row, col2im of the routed gradient (NumPy)."""
    n, c, h, w = x.shape
    oh, ow = conv.out_size(h, ph, stride, pad), conv.out_size(w, pw, stride, pad)
    col = conv.im2col(x, ph, pw, stride, pad).reshape(-1, ph * pw)
    arg = np.argmax(col, axis=1)
    out = np.max(col, axis=1).reshape(n, oh, ow, c).transpose(0, 3, 1, 2)
    dmax = np.zeros((dout.size, ph * pw))
    dmax[np.arange(arg.size), arg] = dout.transpose(0, 2, 3, 1).ravel()
    dx = conv.col2im(dmax.reshape(n * oh * ow, -1), x.shape, ph, pw, stride, pad)
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


# -- the fused loss ------------------------------------------------------------------------------------

@pytest.mark.parametrize("one_hot", [False, True])
def test_fused_softmax_loss_matches_the_unfused_book_composition(dev: Device, one_hot: bool) -> None:
    x = randn(dev, 7, 5, scale=4.0)
    t = labels(dev, 7, 5)
    t_hot = F.one_hot(t, 5, x.dtype)
    layer = SoftmaxWithLoss()
    loss = layer.forward(x, t_hot if one_hot else t)
    dx = layer.backward(1.0)
    y = F.softmax(x)
    # The book's cross_entropy_error adds 1e-7 inside the log: compare to that scale.
    assert float(loss) == pytest.approx(float(F.cross_entropy_error(y, t)), rel=1e-4)
    assert float(loss) == pytest.approx(float(-dev.xp.sum(t_hot * F.log_softmax(x)) / 7), rel=1e-12)
    np.testing.assert_allclose(to_host(dx), to_host((y - t_hot) / 7), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(to_host(layer.y), to_host(y), rtol=1e-12)


def test_fused_softmax_loss_still_names_a_bad_label(dev: Device) -> None:
    x = randn(dev, 3, 4)
    with pytest.raises(ValueError, match=r"labels out of range.*\[0, 4\).*max 4"):
        SoftmaxWithLoss().forward(x, dev.asarray(np.array([0, 4, 1])))
    with pytest.raises(ValueError, match=r"labels out of range.*min -1"):
        SoftmaxWithLoss().forward(x, dev.asarray(np.array([0, -1, 1])))


# -- dtypes --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["mlp", "conv", "deep"])
def test_a_float32_net_stays_float32_everywhere(dev: Device, kind: str) -> None:
    """No silent promotion to float64: activations, loss, gradients, parameters and optimizer state."""
    net = build(kind, dev, flat=None, dtype="float32")
    f32 = dev.xp.float32
    seen = []
    for layer in net.layers:  # record every layer's output dtype on the way through
        forward = layer.forward

        def spy(*args: Any, _f: Any = forward, **kwargs: Any) -> Any:
            out = _f(*args, **kwargs)
            seen.append(out.dtype)
            return out

        layer.forward = spy
    opt = optim.Adam(0.01)
    x, t = batch(net, 0)
    x = dev.xp.astype(x, f32)
    for _ in range(2):
        grads = net.gradient(x, t)
        opt.update(net.params, grads)
    assert seen and all(d == f32 for d in seen), seen
    assert net.last_loss.dtype == f32
    assert all(g.dtype == f32 for g in grads.values())
    assert all(p.dtype == f32 for p in net.params.values())
    assert all(s.dtype == f32 for slot in opt.state.values() for s in slot.values())


# -- backend helpers ---------------------------------------------------------------------------------

def test_out_helpers_write_in_place_or_copy_in(dev: Device) -> None:
    a, b = randn(dev, 3, 4), randn(dev, 4, 2, seed=1)
    out = dev.xp.zeros((3, 2), dtype=a.dtype, device=dev.native)
    res = backend.matmul(a, b, out=out)
    np.testing.assert_allclose(to_host(out), to_host(a @ b), rtol=1e-13)
    np.testing.assert_allclose(to_host(res), to_host(a @ b), rtol=1e-13)
    s = dev.xp.zeros(4, dtype=a.dtype, device=dev.native)
    backend.reduce_sum(a, 0, out=s)
    np.testing.assert_allclose(to_host(s), to_host(dev.xp.sum(a, axis=0)), rtol=1e-13)
    assert backend.has_out(a) == (dev.backend in ("numpy", "cupy"))


def test_blas_thread_count_can_be_read_and_set() -> None:
    info = backend.blas_info()
    if info["threads"] is None:
        pytest.skip(f"NumPy's BLAS is not one xpnet can reach ({info['name']})")
    old = info["threads"]
    try:
        assert backend.set_blas_threads(1)
        assert backend.blas_info()["threads"] == 1
    finally:
        backend.set_blas_threads(old)


# -- CuPy fused kernels --------------------------------------------------------------------------------

@pytest.fixture
def cuda_dev() -> Device:
    ok, reason, _ = backend.cuda_status()
    if not ok:
        pytest.skip(f"CuPy fused kernels need CUDA: {reason}")
    return backend.device("cuda:0")


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_fused_optimizer_kernels_match_the_portable_step(cuda_dev: Device, name: str) -> None:
    params = {"W": randn(cuda_dev, 50, 30), "b": randn(cuda_dev, 30, seed=2)}
    twin = {k: v.copy() for k, v in params.items()}
    fused_opt, portable_opt = optim.create(name, 0.05), optim.create(name, 0.05)
    assert backend.fused(type(fused_opt).kernel, params["W"]) is not None
    for i in range(5):
        grads = {"W": randn(cuda_dev, 50, 30, seed=10 + i), "b": randn(cuda_dev, 30, seed=20 + i)}
        fused_opt.update(params, grads)
        with backend.portable_only():
            portable_opt.update(twin, grads)
    for k in params:
        np.testing.assert_allclose(to_host(params[k]), to_host(twin[k]), rtol=1e-10, atol=1e-12, err_msg=k)


@pytest.mark.parametrize("name", ["adagrad", "rmsprop", "adam"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_numpy_scratch_updates_match_the_portable_step(name: str, dtype: str) -> None:
    dev = backend.cpu()
    params = {"W": randn(dev, 50, 30, dtype=dtype), "b": randn(dev, 30, seed=2, dtype=dtype)}
    twin = {k: v.copy() for k, v in params.items()}
    fast_opt, portable_opt = optim.create(name, 0.05), optim.create(name, 0.05)
    assert backend.fused(type(fast_opt).kernel, params["W"]) is not None
    for i in range(5):
        grads = {"W": randn(dev, 50, 30, seed=10 + i, dtype=dtype), "b": randn(dev, 30, seed=20 + i, dtype=dtype)}
        fast_opt.update(params, grads)
        with backend.portable_only():
            portable_opt.update(twin, grads)
    for k in params:  # the same operations in the same order: bitwise the same
        assert params[k].dtype == twin[k].dtype
        np.testing.assert_array_equal(params[k], twin[k], err_msg=k)


@pytest.mark.parametrize("cls", [Relu, Sigmoid, Tanh])
def test_fused_activation_kernels_match_the_portable_layers(cuda_dev: Device, cls: type) -> None:
    x, dout = randn(cuda_dev, 40, 30, scale=3.0), randn(cuda_dev, 40, 30, seed=1)
    fast, slow = cls(), cls()
    y_fast, dx_fast = fast.forward(x), fast.backward(dout)
    with backend.portable_only():
        y_slow, dx_slow = slow.forward(x), slow.backward(dout)
    np.testing.assert_allclose(to_host(y_fast), to_host(y_slow), rtol=1e-12)
    np.testing.assert_allclose(to_host(dx_fast), to_host(dx_slow), rtol=1e-12)


def test_fused_kernels_are_off_where_they_cannot_run(dev: Device) -> None:
    x = randn(dev, 2, 2)
    assert (backend.fused("Adam", x) is not None) == (dev.backend in ("cupy", "numpy"))
    assert (backend.fused("relu_backward", x) is not None) == (dev.backend == "cupy")
    assert backend.fused("no-such-kernel", x) is None
    with backend.portable_only():
        assert backend.fused("Adam", x) is None


def test_keep_freed_host_memory_is_idempotent_and_can_be_refused(tmp_path: Path) -> None:
    import subprocess
    import sys

    first = backend.keep_freed_host_memory()
    assert first is backend.keep_freed_host_memory()
    code = "from xpnet import backend; print(backend.keep_freed_host_memory())"
    root = str(Path(__file__).resolve().parents[1])
    env = {"XPNET_KEEP_FREED_MEMORY": "0", "PATH": "/usr/bin:/bin", "PYTHONPATH": root}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path,
                         check=True)
    assert out.stdout.strip() == "False"


# -- the fused Convolution → ReLU → max-pool block ------------------------------------------------------

def fuse_every_block(layers: list[Any]) -> list[Any]:
    """Every Convolution → Relu → Pooling run as a ConvReluPool, inner ones (which need dx) included."""
    plan, i = [], 0
    while i < len(layers):
        if isinstance(layers[i], conv.Convolution) and i + 2 < len(layers) and isinstance(layers[i + 2], conv.Pooling):
            plan.append(conv.ConvReluPool(layers[i], layers[i + 2]))
            i += 3
        else:
            plan.append(layers[i])
            i += 1
    return plan


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
    made[2]._fused = fuse_every_block(made[2].layers)
    for net in made:
        net.fuse = fuse
    return made


def test_conv_nets_run_fused_blocks() -> None:
    simple, _, deep = conv_nets(backend.cpu(), True)
    assert [type(b).__name__ for b in simple._fused][:2] == ["ConvReluPool", "Flatten"]
    # A net fuses only runs whose conv needs no input gradient: the inner ones are not worth it.
    assert not any(isinstance(b, conv.ConvReluPool) for b in nets._fuse(deep.layers))
    assert sum(isinstance(b, conv.ConvReluPool) for b in deep._fused) == 3  # conv_nets forced them
    assert [type(layer).__name__ for layer in simple.layers][:3] == ["Convolution", "Relu", "Pooling"]


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
    block = conv.ConvReluPool(c2, p2)
    y = block.forward(x)
    np.testing.assert_array_equal(to_host(y), to_host(y_ref))
    dout = to_device(np.random.default_rng(7).standard_normal(tuple(y.shape)), dev)
    dx_ref, dx = c1.backward(r1.backward(p1.backward(dout))), block.backward(dout)
    np.testing.assert_allclose(to_host(dx), to_host(dx_ref), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(to_host(c2.dW), to_host(c1.dW), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(to_host(c2.db), to_host(c1.db), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("block", "stride", "pad", "fh"), [(2, 1, 0, 3), (3, 1, 1, 2), (2, 2, 1, 3)])
def test_block_ordered_im2col_is_a_column_permutation_and_col2im_its_adjoint(
        dev: Device, block: int, stride: int, pad: int, fh: int) -> None:
    x = randn(dev, 2, 3, 9, 8)
    n, oh, ow = 2, conv.out_size(9, fh, stride, pad), conv.out_size(8, fh, stride, pad)
    bh, bw = oh // block, ow // block
    plain = to_host(conv.im2col_t(x, fh, fh, stride, pad)).reshape(-1, n, oh, ow)
    ordered = conv.im2col_t(x, fh, fh, stride, pad, block=block)
    expect = plain[:, :, :bh * block, :bw * block].reshape(-1, n, bh, block, bw, block).transpose(0, 3, 5, 1, 2, 4)
    np.testing.assert_array_equal(to_host(ordered), expect.reshape(plain.shape[0], -1))
    if backend.has_strided_views(x):
        np.testing.assert_array_equal(to_host(conv.fast_im2col_t(x, fh, fh, stride, pad, block)), to_host(ordered))
    cols = randn(dev, *ordered.shape, seed=9)
    lhs = float(dev.xp.sum(ordered * cols))
    rhs = float(dev.xp.sum(x * conv.col2im_t(cols, tuple(x.shape), fh, fh, stride, pad, block)))
    assert lhs == pytest.approx(rhs, rel=1e-12)  # <im2col_t(x), c> = <x, col2im_t(c)>
