"""CIFAR-10 from files in the real binary format: parsed record by record, cached, and refused when wrong."""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
import pytest

from tests.data_makers import cifar_archive, cifar_files, cifar_records
from xpnet.data import DataError, cifar
from xpnet.data.catalog import open_dataset


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XPNET_OFFLINE", "1")
    monkeypatch.delenv("XPNET_DATA_DIR", raising=False)


def test_records_are_label_then_red_green_blue_planes() -> None:
    raw, x, t = cifar_records(5, seed=1)
    got_x, got_t = cifar.parse_batch(raw, "b.bin")
    np.testing.assert_array_equal(got_t, t)
    np.testing.assert_array_equal(got_x, x)
    # The second record's first green pixel sits at byte 3073 + 1 + 1024.
    assert got_x[1, 1, 0, 0] == raw[cifar.RECORD + 1 + 1024]


@pytest.mark.parametrize("layout", ["archive", "folder", "files", "cifar10-subfolder"])
def test_every_layout_reads_the_same_arrays(tmp_path: Path, layout: str) -> None:
    files = cifar_files(per_batch=3)
    if layout == "archive":
        cifar_archive(tmp_path / cifar.ARCHIVE, files)
    else:
        folder = {"folder": tmp_path / cifar.FOLDER, "files": tmp_path,
                  "cifar10-subfolder": tmp_path / "cifar10" / cifar.FOLDER}[layout]
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            (folder / name).write_bytes(data)
    ds = open_dataset("cifar10", data_dir=tmp_path)
    assert ds.x_train.shape == (15, 3, 32, 32) and ds.x_test.shape == (3, 3, 32, 32)
    assert ds.x_train.dtype == np.uint8 and ds.classes == list(cifar.CLASSES)
    np.testing.assert_array_equal(ds.x_test, cifar.parse_batch(files[cifar.TEST_FILE], "t")[0])
    np.testing.assert_array_equal(ds.t_train[:3], cifar.parse_batch(files["data_batch_1.bin"], "t")[1])


def test_second_load_is_a_cache_hit_and_a_changed_file_decodes_again(tmp_path: Path) -> None:
    archive = cifar_archive(tmp_path / cifar.ARCHIVE, cifar_files(per_batch=2))
    first = open_dataset("cifar10", data_dir=tmp_path)
    second = open_dataset("cifar10", data_dir=tmp_path)
    assert not first.cache_hit and second.cache_hit
    np.testing.assert_array_equal(first.x_train, second.x_train)
    cifar_archive(archive, cifar_files(per_batch=2, seed=7))
    third = open_dataset("cifar10", data_dir=tmp_path)
    assert not third.cache_hit and not np.array_equal(third.x_train, first.x_train)


def test_class_names_come_from_the_meta_file(tmp_path: Path) -> None:
    files = cifar_files(per_batch=1)
    files[cifar.META_FILE] = "\n".join(f"c{i}" for i in range(10)).encode()
    cifar_archive(tmp_path / cifar.ARCHIVE, files)
    assert open_dataset("cifar10", data_dir=tmp_path).classes == [f"c{i}" for i in range(10)]


def test_a_size_that_is_not_whole_records_is_named(tmp_path: Path) -> None:
    files = cifar_files(per_batch=2)
    files["data_batch_3.bin"] = files["data_batch_3.bin"][:-5]
    cifar_archive(tmp_path / cifar.ARCHIVE, files)
    with pytest.raises(DataError, match=r"data_batch_3\.bin: 6,141 bytes is not a multiple of 3,073"):
        open_dataset("cifar10", data_dir=tmp_path)


def test_a_missing_batch_is_named(tmp_path: Path) -> None:
    files = cifar_files(per_batch=1)
    del files["data_batch_5.bin"]
    cifar_archive(tmp_path / cifar.ARCHIVE, files)
    with pytest.raises(DataError, match="missing data_batch_5.bin"):
        open_dataset("cifar10", data_dir=tmp_path)


def test_a_label_past_nine_is_refused() -> None:
    raw = bytearray(cifar_records(2, 0)[0])
    raw[cifar.RECORD] = 10
    with pytest.raises(DataError, match="label 10 in record 1"):
        cifar.parse_batch(bytes(raw), "b.bin")


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, link, 0 if link else 3
    return info


@pytest.mark.parametrize(("member", "why"), [
    (_member("../escape.bin"), "outside the destination"),
    (_member("/etc/evil.bin"), "absolute path"),
    (_member(f"{cifar.FOLDER}/link", tarfile.SYMTYPE, "../../../../etc/passwd"), "outside the destination"),
])
def test_members_leaving_the_folder_are_refused_and_nothing_is_written(tmp_path: Path, member: tarfile.TarInfo,
                                                                        why: str) -> None:
    src = tmp_path / "src"
    cifar_archive(src / cifar.ARCHIVE, cifar_files(per_batch=1), extra=[member])
    before = sorted(p for p in tmp_path.rglob("*"))
    with pytest.raises(DataError, match=rf"refused member .*{why}"):
        open_dataset("cifar10", data_dir=src)
    assert sorted(p for p in tmp_path.rglob("*")) == before
    assert not (tmp_path / "escape.bin").exists()


def test_a_truncated_archive_is_named(tmp_path: Path) -> None:
    archive = cifar_archive(tmp_path / cifar.ARCHIVE, cifar_files(per_batch=2))
    archive.write_bytes(archive.read_bytes()[:-200])
    with pytest.raises(DataError, match=r"cifar-10-binary\.tar\.gz: corrupt or truncated archive"):
        open_dataset("cifar10", data_dir=tmp_path)


def test_no_copy_and_no_downloads_says_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"CIFAR-10 not found .*downloads are off.*cifar-10-binary\.tar\.gz"):
        open_dataset("cifar10", data_dir=tmp_path)


def test_a_download_is_checked_against_the_published_md5(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fake_fetch(url: str, dest: Path) -> None:
        Path(dest).write_bytes(b"not the archive")

    monkeypatch.setenv("XPNET_OFFLINE", "0")
    monkeypatch.setattr("xpnet.data.sources.fetch_url", fake_fetch)
    with pytest.raises(DataError, match=f"checksum mismatch: MD5 .* != published {cifar.ARCHIVE_MD5}"):
        open_dataset("cifar10", data_dir=tmp_path)
    assert not list((Path(cifar.sources.cache_root()) / "cifar10").glob("*.tar.gz"))
