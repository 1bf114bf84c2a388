"""Augmentation on the device: exact pixels, shapes, seeds, devices, resume, and never at evaluation."""

from __future__ import annotations

import numpy as np
import pytest

from xpnet import backend
from xpnet.data import Augment, DataLoader
from xpnet.train.config import RunConfig, build_data


def images(n: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28)).astype(np.uint8), rng.integers(0, 10, n).astype(np.uint8)


def host(a: object) -> np.ndarray:
    return backend.to_host(a)


# --- the spec ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("spec", "want"), [
    ("shift", Augment(2, False)), ("shift:3", Augment(3, False)), ("flip", Augment(0, True)),
    ("shift:1,flip", Augment(1, True)), ("flip,shift", Augment(2, True)),
])
def test_parse(spec: str, want: Augment) -> None:
    assert Augment.parse(spec) == want
    assert Augment.parse(str(want)) == want


@pytest.mark.parametrize("spec", ["bogus", "shift:0", "shift:-1", "shift:x", "shift:1.5", "", "flip,flip",
                                  "shift,shift:3", "rotate"])
def test_bad_specs_are_refused(spec: str) -> None:
    with pytest.raises(ValueError, match=r"shift|expected"):
        Augment.parse(spec)


def test_a_shift_must_fit_the_image() -> None:
    x, t = images(10)
    with pytest.raises(ValueError, match="shift 28 must be smaller than the image"):
        DataLoader(x, t, 5, augment=Augment(28))


# --- the pixels ------------------------------------------------------------------------------------

def test_shift_and_flip_move_pixels_exactly(dev: backend.Device) -> None:
    x = np.arange(2 * 1 * 5 * 6, dtype=np.float32).reshape(2, 1, 5, 6)
    choices = np.array([[1, -2, 0], [-1, 0, 1]])  # (dy, dx, flip) per sample
    out = host(Augment(2, True).apply(dev.asarray(x), dev.asarray(choices), dev))
    want0 = np.zeros((5, 6), np.float32)
    want0[1:, :4] = x[0, 0, :4, 2:]  # down 1, left 2
    want1 = np.zeros((5, 6), np.float32)
    want1[:4, :] = x[1, 0, 1:, ::-1]  # mirrored, up 1
    np.testing.assert_array_equal(out[0, 0], want0)
    np.testing.assert_array_equal(out[1, 0], want1)
    assert out.shape == x.shape and out.dtype == np.float32


def test_no_move_is_the_identity() -> None:
    dev = backend.cpu()
    x = np.random.default_rng(1).random((3, 2, 7, 7)).astype(np.float32)
    out = host(Augment(3).apply(dev.asarray(x), dev.asarray(np.zeros((3, 3), np.int64)), dev))
    np.testing.assert_array_equal(out, x)


# --- in the loader: shapes, seeds, devices, resume ----------------------------------------------------

def batches(loader: DataLoader) -> list[np.ndarray]:
    return [host(xb) for xb, _ in loader]


@pytest.mark.parametrize("flatten", [True, False])
def test_augmented_batches_keep_shape_dtype_and_labels(dev: backend.Device, flatten: bool) -> None:
    x, t = images()
    plain = DataLoader(x, t, 16, seed=3, device=dev, flatten=flatten)
    aug = DataLoader(x, t, 16, seed=3, device=dev, flatten=flatten, augment=Augment(2, True))
    n_changed = 0
    for (xa, ta), (xb, tb) in zip(aug, plain, strict=True):
        assert tuple(xa.shape) == tuple(xb.shape) == ((xb.shape[0], 784) if flatten else (xb.shape[0], 1, 28, 28))
        assert xa.dtype == xb.dtype
        np.testing.assert_array_equal(host(ta), host(tb))  # same samples, same order: only pixels change
        n_changed += int(not np.array_equal(host(xa), host(xb)))
        assert float(host(xa).min()) >= 0.0 and float(host(xa).max()) <= 1.0
    assert n_changed == 3


def test_same_seed_same_images_other_seed_or_epoch_other_images() -> None:
    x, t = images()
    a = DataLoader(x, t, 20, seed=1, augment=Augment(2, True))
    b = DataLoader(x, t, 20, seed=1, augment=Augment(2, True))
    first_a, first_b = batches(a), batches(b)
    for u, v in zip(first_a, first_b, strict=True):
        np.testing.assert_array_equal(u, v)
    second_a = batches(a)  # epoch 2: a new permutation and new shifts
    assert not all(np.array_equal(u, v) for u, v in zip(first_a, second_a, strict=True))
    # With the order fixed, only the augmentation's draws differ between seeds.
    c = DataLoader(x, t, 40, shuffle=False, seed=1, augment=Augment(2))
    d = DataLoader(x, t, 40, shuffle=False, seed=2, augment=Augment(2))
    assert not np.array_equal(batches(c)[0], batches(d)[0])


def test_same_images_on_every_device(dev: backend.Device) -> None:
    """Each backend of the matrix (the simulated device, and CuPy on a GPU host) moves the same pixels."""
    x, t = images()
    aug = Augment(3, True)
    on_cpu = batches(DataLoader(x, t, 16, seed=4, augment=aug, flatten=False))
    on_dev = batches(DataLoader(x, t, 16, seed=4, augment=aug, flatten=False, device=dev))
    assert len(on_cpu) == 3
    for u, v in zip(on_cpu, on_dev, strict=True):
        np.testing.assert_array_equal(u, v)


def test_resumes_mid_epoch_with_the_same_images() -> None:
    x, t = images()
    straight = DataLoader(x, t, 8, seed=9, augment=Augment(2, True))
    want = batches(straight) + batches(straight)  # two epochs of 5 batches
    first = DataLoader(x, t, 8, seed=9, augment=Augment(2, True))
    got = batches(first)
    it = iter(first)
    got += [host(next(it)[0]) for _ in range(2)]  # into epoch 2: the loader is at epoch 1, step 2
    state = first.state_dict()
    resumed = DataLoader(x, t, 8, seed=9, augment=Augment(2, True))
    resumed.load_state_dict(state)
    got += batches(resumed)
    assert len(got) == len(want) == 10
    for u, v in zip(got, want, strict=True):
        np.testing.assert_array_equal(u, v)


def test_images_never_leave_the_device(strict_dev: backend.Device) -> None:
    """array_api_strict raises on any host/device mix: an augmented epoch runs through without one."""
    x, t = images()
    for xb, _ in DataLoader(x, t, 16, seed=0, augment=Augment(2, True), device=strict_dev):
        assert xb.device == strict_dev.native


# --- never at evaluation ------------------------------------------------------------------------------

def test_only_the_training_loader_is_augmented() -> None:
    from xpnet.data.datasets import Dataset

    x, t = images(200)
    ds = Dataset(name="fake", x_train=x[:150], t_train=t[:150], x_test=x[150:], t_test=t[150:], source="test",
                 is_sample=False)
    cfg = RunConfig(augment="shift:2,flip", val_split=0.2, batch_size=10).validate()
    data = build_data(cfg, backend.cpu(), (784,), dataset=ds)
    assert data.train.augment == Augment(2, True)
    assert sorted(data.evals) == ["train", "val"]
    assert all(loader.augment is None for loader in [*data.evals.values(), data.test])
    # An evaluation pass is the same images every time (nothing random), and equals the raw data.
    val = data.evals["val"]
    np.testing.assert_array_equal(np.concatenate(batches(val)), np.concatenate(batches(val)))


def test_a_loader_state_from_another_augmentation_is_refused() -> None:
    x, t = images()
    state = DataLoader(x, t, 8, seed=9, augment=Augment(2, True)).state_dict()
    assert state["augment"] == "shift:2,flip"
    with pytest.raises(ValueError, match="augment is 'shift:2,flip' in the state but '' here"):
        DataLoader(x, t, 8, seed=9).load_state_dict(state)
    DataLoader(x, t, 8, seed=9, augment=Augment(2, True)).load_state_dict(state)
    with pytest.raises(ValueError, match="augment is '' in the state but 'shift:2' here"):
        DataLoader(x, t, 8, seed=9, augment=Augment(2)).load_state_dict(DataLoader(x, t, 8).state_dict())


# --- crop:P and colour images -----------------------------------------------------------------------

def test_crop_parses_and_prints_as_given() -> None:
    assert Augment.parse("crop:4,flip") == Augment(0, True, 4)
    assert str(Augment.parse("flip,crop:4")) == "crop:4,flip"
    for bad in ("crop", "crop:0", "crop:2,shift:2"):
        with pytest.raises(ValueError, match="crop|shift"):
            Augment.parse(bad)


def test_crop_is_a_window_of_the_padded_image_on_every_channel(dev: backend.Device) -> None:
    x = np.arange(1 * 3 * 6 * 5, dtype=np.float32).reshape(1, 3, 6, 5) + 1
    p, (i, j) = 2, (0, 3)  # the window's top-left corner in the padded image
    padded = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    want = padded[:, :, i:i + 6, j:j + 5]
    choices = np.array([[p - i, p - j, 0]])  # as (dy, dx, flip): the image moves by (P - i, P - j)
    out = host(Augment(crop=p).apply(dev.asarray(x), dev.asarray(choices), dev))
    np.testing.assert_array_equal(out, want)


def test_crop_moves_stay_within_the_padding() -> None:
    plan = Augment(crop=4, flip=True).plan(seed=3, epoch=0, n=2000)
    assert plan[:, :2].min() == -4 and plan[:, :2].max() == 4 and set(plan[:, 2]) == {0, 1}


def test_colour_batches_are_augmented_alike_in_every_channel() -> None:
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (16, 1, 8, 8)).astype(np.uint8)
    x = np.repeat(grey, 3, axis=1)  # a colour image whose three planes are equal
    t = np.arange(16) % 10
    loader = DataLoader(x, t, 16, flatten=False, augment=Augment.parse("crop:2,flip"), seed=1)
    xb, _ = next(iter(loader))
    xb = host(xb)
    assert xb.shape == (16, 3, 8, 8)
    np.testing.assert_array_equal(xb[:, 0], xb[:, 1])
    np.testing.assert_array_equal(xb[:, 0], xb[:, 2])
    assert not np.array_equal(xb[:, 0], host(next(iter(DataLoader(x, t, 16, flatten=False, seed=1)))[0])[:, 0])
