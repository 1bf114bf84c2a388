"""Classify inputs with a trained model: files → 28×28 inputs → probabilities → the top K classes."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xpnet.model_io.evaluate import predict_logits, softmax
from xpnet.model_io.preprocess import ImageError, preprocess, read_image, read_npy


@dataclass
class Input:
    """One 28×28 input (light ink on black, floats in [0, 1]) and where it came from."""

    name: str  # the file, with [i] for the i-th array of a .npy stack
    path: Path
    image: np.ndarray  # (28, 28) float32


def read_inputs(path: str | os.PathLike[str], dataset: str = "mnist") -> list[Input]:
    """The inputs in one file: an image preprocessed as ``dataset`` made its images, or the arrays of a .npy."""
    p = Path(path)
    if not p.is_file():
        raise ImageError(f"{p}: no such file" if not p.exists() else f"{p}: not a file")
    if p.suffix.lower() == ".npy":
        stack = read_npy(p)
        if stack.shape[0] == 1:
            return [Input(str(p), p, stack[0])]
        return [Input(f"{p}[{i}]", p, a) for i, a in enumerate(stack)]
    return [Input(str(p), p, preprocess(read_image(p), dataset, name=str(p)))]


def probabilities(net: Any, images: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    """Softmax probabilities (N, C) of ``net`` for float images (N, 28, 28) in [0, 1]."""
    return softmax(predict_logits(net, images, batch_size).astype(np.float64))


def top_k(probs: np.ndarray, classes: list[str], k: int) -> list[list[dict[str, Any]]]:
    """For each row the ``k`` most probable classes as ``{"label", "name", "prob"}``, most probable first."""
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return [[{"label": int(j), "name": classes[j], "prob": float(row[j])} for j in idx]
            for row, idx in zip(probs, order, strict=True)]
