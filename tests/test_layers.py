"""Every layer's backward against central differences, in float64, on every backend (≤ 1e-6)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from tests.helpers import FixedRNG, labels, randn
from xpnet import accel
from xpnet import functions as F
from xpnet.backend import Device, to_host
from xpnet.gradcheck import numerical_gradient, relative_error
from xpnet.layers import (
    Affine,
    BatchNormalization,
    Convolution,
    Dropout,
    Flatten,
    MeanSquaredErrorLoss,
    Pooling,
    Relu,
    Sigmoid,
    SoftmaxWithLoss,
    Tanh,
)

TOL = 1e-6


def check_layer(layer: Any, x: Any, forward: Callable[[Any], Any], param_names: tuple[str, ...] = ()) -> None:
    """Compare backward(R) with the numerical gradient of L = Σ forward(x)·R for x and each parameter."""
    xp = x.__array_namespace__()
    out = forward(x)
    r = randn(Device("r", xp, x.device), *out.shape, seed=11)

    def scalar(_: Any) -> Any:
        return xp.sum(forward(x) * r)

    forward(x)
    dx = layer.backward(r)
    analytic = {"x": dx, **{p: getattr(layer, "d" + p) for p in param_names}}
    targets = {"x": x, **{p: getattr(layer, p) for p in param_names}}
    for name, target in targets.items():
        err = relative_error(analytic[name], numerical_gradient(scalar, target, h=1e-5))
        assert err <= TOL, f"{type(layer).__name__} d{name}: relative error {err:.2e}"


def test_affine_accepts_nd_input_and_restores_its_shape(dev: Device) -> None:
    layer = Affine(randn(dev, 12, 5, seed=2), randn(dev, 5, seed=3))
    x = randn(dev, 4, 3, 2, 2)
    assert layer.forward(x).shape == (4, 5)
    check_layer(layer, x, layer.forward, ("W", "b"))


@pytest.mark.parametrize("cls", [Relu, Sigmoid, Tanh, Flatten])
def test_elementwise_and_reshape_layers(dev: Device, cls: type) -> None:
    layer = cls()
    check_layer(layer, randn(dev, 3, 2, 4, seed=4, scale=3.0), layer.forward)


def test_dropout_with_a_fixed_mask(dev: Device) -> None:
    layer = Dropout(0.4, rng=FixedRNG(dev))
    x = randn(dev, 6, 7)
    check_layer(layer, x, lambda a: layer.forward(a, train_flg=True))
    kept = to_host(layer.forward(x, train_flg=True)) != 0
    assert 0.3 < kept.mean() < 0.9  # roughly 1 - 0.4 of the units survive


def test_dropout_is_inverted_so_evaluation_is_the_identity(dev: Device) -> None:
    x = randn(dev, 200, 50)
    layer = Dropout(0.5, rng=dev.rng(0))
    np.testing.assert_array_equal(to_host(layer.forward(x, train_flg=False)), to_host(x))
    y = to_host(layer.forward(x, train_flg=True))
    kept = y != 0
    np.testing.assert_allclose(y[kept], 2.0 * to_host(x)[kept])  # survivors scaled by 1/(1 - r)


def test_batchnorm_train_mode_and_running_stats(dev: Device) -> None:
    xp = dev.xp
    gamma, beta = randn(dev, 5, seed=5) + 1.0, randn(dev, 5, seed=6)
    layer = BatchNormalization(gamma, beta)
    x = randn(dev, 8, 5, scale=2.0) + 3.0
    check_layer(layer, x, lambda a: layer.forward(a, train_flg=True), ("gamma", "beta"))
    fresh = BatchNormalization(gamma, beta, momentum=0.0)
    fresh.forward(x, train_flg=True)  # momentum 0: running stats become this batch's
    np.testing.assert_allclose(to_host(fresh.running_mean), to_host(xp.mean(x, axis=0)), rtol=1e-12)
    y_eval = fresh.forward(x, train_flg=False)
    y_train = fresh.forward(x, train_flg=True)
    np.testing.assert_allclose(to_host(y_eval), to_host(y_train), atol=1e-5)


def test_batchnorm_on_conv_feature_maps(dev: Device) -> None:
    layer = BatchNormalization(randn(dev, 2 * 3 * 3, seed=5) + 1.0, randn(dev, 2 * 3 * 3, seed=6))
    x = randn(dev, 4, 2, 3, 3)
    assert layer.forward(x).shape == (4, 2, 3, 3)
    check_layer(layer, x, lambda a: layer.forward(a, train_flg=True), ("gamma", "beta"))


@pytest.mark.parametrize(("stride", "pad"), [(1, 0), (1, 1), (2, 0), (2, 1)])
def test_convolution(dev: Device, stride: int, pad: int) -> None:
    layer = Convolution(randn(dev, 3, 2, 3, 3, seed=8), randn(dev, 3, seed=9), stride=stride, pad=pad)
    check_layer(layer, randn(dev, 2, 2, 6, 5), layer.forward, ("W", "b"))


def test_convolution_portable_and_fast_paths_agree(dev: Device) -> None:
    W, b, x = randn(dev, 4, 2, 3, 3, seed=8), randn(dev, 4, seed=9), randn(dev, 2, 2, 7, 7)
    fast, slow = Convolution(W, b, stride=2, pad=1), Convolution(W, b, stride=2, pad=1)
    dout = randn(dev, 2, 4, 4, 4, seed=3)
    y_fast, dx_fast = fast.forward(x), fast.backward(dout)
    with accel.portable_only():
        y_slow, dx_slow = slow.forward(x), slow.backward(dout)
    np.testing.assert_allclose(to_host(y_fast), to_host(y_slow), rtol=1e-12)
    np.testing.assert_allclose(to_host(dx_fast), to_host(dx_slow), rtol=1e-12)
    np.testing.assert_allclose(to_host(fast.dW), to_host(slow.dW), rtol=1e-12)


@pytest.mark.parametrize(("size", "stride", "pad"), [(2, 2, 0), (3, 1, 0), (2, 1, 1)])
def test_max_pooling(dev: Device, size: int, stride: int, pad: int) -> None:
    layer = Pooling(size, size, stride=stride, pad=pad)
    check_layer(layer, randn(dev, 2, 3, 6, 6), layer.forward)


def test_max_pooling_picks_the_max(dev: Device) -> None:
    x = dev.asarray(np.arange(16, dtype=np.float64).reshape(1, 1, 4, 4))
    np.testing.assert_array_equal(to_host(Pooling(2, 2, stride=2).forward(x))[0, 0], [[5, 7], [13, 15]])


@pytest.mark.parametrize("one_hot", [False, True])
def test_softmax_with_loss_both_label_forms(dev: Device, one_hot: bool) -> None:
    xp = dev.xp
    layer = SoftmaxWithLoss()
    t = labels(dev, 5, 4)
    if one_hot:
        t = F.one_hot(t, 4, xp.float64)
    x = randn(dev, 5, 4, scale=3.0)
    loss = layer.forward(x, t)
    dx = layer.backward(1.0)
    num = numerical_gradient(lambda _: layer.forward(x, t), x, h=1e-5)
    assert relative_error(dx, num) <= TOL
    expected = -np.mean(np.log(to_host(F.softmax(x)))[np.arange(5), to_host(labels(dev, 5, 4))])
    assert float(loss) == pytest.approx(expected, rel=1e-12)


def test_softmax_with_loss_is_stable_for_huge_logits(dev: Device) -> None:
    x = dev.asarray(np.array([[1000.0, 0.0, -1000.0]]))
    loss = SoftmaxWithLoss().forward(x, dev.asarray(np.array([1])))
    assert float(loss) == pytest.approx(1000.0)


def test_mean_squared_error_loss(dev: Device) -> None:
    layer = MeanSquaredErrorLoss()
    x, t = randn(dev, 4, 3), randn(dev, 4, 3, seed=2)
    layer.forward(x, t)
    num = numerical_gradient(lambda _: layer.forward(x, t), x, h=1e-5)
    assert relative_error(layer.backward(1.0), num) <= TOL


def test_plain_functions_match_the_book(dev: Device) -> None:
    y = dev.asarray(np.array([0.1, 0.05, 0.6, 0.0, 0.05, 0.1, 0.0, 0.1, 0.0, 0.0]))
    t_hot = dev.asarray(np.array([0, 0, 1, 0, 0, 0, 0, 0, 0, 0], dtype=np.float64))
    # The book's ch. 4 numbers: SSE 0.0975, CE 0.510825...
    assert float(F.sum_squared_error(y, t_hot)) == pytest.approx(0.0975)
    assert float(F.cross_entropy_error(y, t_hot)) == pytest.approx(0.510825457, rel=1e-6)
    assert float(F.cross_entropy_error(y, dev.asarray(np.array([2])))) == pytest.approx(0.510825457, rel=1e-6)
    x = dev.asarray(np.array([-800.0, -1.0, 0.0, 2.0, 800.0]))
    np.testing.assert_allclose(to_host(F.sigmoid(x)), [0.0, 1 / (1 + np.e), 0.5, 1 / (1 + np.exp(-2.0)), 1.0])
    np.testing.assert_array_equal(to_host(F.relu(x)), [0, 0, 0, 2, 800])
    np.testing.assert_allclose(to_host(F.softmax(dev.asarray(np.array([0.3, 2.9, 4.0])))),
                               [0.01821127, 0.24519181, 0.73659691], rtol=1e-6)
    assert float(F.mean_squared_error(dev.asarray(np.ones((4, 2))), dev.asarray(np.zeros((4, 2))))) == 1.0


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
