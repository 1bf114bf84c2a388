"""The run follows its data: input shape and class count from the data set, data flags checked, and the
run's data info (kind, sample shape, class names) enough to rebuild the net later."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.data_makers import picture_folder
from xpnet import backend
from xpnet.train.config import ConfigError, RunConfig, build_net, build_net_and_data, net_input


@pytest.mark.parametrize(("model", "sample", "want"), [
    ("mlp", (3, 32, 32), (3072,)), ("two-layer", (28, 28), (784,)), ("convnet", (3, 16, 20), (3, 16, 20)),
    ("deep-convnet", (28, 28), (1, 28, 28)), ("convnet", (64,), (1, 8, 8)), ("mlp", (10,), (10,)),
])
def test_the_net_input_comes_from_the_samples(model: str, sample: tuple[int, ...], want: tuple[int, ...]) -> None:
    assert net_input(RunConfig(model=model), sample) == want


def test_a_conv_net_on_vectors_is_refused() -> None:
    with pytest.raises(ConfigError, match="--model convnet needs images"):
        net_input(RunConfig(model="convnet"), (10,))


@pytest.mark.parametrize(("model", "shape"), [("mlp", (3, 12, 12)), ("convnet", (3, 12, 12)),
                                              ("deep-convnet", (3, 32, 32)), ("two-layer", (5,))])
def test_nets_take_the_datas_shape_and_class_count(model: str, shape: tuple[int, ...]) -> None:
    net = build_net(RunConfig(model=model), backend.cpu(), shape, 7)
    x = np.zeros((2, *net.input_shape), np.float32)
    assert backend.to_host(net.predict(backend.cpu().asarray(x))).shape == (2, 7)


@pytest.mark.parametrize(("fields", "match"), [
    ({"test_split": 0.0}, "--test-split"), ({"test_split": 1.0}, "--test-split"),
    ({"image_size": 0}, "--image-size"), ({"channels": 2}, "--channels"),
    ({"image_size": 32}, "--image-size applies to an image folder"),
    ({"dataset": "x.npz", "channels": 1}, "--channels applies to an image folder"),
    ({"dataset": "cifar10", "strict_images": True}, "--strict-images applies to an image folder"),
    ({"dataset": ""}, "--dataset must be"),
])
def test_data_flags_are_checked(fields: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        RunConfig(**fields).validate()  # type: ignore[arg-type]


def test_a_folder_path_with_folder_flags_is_a_valid_config(tmp_path: Path) -> None:
    cfg = RunConfig(dataset=str(tmp_path), image_size=24, channels=1, strict_images=True).validate()
    assert cfg.dataset_is_path and RunConfig.from_dict(cfg.to_dict()) == cfg


def test_a_config_from_before_the_data_flags_still_loads() -> None:
    old = {k: v for k, v in RunConfig().to_dict().items()
           if k not in ("test_split", "image_size", "channels", "strict_images")}
    assert RunConfig.from_dict(old).validate() == RunConfig()


def test_the_data_info_records_what_rebuilds_the_net(tmp_path: Path) -> None:
    root = picture_folder(tmp_path / "pics", per_class=5, sizes=((12, 10),))
    cfg = RunConfig(dataset=str(root), model="convnet", batch_size=4, image_size=8).validate()
    net, data = build_net_and_data(cfg, backend.cpu())
    assert tuple(net.input_shape) == (3, 8, 8)
    info = data.info
    assert info["kind"] == "folder" and info["sample_shape"] == [3, 8, 8]
    assert info["classes"] == ["blue", "green", "red"] and info["cache_hit"] is False
    assert data.train.num_classes == 3
    xb, tb = next(iter(data.train))
    assert tuple(xb.shape) == (4, 3, 8, 8)
