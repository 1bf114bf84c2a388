"""Bad input reaches the user as a ValueError/TypeError that names the problem."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import randn
from xpnet import functions as F
from xpnet import nets
from xpnet.backend import Device, to_device
from xpnet.conv import Convolution


def test_wrong_input_shape_is_named(dev: Device) -> None:
    net = nets.TwoLayerNet(784, 10, 10, device=dev)
    with pytest.raises(ValueError, match=r"x has shape \(2, 100\); this net expects \(N, 784\)"):
        net.predict(randn(dev, 2, 100, dtype="float32"))
    conv = nets.SimpleConvNet(device=dev)
    with pytest.raises(ValueError, match=r"expects \(N, 1, 28, 28\)"):
        conv.predict(randn(dev, 2, 784, dtype="float32"))


def test_label_count_and_range_are_checked(dev: Device) -> None:
    net = nets.TwoLayerNet(4, 3, 3, device=dev)
    x = randn(dev, 5, 4, dtype="float32")
    with pytest.raises(ValueError, match="t has 4 labels for 5 samples"):
        net.loss(x, to_device(np.array([0, 1, 2, 0]), dev))
    out_of_range = r"labels out of range: expected class indices in \[0, 3\), got min 0 and max 7"
    with pytest.raises(ValueError, match=out_of_range):
        net.gradient(x, to_device(np.array([0, 1, 7, 2, 0]), dev))
    with pytest.raises(ValueError, match=r"one-hot labels shape \(5, 4\) does not match output shape \(5, 3\)"):
        net.loss(x, to_device(np.zeros((5, 4), np.float32), dev))


def test_wrong_dtype_is_named(dev: Device) -> None:
    net = nets.TwoLayerNet(4, 3, 3, device=dev)
    with pytest.raises(TypeError, match="x has dtype .*uint8.*floating-point input"):
        net.predict(to_device(np.zeros((2, 4), np.uint8), dev))
    with pytest.raises(ValueError, match="dtype must be one of"):
        nets.TwoLayerNet(4, 3, 3, device=dev, dtype="float16")


def test_arrays_from_another_library_or_device_are_refused(strict_dev: Device) -> None:
    net = nets.TwoLayerNet(4, 3, 3, device=strict_dev)
    with pytest.raises(TypeError, match="x is a array_api_compat.numpy array but the net lives on strict:device1"):
        net.predict(np.zeros((2, 4), np.float32))
    import array_api_strict as strict

    host_side = strict.asarray(np.zeros((2, 4), np.float32))  # the strict library's CPU device
    wrong_device = "x is on device .*CPU_DEVICE.* but the net's parameters are on strict:device1"
    with pytest.raises(ValueError, match=wrong_device):
        net.predict(host_side)
    x = strict_dev.asarray(np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match="t is on device"):
        net.loss(x, strict.asarray([0, 1]))


def test_layer_level_shape_errors(dev: Device) -> None:
    layer = Convolution(randn(dev, 2, 3, 3, 3), randn(dev, 2))
    with pytest.raises(ValueError, match=r"expected input \(N, 3, H, W\), got shape \(1, 2, 5, 5\)"):
        layer.forward(randn(dev, 1, 2, 5, 5))
    with pytest.raises(ValueError, match="does not fit an input of size 2"):
        layer.forward(randn(dev, 1, 3, 2, 2))
    with pytest.raises(ValueError, match="class-index labels must be 1-D"):
        F.one_hot(to_device(np.zeros((2, 2), np.int64), dev), 3)


def test_bad_constructor_arguments() -> None:
    with pytest.raises(ValueError, match="unknown weight_init_std 'glorot'"):
        nets.MultiLayerNet(4, [3], 2, weight_init_std="glorot", device="cpu")
    with pytest.raises(ValueError, match="unknown activation 'gelu'"):
        nets.MultiLayerNet(4, [3], 2, activation="gelu", device="cpu")
    with pytest.raises(ValueError, match=r"dropout_ratio must be in \[0, 1\)"):
        nets.MultiLayerNet(4, [3], 2, use_dropout=True, dropout_ratio=1.0, device="cpu")
