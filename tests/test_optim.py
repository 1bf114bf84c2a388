"""Optimizers: each minimises the book's f(x, y) = x²/20 + y², lowers a net's loss, and resumes from state."""

from __future__ import annotations

import numpy as np
import pytest

from xpnet import nets, optim
from xpnet.backend import Device, to_device, to_host

# Learning rates from the book's fig. 6-8 (Nesterov and RMSprop: chosen likewise).
BOOK_LR = {"sgd": 0.95, "momentum": 0.1, "nesterov": 0.1, "adagrad": 1.5, "rmsprop": 0.3, "adam": 0.3}


def f_and_grad(p: dict) -> tuple[float, dict]:
    x, y = p["x"], p["y"]
    return float(x[0] ** 2 / 20 + y[0] ** 2), {"x": x / 10.0, "y": 2.0 * y}


@pytest.mark.parametrize("name", list(optim.OPTIMIZERS))
def test_minimises_the_books_function(dev: Device, name: str) -> None:
    params = {"x": dev.asarray([-7.0]), "y": dev.asarray([2.0])}
    opt = optim.create(name, BOOK_LR[name])
    start, _ = f_and_grad(params)
    for _ in range(100):
        _, grads = f_and_grad(params)
        opt.update(params, grads)
    end, _ = f_and_grad(params)
    assert end < 0.05 * start, f"{name}: f went from {start:.3f} to {end:.3f}"


@pytest.mark.parametrize("name", list(optim.OPTIMIZERS))
def test_lowers_a_small_nets_loss_and_resumes_exactly(dev: Device, name: str) -> None:
    rng = np.random.default_rng(0)
    x = to_device(rng.random((32, 10), dtype=np.float32), dev)
    t = to_device(rng.integers(0, 3, 32), dev)

    def run(net: nets.Sequential, opt: optim.Optimizer, steps: int) -> None:
        for _ in range(steps):
            opt.update(net.params, net.gradient(x, t))

    net, opt = nets.TwoLayerNet(10, 8, 3, weight_init_std=0.3, device=dev, seed=1), optim.create(name)
    before = float(net.loss(x, t))
    run(net, opt, 30)
    assert float(net.loss(x, t)) < before
    # Split the same 30 + 10 steps in two: save after 30, load into fresh objects, do 10 more.
    saved_net, saved_opt = net.state_dict(), opt.state_dict()
    run(net, opt, 10)
    net2, opt2 = nets.TwoLayerNet(10, 8, 3, device=dev, seed=99), optim.create(name)
    net2.load_state_dict(saved_net)
    opt2.load_state_dict(saved_opt)
    run(net2, opt2, 10)
    for k in net.params:
        np.testing.assert_array_equal(to_host(net2.params[k]), to_host(net.params[k]), err_msg=k)


def test_state_dict_is_plain_host_arrays_and_checks_its_owner() -> None:
    opt = optim.Adam()
    params = {"W": np.ones((2, 2), np.float32)}
    opt.update(params, {"W": np.ones((2, 2), np.float32)})
    state = opt.state_dict()
    assert all(isinstance(v, np.ndarray) for v in state.values())
    assert set(state) == {"name", "lr", "iter", "m/W", "v/W"}
    with pytest.raises(ValueError, match="optimizer state is for Adam, not SGD"):
        optim.SGD().load_state_dict(state)


def test_bad_optimizer_input_is_named() -> None:
    with pytest.raises(ValueError, match="unknown optimizer 'adamw'"):
        optim.create("adamw")
    with pytest.raises(ValueError, match="learning rate must be > 0"):
        optim.SGD(lr=-1)
    with pytest.raises(ValueError, match=r"no gradient for parameter\(s\) \['b'\]"):
        optim.SGD().update({"W": np.ones(2), "b": np.ones(2)}, {"W": np.ones(2)})
    with pytest.raises(ValueError, match=r"gradient for 'W' has shape \(3,\), parameter has \(2,\)"):
        optim.SGD().update({"W": np.ones(2)}, {"W": np.ones(3)})
