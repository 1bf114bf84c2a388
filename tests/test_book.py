"""The book's small facts, reproduced: logic gates, the SimpleNet gradient, TwoLayerNet on real MNIST."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from xpnet import nets, optim
from xpnet.backend import Device, to_device, to_host
from xpnet.functions import cross_entropy_error, softmax
from xpnet.gradcheck import numerical_diff, numerical_gradient, relative_error
from xpnet.layers import Affine, SoftmaxWithLoss

GATES = {"AND": [0, 0, 0, 1], "OR": [0, 1, 1, 1], "NAND": [1, 1, 1, 0], "XOR": [0, 1, 1, 0]}
X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)


def train_gate(dev: Device, net: nets.Sequential, gate: str, steps: int = 2000) -> tuple[float, float]:
    """Full-batch SGD on the four inputs; returns (final loss, accuracy)."""
    x, t = to_device(X, dev), to_device(np.array(GATES[gate]), dev)
    opt = optim.SGD(lr=0.5)
    for _ in range(steps):
        opt.update(net.params, net.gradient(x, t))
    return float(net.loss(x, t)), net.accuracy(x, t)


@pytest.mark.parametrize("gate", ["AND", "OR", "NAND"])
def test_single_layer_learns_the_linear_gates(dev: Device, gate: str) -> None:
    net = nets.MultiLayerNet(2, [], 2, weight_init_std=0.5, device=dev, seed=0)
    loss, acc = train_gate(dev, net, gate)
    assert acc == 1.0 and loss < 0.15


def test_single_layer_cannot_learn_xor_but_two_layers_can(dev: Device) -> None:
    single = nets.MultiLayerNet(2, [], 2, weight_init_std=0.5, device=dev, seed=0)
    loss, acc = train_gate(dev, single, "XOR")
    assert loss > 0.6 and acc <= 0.75  # chance is ln 2 ≈ 0.693: no line separates XOR
    double = nets.MultiLayerNet(2, [8], 2, activation="sigmoid", weight_init_std=1.0, device=dev, seed=0)
    loss, acc = train_gate(dev, double, "XOR", steps=3000)
    assert acc == 1.0 and loss < 0.1


def test_the_books_simplenet_gradient(dev: Device) -> None:
    """Ch. 4.4.1: a 2×3 W, x = [0.6, 0.9], t = [0, 0, 1]; backprop equals the numerical gradient."""
    W = dev.asarray(np.array([[0.47355232, 0.9977393, 0.84668094], [0.85557411, 0.03563661, 0.69422093]]))
    x, t = dev.asarray(np.array([[0.6, 0.9]])), dev.asarray(np.array([[0.0, 0.0, 1.0]]))
    affine, loss_layer = Affine(W, dev.xp.zeros(3, dtype=W.dtype, device=W.device)), SoftmaxWithLoss()

    def loss(_: object) -> object:
        return cross_entropy_error(softmax(x @ W), t)

    # The book prints 0.92806853663411326 from the unrounded W it printed to 8 digits.
    assert float(loss(None)) == pytest.approx(0.92806853663411326, rel=1e-6)
    loss_layer.forward(affine.forward(x), t)
    affine.backward(loss_layer.backward(1.0))
    num = numerical_gradient(loss, W)
    assert relative_error(affine.dW, num) < 1e-6
    np.testing.assert_allclose(to_host(num), [[0.21924763, 0.14356247, -0.36281009],
                                              [0.32887144, 0.2153437, -0.54421514]], atol=1e-6)


def test_numerical_diff_of_the_books_function() -> None:
    # f(x) = 0.01x² + 0.1x: the slope at 5 is 0.2, at 10 it is 0.3 (ch. 4.3.2).
    assert numerical_diff(lambda v: 0.01 * v**2 + 0.1 * v, 5.0) == pytest.approx(0.2, abs=1e-9)
    assert numerical_diff(lambda v: 0.01 * v**2 + 0.1 * v, 10.0) == pytest.approx(0.3, abs=1e-9)


def test_two_layer_net_on_real_mnist(dev: Device, mnist_path: Path) -> None:
    """The book's ch. 5 run, shortened: 600 mini-batches of 100 with SGD lr 0.1 pass 90% test accuracy."""
    from xpnet.data import load_mnist

    (x_train, t_train), (x_test, t_test) = load_mnist(normalize=True, flatten=True, data_dir=mnist_path)
    net = nets.TwoLayerNet(784, 50, 10, device=dev, seed=0)
    opt = optim.SGD(lr=0.1)
    rng = np.random.default_rng(0)
    x_dev, t_dev = to_device(x_train, dev), to_device(t_train.astype(np.int64), dev)
    for _ in range(600):
        idx = to_device(rng.choice(x_train.shape[0], 100), dev)
        xb, tb = dev.xp.take(x_dev, idx, axis=0), dev.xp.take(t_dev, idx, axis=0)
        opt.update(net.params, net.gradient(xb, tb))
    acc = net.accuracy(to_device(x_test, dev), to_device(t_test.astype(np.int64), dev))
    assert acc > 0.90, f"test accuracy {acc:.4f}"
