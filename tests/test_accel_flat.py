"""Flat buffers (xpnet.accel.flat) give the same numbers as one array per parameter.

- flat-buffer nets vs per-key nets: same losses and parameters after several steps, every optimizer;
- the parameters are views of one buffer that the layers use; weights lead it;
- rebinding a parameter or a layer that allocates its own gradient still works;
- optimizer state moves between the flat and the per-key layout (state_dict both ways).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from tests.helpers import FixedRNG, labels, randn
from xpnet import nets, optim
from xpnet.accel.flat import FlatParams, views_share_memory
from xpnet.backend import Device, to_host

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
    # the flat net took the one-buffer update: its optimizer state is flat too
    assert all(isinstance(opt_flat.state[s], FlatParams) for s in opt_flat.slots)
    assert not any(isinstance(opt_keys.state[s], FlatParams) for s in opt_keys.slots)
    for k in flat.params:
        np.testing.assert_allclose(to_host(flat.params[k]), to_host(per_key.params[k]), rtol=1e-12, atol=1e-15,
                                   err_msg=f"{kind}/{name}: {k}")


def test_flat_params_are_views_of_one_buffer_the_layers_use(dev: Device) -> None:
    net = build("conv", dev, flat=None)
    assert views_share_memory(dev)
    params = net.params
    assert isinstance(params, FlatParams) and params.intact()
    assert params.flat.shape[0] == sum(math.prod(p.shape) for p in params.values())
    conv_layer = net.layers[0]
    assert conv_layer.W is params["W1"]
    params.flat[...] = 0.0 * params.flat + 1.0  # through the buffer ...
    assert float(dev.xp.min(conv_layer.W)) == 1.0  # ... into the layer's own array
    # Weights lead the buffer, so weight decay is one slice.
    n_weights = sum(math.prod(p.shape) for k, p in params.items() if k.startswith("W"))
    assert params.span("W1")[0] == 0
    assert all(params.span(k)[1] <= n_weights for k in params if k.startswith("W"))
    assert all(params.span(k)[0] >= n_weights for k in params if k.startswith("b"))
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


@pytest.mark.parametrize("kind", ["mlp", "conv", "deep"])
def test_a_float32_net_stays_float32_everywhere(dev: Device, kind: str) -> None:
    """No silent promotion to float64: activations, loss, gradients, parameters and optimizer state."""
    net = build(kind, dev, flat=None, dtype="float32")
    f32 = dev.xp.float32
    seen = []
    for layer in {id(b): b for b in [*net.layers, *net.plan]}.values():  # every layer's and block's output
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
