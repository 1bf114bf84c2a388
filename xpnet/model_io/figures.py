"""The pictures of an evaluation: the confusion matrix and a grid of the net's mistakes (the book's fig. 8-3)."""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from xpnet.model_io.evaluate import Evaluation
from xpnet.train.files import atomic_write


def _short(name: str) -> str:
    """Fashion-MNIST's longest names shortened so they fit under a 28×28 picture."""
    return {"T-shirt/top": "T-shirt", "Ankle boot": "Boot"}.get(name, name)


def _percent(p: float) -> str:
    """A probability as a percentage rounded down to 0.1, so 0.9996 reads 99.9%, never 100%."""
    return f"{math.floor(p * 1000) / 10:.1f}%"


def _save(fig: object, path: str | os.PathLike[str]) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)  # type: ignore[attr-defined]
    return atomic_write(path, lambda f: f.write(buf.getvalue()))


def confusion_png(ev: Evaluation, classes: Sequence[str], path: str | os.PathLike[str], title: str = "") -> Path:
    """The confusion matrix with every count written in its cell (rows: true class, columns: predicted)."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no display needed

    m = ev.confusion()
    c = len(classes)
    fig = Figure(figsize=(7.5, 6.5))
    ax = fig.subplots()
    # Colour by the share of the true class, so small classes' errors show as clearly as big ones'.
    share = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    for i in range(c):
        for j in range(c):
            if m[i, j]:
                ax.text(j, i, str(m[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if share[i, j] > 0.5 else ("black" if i == j else "firebrick"))
    ticks = list(range(c))
    ax.set_xticks(ticks, [_short(n) for n in classes], rotation=45 if len(classes[0]) > 1 else 0, ha="right"
                  if len(classes[0]) > 1 else "center", fontsize=8)
    ax.set_yticks(ticks, [_short(n) for n in classes], fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or f"test accuracy {ev.accuracy:.4f} ({ev.correct}/{ev.n})", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def _as_picture(a: np.ndarray) -> tuple[np.ndarray | None, str | None]:
    """One sample as something imshow draws, and its colour map: MNIST-style (28, 28) as dark ink on white
    (the book's figure), (1, H, W) pictures in grey, (3, H, W) in colour; vectors that are no image: None."""
    if a.ndim == 1:
        side = math.isqrt(a.size)
        return (a.reshape(side, side), "gray_r") if side * side == a.size else (None, None)
    if a.ndim == 2:
        return a, "gray_r"
    if a.shape[0] == 1:
        return a[0], "gray"
    return (np.moveaxis(a[:3], 0, -1), None) if a.shape[0] == 3 else (a[0], "gray")


def mistakes_png(ev: Evaluation, images: np.ndarray, classes: Sequence[str], path: str | os.PathLike[str],
                 limit: int = 40, columns: int = 8, title: str = "") -> Path:
    """A grid of misclassified images, most confident mistakes first, each captioned true → predicted (p)."""
    from matplotlib.figure import Figure

    order = ev.mistakes()[:limit]
    rows = max(1, -(-len(order) // columns))
    fig = Figure(figsize=(columns * 1.1, rows * 1.3 + 0.5))
    axes = np.atleast_1d(fig.subplots(rows, columns)).reshape(-1)
    for ax in axes:
        ax.set_axis_off()
    top = 255 if images.dtype == np.uint8 else 1
    for ax, i in zip(axes, order, strict=False):
        picture, cmap = _as_picture(images[i])
        if picture is not None:
            ax.imshow(picture if cmap else np.clip(picture / top, 0, 1), cmap=cmap, vmin=0, vmax=top)
        true, pred = _short(classes[ev.labels[i]]), _short(classes[ev.predicted[i]])
        ax.set_title(f"{true}→{pred}\n{_percent(ev.confidence(i))}", fontsize=7, color="firebrick", pad=2)
    n_wrong = ev.n - ev.correct
    shown = f"the {len(order)} most confident of {n_wrong} mistakes" if n_wrong else "no mistakes"
    fig.suptitle(title or f"{shown} (true→predicted, confidence)", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    return _save(fig, path)
