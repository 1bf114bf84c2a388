"""Where data comes from: local folders, the user cache, system copies, downloads, the bundled sample.

Every test runs with HOME and XDG_CACHE_HOME in tmp_path, no XPNET_DATA_DIR, no
system copies and a ``fetch_url`` that refuses to touch the network; tests that
download replace it with a fake serving local files.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import shutil
import urllib.error
import warnings
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from xpnet.data import (
    DataError,
    DownloadError,
    SampleDataWarning,
    datasets,
    load_dataset,
    load_mnist,
    read_idx,
    sources,
    write_idx,
)
from xpnet.data.idx import encode_idx

_REAL_ENV = os.environ.get("XPNET_DATA_DIR")  # captured before the fixtures below clear it
_REAL_FETCH = sources.fetch_url
NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def _no_network(url: str, dest: Path) -> None:
    raise urllib.error.URLError(f"no network in tests ({url})")


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private HOME and cache, no data env vars, no system copies, no network."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("XPNET_DATA_DIR", raising=False)
    monkeypatch.delenv("XPNET_OFFLINE", raising=False)
    monkeypatch.setitem(sources.SYSTEM_DIRS, "fashion-mnist", [])
    monkeypatch.setattr(sources, "fetch_url", _no_network)
    return tmp_path / "cache" / "xpnet"


def make_fake(folder: Path, n_train: int = 30, n_test: int = 12, seed: int = 0, gz: bool = True,
              names: tuple[str, ...] = NAMES) -> dict[str, np.ndarray]:
    """Write a small, valid MNIST-shaped dataset (4 IDX files) into ``folder``."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for std, name in zip(NAMES, names, strict=True):
        write_idx(folder / (name + (".gz" if gz else "")), arrays[std])
    return arrays


def assert_same(ds: datasets.Dataset, arrays: dict[str, np.ndarray]) -> None:
    np.testing.assert_array_equal(ds.x_train, arrays["train-images-idx3-ubyte"])
    np.testing.assert_array_equal(ds.t_train, arrays["train-labels-idx1-ubyte"])
    np.testing.assert_array_equal(ds.x_test, arrays["t10k-images-idx3-ubyte"])
    np.testing.assert_array_equal(ds.t_test, arrays["t10k-labels-idx1-ubyte"])


def leftovers(folder: Path) -> list[str]:
    """Everything in ``folder`` (hidden temporary files included)."""
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def using_records(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "xpnet.data" and ": using " in r.getMessage()]


# ---------------------------------------------------------------- local sources, in order


@pytest.mark.parametrize("layout", ["root", "flat"])
def test_data_dir_is_used_and_logged_once(tmp_path: Path, caplog: pytest.LogCaptureFixture, layout: str) -> None:
    root = tmp_path / "data"
    folder = root / "mnist" if layout == "root" else root
    arrays = make_fake(folder)
    caplog.set_level(logging.INFO, logger="xpnet.data")
    ds = load_dataset("mnist", data_dir=root)
    assert_same(ds, arrays)
    assert not ds.is_sample and ds.name == "mnist" and ds.classes == [str(i) for i in range(10)]
    assert ds.source == f"{folder} (from data_dir)"
    assert using_records(caplog) == [f"mnist: using {folder} (from data_dir)"]
    assert ds.x_train.dtype == np.uint8 and ds.t_train.dtype == np.uint8
    assert ds.summary()["train"] == 30 and ds.summary()["is_sample"] is False


def test_env_is_used_and_data_dir_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_arrays = make_fake(tmp_path / "env" / "mnist", seed=1)
    arg_arrays = make_fake(tmp_path / "arg" / "mnist", seed=2)
    monkeypatch.setenv("XPNET_DATA_DIR", str(tmp_path / "env"))
    ds = load_dataset("mnist")
    assert_same(ds, env_arrays)
    assert "XPNET_DATA_DIR" in ds.source
    assert_same(load_dataset("mnist", data_dir=tmp_path / "arg"), arg_arrays)


def test_user_cache_is_used(isolated: Path) -> None:
    arrays = make_fake(isolated / "mnist")
    ds = load_dataset("mnist")
    assert_same(ds, arrays)
    assert ds.source == f"{isolated / 'mnist'} (user cache)"


def test_local_folder_wins_over_user_cache(tmp_path: Path, isolated: Path) -> None:
    make_fake(isolated / "mnist", seed=1)
    arrays = make_fake(tmp_path / "data", seed=2)
    assert_same(load_dataset("mnist", data_dir=tmp_path / "data"), arrays)


def test_env_without_the_dataset_falls_through_to_cache(tmp_path: Path, isolated: Path,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("XPNET_DATA_DIR", str(tmp_path / "empty"))
    arrays = make_fake(isolated / "mnist")
    assert_same(load_dataset("mnist"), arrays)
    assert any("holds no MNIST files" in r.getMessage() for r in caplog.records)
    monkeypatch.setenv("XPNET_DATA_DIR", str(tmp_path / "does-not-exist"))
    assert_same(load_dataset("mnist"), arrays)


def test_system_copy_is_used_for_fashion(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    arrays = make_fake(tmp_path / "usr-share" / "fashion-mnist")
    monkeypatch.setitem(sources.SYSTEM_DIRS, "fashion-mnist", [tmp_path / "usr-share" / "fashion-mnist"])
    ds = load_dataset("fashion_mnist")
    assert_same(ds, arrays)
    assert ds.name == "fashion-mnist" and ds.classes[9] == "Ankle boot"
    assert ds.source.endswith("(system copy)")


def test_missing_data_dir_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does-not-exist does not exist"):
        load_dataset("mnist", data_dir=tmp_path / "does-not-exist")


def test_incomplete_folder_names_the_missing_file(tmp_path: Path) -> None:
    make_fake(tmp_path / "mnist")
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="missing t10k-labels-idx1-ubyte.gz"):
        load_dataset("mnist", data_dir=tmp_path)


def test_raw_and_original_dotted_names_are_found(tmp_path: Path) -> None:
    dotted = tuple(n.replace("-idx", ".idx") for n in NAMES)
    arrays = make_fake(tmp_path / "mnist", gz=False, names=dotted)
    assert_same(load_dataset("mnist", data_dir=tmp_path), arrays)


def test_unknown_dataset() -> None:
    with pytest.raises(DataError, match="unknown dataset 'cifar10'; known: mnist, fashion-mnist"):
        load_dataset("cifar10")


# ---------------------------------------------------------------- structural checks across files


def test_image_and_label_counts_must_match(tmp_path: Path) -> None:
    make_fake(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(31, np.uint8))
    with pytest.raises(DataError) as info:
        load_dataset("mnist", data_dir=tmp_path)
    msg = str(info.value)
    assert "train-images-idx3-ubyte.gz holds 30 images" in msg
    assert "train-labels-idx1-ubyte.gz holds 31 labels" in msg and "must match" in msg


def test_images_must_be_28x28(tmp_path: Path) -> None:
    make_fake(tmp_path)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.zeros((12, 27, 28), np.uint8))
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte.gz: bad dimensions: images are 27x28"):
        load_dataset("mnist", data_dir=tmp_path)


def test_labels_must_be_in_range(tmp_path: Path) -> None:
    make_fake(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.full(12, 10, np.uint8))
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte.gz: label 10 out of range"):
        load_dataset("mnist", data_dir=tmp_path)


def test_a_corrupt_local_file_is_an_error_not_a_fallback(tmp_path: Path) -> None:
    make_fake(tmp_path)
    p = tmp_path / "train-images-idx3-ubyte.gz"
    p.write_bytes(p.read_bytes()[:100])
    with warnings.catch_warnings():
        warnings.simplefilter("error", SampleDataWarning)
        with pytest.raises(DataError, match="train-images-idx3-ubyte.gz: truncated gzip stream"):
            load_dataset("mnist", data_dir=tmp_path)


# ---------------------------------------------------------------- the book's load_mnist


def test_load_mnist_book_semantics(tmp_path: Path) -> None:
    arrays = make_fake(tmp_path)
    x = arrays["train-images-idx3-ubyte"]
    t = arrays["train-labels-idx1-ubyte"]
    (x_train, t_train), (x_test, t_test) = load_mnist(data_dir=tmp_path)
    assert x_train.shape == (30, 784) and x_train.dtype == np.float32 and x_test.shape == (12, 784)
    np.testing.assert_array_equal(x_train, x.reshape(30, 784).astype(np.float32) / 255.0)
    assert x_train.min() >= 0.0 and x_train.max() <= 1.0
    np.testing.assert_array_equal(t_train, t)
    assert t_test.shape == (12,)

    (x_train, t_train), _ = load_mnist(normalize=False, flatten=False, one_hot_label=True, data_dir=tmp_path)
    assert x_train.shape == (30, 1, 28, 28) and x_train.dtype == np.uint8
    np.testing.assert_array_equal(x_train[:, 0], x)
    assert t_train.shape == (30, 10) and t_train.dtype == np.float32
    np.testing.assert_array_equal(t_train.sum(axis=1), 1.0)
    np.testing.assert_array_equal(t_train.argmax(axis=1), t)


# ---------------------------------------------------------------- downloads (network replaced by fakes)


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


@pytest.fixture
def mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, dict[str, np.ndarray]]:
    """A local 'mirror' of fake MNIST files and an MNIST spec whose published sums are theirs."""
    folder = tmp_path / "mirror"
    arrays = make_fake(folder, seed=7)
    files = []
    for f in sources.MNIST.files:
        gz = (folder / f.gz_name).read_bytes()
        files.append(replace(f, gz_md5=_md5(gz), raw_sha256=hashlib.sha256(gzip.decompress(gz)).hexdigest()))
    spec = replace(sources.MNIST, files=tuple(files),
                   mirrors=("https://a.invalid/mnist/", "https://b.invalid/mnist/"))
    monkeypatch.setitem(sources.SPECS, "mnist", spec)
    return folder, arrays


def serve(folder: Path, down: tuple[str, ...] = (),
          tamper: Callable[[str, bytes], bytes] | None = None) -> Callable[[str, Path], None]:
    """A fake ``fetch_url`` serving ``folder``; hosts in ``down`` are unreachable; ``tamper`` edits bytes."""
    calls: list[str] = []

    def fetch(url: str, dest: Path) -> None:
        calls.append(url)
        if any(host in url for host in down):
            raise urllib.error.URLError("unreachable")
        data = (folder / url.rsplit("/", 1)[-1]).read_bytes()
        dest.write_bytes(tamper(url, data) if tamper else data)

    fetch.calls = calls  # type: ignore[attr-defined]
    return fetch


def test_download_good_files_are_accepted(isolated: Path, mirror: tuple[Path, dict[str, np.ndarray]],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    folder, arrays = mirror
    fetch = serve(folder)
    monkeypatch.setattr(sources, "fetch_url", fetch)
    ds = load_dataset("mnist")
    assert_same(ds, arrays)
    assert not ds.is_sample
    assert ds.source == f"{isolated / 'mnist'} (downloaded from https://a.invalid/mnist/)"
    assert leftovers(isolated / "mnist") == sorted([n + ".gz" for n in NAMES] + ["decoded.npz"])
    assert len(fetch.calls) == 4  # type: ignore[attr-defined]
    ds2 = load_dataset("mnist")  # now found in the user cache: no second download
    assert ds2.source.endswith("(user cache)") and len(fetch.calls) == 4  # type: ignore[attr-defined]


def test_download_tries_the_next_mirror(isolated: Path, mirror: tuple[Path, dict[str, np.ndarray]],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    folder, arrays = mirror
    monkeypatch.setattr(sources, "fetch_url", serve(folder, down=("a.invalid",)))
    ds = load_dataset("mnist")
    assert_same(ds, arrays)
    assert "downloaded from https://b.invalid/mnist/" in ds.source


def test_download_fetches_only_missing_files(isolated: Path, mirror: tuple[Path, dict[str, np.ndarray]],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    folder, arrays = mirror
    (isolated / "mnist").mkdir(parents=True)
    shutil.copy(folder / "train-images-idx3-ubyte.gz", isolated / "mnist")
    fetch = serve(folder)
    monkeypatch.setattr(sources, "fetch_url", fetch)
    assert_same(load_dataset("mnist"), arrays)
    assert [u.rsplit("/", 1)[-1] for u in fetch.calls] == [n + ".gz" for n in NAMES[1:]]  # type: ignore


def test_checksum_mismatch_is_an_error_and_leaves_no_file(isolated: Path,
                                                          mirror: tuple[Path, dict[str, np.ndarray]],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    folder, _ = mirror
    other = gzip.compress(encode_idx(np.ones((30, 28, 28), np.uint8)))

    def tamper(url: str, data: bytes) -> bytes:
        return other if "train-images" in url else data  # a valid IDX .gz, but not the published file

    monkeypatch.setattr(sources, "fetch_url", serve(folder, tamper=tamper))
    with warnings.catch_warnings():
        warnings.simplefilter("error", SampleDataWarning)  # wrong data from a mirror is not "offline"
        with pytest.raises(DownloadError, match="train-images-idx3-ubyte.gz: checksum mismatch") as info:
            load_dataset("mnist")
    assert not info.value.offline
    assert "a.invalid" in str(info.value) and "b.invalid" in str(info.value)
    assert "train-images-idx3-ubyte.gz" not in leftovers(isolated / "mnist")
    assert not [n for n in leftovers(isolated / "mnist") if n.endswith(".part")]


def test_checksum_mismatch_on_one_mirror_uses_the_next(isolated: Path,
                                                       mirror: tuple[Path, dict[str, np.ndarray]],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    folder, arrays = mirror

    def tamper(url: str, data: bytes) -> bytes:
        return b"<html>Service Unavailable</html>" if "a.invalid" in url else data

    monkeypatch.setattr(sources, "fetch_url", serve(folder, tamper=tamper))
    assert_same(load_dataset("mnist"), arrays)


@pytest.mark.parametrize("exc", [ConnectionResetError("connection reset by peer"), KeyboardInterrupt()])
def test_interrupted_transfer_leaves_nothing(isolated: Path, mirror: tuple[Path, dict[str, np.ndarray]],
                                             monkeypatch: pytest.MonkeyPatch, exc: BaseException) -> None:
    folder, _ = mirror
    seen: list[Path] = []

    def fetch(url: str, dest: Path) -> None:
        data = (folder / url.rsplit("/", 1)[-1]).read_bytes()
        dest.write_bytes(data[: len(data) // 2])  # half the file, then the connection dies
        seen.append(dest)
        raise exc

    monkeypatch.setattr(sources, "fetch_url", fetch)
    spec = sources.get_spec("mnist")
    dest_dir = isolated / "mnist"
    with pytest.raises(DownloadError if isinstance(exc, Exception) else KeyboardInterrupt) as info:
        sources.download_file(spec.file("train", "images"), spec.mirrors, dest_dir)
    if isinstance(exc, Exception):
        assert info.value.offline and "connection reset" in str(info.value)
        assert len(seen) == 2  # both mirrors tried
    assert seen and seen[0].parent == dest_dir  # the temporary file was next to the target
    assert leftovers(dest_dir) == []  # no partial file, no temporary file


def test_interrupted_download_falls_back_loudly(isolated: Path, mirror: tuple[Path, dict[str, np.ndarray]],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    folder, _ = mirror

    def fetch(url: str, dest: Path) -> None:
        if "t10k" in url:
            dest.write_bytes(b"\x1f\x8b\x08")
            raise TimeoutError("timed out")
        shutil.copyfile(folder / url.rsplit("/", 1)[-1], dest)

    monkeypatch.setattr(sources, "fetch_url", fetch)
    with pytest.warns(SampleDataWarning):
        ds = load_dataset("mnist")
    assert ds.is_sample
    kept = leftovers(isolated / "mnist")
    assert "train-images-idx3-ubyte.gz" in kept  # verified files are kept for the next run
    assert not [n for n in kept if "t10k" in n or n.endswith(".part")]


def test_recompressed_download_is_verified_by_uncompressed_sha256(isolated: Path,
                                                                  mirror: tuple[Path, dict[str, np.ndarray]],
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    folder, arrays = mirror

    def recompress(url: str, data: bytes) -> bytes:
        return gzip.compress(gzip.decompress(data), compresslevel=1, mtime=123456)

    monkeypatch.setattr(sources, "fetch_url", serve(folder, tamper=recompress))
    caplog.set_level(logging.INFO, logger="xpnet.data")
    spec = sources.get_spec("mnist")
    path, _ = sources.download_file(spec.file("test", "labels"), spec.mirrors, isolated / "mnist")
    np.testing.assert_array_equal(read_idx(path), arrays["t10k-labels-idx1-ubyte"])
    assert any("recompressed" in r.getMessage() for r in caplog.records)


def test_real_fetch_streams_a_file_url(isolated: Path, mirror: tuple[Path, dict[str, np.ndarray]],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The real ``fetch_url`` (urllib + tqdm) on file:// URLs: no network involved."""
    folder, arrays = mirror
    monkeypatch.setattr(sources, "fetch_url", _REAL_FETCH)
    spec = replace(sources.get_spec("mnist"), mirrors=(folder.as_uri() + "/",))
    monkeypatch.setitem(sources.SPECS, "mnist", spec)
    ds = load_dataset("mnist")
    assert_same(ds, arrays)
    assert f"downloaded from {folder.as_uri()}/" in ds.source


def test_bad_file_in_the_user_cache_is_fetched_again(isolated: Path,
                                                     mirror: tuple[Path, dict[str, np.ndarray]],
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    folder, arrays = mirror
    monkeypatch.setattr(sources, "fetch_url", serve(folder))
    load_dataset("mnist")
    bad = isolated / "mnist" / "train-labels-idx1-ubyte.gz"
    bad.write_bytes(bad.read_bytes()[:20])  # damaged on disk after a good download
    ds = load_dataset("mnist")
    assert_same(ds, arrays)
    assert any("downloading it again" in r.getMessage() for r in caplog.records)


# ---------------------------------------------------------------- the offline fallback


def test_offline_fallback_is_the_bundled_sample(isolated: Path, caplog: pytest.LogCaptureFixture) -> None:
    with pytest.warns(SampleDataWarning, match="BUNDLED SAMPLE") as rec:
        ds = load_dataset("mnist")
    msg = str(rec[0].message)
    assert "XPNET_DATA_DIR" in msg and "--data-dir" in msg and "network" in msg
    assert "no network in tests" in msg  # says why
    assert ds.is_sample and ds.source.startswith("bundled sample: MNIST t10k")
    assert ds.summary()["is_sample"] is True
    assert any(r.levelno == logging.WARNING and "BUNDLED SAMPLE" in r.getMessage() for r in caplog.records)
    assert ds.x_train.shape == (8000, 28, 28) and ds.x_test.shape == (2000, 28, 28)
    assert ds.x_train.dtype == np.uint8 and ds.t_train.shape == (8000,)
    # A partition of the real t10k set: every test image exactly once.
    counts = np.bincount(ds.t_train, minlength=10) + np.bincount(ds.t_test, minlength=10)
    assert counts.tolist() == MNIST_TEST_COUNTS
    full = read_idx(datasets.BUNDLED_DIR / "t10k-images-idx3-ubyte.gz")
    both = np.concatenate([ds.x_train, ds.x_test])
    assert sorted(x.tobytes() for x in both) == sorted(x.tobytes() for x in full)
    # Reproducible (the second load comes from the decoded cache, and still warns).
    with pytest.warns(SampleDataWarning):
        again = load_dataset("mnist", cache=False)
    np.testing.assert_array_equal(again.t_train, ds.t_train)
    np.testing.assert_array_equal(again.x_test, ds.x_test)


def test_offline_env_skips_the_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def fetch(url: str, dest: Path) -> None:
        raise AssertionError("XPNET_OFFLINE is set: no download may be tried")

    monkeypatch.setattr(sources, "fetch_url", fetch)
    monkeypatch.setenv("XPNET_OFFLINE", "1")
    with pytest.warns(SampleDataWarning, match="downloads are off"):
        assert load_dataset("mnist").is_sample
    with pytest.warns(SampleDataWarning):
        (x, t), (xt, tt) = load_mnist(flatten=False)
    assert x.shape == (8000, 1, 28, 28) and xt.shape == (2000, 1, 28, 28)


def test_fashion_has_no_sample_and_says_how_to_get_it() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", SampleDataWarning)
        with pytest.raises(DataError) as info:
            load_dataset("fashion-mnist")
    msg = str(info.value)
    assert "Fashion-MNIST not found" in msg and "XPNET_DATA_DIR" in msg and "--data-dir" in msg
    assert "apt-get install dataset-fashion-mnist" in msg


# ---------------------------------------------------------------- the decoded cache


def test_decoded_cache_is_written_and_reused(tmp_path: Path, isolated: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    arrays = make_fake(tmp_path / "data")
    load_dataset("mnist", data_dir=tmp_path / "data")
    assert (isolated / "mnist" / "decoded.npz").is_file()

    def no_decoding(path: Path) -> bytes:
        raise AssertionError("decoded again although the cache is valid")

    monkeypatch.setattr(datasets, "read_idx_bytes", no_decoding)
    assert_same(load_dataset("mnist", data_dir=tmp_path / "data"), arrays)


def test_cache_false_writes_no_cache(tmp_path: Path, isolated: Path) -> None:
    make_fake(tmp_path / "data")
    load_dataset("mnist", data_dir=tmp_path / "data", cache=False)
    assert not (isolated / "mnist" / "decoded.npz").exists()


def _rewrite_npz(path: Path, **changes: np.ndarray) -> None:
    with np.load(path) as z:
        contents = {k: z[k] for k in z.files}
    contents.update(changes)
    with open(path, "wb") as f:
        np.savez(f, **contents)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "wrong_keys", "wrong_dtype", "wrong_shape",
                                    "pickled"])
def test_corrupt_decoded_cache_is_rebuilt(tmp_path: Path, isolated: Path, caplog: pytest.LogCaptureFixture,
                                          damage: str) -> None:
    arrays = make_fake(tmp_path / "data")
    load_dataset("mnist", data_dir=tmp_path / "data")
    npz = isolated / "mnist" / "decoded.npz"
    if damage == "garbage":
        npz.write_bytes(b"not a zip file at all")
    elif damage == "truncated":
        npz.write_bytes(npz.read_bytes()[: npz.stat().st_size // 2])
    elif damage == "wrong_keys":
        with np.load(npz) as z:
            contents = {k: z[k] for k in z.files if k != "t_test"}
        with open(npz, "wb") as f:
            np.savez(f, **contents)
    elif damage == "wrong_dtype":
        _rewrite_npz(npz, x_train=np.zeros((30, 28, 28), np.float32))
    elif damage == "wrong_shape":
        _rewrite_npz(npz, t_test=np.zeros(11, np.uint8))
    else:
        _rewrite_npz(npz, x_test=np.array([{"evil": 1}] * 12, dtype=object))
    ds = load_dataset("mnist", data_dir=tmp_path / "data")
    assert_same(ds, arrays)
    assert any("decoded cache" in r.getMessage() and "corrupt" in r.getMessage() for r in caplog.records)
    with np.load(npz, allow_pickle=False) as z:  # rebuilt, sound again
        assert z["x_train"].dtype == np.uint8 and z["t_test"].shape == (12,)


def test_cache_is_keyed_by_the_source_files(tmp_path: Path) -> None:
    make_fake(tmp_path / "data", seed=1)
    load_dataset("mnist", data_dir=tmp_path / "data")
    arrays = make_fake(tmp_path / "data", seed=2, n_train=31)  # same place, new files
    assert_same(load_dataset("mnist", data_dir=tmp_path / "data"), arrays)
    other = make_fake(tmp_path / "other", seed=3)  # another folder with files of the same size
    assert_same(load_dataset("mnist", data_dir=tmp_path / "other"), other)


def test_sample_cache_is_never_taken_for_the_full_set(tmp_path: Path) -> None:
    with pytest.warns(SampleDataWarning):
        assert load_dataset("mnist").is_sample
    arrays = make_fake(tmp_path / "data")
    ds = load_dataset("mnist", data_dir=tmp_path / "data")
    assert not ds.is_sample
    assert_same(ds, arrays)


# ---------------------------------------------------------------- the real data sets


@pytest.fixture
def real_mnist(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The real MNIST folder (conftest's ``mnist_path``), found with the caller's XPNET_DATA_DIR."""
    if _REAL_ENV:
        monkeypatch.setenv("XPNET_DATA_DIR", _REAL_ENV)
    path = request.getfixturevalue("mnist_path")
    monkeypatch.delenv("XPNET_DATA_DIR", raising=False)
    return Path(path)


def test_real_mnist_label_counts(real_mnist: Path) -> None:
    ds = load_dataset("mnist", data_dir=real_mnist)
    assert not ds.is_sample and str(real_mnist) in ds.source
    assert ds.x_train.shape == (60000, 28, 28) and ds.x_test.shape == (10000, 28, 28)
    assert np.bincount(ds.t_train, minlength=10).tolist() == MNIST_TRAIN_COUNTS
    assert np.bincount(ds.t_test, minlength=10).tolist() == MNIST_TEST_COUNTS
    (x, t), (xt, tt) = load_mnist(data_dir=real_mnist, one_hot_label=True)  # from the decoded cache
    assert x.shape == (60000, 784) and x.dtype == np.float32 and t.shape == (60000, 10)
    assert xt.shape == (10000, 784) and float(x.max()) == 1.0 and float(x.min()) == 0.0


def test_real_checksum_table(real_mnist: Path) -> None:
    """The sums typed into sources.py are those of the real files (MNIST: the originals)."""
    for f in sources.MNIST.files:
        gz = (real_mnist / f.gz_name).read_bytes()
        assert _md5(gz) == f.gz_md5, f.name
        assert hashlib.sha256(gzip.decompress(gz)).hexdigest() == f.raw_sha256, f.name
    bundled = datasets.BUNDLED_DIR / "t10k-labels-idx1-ubyte.gz"
    assert _md5(bundled.read_bytes()) == sources.MNIST.file("test", "labels").gz_md5


def test_real_fashion_from_the_debian_copy(real_mnist: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Debian recompressed Fashion-MNIST: its .gz MD5s differ from upstream's, yet it must load."""
    fashion = real_mnist.parent / "fashion-mnist"
    if not (fashion / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"real Fashion-MNIST not found next to MNIST ({fashion})")
    monkeypatch.setitem(sources.SYSTEM_DIRS, "fashion-mnist", [fashion])
    labels = fashion / "t10k-labels-idx1-ubyte.gz"
    assert _md5(labels.read_bytes()) != sources.FASHION_MNIST.file("test", "labels").gz_md5
    ds = load_dataset("fashion-mnist")
    assert ds.source == f"{fashion} (system copy)" and not ds.is_sample
    assert np.bincount(ds.t_train, minlength=10).tolist() == [6000] * 10
    assert np.bincount(ds.t_test, minlength=10).tolist() == [1000] * 10
    assert ds.x_test.shape == (10000, 28, 28)
    # The same Debian file also passes download verification (uncompressed SHA-256).
    spec = sources.FASHION_MNIST
    how = sources.verify_download(labels.read_bytes(), spec.file("test", "labels"), "https://mirror/x")
    assert "recompressed" in how


def test_mnist_files_are_not_taken_for_fashion(real_mnist: Path) -> None:
    with pytest.raises(DataError, match="its contents are MNIST's train-images-idx3-ubyte, not Fashion-MNIST's"):
        load_dataset("fashion-mnist", data_dir=real_mnist)
