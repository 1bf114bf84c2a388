"""``cuda:N`` does not depend on the current GPU (issue 23, item 3): with GPU 0 current, a net built, trained
and evaluated on GPU 1 keeps every array there. On the CPU a fake multi-GPU namespace (tests/
current_device_double.py) follows CuPy's rules: creation ignores ``device=``, ``*_like`` and every result
land on the current device; on two real GPUs the same assertion runs on CuPy."""

from __future__ import annotations

from typing import Any

import numpy as np

from tests import current_device_double as fake
from tests.helpers import reachable_arrays, two_gpus
from xpnet import backend, nets, optim
from xpnet.data import DataLoader
from xpnet.train.trainer import Trainer


def _train_everything(dev: backend.Device, other: backend.Device) -> list[Any]:
    """With ``other`` current: build every kind of net on ``dev``, train them through a Trainer (loader with
    augmentation, clipping, a schedule), step an optimizer by hand, move arrays between the two devices."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (40, 1, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, 40)
    from xpnet.data.augment import Augment

    found: list[Any] = []
    made = [nets.MultiLayerNet(784, [12, 12], 10, device=dev, seed=0, use_dropout=True, use_batchnorm=True,
                               weight_decay_lambda=1e-3),
            nets.SimpleConvNet(device=dev, seed=0, hidden_size=12),
            nets.DeepConvNet(device=dev, seed=0, hidden_size=12)]
    for net in made:
        flat = len(net.input_shape) == 1
        loader = DataLoader(images, labels, 20, device=dev, flatten=flat, augment=Augment.parse("shift:2"))
        opt = optim.Adam(1e-3)
        trainer = Trainer(net, opt, loader, epochs=1, evals={"train": DataLoader(images, labels, 20, device=dev,
                                                                                shuffle=False, flatten=flat)},
                          clip_norm=1.0, schedule=lambda step: 1e-3 / (1 + step))
        trainer.fit()
        x, t = next(iter(loader))
        opt.update(net.params, net.gradient(x, t))  # a step outside the Trainer, too
        net.predict(x)
        found += reachable_arrays(net, set()) + reachable_arrays(opt, set()) + reachable_arrays(loader, set())
    back = backend.to_device(backend.to_device(np.ones(3, dtype=np.float32), other), dev, dtype=dev.xp.float64)
    found.append(back)
    dev.synchronize()
    return found


def test_everything_made_for_device_1_stays_there_with_device_0_current() -> None:
    dev, other = fake.fake_gpu_device(1), fake.fake_gpu_device(0)
    other.native.use()  # GPU 0 is current, as after `backend.device("cuda:0")`
    arrays = _train_everything(dev, other)
    assert fake.current() == 0, "xpnet left another device current"
    assert len(arrays) > 30
    arrays = [a for a in arrays if not isinstance(a, np.generic | type)]  # host numbers and dtypes: no device
    where = {getattr(a, "gpu", "host") for a in arrays}
    assert where == {1}, f"arrays on fake GPU(s) {sorted(where - {1})}: " + ", ".join(
        sorted({f"{type(a).__name__}{a.shape}" for a in arrays if getattr(a, "gpu", None) != 1})[:10])


def test_the_double_follows_cupys_rules() -> None:
    """The stand-in is only as good as its likeness: device= ignored, *_like and results on the current one."""
    g0, g1 = fake.FakeGpu(0), fake.FakeGpu(1)
    g0.use()
    with g1:
        a = fake.NS.ones(3)
    assert a.gpu == 1 and fake.NS.zeros(2, device=g1).gpu == 0 and fake.NS.zeros_like(a).gpu == 0
    assert (a + 1).gpu == 0 and a[1:].gpu == 1 and fake.NS.asarray([1.0], device=g1).gpu == 1


def test_every_array_lands_on_the_second_cuda_device_with_the_first_current() -> None:
    two_gpus()
    dev, other = backend.device("cuda:1"), backend.device("cuda:0")  # cuda:0 is now current
    arrays = _train_everything(dev, other)
    import cupy

    assert cupy.cuda.runtime.getDevice() == 0
    assert {a.device.id for a in arrays if isinstance(a, cupy.ndarray)} == {1}
