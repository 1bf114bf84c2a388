"""xpnet.breakdown: the clocks charge each part its own time, change nothing, and leave no trace."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import host, labels, randn
from xpnet import breakdown, nets, optim
from xpnet.backend import Device
from xpnet.layers import Relu


class FakeClock:
    """Stands in for ``time`` in xpnet.breakdown: time passes only when a test says so, and a GPU's
    queued work (``queued``) is done, and its time passed, when ``sync()`` waits for it."""

    def __init__(self) -> None:
        self.now = 0.0
        self.queued = 0.0

    def perf_counter(self) -> float:
        return self.now

    def sync(self) -> None:
        self.now += self.queued
        self.queued = 0.0


class SlowRelu(Relu):
    """A ReLU whose backward pass queues 3 ms of device work (on ``clock``): a part whose time is known."""

    clock: FakeClock

    def backward(self, dout: Any) -> Any:
        self.clock.queued += 0.003
        return super().backward(dout)


def small_net(dev: Device, seed: int = 3) -> nets.MultiLayerNet:
    return nets.MultiLayerNet(12, [8, 8], 4, device=dev, seed=seed, dtype="float32")


def batches(dev: Device) -> list[tuple[Any, Any]]:
    return [(randn(dev, 5, 12, seed=s, dtype="float32"), labels(dev, 5, 4, seed=s)) for s in range(3)]


def test_parts_follow_the_data_and_add_up_to_the_clocked_step(dev: Device) -> None:
    net, opt = small_net(dev), optim.Adam(lr=0.01)
    got = breakdown.step_breakdown(net, opt, batches(dev), steps=4, sync=dev.synchronize, warm_up=1)
    names = [name for name, _ in got.parts]
    assert names == ["Affine 1 forward", "Relu 1 forward", "Affine 2 forward", "Relu 2 forward", "Affine 3 forward",
                     "SoftmaxWithLoss forward", "SoftmaxWithLoss backward", "Affine 3 backward", "Relu 2 backward",
                     "Affine 2 backward", "Relu 1 backward", "Affine 1 backward", "Adam.update"]
    assert all(s > 0 for _, s in got.parts)
    assert sum(s for _, s in got.rows()) == pytest.approx(got.clocked_s)
    assert got.bare_s > 0 and got.rest_s > -1e-6


def test_a_slow_part_is_charged_to_itself(dev: Device, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a clock that moves only for the slow part's queued work, each part's seconds are exact."""
    clock = FakeClock()
    monkeypatch.setattr(breakdown, "time", clock)
    net = small_net(dev)
    net.layers[1].__class__ = SlowRelu  # the first hidden ReLU now queues 3 ms of work in backward
    net.layers[1].clock = clock
    result = breakdown.step_breakdown(net, optim.SGD(lr=0.1), batches(dev), steps=5, sync=clock.sync, warm_up=2)
    got = dict(result.parts)
    assert got["SlowRelu 1 backward"] >= 0.003
    assert got["Relu 1 backward"] < 0.003  # the second hidden ReLU, a plain one, is counted on its own
    assert got["SlowRelu 1 forward"] < 0.003
    # Exactly: the queued work is charged to the part that queued it, per step, warm-up steps left out.
    assert got.pop("SlowRelu 1 backward") == pytest.approx(0.003)
    assert set(got.values()) == {0.0}
    assert result.bare_s == pytest.approx(0.003) and result.clocked_s == pytest.approx(0.003)
    assert result.rest_s == pytest.approx(0.0, abs=1e-12)


def test_clocked_steps_train_exactly_like_bare_ones_and_the_clocks_come_off(dev: Device) -> None:
    a, b = small_net(dev), small_net(dev)
    opt_a, opt_b = optim.Momentum(lr=0.05), optim.Momentum(lr=0.05)
    data = batches(dev)
    breakdown.step_breakdown(a, opt_a, data, steps=3, warm_up=2)
    for run in (2, 3, 2, 3):  # the same steps, bare: warm-up and timed steps, unclocked and then clocked
        for i in range(run):
            x, t = data[i % len(data)]
            opt_b.update(b.params, b.gradient(x, t))
    for key in a.params:
        assert host(a.params[key]).tolist() == host(b.params[key]).tolist(), key
    for obj in [*a.plan, a.last_layer, opt_a]:
        assert not {"forward", "backward", "update"} & set(vars(obj)), obj


def test_an_instance_s_own_method_is_clocked_and_then_put_back(dev: Device) -> None:
    net, opt = small_net(dev), optim.SGD(lr=0.1)
    calls = []
    own_update = opt.update

    def update(params: Any, grads: Any) -> None:
        calls.append(1)
        own_update(params, grads)

    opt.update = update  # type: ignore[method-assign]
    got = dict(breakdown.step_breakdown(net, opt, batches(dev), steps=2, warm_up=1).parts)
    assert len(calls) == 6 and got["SGD.update"] > 0  # 1 + 2 bare, 1 + 2 clocked
    assert opt.update is update


def test_it_refuses_nothing_to_time(dev: Device) -> None:
    with pytest.raises(ValueError, match="steps >= 1"):
        breakdown.step_breakdown(small_net(dev), optim.SGD(), batches(dev), steps=0)
