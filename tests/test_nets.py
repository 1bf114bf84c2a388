"""Nets: gradient checks of every net, weight decay on every W, training steps on the simulated device,
cross-backend agreement from one seed, and state that moves between devices."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from tests.helpers import FixedRNG, labels, randn
from xpnet import nets, optim
from xpnet.backend import Device, to_device, to_host
from xpnet.gradcheck import gradient_check


def small_nets(dev: Device, dtype: str = "float64") -> dict[str, Any]:
    """Each of the book's nets at a size a numerical gradient can afford."""
    kw = {"device": dev, "dtype": dtype, "seed": 3}
    mlp = nets.MultiLayerNet(6, [5, 4, 4], 3, activation="tanh", weight_decay_lambda=0.1, use_batchnorm=True,
                             use_dropout=True, dropout_ratio=0.3, **kw)
    for layer in mlp.layers:  # fixed dropout masks, so the loss is a deterministic function of the params
        if hasattr(layer, "rng"):
            layer.rng = FixedRNG(dev)
    return {
        "two-layer": nets.TwoLayerNet(6, 5, 3, weight_init_std=0.5, **kw),
        "mlp-bn-dropout-decay": mlp,
        "mlp-sigmoid": nets.MultiLayerNet(6, [5], 3, activation="sigmoid", weight_init_std="xavier", **kw),
        "simple-conv": nets.SimpleConvNet((1, 8, 8), {"filter_num": 2, "filter_size": 3}, hidden_size=5,
                                          output_size=3, weight_init_std=0.3, weight_decay_lambda=0.05, **kw),
        "deep-conv": nets.DeepConvNet((1, 8, 8), *[{"filter_num": 2}] * 6, hidden_size=5, output_size=3,
                                      dropout_ratio=0.0, **kw),
    }


def sample(net: Any, n: int = 4, seed: int = 0) -> tuple[Any, Any]:
    return randn(net.device, n, *net.input_shape, seed=seed), labels(net.device, n, 3, seed=seed + 1)


@pytest.mark.parametrize("name", ["two-layer", "mlp-bn-dropout-decay", "mlp-sigmoid", "simple-conv", "deep-conv"])
def test_gradient_check_every_net(dev: Device, name: str) -> None:
    net = small_nets(dev)[name]
    for i, (key, p) in enumerate(net.params.items()):
        if key.startswith("b"):  # zero biases put ReLUs fed by zero padding exactly on their kink
            p += randn(dev, *p.shape, seed=20 + i, scale=0.1)
    x, t = sample(net)
    errors = gradient_check(net, x, t)
    assert set(errors) == set(net.params)
    worst = max(errors, key=errors.get)
    assert errors[worst] <= 1e-6, f"{name}: {worst} relative error {errors[worst]:.2e}"


def test_weight_decay_reaches_every_weight_matrix(dev: Device) -> None:
    """A 7-layer net: decay must touch W1..W7 (the classic hand-written loop stops at W3)."""
    kw = {"device": dev, "dtype": "float64", "seed": 1}
    plain = nets.MultiLayerNet(6, [5] * 6, 3, **kw)
    decayed = nets.MultiLayerNet(6, [5] * 6, 3, weight_decay_lambda=0.3, **kw)
    x, t = sample(plain)
    g0, g1 = plain.gradient(x, t), decayed.gradient(x, t)
    weights = [k for k in plain.params if k.startswith("W")]
    assert weights == [f"W{i}" for i in range(1, 8)]
    for k in plain.params:
        extra = to_host(g1[k]) - to_host(g0[k])
        expected = 0.3 * to_host(plain.params[k]) if k.startswith("W") else 0.0
        np.testing.assert_allclose(extra, expected, atol=1e-12, err_msg=k)
    penalty = 0.5 * 0.3 * sum(float(np.sum(to_host(plain.params[k]) ** 2)) for k in weights)
    assert float(decayed.last_loss) - float(plain.last_loss) == pytest.approx(penalty, rel=1e-10)


def test_same_seed_same_initial_params_on_every_backend(dev: Device) -> None:
    ref = nets.DeepConvNet(seed=42, device="cpu").state_dict()
    mine = nets.DeepConvNet(seed=42, device=dev).state_dict()
    assert set(ref) == set(mine)
    for k in ref:
        np.testing.assert_array_equal(mine[k], ref[k], err_msg=k)
    other = nets.DeepConvNet(seed=43, device=dev).state_dict()
    assert not np.array_equal(other["W1"], ref["W1"])


def make_float32_nets(dev: Device) -> list[Any]:
    kw = {"device": dev, "seed": 5}
    return [nets.TwoLayerNet(784, 20, 10, **kw),
            nets.MultiLayerNet(784, [20, 20], 10, use_batchnorm=True, use_dropout=True, weight_decay_lambda=1e-3,
                               **kw),
            nets.SimpleConvNet((1, 12, 12), {"filter_num": 4, "filter_size": 3}, hidden_size=10, **kw),
            nets.DeepConvNet((1, 12, 12), *[{"filter_num": 2}] * 6, hidden_size=8, **kw)]


def train_steps(net: Any, steps: int = 3) -> tuple[list[float], dict[str, np.ndarray]]:
    """Adam steps on one fixed batch; returns the step losses then the evaluation loss before and after."""
    opt = optim.Adam(lr=0.01)
    rng = np.random.default_rng(0)
    x = to_device(rng.random((8, *net.input_shape), dtype=np.float32), net.device)
    t = to_device(rng.integers(0, 10, 8), net.device)
    before = float(net.loss(x, t))
    losses = []
    for _ in range(steps):
        grads = net.gradient(x, t)
        opt.update(net.params, grads)
        losses.append(float(net.last_loss))
    return [*losses, before, float(net.loss(x, t))], {k: to_host(v) for k, v in net.params.items()}


def test_training_steps_agree_between_numpy_and_the_simulated_device(strict_dev: Device) -> None:
    """Every net trains on array_api_strict Device('device1') with no host/device mix, matching NumPy."""
    for ref_net, dev_net in zip(make_float32_nets(Device("cpu", np_ns(), "cpu")), make_float32_nets(strict_dev),
                                strict=True):
        ref_losses, ref_params = train_steps(ref_net, 6)
        dev_losses, dev_params = train_steps(dev_net, 6)
        np.testing.assert_allclose(dev_losses, ref_losses, rtol=1e-5)
        for k in ref_params:
            np.testing.assert_allclose(dev_params[k], ref_params[k], rtol=1e-4, atol=1e-6, err_msg=k)
        assert ref_losses[-1] < ref_losses[-2], f"{type(ref_net).__name__} did not learn: {ref_losses}"


def np_ns() -> Any:
    from xpnet.backend import cpu

    return cpu().xp


def test_state_dict_moves_between_devices(dev: Device) -> None:
    src = nets.MultiLayerNet(784, [30, 20], 10, use_batchnorm=True, use_dropout=True, seed=8, device="cpu")
    train_steps(src, 2)  # moves the batch-norm running stats away from their initial values
    state = src.state_dict()
    assert {"running_mean1", "running_var2", "rng"} <= set(state)
    dst = nets.MultiLayerNet(784, [30, 20], 10, use_batchnorm=True, use_dropout=True, seed=99, device=dev)
    dst.load_state_dict(state)
    x = np.random.default_rng(1).random((5, 784), dtype=np.float32)
    np.testing.assert_allclose(to_host(dst.predict(to_device(x, dev))), to_host(src.predict(x)), rtol=1e-5)
    # The dropout stream continues from the same point on both: the same numbers where both draw on the host
    # (NumPy's PCG64); on CuPy (cuRAND Philox) the promise is per backend: the same position, so the same
    # numbers as any CuPy run at that point of its stream (issue 11, defect 3).
    saved = src.rng.state_dict()
    assert dst.rng.state_dict() == saved
    got = to_host(dst.rng.random((3,), dev.xp.float32))
    if dev.backend == "cupy":  # an uninterrupted CuPy stream with as many draws gives the same numbers
        position = json.loads(saved["rng"])
        whole = dev.rng(position["seed"])
        for _ in range(position["draws"]):
            whole.random((7,), dev.xp.float32)
        np.testing.assert_array_equal(got, to_host(whole.random((3,), dev.xp.float32)))
    else:
        np.testing.assert_allclose(got, to_host(src.rng.random((3,), np_ns().float32)))


def test_load_state_dict_rejects_a_mismatched_state() -> None:
    net = nets.TwoLayerNet(4, 3, 2, device="cpu")
    state = net.state_dict()
    with pytest.raises(ValueError, match="missing \\['b2'\\]"):
        net.load_state_dict({k: v for k, v in state.items() if k != "b2"})
    state["W1"] = np.zeros((3, 3), np.float32)
    with pytest.raises(ValueError, match="'W1' has shape \\(3, 3\\)"):
        net.load_state_dict(state)


def test_accuracy_takes_both_label_forms(dev: Device) -> None:
    net = nets.TwoLayerNet(4, 3, 3, device=dev, seed=2)
    x = randn(dev, 50, 4, dtype="float32")
    pred = np.argmax(to_host(net.predict(x)), axis=1)
    assert net.accuracy(x, to_device(pred, dev), batch_size=7) == 1.0
    assert net.accuracy(x, to_device(np.eye(3, dtype=np.float32)[pred], dev)) == 1.0
    assert net.accuracy(x, to_device((pred + 1) % 3, dev)) == 0.0
