"""An image folder as a dataset: ``DIR/<class>/*`` or ``DIR/train/<class>/*`` + ``DIR/test/<class>/*``.

Class names are the folder names, sorted (torchvision's ``ImageFolder`` and Keras'
``image_dataset_from_directory`` do the same); pictures in sub-folders of a class count for it.
Without ``train``/``test`` a seeded, stratified ``test_split`` of every class is held out.
Every picture is decoded once, to one size (``image_size``, else the most common size) and one
channel count (``channels``, else 3 when any picture is in colour), into uint8 arrays kept in the
decoded cache: the second run reads arrays, not pictures, and training never decodes a file.

Files Pillow does not recognise (a stray ``notes.txt``) are skipped with one warning naming how
many and the first, or refused with ``strict``; hidden files (``.DS_Store``) are ignored.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xpnet.data import cache, pictures
from xpnet.data.idx import DataError
from xpnet.data.split import stratified_split

logger = logging.getLogger("xpnet.data")


@dataclass
class FolderOptions:
    """What shapes the decoded arrays (and so is part of the cache key)."""

    image_size: int | None = None
    channels: int | None = None
    test_split: float = 0.2
    strict: bool = False


@dataclass
class Decoded:
    """Arrays of a folder: x (N, C, H, W) uint8, t (N,) labels, the class names, and how they were had."""

    x_train: np.ndarray
    t_train: np.ndarray
    x_test: np.ndarray
    t_test: np.ndarray
    classes: list[str]
    decode_s: float
    cache_hit: bool


def _visible(name: str) -> bool:
    return not name.startswith(".")


def _class_dirs(root: Path) -> list[Path]:
    return sorted((d for d in root.iterdir() if d.is_dir() and _visible(d.name)), key=lambda d: d.name)


def _files(class_dir: Path) -> list[Path]:
    """Every visible file under ``class_dir`` (recursively), sorted by path."""
    return sorted(p for p in class_dir.rglob("*") if p.is_file()
                  and all(_visible(q) for q in p.relative_to(class_dir).parts))


def scan(root: Path) -> tuple[dict[str, dict[str, list[Path]]], list[str]]:
    """``({split: {class: files}}, class names)``; split is "all", or "train" and "test"."""
    if not root.is_dir():
        raise DataError(f"{root}: not a folder", root)
    splits = {"train": root / "train", "test": root / "test"}
    if all(d.is_dir() for d in splits.values()):
        layout = {name: {d.name: _files(d) for d in _class_dirs(d)} for name, d in splits.items()}
    else:
        layout = {"all": {d.name: _files(d) for d in _class_dirs(root)}}
    first = layout.get("train", layout.get("all", {}))
    base = splits["train"] if "train" in layout else root
    if len(first) < 2:
        found = f"{len(first)} class folder" + ("" if len(first) == 1 else "s") + \
            (f" ({', '.join(first)})" if first else "")
        raise DataError(f"{base}: found {found}; an image folder needs at least two, one per class "
                        f"(DIR/<class>/*.png or DIR/train/<class>/* and DIR/test/<class>/*)", base)
    if "test" in layout:
        extra = sorted(set(layout["test"]) - set(layout["train"]))
        if extra:
            raise DataError(f"{splits['test'] / extra[0]}: the test set has class {extra[0]!r}, which "
                            f"{splits['train']} lacks", splits["test"] / extra[0])
    return layout, sorted(first)


def _probe_all(layout: dict[str, dict[str, list[Path]]], strict: bool, root: Path
               ) -> tuple[dict[str, dict[str, list[Path]]], Counter[tuple[int, int]], int]:
    """Keep the pictures, read their sizes and channels; skip (or refuse) the files that are not pictures."""
    sizes: Counter[tuple[int, int]] = Counter()
    colour = 1
    skipped: list[Path] = []
    kept: dict[str, dict[str, list[Path]]] = {}
    for split, classes in layout.items():
        kept[split] = {}
        for name, files in classes.items():
            good = []
            for p in files:
                try:
                    size, channels = pictures.probe(p)
                except pictures.NotAnImage:
                    if strict:
                        raise DataError(f"{p}: not an image Pillow can read (--strict-images refuses "
                                        f"non-image files in an image folder)", p) from None
                    skipped.append(p)
                    continue
                sizes[size] += 1
                colour = max(colour, channels)
                good.append(p)
            if not good:
                folder = files[0].parent if files else (root / split if split != "all" else root) / name
                raise DataError(f"{folder}: empty class folder (no pictures)", folder)
            kept[split][name] = good
    if skipped:
        what = "file that is not a picture" if len(skipped) == 1 else "files that are not pictures"
        logger.warning("%s: skipped %d %s (first: %s); --strict-images refuses them", root, len(skipped), what,
                       skipped[0])
    return kept, sizes, colour


def _target_size(sizes: Counter[tuple[int, int]], image_size: int | None, root: Path) -> tuple[int, int]:
    if image_size is not None:
        return image_size, image_size
    (w, h), n = sizes.most_common(1)[0]
    total = sum(sizes.values())
    if n < total:
        logger.warning("%s: pictures come in %d sizes; resizing all to the most common, %dx%d "
                       "(%d of %d pictures), or pass --image-size N", root, len(sizes), w, h, n, total)
    return w, h


def _decode_split(classes: dict[str, list[Path]], names: list[str], size: tuple[int, int], channels: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    paths = [(names.index(c), p) for c in sorted(classes) for p in classes[c]]
    x = np.empty((len(paths), channels, size[1], size[0]), dtype=np.uint8)
    for i, (_, p) in enumerate(paths):
        x[i] = pictures.decode(p, size, channels)
    dtype = np.uint8 if len(names) <= 256 else np.int32
    return x, np.array([label for label, _ in paths], dtype=dtype)


def load_folder(root: Path | str, options: FolderOptions | None = None, use_cache: bool = True) -> Decoded:
    """Decode (or read from the cache) the image folder at ``root``; every fault is a DataError naming it."""
    opts = options or FolderOptions()
    root = Path(root).resolve()
    started = time.perf_counter()
    layout, names = scan(root)
    all_files = [p for split in sorted(layout) for c in sorted(layout[split]) for p in layout[split][c]]
    key = cache.make_key("folder", cache.file_stamps(all_files),
                         {"root": str(root), "classes": {s: sorted(c) for s, c in layout.items()},
                          "image_size": opts.image_size, "channels": opts.channels,
                          "test_split": None if "test" in layout else opts.test_split, "strict": opts.strict})
    entry = cache.entry_path("folder", key)
    hit = cache.read(entry, key) if use_cache else None
    if hit is not None:
        return Decoded(hit["x_train"], hit["t_train"], hit["x_test"], hit["t_test"], [str(c) for c in hit["classes"]],
                       time.perf_counter() - started, True)
    kept, sizes, colour = _probe_all(layout, opts.strict, root)
    size = _target_size(sizes, opts.image_size, root)
    channels = opts.channels or colour
    if "all" in kept:
        x, t = _decode_split(kept["all"], names, size, channels)
        tr, te = stratified_split(t, opts.test_split)
        arrays = {"x_train": x[tr], "t_train": t[tr], "x_test": x[te], "t_test": t[te]}
    else:
        xtr, ttr = _decode_split(kept["train"], names, size, channels)
        xte, tte = _decode_split(kept["test"], names, size, channels)
        arrays = {"x_train": xtr, "t_train": ttr, "x_test": xte, "t_test": tte}
    if arrays["x_test"].shape[0] == 0:
        raise DataError(f"{root}: too few pictures to hold out a test set (every class has one); add pictures "
                        f"or a DIR/train + DIR/test layout", root)
    arrays["classes"] = np.array(names)
    if use_cache:
        cache.write(entry, key, arrays)
    return Decoded(arrays["x_train"], arrays["t_train"], arrays["x_test"], arrays["t_test"], names,
                   time.perf_counter() - started, False)
