"""Images as people have them → 28×28 inputs as the datasets made theirs.

MNIST (LeCun et al.): the digit is cropped to its ink, scaled to fit a 20×20 box keeping its
aspect ratio (anti-aliased, hence grey levels), then placed in 28×28 so that its centre of mass
sits at the centre: measured on the test set, the mean centre of mass is (14.0, 14.0) in pixel
indices with a spread of ±0.29, i.e. a whole-pixel shift to (14, 14).
Fashion-MNIST (Xiao et al.): the product is trimmed, its longer side scaled to 28 and the result
centred by its bounding box.
Both store light ink (value 255) on a black (0) background; photos and scans are usually the
reverse, so the background is detected from the image's border and inverted when it is light.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

SIZE = 28
#: Pixels brighter than this fraction of the strongest ink count as ink when cropping; fainter ones
#: are paper texture, shadows or JPEG noise.
INK_THRESHOLD = 0.25
#: Below this contrast (ink minus background, out of 255) an image holds no drawing at all.
MIN_CONTRAST = 24.0
#: Pictures larger than this on either side are first reduced (a phone photo is 4000 px wide).
MAX_SIDE = 1024


class ImageError(ValueError):
    """A file that cannot be used as an input; the message names it and says why."""


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Any image Pillow reads (PNG, JPEG, BMP, GIF's first frame, ...) as float64 grey levels 0..255, (H, W).

    Transparent pixels are filled with the background the drawing needs: white behind dark
    strokes, black behind light ones (a drawing app's strokes on a transparent canvas).
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    p = Path(path)
    try:
        with Image.open(p) as im:
            if im.format == "JPEG":
                im.draft("L", (MAX_SIDE, MAX_SIDE))  # decode a big photo at a fraction of its size
            im = ImageOps.exif_transpose(im)  # phone photos: the orientation the camera recorded
            if max(im.size) > MAX_SIDE:
                im.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.BOX)
            has_alpha = im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info)
            rgba = im.convert("RGBA") if has_alpha else None
            grey = _deep_grey(im) if im.mode.startswith(("I", "F")) else np.asarray(im.convert("L"), np.float64)
    except UnidentifiedImageError:
        raise ImageError(f"{p}: not an image Pillow can read") from None
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageError(f"{p}: cannot read the image ({_first_line(exc)})") from None
    if grey.size == 0:
        raise ImageError(f"{p}: the image has no pixels")
    if rgba is not None:
        alpha = np.asarray(rgba, dtype=np.float64)[..., 3] / 255.0
        if alpha.min() < 1.0:
            opaque = alpha.sum()
            if opaque == 0:
                raise ImageError(f"{p}: the image is empty (every pixel is transparent)")
            ink_level = float((grey * alpha).sum() / opaque)
            background = 255.0 if ink_level < 128 else 0.0
            grey = grey * alpha + background * (1.0 - alpha)
    return grey


def _deep_grey(im: object) -> np.ndarray:
    """16-bit, 32-bit integer and float greys scaled to 0..255 (Pillow's convert("L") would clip them)."""
    a = np.asarray(im, dtype=np.float64)
    top = float(a.max()) if a.size else 0.0
    full = 1.0 if top <= 1.0 else 255.0 if top <= 255.0 else 65535.0 if top <= 65535.0 else top
    return a * (255.0 / full)


def light_background(grey: np.ndarray) -> bool:
    """True when the picture is dark ink on light paper: its border (where no drawing usually is) is light."""
    return float(np.median(_border(grey))) > 127.5


def _border(a: np.ndarray) -> np.ndarray:
    h, w = a.shape
    k = max(1, min(h, w) // 20)  # a frame 5% wide
    return np.concatenate([a[:k].ravel(), a[-k:].ravel(), a[:, :k].ravel(), a[:, -k:].ravel()])


def ink(grey: np.ndarray, name: str = "image") -> np.ndarray:
    """Ink intensity in [0, 1] (light ink on dark ground, as the datasets have it), background at 0."""
    a = 255.0 - grey if light_background(grey) else grey.copy()
    background = float(np.median(_border(a)))
    a = np.clip(a - background, 0.0, None)
    # The strongest ink, ignoring the few brightest pixels of a large picture (sensor noise, specks).
    peak = float(np.partition(a.ravel(), a.size - 1 - a.size // 10000)[a.size - 1 - a.size // 10000])
    if peak < MIN_CONTRAST:
        raise ImageError(f"{name}: the image is empty (no drawing stands out from the background)")
    return np.clip(a / peak, 0.0, 1.0)


def _crop(a: np.ndarray, name: str) -> np.ndarray:
    """``a`` cut to the box around its ink (pixels above INK_THRESHOLD), faint pixels inside kept."""
    rows, cols = np.flatnonzero((a > INK_THRESHOLD).any(axis=1)), np.flatnonzero((a > INK_THRESHOLD).any(axis=0))
    if rows.size == 0:
        raise ImageError(f"{name}: the image is empty (no ink found)")
    return a[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def _fit(a: np.ndarray, box: int) -> np.ndarray:
    """Scale ``a`` so its longer side is ``box`` pixels, keeping the aspect ratio (anti-aliased)."""
    from PIL import Image

    h, w = a.shape
    scale = box / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    im = Image.fromarray(a.astype(np.float32))  # mode "F"
    return np.asarray(im.resize(size, Image.Resampling.LANCZOS), dtype=np.float64).clip(0.0, 1.0)


def _paste(patch: np.ndarray, top: int, left: int) -> np.ndarray:
    """``patch`` placed at (top, left) of a black SIZE×SIZE canvas; what falls outside is cut off."""
    out = np.zeros((SIZE, SIZE))
    h, w = patch.shape
    t0, l0 = max(top, 0), max(left, 0)
    t1, l1 = min(top + h, SIZE), min(left + w, SIZE)
    if t1 > t0 and l1 > l0:
        out[t0:t1, l0:l1] = patch[t0 - top:t1 - top, l0 - left:l1 - left]
    return out


def mnist_style(grey: np.ndarray, name: str = "image") -> np.ndarray:
    """MNIST's preprocessing: crop to the ink, fit 20×20 keeping the aspect, centre of mass at (14, 14)."""
    patch = _fit(_crop(ink(grey, name), name), 20)
    h, w = patch.shape
    mass = patch.sum()
    cy = float((patch.sum(axis=1) * np.arange(h)).sum() / mass)
    cx = float((patch.sum(axis=0) * np.arange(w)).sum() / mass)
    return _paste(patch, round(SIZE // 2 - cy), round(SIZE // 2 - cx))


def fashion_style(grey: np.ndarray, name: str = "image") -> np.ndarray:
    """Fashion-MNIST's: trim to the product, longer side to 28, centred by the bounding box."""
    patch = _fit(_crop(ink(grey, name), name), SIZE)
    h, w = patch.shape
    return _paste(patch, (SIZE - h) // 2, (SIZE - w) // 2)


STYLES = {"mnist": mnist_style, "fashion-mnist": fashion_style}


def preprocess(grey: np.ndarray, dataset: str = "mnist", name: str = "image") -> np.ndarray:
    """A (28, 28) float32 input in [0, 1] made the way ``dataset`` made its images."""
    return STYLES[dataset](grey, name).astype(np.float32)


def read_npy(path: str | os.PathLike[str], shape: tuple[int, ...] = (SIZE, SIZE),
             floats_as_given: bool = False) -> np.ndarray:
    """Ready-made inputs from a .npy: one sample of ``shape`` ((28, 28) for MNIST) or a stack (N, *shape),
    uint8 0..255 or floats 0..1 → float32 (N, *shape).

    They are taken as the datasets store them (light ink on black, already centred): no preprocessing.
    ``floats_as_given``: floats of any range are used as they are, as an .npz data set's floats were
    in training (integers are still grey levels 0..255).
    """
    want = tuple(shape)
    text = ", ".join(map(str, want))
    p = Path(path)
    try:
        a = np.load(p, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise ImageError(f"{p}: not a readable .npy array ({_first_line(exc)})") from None
    if not isinstance(a, np.ndarray):
        a.close()  # an NpzFile holds the file open
        raise ImageError(f"{p}: holds several arrays (an .npz?); give one ({text}) or (N, {text}) array")
    if a.shape == want:
        a = a[None]
    if a.shape[1:] != want or a.shape[0] == 0:
        raise ImageError(f"{p}: array of shape {a.shape}; expected ({text}) or (N, {text}) with N >= 1")
    if a.dtype.kind not in "uif":
        raise ImageError(f"{p}: array of dtype {a.dtype}; expected grey levels (uint8 0..255 or floats 0..1)")
    x = a.astype(np.float64)
    if not np.isfinite(x).all():
        raise ImageError(f"{p}: the array holds NaN or inf values")
    if floats_as_given and a.dtype.kind == "f":
        return x.astype(np.float32)
    if x.min() < 0 or x.max() > 255:
        raise ImageError(f"{p}: values {x.min():g}..{x.max():g}; expected 0..255 (uint8) or 0..1 (floats)")
    if a.dtype.kind in "ui" or x.max() > 1.0:
        x = x / 255.0
    return x.astype(np.float32)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__
