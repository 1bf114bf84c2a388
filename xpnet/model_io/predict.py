"""Classify inputs with a trained model: files → inputs made as the training data was → probabilities → top K.

MNIST-like models get MNIST's or Fashion-MNIST's preprocessing (crop to the ink, centre); models
trained on pictures (an image folder, CIFAR-10, image arrays) get each picture decoded exactly as
the folder reader decoded the training pictures: resized to their (H, W), converted to their channels.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xpnet.data import pictures
from xpnet.data.idx import DataError
from xpnet.model_io.evaluate import predict_logits, softmax
from xpnet.model_io.preprocess import SIZE, STYLES, ImageError, preprocess, read_image, read_npy


@dataclass
class Input:
    """One input as the model takes it (floats in [0, 1]) and where it came from."""

    name: str  # the file, with [i] for the i-th array of a .npy stack
    path: Path
    image: np.ndarray  # float32 (28, 28) for MNIST-like models, else the training sample's shape


def read_inputs(path: str | os.PathLike[str], dataset: str = "mnist",
                sample_shape: tuple[int, ...] | None = None) -> list[Input]:
    """The inputs in one file: an image preprocessed as ``dataset`` made its images, or the arrays of a .npy.

    ``dataset`` is the model's data kind ('mnist', 'fashion-mnist', 'cifar10', 'folder', 'npz');
    ``sample_shape`` its training sample shape (default MNIST's (28, 28)).
    """
    p = Path(path)
    shape = tuple(sample_shape) if sample_shape is not None else (SIZE, SIZE)
    if not p.is_file():
        raise ImageError(f"{p}: no such file" if not p.exists() else f"{p}: not a file")
    if p.suffix.lower() == ".npy":
        stack = read_npy(p, shape, floats_as_given=dataset == "npz")
        if stack.shape[0] == 1:
            return [Input(str(p), p, stack[0])]
        return [Input(f"{p}[{i}]", p, a) for i, a in enumerate(stack)]
    if dataset in STYLES:
        return [Input(str(p), p, preprocess(read_image(p), dataset, name=str(p)))]
    if len(shape) not in (2, 3):
        raise ImageError(f"{p}: the model was trained on vectors of shape {shape}, not pictures; give a .npy "
                         f"of shape {shape} or (N, {', '.join(map(str, shape))})")
    c, h, w = shape if len(shape) == 3 else (1, *shape)
    try:
        picture = pictures.decode(p, (w, h), c)
    except DataError as exc:
        raise ImageError(str(exc)) from None
    return [Input(str(p), p, (picture.astype(np.float32) / np.float32(255.0)).reshape(shape))]


def probabilities(net: Any, images: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    """Softmax probabilities (N, C) of ``net`` for float inputs (N, *sample shape) in [0, 1]."""
    return softmax(predict_logits(net, images, batch_size).astype(np.float64))


def top_k(probs: np.ndarray, classes: list[str], k: int) -> list[list[dict[str, Any]]]:
    """For each row the ``k`` most probable classes as ``{"label", "name", "prob"}``, most probable first."""
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return [[{"label": int(j), "name": classes[j], "prob": float(row[j])} for j in idx]
            for row, idx in zip(probs, order, strict=True)]
