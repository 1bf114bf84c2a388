"""Your own arrays from an .npz: every accepted layout, and each way one can be wrong, named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from xpnet.data import DataError
from xpnet.data.catalog import open_dataset


def save(path: Path, **arrays: np.ndarray) -> str:
    np.savez(path, **arrays)
    return str(path)


def labels(n: int, k: int = 3) -> np.ndarray:
    return np.arange(n) % k


@pytest.mark.parametrize(("shape", "dtype"), [((30, 12), np.float32), ((30, 6, 6), np.uint8),
                                              ((30, 3, 4, 4), np.uint8), ((30, 1, 5, 5), np.float64)])
def test_layouts_and_dtypes(tmp_path: Path, shape: tuple[int, ...], dtype: type) -> None:
    x = np.random.default_rng(0).integers(0, 256, shape).astype(dtype)
    ds = open_dataset(save(tmp_path / "d.npz", x_train=x, y_train=labels(30)))
    assert ds.x_train.shape[1:] == shape[1:] and ds.kind == "npz"
    assert ds.x_train.dtype == (np.uint8 if dtype == np.uint8 else np.float32)
    assert ds.x_train.shape[0] + ds.x_test.shape[0] == 30
    assert np.bincount(ds.t_test).tolist() == [2, 2, 2]  # a stratified 0.2 of each class of 10
    assert ds.classes == ["0", "1", "2"]


def test_a_given_test_set_and_class_names_are_used(tmp_path: Path) -> None:
    x, xt = np.zeros((6, 4), np.float32), np.ones((3, 4), np.float32)
    ds = open_dataset(save(tmp_path / "d.npz", x_train=x, y_train=labels(6), x_test=xt, y_test=labels(3),
                           class_names=np.array(["cat", "dog", "emu", "fox"])))
    assert ds.x_train.shape == (6, 4) and ds.x_test.shape == (3, 4)
    np.testing.assert_array_equal(ds.x_test, xt)
    assert ds.classes == ["cat", "dog", "emu", "fox"]


@pytest.mark.parametrize(("arrays", "match"), [
    ({"x_train": np.zeros((4, 3))}, r"no 'y_train' array .*holds x_train"),
    ({"y_train": labels(4)}, r"no 'x_train' array"),
    ({"x_train": np.zeros((4, 3)), "y_train": np.array([0.0, 1.0, 0.5, 1.0])}, r"y_train is float64 .*integer"),
    ({"x_train": np.zeros((4, 3)), "y_train": np.array([0, 1, -1, 1])}, r"y_train holds label -1"),
    ({"x_train": np.zeros((4, 3)), "y_train": labels(5)}, r"x_train holds 4 samples but y_train holds 5"),
    ({"x_train": np.zeros((4, 3)), "y_train": np.zeros(4, int)}, r"one class only"),
    ({"x_train": np.zeros((4, 3)), "y_train": labels(4, 2), "class_names": np.array(["a"])},
     r"class_names must be 2 or more strings"),
    ({"x_train": np.zeros((4, 3)), "y_train": labels(4, 2), "x_test": np.zeros((2, 3))}, r"x_test without y_test"),
    ({"x_train": np.zeros((4, 3)), "y_train": labels(4, 2), "x_test": np.zeros((2, 3)), "y_test": np.array([0, 2])},
     r"the test set has class 2, which the training set lacks"),
    ({"x_train": np.zeros((4, 3)), "y_train": labels(4, 2), "x_test": np.zeros((2, 5)), "y_test": labels(2, 2)},
     r"x_test samples are \(5,\) but x_train samples \(3,\)"),
    ({"x_train": np.zeros((4, 8, 8, 3), np.uint8), "y_train": labels(4, 2)}, r"channels-last"),
    ({"x_train": np.full((4, 3), np.nan), "y_train": labels(4, 2)}, r"NaN"),
    ({"x_train": np.full((4, 3), 300), "y_train": labels(4, 2)}, r"integers 300\.\.300"),
])
def test_bad_arrays_are_named(tmp_path: Path, arrays: dict[str, np.ndarray], match: str) -> None:
    path = save(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError, match=match) as info:
        open_dataset(path)
    assert str(info.value).startswith(str(tmp_path / "bad.npz"))


def test_object_arrays_are_refused_not_unpickled(tmp_path: Path) -> None:
    path = save(tmp_path / "o.npz", x_train=np.array([{"a": 1}, None], dtype=object), y_train=labels(2, 2))
    with pytest.raises(DataError, match=r"o\.npz: not a readable \.npz"):
        open_dataset(path)


def test_a_file_that_is_not_an_npz_is_named(tmp_path: Path) -> None:
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(DataError, match=r"junk\.npz: not a readable \.npz"):
        open_dataset(str(tmp_path / "junk.npz"))
