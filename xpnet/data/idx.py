"""The IDX file format (MNIST, Fashion-MNIST), gzipped or raw, read with full validation.

An IDX file is a 4-byte magic number ``00 00 <type> <ndim>``, then ``ndim``
big-endian uint32 sizes, then the data, big-endian, in C order. MNIST uses
``0x00000803`` (uint8, 3 dims: images) and ``0x00000801`` (uint8, 1 dim: labels).

Every way a file can be wrong (missing, bad gzip, truncated, bad magic, wrong
kind, extra bytes) raises one :class:`DataError` whose message starts with the
file's path and says what is wrong, so a user can act on it without a traceback.
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np

from xpnet.data._files import atomic_write_bytes


class DataError(ValueError):
    """A data file or data source is missing, corrupt or not what was asked for.

    ``path`` is the offending file where there is one (so callers can remove a
    bad cached copy and fetch it again).
    """

    def __init__(self, message: str, path: Path | str | None = None) -> None:
        super().__init__(message)
        self.path = Path(path) if path is not None else None


# IDX type code -> big-endian NumPy dtype, as in the format's definition.
_CODE_TO_DTYPE: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_DTYPE_TO_CODE: dict[np.dtype, int] = {dt.newbyteorder("="): code for code, dt in _CODE_TO_DTYPE.items()}

IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801
# What each kind of file must declare: magic number and a description for messages.
_EXPECT: dict[str, tuple[int, str]] = {
    "images": (IMAGES_MAGIC, "an IDX image file (magic 0x00000803: uint8, 3 dimensions)"),
    "labels": (LABELS_MAGIC, "an IDX label file (magic 0x00000801: uint8, 1 dimension)"),
}
_GZIP_MAGIC = b"\x1f\x8b"


def _describe_magic(magic: int) -> str:
    code, ndim = (magic >> 8) & 0xFF, magic & 0xFF
    dtype = _CODE_TO_DTYPE.get(code)
    kind = {IMAGES_MAGIC: ": an image file", LABELS_MAGIC: ": a label file"}.get(magic, "")
    tname = dtype.newbyteorder("=").name if dtype is not None else f"unknown type 0x{code:02x}"
    return f"magic 0x{magic:08x} ({tname}, {ndim} dimension{'s' if ndim != 1 else ''}{kind})"


def read_idx_bytes(path: Path | str) -> bytes:
    """The decompressed contents of an IDX file (gzip is detected by its magic bytes)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found", path) from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read the file ({exc.strerror or exc})", path) from None
    if data[:2] == _GZIP_MAGIC:
        try:
            return gzip.decompress(data)
        except EOFError:
            raise DataError(f"{path}: truncated gzip stream (the file ends before the compressed "
                            f"data does; {len(data)} bytes on disk): an incomplete copy or download",
                            path) from None
        except (OSError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
            raise DataError(f"{path}: corrupt gzip data ({exc})", path) from None
    if path.suffix == ".gz":
        raise DataError(f"{path}: bad gzip header: the file is named .gz but does not start with the "
                        f"gzip magic bytes 1f 8b (it starts with {data[:4].hex(' ') or 'nothing'})", path)
    return data


def parse_idx(data: bytes, path: Path | str = "<bytes>", expect: str | None = None) -> np.ndarray:
    """Decode IDX bytes into a native-endian array, checking header and length.

    ``expect`` ("images" or "labels") also checks the magic number for that
    kind of file, so a label file passed as images is caught here.
    """
    if expect is not None and expect not in _EXPECT:
        raise ValueError(f"expect must be 'images', 'labels' or None, not {expect!r}")
    if len(data) < 4:
        what = "empty file" if not data else f"only {len(data)} bytes"
        raise DataError(f"{path}: truncated: {what}, an IDX header needs at least 4", path)
    (magic,) = struct.unpack(">I", data[:4])
    if data[0] != 0 or data[1] != 0:
        raise DataError(f"{path}: not an IDX file: bad magic number 0x{magic:08x} "
                        f"(IDX files start with two zero bytes)", path)
    code, ndim = data[2], data[3]
    if code not in _CODE_TO_DTYPE:
        raise DataError(f"{path}: bad magic number 0x{magic:08x}: unknown IDX data type code "
                        f"0x{code:02x}", path)
    if expect is not None and magic != _EXPECT[expect][0]:
        raise DataError(f"{path}: wrong file type: expected {_EXPECT[expect][1]}, found "
                        f"{_describe_magic(magic)}", path)
    if ndim == 0:
        raise DataError(f"{path}: bad magic number 0x{magic:08x}: 0 dimensions", path)
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path}: truncated header: {ndim} dimensions need {header} header bytes, "
                        f"the file has {len(data)}", path)
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = _CODE_TO_DTYPE[code]
    want = math.prod(shape) * dtype.itemsize
    have = len(data) - header
    if have < want:
        raise DataError(f"{path}: truncated data: the header declares shape {shape} ({want} bytes of "
                        f"data) but only {have} bytes follow it", path)
    if have > want:
        raise DataError(f"{path}: payload length mismatch: {have - want} unexpected bytes after the "
                        f"{want} bytes of data declared by the header (shape {shape})", path)
    arr = np.frombuffer(data, dtype=dtype, count=math.prod(shape), offset=header).reshape(shape)
    # A writable, native-endian copy: callers may modify it in place.
    return arr.astype(dtype.newbyteorder("="), copy=True)


def read_idx(path: Path | str, expect: str | None = None) -> np.ndarray:
    """Read an IDX file (``.gz`` or raw) into a NumPy array; see :func:`parse_idx`."""
    return parse_idx(read_idx_bytes(path), Path(path), expect)


def encode_idx(array: np.ndarray) -> bytes:
    """The raw IDX bytes for ``array`` (uint8, int8, int16, int32, float32 or float64)."""
    arr = np.asarray(array)
    code = _DTYPE_TO_CODE.get(arr.dtype.newbyteorder("="))
    if code is None:
        raise DataError(f"IDX cannot store dtype {arr.dtype} (use uint8, int8, int16, int32, "
                        f"float32 or float64)")
    if not 1 <= arr.ndim <= 255:
        raise DataError(f"IDX needs 1 to 255 dimensions, got {arr.ndim}")
    if any(n >= 2**32 for n in arr.shape):
        raise DataError(f"IDX sizes are uint32; shape {arr.shape} is too large")
    header = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + np.ascontiguousarray(arr, dtype=_CODE_TO_DTYPE[code]).tobytes()


def write_idx(path: Path | str, array: np.ndarray, compress: bool | None = None) -> Path:
    """Write ``array`` as an IDX file, atomically; gzipped when ``compress`` (default: name ends .gz).

    Used by tests to build small fake datasets; the output reads back with
    :func:`read_idx` unchanged.
    """
    path = Path(path)
    data = encode_idx(array)
    if compress is None:
        compress = path.suffix == ".gz"
    if compress:
        data = gzip.compress(data, compresslevel=6, mtime=0)
    return atomic_write_bytes(path, data)
