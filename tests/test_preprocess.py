"""Pictures as people have them → 28×28 inputs made the way MNIST and Fashion-MNIST made theirs.

MNIST's own test digits are the ground truth: a test digit drawn large, dark on light paper,
off-centre, in colour, saved as a big noisy JPEG (or a PNG with a transparent canvas) must come
back as (nearly) the same 28×28 image.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from xpnet.model_io.predict import read_inputs
from xpnet.model_io.preprocess import ImageError, mnist_style, preprocess, read_image, read_npy


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    """Two of each digit from MNIST's test set (the bundled copy: no download, always there)."""
    from xpnet.data.idx import read_idx

    bundled = Path(__file__).resolve().parents[1] / "xpnet" / "data" / "bundled"
    x = read_idx(bundled / "t10k-images-idx3-ubyte.gz")
    t = read_idx(bundled / "t10k-labels-idx1-ubyte.gz")
    idx = np.concatenate([np.flatnonzero(t == d)[:2] for d in range(10)])
    return x[idx], t[idx]


def corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def corr_shift(a: np.ndarray, b: np.ndarray) -> float:
    """Correlation up to a one-pixel shift: centring by the centre of mass rounds to whole pixels (MNIST's
    own digits sit within ±0.5 px of the centre), so a redrawn digit may land one pixel off."""
    return max(corr(np.roll(a, (dy, dx), axis=(0, 1)), b) for dy in (-1, 0, 1) for dx in (-1, 0, 1))


def paper_photo(digit: np.ndarray, size: tuple[int, int] = (1600, 1200), scale: int = 12,
                at: tuple[int, int] = (150, 900), seed: int = 0) -> np.ndarray:
    """The digit written large in dark ink on grey-white paper, somewhere off-centre, with sensor noise (RGB)."""
    w, h = size
    side = 28 * scale
    big = np.asarray(Image.fromarray(digit).resize((side, side), Image.Resampling.BICUBIC), dtype=np.float64)
    paper = np.full((h, w), 228.0) + np.linspace(-12, 12, w)[None, :]  # uneven light
    top, left = at
    paper[top:top + side, left:left + side] -= big.clip(0, 255) * 0.8
    noisy = paper + np.random.default_rng(seed).normal(0, 5, paper.shape)
    grey = noisy.clip(0, 255).astype(np.uint8)
    return np.stack([grey, grey, (grey * 0.93).astype(np.uint8)], axis=-1)  # a warm tint: colour input


def test_the_dataset_images_come_back_as_they_are(digits: tuple[np.ndarray, np.ndarray]) -> None:
    """MNIST's digits are already cropped, fitted and centred: preprocessing them again changes little."""
    x, _ = digits
    for d in x:
        out = mnist_style(d.astype(np.float64))
        assert out.shape == (28, 28) and out.min() >= 0 and out.max() <= 1
        assert corr(out, d) > 0.95


def test_large_off_centre_dark_on_light_jpeg(tmp_path: Path, digits: tuple[np.ndarray, np.ndarray]) -> None:
    x, _ = digits
    scores = []
    for i, d in enumerate(x):
        path = tmp_path / f"photo{i}.jpg"
        Image.fromarray(paper_photo(d, at=(100 + 30 * (i % 10), 80 + 110 * (i % 10)), seed=i)).save(path, quality=80)
        [inp] = read_inputs(path)
        assert inp.image.dtype == np.float32 and inp.image.shape == (28, 28)
        scores.append(corr_shift(inp.image, d))
    assert min(scores) > 0.9, scores
    others = [corr_shift(read_inputs(tmp_path / "photo0.jpg")[0].image, d) for d in x[2:]]  # not digit 0
    assert max(others) < 0.8, others  # the measure tells digits apart


def test_inverted_and_centre_of_mass(digits: tuple[np.ndarray, np.ndarray]) -> None:
    """Light-on-dark and dark-on-light give the same input; its centre of mass is at (14, 14) as in MNIST."""
    d = digits[0][3].astype(np.float64)
    canvas = np.zeros((200, 300))
    canvas[10:38, 250:278] = d  # top right corner
    a, b = preprocess(canvas), preprocess(255.0 - canvas)
    np.testing.assert_allclose(a, b, atol=1e-6)
    ys, xs = np.mgrid[0:28, 0:28]
    assert abs(float((a * ys).sum() / a.sum()) - 14) <= 0.5 and abs(float((a * xs).sum() / a.sum()) - 14) <= 0.5
    rows, cols = np.flatnonzero(a.max(axis=1) > 0.25), np.flatnonzero(a.max(axis=0) > 0.25)
    assert max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1 <= 21  # fitted into the 20×20 box


def test_aspect_ratio_is_kept() -> None:
    bar = np.zeros((400, 400))
    bar[100:300, 190:210] = 255  # a tall "1": 200 × 20
    out = preprocess(bar)
    rows, cols = np.flatnonzero(out.max(axis=1) > 0.5), np.flatnonzero(out.max(axis=0) > 0.5)
    assert rows[-1] - rows[0] + 1 == 20 and cols[-1] - cols[0] + 1 <= 3


def test_transparent_canvas_and_other_formats(tmp_path: Path, digits: tuple[np.ndarray, np.ndarray]) -> None:
    d = digits[0][5]
    # A drawing app: black strokes on a transparent canvas (RGB all zero everywhere).
    rgba = np.zeros((280, 280, 4), np.uint8)
    rgba[..., 3] = np.asarray(Image.fromarray(d).resize((280, 280), Image.Resampling.BICUBIC))
    Image.fromarray(rgba, "RGBA").save(tmp_path / "strokes.png")
    light = 255 - d
    Image.fromarray(light).save(tmp_path / "digit.bmp")
    Image.fromarray(light).convert("P").save(tmp_path / "digit.gif")
    Image.fromarray(np.stack([light] * 3, -1)).save(tmp_path / "digit.webp", lossless=True)
    Image.fromarray(light.astype(np.uint16) * 257).save(tmp_path / "digit16.png")  # a 16-bit scan
    for name in ("strokes.png", "digit.bmp", "digit.gif", "digit.webp", "digit16.png"):
        [inp] = read_inputs(tmp_path / name)
        assert corr_shift(inp.image, d) > 0.9, name


def test_fashion_style_fills_the_frame() -> None:
    shirt = np.full((300, 200), 250.0)
    shirt[40:260, 30:170] = 60.0  # a dark garment on white, taller than wide
    out = preprocess(shirt, "fashion-mnist")
    rows, cols = np.flatnonzero(out.max(axis=1) > 0.5), np.flatnonzero(out.max(axis=0) > 0.5)
    assert rows[0] <= 1 and rows[-1] >= 26  # the longer side spans the 28 pixels
    assert abs((cols[0] + cols[-1]) / 2 - 13.5) <= 1  # centred


def test_npy_inputs(tmp_path: Path, digits: tuple[np.ndarray, np.ndarray]) -> None:
    x, _ = digits
    np.save(tmp_path / "one.npy", x[0])
    np.save(tmp_path / "many.npy", x[:4])
    np.save(tmp_path / "floats.npy", x[:2].astype(np.float32) / 255)
    [one] = read_inputs(tmp_path / "one.npy")
    np.testing.assert_allclose(one.image, x[0] / 255, atol=1e-7)
    many = read_inputs(tmp_path / "many.npy")
    assert [m.name for m in many] == [f"{tmp_path / 'many.npy'}[{i}]" for i in range(4)]
    np.testing.assert_allclose(read_npy(tmp_path / "floats.npy"), x[:2] / 255, atol=1e-6)


@pytest.mark.parametrize("case", ["text", "truncated", "blank", "tiny-contrast", "npy-shape", "npy-range", "npz",
                                  "missing", "transparent"])
def test_bad_inputs_name_the_file(tmp_path: Path, case: str) -> None:
    path = tmp_path / {"npy-shape": "a.npy", "npy-range": "a.npy", "npz": "a.npy"}.get(case, "a.png")
    if case == "text":
        path.write_text("not a picture\n")
    elif case == "truncated":
        Image.fromarray(np.zeros((50, 50), np.uint8)).save(path)
        path.write_bytes(path.read_bytes()[:60])
    elif case == "blank":
        Image.fromarray(np.full((64, 64), 255, np.uint8)).save(path)
    elif case == "tiny-contrast":
        a = np.full((64, 64), 200, np.uint8)
        a[20:40, 30:34] = 195
        Image.fromarray(a).save(path)
    elif case == "npy-shape":
        np.save(path, np.zeros((3, 32, 32), np.uint8))
    elif case == "npy-range":
        np.save(path, np.full((28, 28), 300.0))
    elif case == "npz":
        with open(path, "wb") as f:
            np.savez(f, a=np.zeros((28, 28)))
    elif case == "transparent":
        Image.fromarray(np.zeros((20, 20, 4), np.uint8), "RGBA").save(path)
    with pytest.raises(ImageError) as info:
        read_inputs(path)
    msg = str(info.value)
    assert str(path) in msg and "\n" not in msg


def test_read_image_reduces_huge_pictures(tmp_path: Path) -> None:
    Image.fromarray(np.full((3000, 4000), 255, np.uint8)).save(tmp_path / "big.png")
    assert max(read_image(tmp_path / "big.png").shape) <= 1024
