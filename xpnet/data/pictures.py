"""Pictures → uint8 arrays (C, H, W): the one way xpnet turns an image file into a training sample.

The image folder decodes its files with :func:`decode`, and ``xpnet predict`` decodes a user's
picture with the same function and the same size and channels, so a model sees at prediction what
it saw in training. Pictures are stretched to the target size (no crop, as Keras' and
torchvision's folder loaders do by default); colour pictures become grey by Pillow's luminance
(ITU-R 601) and grey ones colour by repeating the plane. Transparent pixels take their stored colour.

A file Pillow cannot identify is :class:`NotAnImage` (a folder may skip it); an image that is
truncated, corrupt or larger than Pillow's decompression-bomb limit is a :class:`DataError`.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from xpnet.data.idx import DataError

#: File names the folder reader looks at (others are counted as non-images).
EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
#: Pillow modes with one channel (grey, black and white, 16/32-bit grey).
GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")


class NotAnImage(DataError):
    """Pillow does not recognise the file as an image at all."""


def _bomb_message(path: Path, exc: BaseException) -> str:
    from PIL import Image

    return (f"{path}: refused as a decompression bomb: {exc} (Pillow's limit, PIL.Image.MAX_IMAGE_PIXELS = "
            f"{Image.MAX_IMAGE_PIXELS:,} pixels)")


def probe(path: Path) -> tuple[tuple[int, int], int]:
    """``((width, height), channels)`` read from the file's header only (fast: no pixels decoded)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                return im.size, 1 if im.mode in GREY_MODES or _grey_palette(im) else 3
    except UnidentifiedImageError:
        raise NotAnImage(f"{path}: not an image Pillow can read", path) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DataError(_bomb_message(path, exc), path) from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"{path}: corrupt or truncated image ({_first_line(exc)})", path) from None


def decode(path: Path, size: tuple[int, int], channels: int) -> np.ndarray:
    """The picture at ``path`` as uint8 (channels, height, width) for ``size`` = (width, height)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    mode = "L" if channels == 1 else "RGB"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                if im.format == "JPEG":
                    im.draft(mode, size)  # decode a big photo at a fraction of its size
                im.load()  # a truncated or corrupt file fails here, not later
                im = ImageOps.exif_transpose(im)
                if im.mode == "P" and "transparency" in im.info:
                    im = im.convert("RGBA")
                if im.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
                    im = Image.fromarray(_deep_to_uint8(np.asarray(im)))
                im = im.convert(mode)
                if im.size != size:
                    im = im.resize(size, Image.Resampling.BILINEAR)
                a = np.asarray(im, dtype=np.uint8)
    except UnidentifiedImageError:
        raise NotAnImage(f"{path}: not an image Pillow can read", path) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DataError(_bomb_message(path, exc), path) from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"{path}: corrupt or truncated image ({_first_line(exc)})", path) from None
    return a[None] if a.ndim == 2 else np.ascontiguousarray(a.transpose(2, 0, 1))


def _grey_palette(im: object) -> bool:
    """A palette picture (GIF, some PNGs) whose colours are all greys: one channel, as the picture is."""
    if getattr(im, "mode", "") not in ("P", "PA"):
        return False
    pal = np.array(im.getpalette() or [0, 0, 1], dtype=np.int64).reshape(-1, 3)  # type: ignore[attr-defined]
    return bool((pal == pal[:, :1]).all())


def _deep_to_uint8(a: np.ndarray) -> np.ndarray:
    """16-bit, 32-bit and float greys scaled to 0..255 (Pillow's convert("L") would clip them)."""
    a = a.astype(np.float64)
    top = float(a.max()) if a.size else 0.0
    full = 1.0 if top <= 1.0 else 255.0 if top <= 255.0 else 65535.0 if top <= 65535.0 else top
    return np.clip(np.round(a * (255.0 / full)), 0, 255).astype(np.uint8)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__
