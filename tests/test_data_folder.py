"""Image folders: real pictures in every format Pillow reads, mixed sizes, colour and grey; and broken ones."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from tests.data_makers import COLOURS, picture, picture_folder, save_picture
from xpnet.data import DataError
from xpnet.data.catalog import open_dataset
from xpnet.data.folder import FolderOptions, load_folder


def test_classes_are_the_sorted_folder_names_and_every_format_decodes(tmp_path: Path) -> None:
    root = picture_folder(tmp_path / "pics", per_class=10)
    ds = open_dataset(str(root))
    assert ds.classes == sorted(COLOURS) and ds.kind == "folder"
    assert ds.x_train.shape[1:] == (3, 16, 16) and ds.x_train.dtype == np.uint8
    assert ds.x_train.shape[0] + ds.x_test.shape[0] == 30
    # Stratified: every class gives 2 of its 10 pictures to the test set.
    assert np.bincount(ds.t_test, minlength=3).tolist() == [2, 2, 2]
    # The pixels are the pictures': the red class is red, whatever the format (JPEG and WebP are lossy).
    red = ds.classes.index("red")
    mean = ds.x_train[ds.t_train == red].mean(axis=(0, 2, 3))
    assert mean[0] > 150 and mean[1] < 120 and mean[2] < 120


def test_the_split_is_the_same_every_time_and_the_second_run_reads_the_cache(tmp_path: Path) -> None:
    root = picture_folder(tmp_path / "pics", per_class=6)
    a, b = load_folder(root), load_folder(root)
    assert not a.cache_hit and b.cache_hit
    np.testing.assert_array_equal(a.x_test, b.x_test)
    np.testing.assert_array_equal(a.t_train, b.t_train)


def test_a_changed_picture_or_new_option_decodes_again(tmp_path: Path) -> None:
    root = picture_folder(tmp_path / "pics", per_class=4)
    load_folder(root)
    assert not load_folder(root, FolderOptions(image_size=8)).cache_hit
    assert load_folder(root, FolderOptions(image_size=8)).x_train.shape[2:] == (8, 8)
    save_picture(root / "red" / "000.png", picture((0, 0, 0), (16, 16), 5), "PNG")
    assert not load_folder(root).cache_hit


def test_mixed_sizes_take_the_most_common_with_a_note(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = picture_folder(tmp_path / "pics", per_class=6, sizes=((20, 12), (20, 12), (7, 9)))
    with caplog.at_level(logging.WARNING, logger="xpnet.data"):
        ds = open_dataset(str(root))
    assert ds.x_train.shape[2:] == (12, 20)  # (H, W) of the 20x12 pictures
    assert "2 sizes" in caplog.text and "20x12" in caplog.text


def test_grey_only_folders_have_one_channel_and_channels_can_be_forced(tmp_path: Path) -> None:
    root = picture_folder(tmp_path / "pics", per_class=5, grey_every=1)
    assert open_dataset(str(root)).x_train.shape[1] == 1
    colour = open_dataset(str(root), channels=3).x_train
    assert colour.shape[1] == 3 and np.array_equal(colour[:, 0], colour[:, 2])
    mixed = picture_folder(tmp_path / "mixed", per_class=5, grey_every=2)
    assert open_dataset(str(mixed)).x_train.shape[1] == 3
    assert open_dataset(str(mixed), channels=1).x_train.shape[1] == 1


def test_train_and_test_folders_are_used_as_given(tmp_path: Path) -> None:
    picture_folder(tmp_path / "d" / "train", per_class=4)
    picture_folder(tmp_path / "d" / "test", per_class=2, seed=9)
    ds = open_dataset(str(tmp_path / "d"))
    assert ds.x_train.shape[0] == 12 and ds.x_test.shape[0] == 6 and ds.classes == sorted(COLOURS)


def test_test_classes_the_training_set_lacks_are_refused(tmp_path: Path) -> None:
    picture_folder(tmp_path / "d" / "train", per_class=2, classes=("red", "green"))
    picture_folder(tmp_path / "d" / "test", per_class=2, classes=("red", "blue"))
    with pytest.raises(DataError, match=r"test/blue: the test set has class 'blue', which .*train lacks"):
        open_dataset(str(tmp_path / "d"))


def test_non_images_are_skipped_with_one_warning_or_refused_when_strict(tmp_path: Path,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    root = picture_folder(tmp_path / "pics", per_class=4)
    (root / "red" / "notes.txt").write_text("not a picture")
    (root / "blue" / "readme.md").write_text("nor this")
    (root / "blue" / ".DS_Store").write_bytes(b"\0\0")
    with caplog.at_level(logging.WARNING, logger="xpnet.data"):
        ds = open_dataset(str(root))
    assert ds.x_train.shape[0] + ds.x_test.shape[0] == 12
    skipped = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(skipped) == 1 and "skipped 2 files" in skipped[0] and "readme.md" in skipped[0]
    with pytest.raises(DataError, match=r"blue/readme\.md: not an image .*--strict-images"):
        open_dataset(str(root), strict_images=True)


@pytest.mark.parametrize(("name", "keep"), [("001.jpg", 300), ("000.png", 0.6)])
def test_a_truncated_picture_is_named(tmp_path: Path, name: str, keep: float) -> None:
    root = picture_folder(tmp_path / "pics", per_class=3, sizes=((64, 64),))
    bad = root / "green" / name
    data = bad.read_bytes()
    bad.write_bytes(data[:int(keep if keep > 1 else len(data) * keep)])
    with pytest.raises(DataError, match=rf"green/{name}: corrupt or truncated image"):
        open_dataset(str(root))


def test_a_corrupt_png_is_named(tmp_path: Path) -> None:
    root = picture_folder(tmp_path / "pics", per_class=3)
    bad = root / "red" / "000.png"
    data = bytearray(bad.read_bytes())
    data[60:80] = b"\xff" * 20
    bad.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"red/000\.png: corrupt"):
        open_dataset(str(root))


@pytest.mark.parametrize("limit", [3000, 1000])  # 64x64 = 4096 pixels: over the limit (Pillow warns), over twice it
def test_a_decompression_bomb_is_refused_naming_pillows_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              limit: int) -> None:
    from PIL import Image

    root = picture_folder(tmp_path / "pics", per_class=3)
    save_picture(root / "red" / "huge.png", np.zeros((64, 64, 3), np.uint8), "PNG")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
    want = rf"red/huge\.png: refused as a decompression bomb.*MAX_IMAGE_PIXELS = {limit:,}"
    with pytest.raises(DataError, match=want):
        open_dataset(str(root))


@pytest.mark.parametrize(("make", "match"), [
    (lambda r: picture_folder(r, per_class=2, classes=("red",)), r"found 1 class folder \(red\)"),
    (lambda r: r.mkdir(), "found 0 class folders"),
    (lambda r: (picture_folder(r, per_class=2, classes=("red", "green")), (r / "blue").mkdir()),
     r"pics/blue: empty class folder"),
    (lambda r: (picture_folder(r, per_class=2, classes=("red", "green")), (r / "blue").mkdir(),
                (r / "blue" / "x.txt").write_text("x")), r"pics/blue: empty class folder"),
])
def test_folders_that_cannot_be_a_classifier_are_refused(tmp_path: Path, make: object, match: str) -> None:
    make(tmp_path / "pics")  # type: ignore[operator]
    with pytest.raises(DataError, match=match):
        open_dataset(str(tmp_path / "pics"))


def test_an_unknown_name_or_path_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such dataset or path"):
        open_dataset(str(tmp_path / "nope"))
    (tmp_path / "x.csv").write_text("1,2")
    with pytest.raises(DataError, match=r"x\.csv: not an image folder or an \.npz"):
        open_dataset(str(tmp_path / "x.csv"))
