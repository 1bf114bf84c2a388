"""``--dataset`` as a name or a path: one entry point for every kind of data xpnet trains on.

- ``mnist``, ``fashion-mnist``: the IDX files (:mod:`xpnet.data.datasets`);
- ``cifar10``: the published binary archive (:mod:`xpnet.data.cifar`);
- a folder: pictures in ``DIR/<class>/`` or ``DIR/train|test/<class>/`` (:mod:`xpnet.data.folder`);
- a ``.npz``: arrays ``x_train``, ``y_train``, ... (:mod:`xpnet.data.arrays`).

A path is recorded absolute, so ``xpnet eval`` run from elsewhere re-reads the same test set.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from xpnet.data import arrays, cifar, folder
from xpnet.data.datasets import Dataset, load_dataset
from xpnet.data.idx import DataError
from xpnet.data.sources import SPECS, get_spec

NAMES = (*SPECS, cifar.NAME)
_CIFAR_ALIASES = ("cifar10", "cifar-10", "cifar_10")
#: Kinds whose new inputs are made like MNIST's (crop to the ink, centre); the rest are resized.
MNIST_LIKE = tuple(SPECS)


def canonical(dataset: str) -> str:
    """A known name in its canonical spelling, or the path made absolute; DataError for neither."""
    text = str(dataset).strip()
    if text.lower() in _CIFAR_ALIASES:
        return cifar.NAME
    try:
        return get_spec(text).name
    except DataError:
        pass
    p = Path(text).expanduser()
    if p.is_dir() or (p.is_file() and p.suffix.lower() == ".npz"):
        return str(p.resolve())
    if p.exists():
        raise DataError(f"{p}: not an image folder or an .npz (--dataset takes {', '.join(NAMES)}, a folder "
                        f"of pictures or an .npz file)", p)
    raise DataError(f"--dataset {text}: invalid choice: no such dataset or path (choose from {', '.join(NAMES)}, "
                    f"or give an image folder or an .npz)")


def kind_of(dataset: str) -> str:
    """'mnist', 'fashion-mnist', 'cifar10', 'folder' or 'npz' for a canonical ``dataset``."""
    if dataset in NAMES:
        return dataset
    return "npz" if dataset.lower().endswith(".npz") and not Path(dataset).is_dir() else "folder"


def open_dataset(dataset: str, data_dir: Path | str | None = None, *, image_size: int | None = None,
                 channels: int | None = None, test_split: float = 0.2, strict_images: bool = False,
                 download: bool | None = None, cache: bool = True) -> Dataset:
    """The dataset named or pointed to by ``dataset`` as host arrays, with its class names and source."""
    name = canonical(dataset)
    kind = kind_of(name)
    started = time.perf_counter()
    if kind in SPECS:
        ds = load_dataset(name, data_dir, download=download, cache=cache)
        ds.decode_s = time.perf_counter() - started
        return ds
    if kind == cifar.NAME:
        a, src, seconds, hit = cifar.load(data_dir, download, cache)
        return _dataset(cifar.NAME, f"{src.path} ({src.origin})", a, kind, seconds, hit)
    if kind == "npz":
        a = arrays.load_npz(name, test_split)
        return _dataset(name, name, a, kind, time.perf_counter() - started, False)
    opts = folder.FolderOptions(image_size=image_size, channels=channels, test_split=test_split,
                                strict=strict_images)
    d = folder.load_folder(name, opts, cache)
    a = {"x_train": d.x_train, "t_train": d.t_train, "x_test": d.x_test, "t_test": d.t_test,
         "classes": np.array(d.classes)}
    return _dataset(name, name, a, kind, d.decode_s, d.cache_hit)


def _dataset(name: str, source: str, a: dict[str, np.ndarray], kind: str, seconds: float, hit: bool) -> Dataset:
    return Dataset(name, source, False, a["x_train"], a["t_train"], a["x_test"], a["t_test"],
                   [str(c) for c in a["classes"]], kind=kind, decode_s=seconds, cache_hit=hit)
