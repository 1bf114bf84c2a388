"""Defects a review of the CuPy path found (issue 11), each shown on the CPU where a CPU can show it."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tests.helpers import randn
from xpnet import backend, gradcheck, nets, optim
from xpnet.data import DataLoader

# -- defect 2: numerical_gradient read a 0-d view ------------------------------------------------

class ViewIndexing(np.ndarray):
    """NumPy arrays whose integer indexing returns a 0-d *view*, as CuPy's does."""

    def __getitem__(self, idx: Any) -> Any:
        if isinstance(idx, tuple) and all(isinstance(i, int) for i in idx):
            return super().__getitem__((*idx, Ellipsis))  # a 0-d view, not a copy
        return super().__getitem__(idx)


def test_view_indexing_reproduces_cupy() -> None:
    a = np.arange(4.0).view(ViewIndexing)
    old = a[(1,)]
    a[(1,)] = 9.0
    assert float(old) == 9.0  # the "old value" changed with the array: CuPy's behaviour


def test_numerical_gradient_copies_the_value_it_restores() -> None:
    x = np.array([[1.0, -2.0], [0.5, 3.0]]).view(ViewIndexing)
    before = np.array(x, copy=True)
    grad = gradcheck.numerical_gradient(lambda a: np.sum(np.asarray(a) ** 2), x)
    np.testing.assert_allclose(np.asarray(grad), 2 * before, rtol=1e-6)  # not half of it
    np.testing.assert_array_equal(np.asarray(x), before)  # restored exactly


# -- defect 6: a device->host sync on every step ---------------------------------------------------

class SyncError(AssertionError):
    pass


class SyncDetector(np.ndarray):
    """Host arrays that act like device arrays: reading one back into Python (bool/int/float/item) raises.

    Every result of an operation stays a SyncDetector (0-d reductions included), so one ``int(loss)``
    anywhere in a training step is caught.
    """

    def __array_wrap__(self, arr: Any, context: Any = None, return_scalar: bool = False) -> Any:
        return np.asarray(arr).view(SyncDetector)  # never unwrap to a NumPy scalar

    def _sync(self, *args: Any) -> Any:
        raise SyncError("device->host sync: a value was read back into Python")

    __bool__ = __int__ = __float__ = __index__ = item = tolist = _sync


def test_sync_detector_detects() -> None:
    a = np.ones(3).view(SyncDetector)
    s = np.sum(a * 2)
    assert isinstance(s, SyncDetector) and s.ndim == 0
    for read in (bool, int, float, lambda v: v.item()):
        with pytest.raises(SyncError):
            read(s)


def _sync_free(a: np.ndarray) -> SyncDetector:
    return np.asarray(a).view(SyncDetector)


@pytest.mark.parametrize("name", ["two_layer", "extend", "conv"])
def test_training_steps_do_not_sync(name: str) -> None:
    """Whole training steps (forward, loss, backward, weight decay, Adam) with labels validated once by a
    DataLoader: nothing is read back to the host until the trainer reads the losses it kept on the device."""
    cpu = backend.cpu()
    rng = np.random.default_rng(0)
    if name == "conv":
        net = nets.SimpleConvNet(device=cpu, seed=0, weight_decay_lambda=1e-3)
        x = rng.random((8, 1, 28, 28), dtype=np.float32)
    elif name == "extend":
        net = nets.MultiLayerNet(784, [20, 20], 10, device=cpu, seed=0, use_dropout=True,
                                 use_batchnorm=True, weight_decay_lambda=1e-3)
        x = rng.random((8, 784), dtype=np.float32)
    else:
        net = nets.TwoLayerNet(784, 20, 10, device=cpu, seed=0)
        x = rng.random((8, 784), dtype=np.float32)
    t = rng.integers(0, 10, 8)
    loader = DataLoader(x, t, 8, shuffle=False, device=cpu, flatten=name != "conv", normalize=False)
    net.last_layer.check_labels = False  # what the Trainer does for a DataLoader's labels
    opt = optim.Adam(1e-3)
    losses = []
    for _ in range(3):
        for xb, tb in loader:
            grads = net.gradient(_sync_free(xb), _sync_free(tb))
            opt.update(net.params, grads)
            losses.append(net.last_loss)
    values = np.asarray(np.stack(losses)).astype(np.float64)  # the one read-back, as the trainer does
    assert np.all(np.isfinite(values))


def test_the_trainer_skips_the_per_step_label_check_only_for_validated_labels() -> None:
    from xpnet.train.trainer import Trainer

    x, t = np.zeros((6, 4), np.float32), np.array([0, 1, 2, 0, 1, 2])
    net = nets.TwoLayerNet(4, 5, 3, device="cpu", seed=0)
    Trainer(net, optim.SGD(0.1), DataLoader(x, t, 3, num_classes=3), epochs=1)
    assert net.last_layer.check_labels is False
    wide = nets.TwoLayerNet(4, 5, 3, device="cpu", seed=0)  # loader allows 10 classes, net has 3 outputs
    Trainer(wide, optim.SGD(0.1), DataLoader(x, t, 3), epochs=1)
    assert wide.last_layer.check_labels is True
    plain = nets.TwoLayerNet(4, 5, 3, device="cpu", seed=0)
    Trainer(plain, optim.SGD(0.1), [(x, t)], epochs=1)
    assert plain.last_layer.check_labels is True
    with pytest.raises(ValueError, match="labels out of range"):
        plain.gradient(x, np.array([0, 1, 7, 0, 1, 2]))


def test_device_labels_are_checked_once_by_the_loader(strict_dev: backend.Device) -> None:
    x = randn(strict_dev, 4, 3, dtype="float32")
    with pytest.raises(ValueError, match=r"labels must be in 0\.\.2, found 0\.\.5"):
        DataLoader(x, strict_dev.asarray(np.array([0, 5, 1, 2])), 2, device=strict_dev, num_classes=3)
