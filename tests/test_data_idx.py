"""IDX files: round trips, and one clear DataError (file name + problem) for every kind of damage."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from xpnet.data import DataError, read_idx, write_idx
from xpnet.data.idx import encode_idx, parse_idx


def _images(n: int = 5, h: int = 28, w: int = 28, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, h, w), dtype=np.uint8)


@pytest.mark.parametrize("name", ["imgs-idx3-ubyte.gz", "imgs-idx3-ubyte"])
def test_round_trip_images_gz_and_raw(tmp_path: Path, name: str) -> None:
    x = _images()
    path = write_idx(tmp_path / name, x)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == name.endswith(".gz")
    y = read_idx(path, expect="images")
    assert y.dtype == np.uint8 and y.shape == (5, 28, 28)
    np.testing.assert_array_equal(y, x)
    assert y.flags.writeable  # callers may normalise in place


def test_round_trip_labels_and_header_bytes(tmp_path: Path) -> None:
    t = np.arange(12, dtype=np.uint8) % 10
    raw = encode_idx(t)
    assert raw[:8] == bytes.fromhex("00000801 0000000c")
    assert encode_idx(_images(2))[:16] == bytes.fromhex("00000803 00000002 0000001c 0000001c")
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "l.gz", t), expect="labels"), t)


@pytest.mark.parametrize("dtype", ["uint8", "int8", "int16", "int32", "float32", "float64"])
@pytest.mark.parametrize("shape", [(7,), (3, 4), (2, 3, 4), (2, 1, 3, 2)])
def test_round_trip_every_idx_type(tmp_path: Path, dtype: str, shape: tuple[int, ...]) -> None:
    a = (np.arange(np.prod(shape)).reshape(shape) * 3 - 5).astype(dtype)
    for name, compress in (("a.gz", None), ("b", None), ("c.idx", True)):
        b = read_idx(write_idx(tmp_path / name, a, compress=compress))
        assert b.dtype == np.dtype(dtype) and b.dtype.isnative
        np.testing.assert_array_equal(b, a)


def test_write_rejects_unsupported_dtype(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="int64"):
        write_idx(tmp_path / "x", np.zeros(3, dtype=np.int64))
    assert not list(tmp_path.iterdir())


def test_gz_and_raw_read_the_same(tmp_path: Path) -> None:
    x = _images(3)
    a = read_idx(write_idx(tmp_path / "a.gz", x))
    b = read_idx(write_idx(tmp_path / "b", x))
    np.testing.assert_array_equal(a, b)


# ---- damage: every case names the file and the problem


def _assert_error(path: Path, problem: str, expect: str | None = "images") -> DataError:
    with pytest.raises(DataError) as info:
        read_idx(path, expect=expect)
    msg = str(info.value)
    assert path.name in msg, msg
    assert problem in msg, msg
    assert info.value.path == path
    return info.value


def test_missing_file(tmp_path: Path) -> None:
    _assert_error(tmp_path / "nope-idx3-ubyte.gz", "file not found")


def test_empty_file(tmp_path: Path) -> None:
    p = tmp_path / "empty-idx3-ubyte"
    p.write_bytes(b"")
    _assert_error(p, "empty file")


def test_truncated_payload_raw(tmp_path: Path) -> None:
    p = tmp_path / "cut-idx3-ubyte"
    p.write_bytes(encode_idx(_images(4))[:-100])
    err = _assert_error(p, "truncated data")
    assert "(4, 28, 28)" in str(err) and "3036 bytes follow" in str(err)


def test_truncated_payload_inside_valid_gzip(tmp_path: Path) -> None:
    p = tmp_path / "cut-idx3-ubyte.gz"
    p.write_bytes(gzip.compress(encode_idx(_images(4))[:-1]))
    _assert_error(p, "truncated data")


def test_truncated_gzip_stream(tmp_path: Path) -> None:
    p = write_idx(tmp_path / "half-idx3-ubyte.gz", _images(50))
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    _assert_error(p, "truncated gzip stream")


def test_truncated_header(tmp_path: Path) -> None:
    p = tmp_path / "hdr-idx3-ubyte"
    p.write_bytes(bytes.fromhex("00000803 00000002 0000"))
    _assert_error(p, "truncated header")
    p.write_bytes(b"\x00\x00")
    _assert_error(p, "truncated")


def test_corrupt_gzip_data(tmp_path: Path) -> None:
    p = write_idx(tmp_path / "bits-idx3-ubyte.gz", _images(20))
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0xFF  # flip bits in the deflate stream (or make the CRC fail)
    p.write_bytes(bytes(data))
    _assert_error(p, "corrupt gzip data")


def test_bad_gzip_crc(tmp_path: Path) -> None:
    p = write_idx(tmp_path / "crc-idx3-ubyte.gz", _images(2))
    data = bytearray(p.read_bytes())
    data[-8] ^= 0x01  # the CRC32 in the gzip trailer
    p.write_bytes(bytes(data))
    err = _assert_error(p, "corrupt gzip data")
    assert "CRC" in str(err)


def test_named_gz_but_not_gzip(tmp_path: Path) -> None:
    p = tmp_path / "plain-idx3-ubyte.gz"
    p.write_bytes(b"<html>404 Not Found</html>")
    _assert_error(p, "bad gzip header")


def test_bad_magic_number(tmp_path: Path) -> None:
    p = tmp_path / "magic-idx3-ubyte"
    p.write_bytes(b"\x12\x34" + encode_idx(_images(1))[2:])
    _assert_error(p, "bad magic number 0x12340803")


def test_unknown_type_code(tmp_path: Path) -> None:
    p = tmp_path / "code-idx3-ubyte"
    p.write_bytes(bytes.fromhex("00000703") + encode_idx(_images(1))[4:])
    _assert_error(p, "unknown IDX data type code 0x07", expect=None)


@pytest.mark.parametrize(("arr", "expect", "found"), [
    (np.zeros(5, np.uint8), "images", "magic 0x00000801"),
    (np.zeros((2, 28, 28), np.uint8), "labels", "magic 0x00000803"),
    (np.zeros((2, 28, 28), np.int32), "images", "int32"),
    (np.zeros((2, 784), np.uint8), "images", "2 dimensions"),
])
def test_wrong_file_type(tmp_path: Path, arr: np.ndarray, expect: str, found: str) -> None:
    p = write_idx(tmp_path / "wrong-idx-ubyte.gz", arr)
    err = _assert_error(p, "wrong file type", expect=expect)
    assert found in str(err)


def test_trailing_bytes(tmp_path: Path) -> None:
    p = tmp_path / "long-idx1-ubyte"
    p.write_bytes(encode_idx(np.zeros(10, np.uint8)) + b"\x00" * 3)
    _assert_error(p, "payload length mismatch: 3 unexpected bytes", expect="labels")


def test_header_count_larger_than_data(tmp_path: Path) -> None:
    p = tmp_path / "count-idx1-ubyte.gz"
    raw = bytearray(encode_idx(np.zeros(10, np.uint8)))
    raw[4:8] = struct.pack(">I", 60000)
    p.write_bytes(gzip.compress(bytes(raw)))
    err = _assert_error(p, "truncated data", expect="labels")
    assert "(60000,)" in str(err)


def test_directory_is_not_a_file(tmp_path: Path) -> None:
    d = tmp_path / "dir-idx3-ubyte.gz"
    d.mkdir()
    _assert_error(d, "cannot read")


def test_parse_idx_names_its_source_and_error_is_valueerror() -> None:
    with pytest.raises(ValueError, match="mirror://x: truncated"):
        parse_idx(b"\x00", "mirror://x")
