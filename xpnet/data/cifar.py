"""CIFAR-10 from its published binary archive: 60,000 colour pictures of 32×32 in 10 classes.

``cifar-10-binary.tar.gz`` holds ``cifar-10-batches-bin/`` with five training batches
(``data_batch_1.bin`` .. ``_5.bin``), ``test_batch.bin`` and ``batches.meta.txt`` (the class
names, one a line). Each batch is a run of records of 1 label byte then 3,072 pixel bytes: the
1,024 red values row by row, then green, then blue; the record count comes from the file size,
so a file in the real format with fewer records (a test's) reads the same way. The Python
(pickled) version is never read: unpickling runs code.

Found, in order, in ``data_dir`` / ``$XPNET_DATA_DIR`` (a folder holding ``cifar10/`` or the
archive, the extracted folder or its files), the user cache, or downloaded into the user cache
and checked against the published MD5. The archive is read in place, never extracted; any member
whose path would leave the folder it came in (``../``, absolute, a link) is refused first, by
tarfile's ``data`` filter, so a doctored archive is rejected before a byte of it is used.
"""

from __future__ import annotations

import logging
import os
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xpnet.data import cache, sources
from xpnet.data._files import atomic_path, digest
from xpnet.data.idx import DataError

logger = logging.getLogger("xpnet.data")

NAME = "cifar10"
TITLE = "CIFAR-10"
ARCHIVE = "cifar-10-binary.tar.gz"
ARCHIVE_MD5 = "c32a1d4ab5d03f1284b67883e8d87530"  # published on https://www.cs.toronto.edu/~kriz/cifar.html
ARCHIVE_BYTES = 170_052_171
MIRRORS = ("https://www.cs.toronto.edu/~kriz/",)
FOLDER = "cifar-10-batches-bin"
TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_FILE = "test_batch.bin"
META_FILE = "batches.meta.txt"
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
SHAPE = (3, 32, 32)
RECORD = 1 + 3 * 32 * 32


@dataclass
class Source:
    """Where the batches are: an archive (read in place) or a folder of the ``.bin`` files."""

    path: Path
    is_archive: bool
    origin: str  # "data_dir" | "env" | "cache" | "download"

    def stamps(self) -> list[list[object]]:
        files = [self.path] if self.is_archive else \
            [self.path / n for n in (*TRAIN_FILES, TEST_FILE, META_FILE) if (self.path / n).exists()]
        return cache.file_stamps(files)


def parse_batch(raw: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
    """One batch file's records as (x uint8 (N, 3, 32, 32), t uint8 (N,))."""
    if not raw or len(raw) % RECORD:
        raise DataError(f"{name}: {len(raw):,} bytes is not a multiple of {RECORD:,} (a CIFAR-10 record is 1 label "
                        f"byte + 3,072 pixel bytes): truncated, or not a CIFAR-10 binary batch", name)
    records = np.frombuffer(raw, dtype=np.uint8).reshape(-1, RECORD)
    t = records[:, 0].copy()
    if int(t.max()) >= len(CLASSES):
        raise DataError(f"{name}: label {int(t.max())} in record {int(np.argmax(t >= len(CLASSES)))}: CIFAR-10 "
                        f"labels are 0..9; not a CIFAR-10 batch (CIFAR-100's binary records differ)", name)
    return records[:, 1:].reshape(-1, *SHAPE).copy(), t


def parse_meta(text: str, name: str) -> list[str]:
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if len(names) != len(CLASSES):
        raise DataError(f"{name}: {len(names)} class names, CIFAR-10 has {len(CLASSES)} (one a line)", name)
    return names


def _members(archive: Path) -> dict[str, bytes]:
    """The batch files of ``archive`` by base name, read in place after every member passed the data filter."""
    want = {*TRAIN_FILES, TEST_FILE, META_FILE}
    out: dict[str, bytes] = {}
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for m in members:  # check them all before using any
                try:
                    if os.path.isabs(m.name):  # the filter would strip the slash; a sound archive has none
                        raise tarfile.AbsolutePathError(m)
                    tarfile.data_filter(m, str(sources.cache_root() / NAME))
                except tarfile.FilterError as exc:
                    raise DataError(f"{archive}: refused member {m.name!r}: {exc} (an archive may not write "
                                    f"outside the folder it is unpacked in)", archive) from None
            for m in members:
                parts = Path(m.name).parts
                if m.isfile() and len(parts) == 2 and parts[0] == FOLDER and parts[1] in want:
                    f = tar.extractfile(m)
                    assert f is not None
                    out[parts[1]] = f.read()
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise DataError(f"{archive}: corrupt or truncated archive ({exc})", archive) from None
    return out


def _folder_files(folder: Path) -> dict[str, bytes]:
    out = {}
    for n in (*TRAIN_FILES, TEST_FILE, META_FILE):
        if (folder / n).is_file():
            out[n] = (folder / n).read_bytes()
    return out


def _candidates(base: Path) -> list[Source]:
    found: list[Source] = []
    for folder in (base / NAME, base):
        if (folder / ARCHIVE).is_file():
            found.append(Source(folder / ARCHIVE, True, ""))
        for d in (folder / FOLDER, folder):
            if (d / TEST_FILE).is_file() or (d / TRAIN_FILES[0]).is_file():
                found.append(Source(d, False, ""))
    return found


def locate(data_dir: Path | str | None, download: bool | None) -> Source:
    """The first source of CIFAR-10 in the documented order (downloading it if allowed and needed)."""
    looked = []
    bases: list[tuple[Path, str]] = []
    if data_dir is not None:
        bases.append((Path(data_dir).expanduser(), "data_dir"))
    elif os.environ.get(sources.ENV_DATA_DIR):
        bases.append((Path(os.environ[sources.ENV_DATA_DIR]).expanduser(), "env"))
    bases.append((sources.cache_root(), "cache"))
    for base, origin in bases:
        looked.append(str(base / NAME))
        for src in _candidates(base):
            src.origin = origin
            logger.info("%s: using %s", NAME, src.path)
            return src
    if not sources.downloads_allowed(download):
        raise DataError(f"{TITLE} not found (looked in {', '.join(looked)}; downloads are off). To get it: put "
                        f"{ARCHIVE} (from https://www.cs.toronto.edu/~kriz/cifar.html) or its extracted {FOLDER}/ "
                        f"in a folder and pass --data-dir (or set {sources.ENV_DATA_DIR}), or run with network access")
    return Source(fetch(), True, "download")


def fetch() -> Path:
    """Download the archive into the user cache, checked against the published MD5 before it is kept."""
    dest = sources.cache_root() / NAME / ARCHIVE
    failures = []
    for mirror in MIRRORS:
        url = mirror + ARCHIVE
        try:
            with atomic_path(dest) as tmp:
                logger.info("downloading %s (%d MB)", url, ARCHIVE_BYTES >> 20)
                sources.fetch_url(url, tmp)
                got = digest(tmp.read_bytes(), "md5")
                if got != ARCHIVE_MD5:
                    raise sources.ChecksumError(f"{url}: checksum mismatch: MD5 {got} != published {ARCHIVE_MD5}")
            return dest
        except sources.ChecksumError:
            raise
        except OSError as exc:
            failures.append(f"{url}: {exc.__class__.__name__}: {exc}")
    raise sources.DownloadError(f"could not download {ARCHIVE}: " + "; ".join(failures), offline=True)


def decode(src: Source) -> dict[str, np.ndarray]:
    """The arrays of ``src``: all five training batches in order, the test batch and the class names."""
    files = _members(src.path) if src.is_archive else _folder_files(src.path)
    missing = [n for n in (*TRAIN_FILES, TEST_FILE) if n not in files]
    if missing:
        raise DataError(f"{src.path}: incomplete {TITLE}: missing {', '.join(missing)}", src.path)
    where = (lambda n: f"{src.path}:{FOLDER}/{n}") if src.is_archive else (lambda n: str(src.path / n))
    parts = [parse_batch(files[n], where(n)) for n in TRAIN_FILES]
    x_test, t_test = parse_batch(files[TEST_FILE], where(TEST_FILE))
    classes = parse_meta(files[META_FILE].decode("utf-8", "replace"), where(META_FILE)) \
        if META_FILE in files else list(CLASSES)
    return {"x_train": np.concatenate([p[0] for p in parts]), "t_train": np.concatenate([p[1] for p in parts]),
            "x_test": x_test, "t_test": t_test, "classes": np.array(classes)}


def load(data_dir: Path | str | None = None, download: bool | None = None, use_cache: bool = True
         ) -> tuple[dict[str, np.ndarray], Source, float, bool]:
    """``(arrays, source, seconds, cache hit)``: decoded once, then read from the user cache."""
    started = time.perf_counter()
    src = locate(data_dir, download)
    key = cache.make_key(NAME, src.stamps(), {"archive": src.is_archive})
    entry = cache.entry_path(NAME, key)
    arrays = cache.read(entry, key) if use_cache else None
    if arrays is not None:
        return arrays, src, time.perf_counter() - started, True
    arrays = decode(src)
    if use_cache:
        cache.write(entry, key, arrays)
    return arrays, src, time.perf_counter() - started, False
