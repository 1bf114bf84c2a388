"""DataLoader on every backend: batches on the device, each sample once, seeded, resumable."""

from __future__ import annotations

import itertools
from typing import Any

import array_api_compat
import numpy as np
import pytest

from xpnet import backend
from xpnet.backend import Device
from xpnet.data import DataLoader, shuffle_dataset, validation_split

N = 23


def images(n: int = N) -> np.ndarray:
    """uint8 images whose every pixel is the sample's index: a batch tells which samples it holds."""
    return np.broadcast_to(np.arange(n, dtype=np.uint8)[:, None, None], (n, 28, 28)).copy()


def labels(n: int = N) -> np.ndarray:
    return (np.arange(n) % 10).astype(np.uint8)


def ids(xb: Any) -> list[int]:
    """Which samples a float batch holds (pixel value * 255)."""
    h = backend.to_host(xb).reshape(xb.shape[0], -1)
    return [int(v) for v in np.rint(h[:, 0] * 255)]


def epoch_ids(loader: DataLoader) -> list[list[int]]:
    return [ids(xb) for xb, _ in loader]


def on_device(a: Any, dev: Device) -> bool:
    return array_api_compat.array_namespace(a) is dev.xp and array_api_compat.device(a) == dev.native


def test_batches_are_on_the_device_as_float32_in_0_1(dev: Device) -> None:
    loader = DataLoader(images(), labels(), batch_size=5, device=dev, seed=1)
    # The data went to the device once, still uint8 (a quarter of float32's traffic).
    assert on_device(loader.x, dev) and loader.x.dtype == dev.xp.uint8
    assert on_device(loader.t, dev) and loader.t.dtype == dev.xp.int64
    n = 0
    for xb, tb in loader:
        assert on_device(xb, dev) and on_device(tb, dev)
        assert xb.dtype == dev.xp.float32 and tb.dtype == dev.xp.int64
        assert xb.shape == (tb.shape[0], 784)
        h = backend.to_host(xb)
        assert h.min() >= 0.0 and h.max() <= 1.0
        # Labels travel with their images.
        assert backend.to_host(tb).tolist() == [i % 10 for i in ids(xb)]
        n += xb.shape[0]
    assert n == N and len(loader) == 5


def test_each_sample_exactly_once_per_epoch(dev: Device) -> None:
    loader = DataLoader(images(), labels(), batch_size=4, device=dev, seed=3)
    for _ in range(3):
        batches = epoch_ids(loader)
        assert [len(b) for b in batches] == [4, 4, 4, 4, 4, 3]
        assert sorted(itertools.chain(*batches)) == list(range(N))
    assert loader.epoch == 3 and loader.step == 0


def test_order_is_reproducible_and_differs_across_seeds_and_epochs(dev: Device) -> None:
    a = DataLoader(images(), labels(), 4, device=dev, seed=7)
    b = DataLoader(images(), labels(), 4, device=dev, seed=7)
    c = DataLoader(images(), labels(), 4, device=dev, seed=8)
    a0, a1 = epoch_ids(a), epoch_ids(a)
    assert epoch_ids(b) == a0 and epoch_ids(b) == a1
    assert epoch_ids(c) != a0
    assert a0 != a1
    # Same order on any backend: the permutation is made on the host from (seed, epoch).
    host = DataLoader(images(), labels(), 4, seed=7)
    assert epoch_ids(host) == a0


def test_no_shuffle_keeps_the_order(dev: Device) -> None:
    loader = DataLoader(images(), labels(), 10, shuffle=False, device=dev)
    assert epoch_ids(loader) == [list(range(10)), list(range(10, 20)), [20, 21, 22]]


@pytest.mark.parametrize("k", [0, 1, 3, 6])
def test_resume_mid_epoch_yields_exactly_the_remaining_batches(dev: Device, k: int) -> None:
    reference = DataLoader(images(), labels(), 4, device=dev, seed=5)
    epoch_ids(reference)  # epoch 0
    expected = epoch_ids(reference)  # epoch 1, the one interrupted below

    first = DataLoader(images(), labels(), 4, device=dev, seed=5)
    epoch_ids(first)
    it = iter(first)
    done = [ids(xb) for xb, _ in itertools.islice(it, k)]
    state = first.state_dict()
    assert state == {"epoch": 1, "step": k, "seed": 5, "num_samples": N, "batch_size": 4, "shuffle": 1,
                     "drop_last": 0}
    assert all(type(v) is int for v in state.values())

    resumed = DataLoader(images(), labels(), 4, device=dev, seed=999)  # the state's seed wins
    resumed.load_state_dict(dict(state))
    rest = epoch_ids(resumed)
    assert done + rest == expected
    assert resumed.epoch == 2 and resumed.step == 0
    assert epoch_ids(resumed) == epoch_ids(reference)  # and the epoch after matches too


def test_resume_at_the_end_of_an_epoch(dev: Device) -> None:
    loader = DataLoader(images(), labels(), 5, device=dev)
    it = iter(loader)
    for _ in range(len(loader)):
        next(it)
    state = loader.state_dict()
    assert state["epoch"] == 0 and state["step"] == 5
    resumed = DataLoader(images(), labels(), 5, device=dev)
    resumed.load_state_dict(state)
    assert epoch_ids(resumed) == []  # nothing left of epoch 0
    assert resumed.epoch == 1 and resumed.step == 0


def test_load_state_rejects_a_different_loader() -> None:
    loader = DataLoader(images(), labels(), 5)
    with pytest.raises(ValueError, match="batch_size is 4 in the state but 5 here"):
        loader.load_state_dict({**loader.state_dict(), "batch_size": 4})
    with pytest.raises(ValueError, match="num_samples"):
        loader.load_state_dict({**loader.state_dict(), "num_samples": 24})
    with pytest.raises(ValueError, match="out of range"):
        loader.load_state_dict({"epoch": 0, "step": 6})


def test_conversion_happens_on_the_device_and_matches_the_book(dev: Device) -> None:
    x = np.random.default_rng(0).integers(0, 256, (N, 28, 28), dtype=np.uint8)
    loader = DataLoader(x, labels(), 8, shuffle=False, device=dev)
    assert loader.x.dtype == dev.xp.uint8  # stored as uint8; floats only ever exist per batch
    xb, _ = next(iter(loader))
    assert xb.dtype == dev.xp.float32
    np.testing.assert_array_equal(backend.to_host(xb), x[:8].reshape(8, 784).astype(np.float32) / 255.0)

    raw = DataLoader(x, labels(), 8, shuffle=False, device=dev, normalize=False, dtype="float64")
    xb, _ = next(iter(raw))
    assert xb.dtype == dev.xp.float64
    np.testing.assert_array_equal(backend.to_host(xb), x[:8].reshape(8, 784).astype(np.float64))


def test_nchw_and_one_hot(dev: Device) -> None:
    loader = DataLoader(images(), labels(), 6, device=dev, flatten=False, one_hot=True, seed=2)
    for xb, tb in loader:
        assert xb.shape == (tb.shape[0], 1, 28, 28)
        assert tb.shape == (xb.shape[0], 10) and tb.dtype == dev.xp.float32 and on_device(tb, dev)
        h = backend.to_host(tb)
        np.testing.assert_array_equal(h.sum(axis=1), 1.0)
        assert h.argmax(axis=1).tolist() == [i % 10 for i in ids(xb)]
    flat = DataLoader(images().reshape(N, 784), labels(), 6, device=dev, flatten=False)
    assert next(iter(flat))[0].shape == (6, 1, 28, 28)


def test_one_hot_labels_in_and_out(dev: Device) -> None:
    onehot = (labels()[:, None] == np.arange(10)).astype(np.float32)
    as_index = DataLoader(images(), onehot, 5, device=dev, shuffle=False)
    _, tb = next(iter(as_index))
    assert backend.to_host(tb).tolist() == [0, 1, 2, 3, 4]
    kept = DataLoader(images(), onehot, 5, device=dev, shuffle=False, one_hot=True)
    _, tb = next(iter(kept))
    np.testing.assert_array_equal(backend.to_host(tb), onehot[:5])


def test_drop_last(dev: Device) -> None:
    loader = DataLoader(images(), labels(), 5, device=dev, drop_last=True, seed=4)
    assert len(loader) == 4
    batches = epoch_ids(loader)
    assert [len(b) for b in batches] == [5, 5, 5, 5]
    assert len(set(itertools.chain(*batches))) == 20
    assert len(DataLoader(images(), labels(), 5, drop_last=False)) == 5
    assert len(DataLoader(images(), labels(), N, drop_last=True)) == 1


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"batch_size": 0}, "batch_size must be between 1 and the number of samples \\(23\\), got 0"),
    ({"batch_size": 24}, "batch_size must be between 1 and the number of samples \\(23\\), got 24"),
    ({"batch_size": 2.5}, "batch_size must be an int"),
    ({"batch_size": 4, "t": labels(22)}, "x has 23 samples, t has 22"),
    ({"batch_size": 4, "t": np.full(N, 10, np.uint8)}, "labels must be in 0..9, found 10..10"),
])
def test_bad_arguments(kwargs: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {"x": images(), "t": labels(), **kwargs}
    with pytest.raises(ValueError, match=message):
        DataLoader(**args)


def test_device_by_name() -> None:
    loader = DataLoader(images(), labels(), 4, device="cpu")
    assert loader.device.name == "cpu" and isinstance(next(iter(loader))[0], np.ndarray)


def test_shuffle_dataset_is_the_books_helper_and_seedable() -> None:
    x, t = images(), labels()
    xs, ts = shuffle_dataset(x, t, seed=1)
    assert sorted(xs[:, 0, 0].tolist()) == list(range(N))
    assert (ts == xs[:, 0, 0] % 10).all()
    xs2, _ = shuffle_dataset(x, t, seed=1)
    np.testing.assert_array_equal(xs, xs2)
    x2d, _ = shuffle_dataset(x.reshape(N, -1), t)  # (N, 784) works as in the book
    assert x2d.shape == (N, 784)
    with pytest.raises(ValueError, match="same length"):
        shuffle_dataset(x, t[:5])


def test_validation_split() -> None:
    x, t = images(), labels()
    (xt, tt), (xv, tv) = validation_split(x, t, ratio=0.2, seed=0)
    assert len(xv) == 4 and len(xt) == 19  # int(23 * 0.2), as in the book
    got = xt[:, 0, 0].tolist() + xv[:, 0, 0].tolist()
    assert sorted(got) == list(range(N)) and got != list(range(N))
    assert (tt == xt[:, 0, 0] % 10).all() and (tv == xv[:, 0, 0] % 10).all()
    (xt2, _), (xv2, _) = validation_split(x, t, ratio=0.2, seed=0)
    np.testing.assert_array_equal(xv, xv2)
    (_, _), (xv3, _) = validation_split(x, t, ratio=0.2, seed=1)
    assert xv3[:, 0, 0].tolist() != xv[:, 0, 0].tolist()
    for bad in (0.0, 1.0, 0.01):
        with pytest.raises(ValueError, match="ratio"):
            validation_split(x, t, ratio=bad)
