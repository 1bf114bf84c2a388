"""MNIST and Fashion-MNIST as host arrays: the book's ``load_mnist`` and a richer ``load_dataset``.

Images stay uint8 (N, 28, 28) until a consumer asks for floats, a quarter of
the memory and of the host-to-device traffic. Decoded arrays are kept in the
user cache as ``.npz`` keyed by the source files, so a second run starts in a
fraction of a second and a cache made from other files is never reused.
"""

from __future__ import annotations

import contextlib
import json
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from xpnet.data import sources
from xpnet.data._files import atomic_path, digest
from xpnet.data.idx import DataError, parse_idx, read_idx_bytes
from xpnet.data.sources import DatasetSpec, Found

logger = logging.getLogger("xpnet.data")

BUNDLED_DIR = Path(__file__).resolve().parent / "bundled"
SAMPLE_TRAIN, SAMPLE_TEST, SAMPLE_SEED = 8000, 2000, 20240601
CACHE_NAME = "decoded.npz"
_CACHE_FORMAT = 1
_ARRAYS = ("x_train", "t_train", "x_test", "t_test")
IMAGE_SHAPE = (28, 28)


class SampleDataWarning(UserWarning):
    """The full dataset could not be found or downloaded; a small bundled sample is used instead."""


@dataclass(eq=False, repr=False)
class Dataset:
    """A dataset on the host, with where it came from (the trainer records ``summary()``).

    ``x_*`` are uint8 (N, 28, 28) for MNIST, (N, C, H, W) for pictures, or what an .npz held
    (uint8 or float32); ``t_*`` integer class indices (N,). ``is_sample`` is True for the bundled
    offline fallback, which is not the full set. ``kind`` says how to read a new input the way
    these were made (see :mod:`xpnet.data.catalog`); ``decode_s`` and ``cache_hit`` how the
    arrays were had this time.
    """

    name: str
    source: str
    is_sample: bool
    x_train: np.ndarray
    t_train: np.ndarray
    x_test: np.ndarray
    t_test: np.ndarray
    classes: list[str] = field(default_factory=list)
    kind: str = "mnist"
    decode_s: float = 0.0
    cache_hit: bool = False

    @property
    def num_classes(self) -> int:
        """The class names' count; for arrays made without names, the largest label + 1."""
        if self.classes:
            return len(self.classes)
        return int(max((int(t.max()) for t in (self.t_train, self.t_test) if t.size), default=-1)) + 1

    def summary(self) -> dict[str, Any]:
        """Plain data for run summaries and logs."""
        return {"name": self.name, "source": self.source, "is_sample": self.is_sample,
                "train": int(self.x_train.shape[0]), "test": int(self.x_test.shape[0]),
                "image_shape": list(self.x_train.shape[1:]), "classes": list(self.classes), "kind": self.kind}

    def __repr__(self) -> str:
        sample = ", SAMPLE" if self.is_sample else ""
        return (f"Dataset({self.name!r}, train={self.x_train.shape[0]}, test={self.x_test.shape[0]}"
                f"{sample}, source={self.source!r})")


# ---------------------------------------------------------------- decoding


def _check_content(spec: DatasetSpec, f: sources.FileSpec, path: Path, raw: bytes) -> None:
    """Identify a file by the SHA-256 of its uncompressed bytes where that is known.

    A file that is another dataset's (MNIST given as Fashion-MNIST) or another
    split's is an error; unknown content with a valid structure is used, with a
    warning in the log (a user's own IDX files, or test fixtures).
    """
    sha = digest(raw, "sha256")
    if sha == f.raw_sha256:
        return
    other = sources.KNOWN_CONTENT.get(sha)
    if other is not None:
        raise DataError(f"{path}: wrong file: its contents are {sources.get_spec(other[0]).title}'s "
                        f"{other[1]}, not {spec.title}'s {f.name}", path)
    logger.warning("%s: valid IDX but not the published %s %s (SHA-256 %s); using it as given",
                   path, spec.title, f.name, sha[:16])


def _read_split(spec: DatasetSpec, found: Found, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Decode and check one split's images and labels."""
    arrays = []
    for kind in ("images", "labels"):
        f = spec.file(split, kind)
        path = found.files[f.name]
        raw = read_idx_bytes(path)
        _check_content(spec, f, path, raw)
        arrays.append(parse_idx(raw, path, expect=kind))
    x, t = arrays
    ipath, lpath = found.files[spec.file(split, "images").name], found.files[spec.file(split, "labels").name]
    if x.shape[1:] != IMAGE_SHAPE:
        raise DataError(f"{ipath}: bad dimensions: images are {x.shape[1]}x{x.shape[2]}, "
                        f"{spec.title} images are 28x28", ipath)
    if x.shape[0] != t.shape[0]:
        raise DataError(f"{ipath} holds {x.shape[0]} images but {lpath} holds {t.shape[0]} labels: "
                        f"image and label counts must match", ipath)
    if t.size and int(t.max()) >= len(spec.classes):
        raise DataError(f"{lpath}: label {int(t.max())} out of range: {spec.title} labels are "
                        f"0..{len(spec.classes) - 1}", lpath)
    return x, t


def _decode(spec: DatasetSpec, found: Found) -> tuple[np.ndarray, ...]:
    if found.origin == "sample":
        # The bundled files are always the real MNIST t10k: check them against its published sums.
        x, t = _read_split(sources.MNIST, found, "test")
        return split_sample(x, t)
    return (*_read_split(spec, found, "train"), *_read_split(spec, found, "test"))


def split_sample(x: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, ...]:
    """The bundled t10k images split reproducibly into train/test parts (original order kept)."""
    n = x.shape[0]
    perm = np.random.Generator(np.random.PCG64(SAMPLE_SEED)).permutation(n)
    n_train = min(SAMPLE_TRAIN, n * SAMPLE_TRAIN // (SAMPLE_TRAIN + SAMPLE_TEST))
    tr, te = np.sort(perm[:n_train]), np.sort(perm[n_train:])
    return x[tr], t[tr], x[te], t[te]


# ---------------------------------------------------------------- decoded cache


def _cache_key(spec: DatasetSpec, found: Found) -> str:
    """What the decoded arrays were made from: files (path, size, mtime) and, for the sample, its split."""
    files = []
    for name in sorted(found.files):
        p = found.files[name].resolve()
        st = p.stat()
        files.append([name, str(p), st.st_size, st.st_mtime_ns])
    key: dict[str, Any] = {"format": _CACHE_FORMAT, "dataset": spec.name, "files": files}
    if found.origin == "sample":
        key["sample"] = [SAMPLE_TRAIN, SAMPLE_TEST, SAMPLE_SEED]
    return json.dumps(key, sort_keys=True)


def _valid_arrays(arrays: dict[str, np.ndarray], n_classes: int) -> str | None:
    """Why these arrays are not a decoded dataset, or None if they are."""
    for split in ("train", "test"):
        x, t = arrays[f"x_{split}"], arrays[f"t_{split}"]
        if x.dtype != np.uint8 or x.ndim != 3 or x.shape[1:] != IMAGE_SHAPE:
            return f"x_{split} is {x.dtype} {x.shape}, expected uint8 (N, 28, 28)"
        if t.dtype != np.uint8 or t.shape != (x.shape[0],):
            return f"t_{split} is {t.dtype} {t.shape}, expected uint8 ({x.shape[0]},)"
        if t.size and int(t.max()) >= n_classes:
            return f"t_{split} has label {int(t.max())} >= {n_classes}"
    return None


def _read_cache(path: Path, key: str, spec: DatasetSpec) -> tuple[np.ndarray, ...] | None:
    """The cached arrays if ``path`` is a sound cache for ``key``; else None (a bad one is removed)."""
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if sorted(z.files) != sorted((*_ARRAYS, "key")):
                raise ValueError(f"unexpected contents {sorted(z.files)}")
            if str(z["key"][()]) != key:
                logger.info("%s: decoded cache %s was made from other files; rebuilding it", spec.name, path)
                return None
            arrays = {k: z[k] for k in _ARRAYS}
        problem = _valid_arrays(arrays, len(spec.classes))
        if problem:
            raise ValueError(problem)
    except Exception as exc:  # any failure to read our own cache means: rebuild it, never trust it
        logger.warning("%s: decoded cache %s is corrupt (%s: %s); rebuilding it", spec.name, path,
                       exc.__class__.__name__, exc)
        with contextlib.suppress(OSError):  # a read-only cache is rebuilt in memory only
            path.unlink(missing_ok=True)
        return None
    logger.debug("%s: decoded arrays from %s", spec.name, path)
    return tuple(arrays[k] for k in _ARRAYS)


def _write_cache(path: Path, key: str, arrays: tuple[np.ndarray, ...]) -> None:
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, key=np.array(key), **dict(zip(_ARRAYS, arrays, strict=True)))
    except OSError as exc:
        logger.warning("could not write the decoded cache %s (%s); later runs will decode again", path, exc)


# ---------------------------------------------------------------- entry points


def _sample(spec: DatasetSpec, why: str) -> Found:
    """The bundled MNIST t10k files, with a loud warning: never a silent substitute."""
    if not spec.has_sample:
        raise DataError(
            f"{spec.title} not found and could not be downloaded ({why}). To get it: set "
            f"{sources.ENV_DATA_DIR} (or pass --data-dir) to a folder holding {spec.name}/ or its four "
            f"files ({', '.join(f.gz_name for f in spec.files)}); or run once with network access to "
            f"download it into {sources.cache_dir(spec)}"
            + (f"; or {spec.how_to_get}" if spec.how_to_get else "") + ".")
    files = {f.name: BUNDLED_DIR / f.gz_name for f in spec.files if f.split == "test"}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise DataError(f"{spec.title} not found ({why}) and the bundled sample is missing "
                        f"({', '.join(missing)}): reinstall xpnet or set {sources.ENV_DATA_DIR}")
    source = (f"bundled sample: MNIST t10k ({SAMPLE_TRAIN} train / {SAMPLE_TEST} test, seed {SAMPLE_SEED}) "
              f"from {BUNDLED_DIR}")
    msg = (f"{spec.title} NOT FOUND ({why}). Using the BUNDLED SAMPLE instead: the 10,000 MNIST test "
           f"images split {SAMPLE_TRAIN} train / {SAMPLE_TEST} test. Results are not comparable with "
           f"full {spec.title}. For the full set: set {sources.ENV_DATA_DIR} (or pass --data-dir) to a "
           f"folder holding the four {spec.title} .gz files, or run once with network access.")
    warnings.warn(msg, SampleDataWarning, stacklevel=4)
    logger.warning("%s", msg)
    return Found(files, source, "sample")


def _find(spec: DatasetSpec, data_dir: Path | str | None, download: bool | None) -> Found:
    found, looked = sources.locate(spec, data_dir)
    if found is not None:
        return found
    if not sources.downloads_allowed(download):
        return _sample(spec, f"looked in {looked}; downloads are off")
    try:
        return sources.download(spec)
    except sources.DownloadError as exc:
        if not exc.offline:
            raise  # a mirror answered with wrong data: say so, do not paper over it
        return _sample(spec, f"looked in {looked}; download failed: {exc}")


def load_dataset(name: str = "mnist", data_dir: Path | str | None = None, *,
                 download: bool | None = None, cache: bool = True) -> Dataset:
    """Load MNIST or Fashion-MNIST as uint8 host arrays, from the first source that has it.

    ``data_dir``: a folder holding ``<name>/`` or the four files (else
    ``$XPNET_DATA_DIR``, the user cache, system copies, a download). ``download``:
    None follows ``$XPNET_OFFLINE``. ``cache``: keep/reuse decoded arrays in the
    user cache. Where MNIST cannot be had, the bundled sample is used with a
    :class:`SampleDataWarning`; for Fashion-MNIST that is a :class:`DataError`.
    """
    spec = sources.get_spec(name)
    found = _find(spec, data_dir, download)
    cache_path = sources.cache_dir(spec) / CACHE_NAME
    key = _cache_key(spec, found)
    arrays = _read_cache(cache_path, key, spec) if cache else None
    if arrays is None:
        try:
            arrays = _decode(spec, found)
        except DataError as exc:
            # A bad file in our own download cache (a disk error, a hand edit): remove it and fetch again.
            if found.origin not in ("cache", "download") or exc.path is None \
                    or exc.path.parent != sources.cache_dir(spec) or not sources.downloads_allowed(download):
                raise
            logger.warning("%s; removing it and downloading it again", exc)
            exc.path.unlink(missing_ok=True)
            found = _find(spec, data_dir, download)
            key = _cache_key(spec, found)
            arrays = _decode(spec, found)
        if cache:
            _write_cache(cache_path, key, arrays)
    x_train, t_train, x_test, t_test = arrays
    return Dataset(spec.name, found.source, found.origin == "sample", x_train, t_train, x_test, t_test,
                   list(spec.classes), kind=spec.name)


def load_mnist(normalize: bool = True, flatten: bool = True, one_hot_label: bool = False,
               dataset: str = "mnist", data_dir: Path | str | None = None
               ) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """The book's entry point: ``(x_train, t_train), (x_test, t_test)`` as host NumPy arrays.

    normalize: float32 in [0, 1] (else uint8 0..255); flatten: (N, 784) (else
    (N, 1, 28, 28)); one_hot_label: (N, 10) float32 (else uint8 class indices).
    """
    ds = load_dataset(dataset, data_dir)

    def images(x: np.ndarray) -> np.ndarray:
        x = x.reshape(x.shape[0], -1) if flatten else x.reshape(x.shape[0], 1, *x.shape[1:])
        return x.astype(np.float32) / np.float32(255.0) if normalize else x

    def labels(t: np.ndarray) -> np.ndarray:
        if one_hot_label:
            return (t[:, None] == np.arange(ds.num_classes)).astype(np.float32)
        return t

    return (images(ds.x_train), labels(ds.t_train)), (images(ds.x_test), labels(ds.t_test))
