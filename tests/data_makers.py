"""Small data sets in the real formats, generated for tests: pictures, CIFAR-10 batches, .npz files.

Every maker draws from a seed, so a test's data is the same on every run. The pictures are an easy
problem on purpose (each class is a colour or a shape), so a short training run must learn it.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np

from xpnet.data import cifar

#: One base colour per class of the generated picture folders.
COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}
FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP")
SUFFIX = {"PNG": ".png", "JPEG": ".jpg", "BMP": ".bmp", "GIF": ".gif", "WEBP": ".webp"}


def picture(colour: tuple[int, int, int], size: tuple[int, int], seed: int) -> np.ndarray:
    """An RGB (H, W, 3) uint8 picture: noise around ``colour``, a bright square somewhere in it."""
    rng = np.random.default_rng(seed)
    w, h = size
    a = np.clip(np.array(colour)[None, None, :] + rng.normal(0, 25, (h, w, 3)), 0, 255)
    y, x = rng.integers(0, h // 2), rng.integers(0, w // 2)
    a[y:y + h // 4, x:x + w // 4] = 255
    return a.astype(np.uint8)


def save_picture(path: Path, a: np.ndarray, fmt: str, grey: bool = False) -> Path:
    from PIL import Image

    im = Image.fromarray(a)
    if grey:
        im = im.convert("L")
    if fmt == "GIF":
        im = im.convert("P", palette=Image.Palette.ADAPTIVE) if not grey else im
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, format=fmt, **({"quality": 95} if fmt in ("JPEG", "WEBP") else {}))
    return path


def picture_folder(root: Path, per_class: int = 12, sizes: tuple[tuple[int, int], ...] = ((16, 16),),
                   classes: tuple[str, ...] = tuple(COLOURS), seed: int = 0, grey_every: int = 0) -> Path:
    """``root/<class>/<i>.<ext>`` pictures in every format in turn and the given sizes in turn."""
    for c_i, name in enumerate(classes):
        for i in range(per_class):
            fmt = FORMATS[i % len(FORMATS)]
            a = picture(COLOURS[name], sizes[i % len(sizes)], seed * 1000 + c_i * 100 + i)
            grey = bool(grey_every) and i % grey_every == grey_every - 1
            if grey and fmt == "WEBP":  # WebP has no grey mode: Pillow stores it as RGB
                fmt = "PNG"
            save_picture(root / name / f"{i:03d}{SUFFIX[fmt]}", a, fmt, grey)
    return root


#: A colour per CIFAR class for learnable generated records: class k is mostly this colour.
CIFAR_PALETTE = np.array([[230, 30, 30], [30, 230, 30], [30, 30, 230], [230, 230, 30], [230, 30, 230],
                          [30, 230, 230], [240, 240, 240], [20, 20, 20], [128, 64, 0], [0, 128, 128]])


def cifar_records(n: int, seed: int, learnable: bool = False) -> tuple[bytes, np.ndarray, np.ndarray]:
    """``n`` records in CIFAR-10's binary format and the (x (N, 3, 32, 32), labels) they hold.

    ``learnable``: each picture is its class's colour plus noise (else uniform noise).
    """
    rng = np.random.default_rng(seed)
    t = rng.integers(0, 10, n).astype(np.uint8)
    if learnable:
        noisy = CIFAR_PALETTE[t][:, :, None, None] + rng.normal(0, 30, (n, 3, 32, 32))
        x = np.clip(noisy, 0, 255).astype(np.uint8)
    else:
        x = rng.integers(0, 256, (n, 3, 32, 32)).astype(np.uint8)
    raw = b"".join(bytes([int(t[i])]) + x[i].tobytes() for i in range(n))
    return raw, x, t


def cifar_files(per_batch: int = 4, seed: int = 0, learnable: bool = False) -> dict[str, bytes]:
    """The seven files of ``cifar-10-batches-bin/`` with ``per_batch`` records in each batch."""
    files = {name: cifar_records(per_batch, seed + i, learnable)[0] for i, name in enumerate(cifar.TRAIN_FILES)}
    files[cifar.TEST_FILE] = cifar_records(per_batch, seed + 99, learnable)[0]
    files[cifar.META_FILE] = ("\n".join(cifar.CLASSES) + "\n\n").encode()
    return files


def cifar_archive(path: Path, files: dict[str, bytes], extra: list[tarfile.TarInfo] | None = None) -> Path:
    """A ``cifar-10-binary.tar.gz`` holding ``cifar-10-batches-bin/<files>`` (plus ``extra`` members)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"{cifar.FOLDER}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info in extra or []:
            tar.addfile(info, io.BytesIO(b"x" * info.size) if info.isfile() else None)
    return path
