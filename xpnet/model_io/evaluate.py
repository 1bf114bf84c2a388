"""Evaluate a trained net on a labelled set: accuracy, per-class accuracy, confusion matrix, mistakes.

The forward passes run in the same batches, dtype and layout as the trainer's test evaluation
(a DataLoader over the uint8 images, scaled on the device), so an unchanged model on unchanged
data gives exactly the accuracy its run reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from xpnet import backend
from xpnet.data import DataLoader


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax on the host, shifted by the row max so large logits cannot overflow."""
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def predict_logits(net: Any, x: np.ndarray, batch_size: int = 1000, dtype: str | None = None) -> np.ndarray:
    """Logits (N, classes) of ``net`` for host samples ``x`` (N, ...): uint8 scaled by 1/255, or floats."""
    n = int(x.shape[0])
    if n == 0:
        return np.zeros((0, 10), dtype=np.float32)
    loader = DataLoader(x, np.zeros(n, dtype=np.int64), min(batch_size, n), shuffle=False, device=net.device,
                        flatten=len(tuple(net.input_shape)) == 1, dtype=dtype or net.dtype)
    return np.concatenate([backend.to_host(net.predict(xb)) for xb, _ in loader], axis=0)


@dataclass
class Evaluation:
    """Predictions of one net on one labelled set, and the numbers derived from them."""

    labels: np.ndarray  # (N,) true class indices
    probs: np.ndarray  # (N, C) softmax of the logits, float64
    predicted: np.ndarray  # (N,) arg-max of the logits

    @property
    def n(self) -> int:
        return int(self.labels.shape[0])

    @property
    def num_classes(self) -> int:
        return int(self.probs.shape[1])

    @property
    def correct(self) -> int:
        return int(np.count_nonzero(self.predicted == self.labels))

    @property
    def accuracy(self) -> float:
        return self.correct / self.n if self.n else float("nan")

    def confusion(self) -> np.ndarray:
        """(C, C) counts: row = true class, column = predicted class."""
        c = self.num_classes
        return np.bincount(self.labels * c + self.predicted, minlength=c * c).reshape(c, c)

    def per_class_accuracy(self) -> list[float | None]:
        """Recall of each class (None for a class with no samples)."""
        m = self.confusion()
        totals = m.sum(axis=1)
        return [float(m[i, i] / totals[i]) if totals[i] else None for i in range(self.num_classes)]

    def mistakes(self) -> np.ndarray:
        """Indices of the misclassified samples, the most confident mistakes first (ties by index)."""
        wrong = np.flatnonzero(self.predicted != self.labels)
        confidence = self.probs[wrong, self.predicted[wrong]]
        return wrong[np.lexsort((wrong, -confidence))]

    def confidence(self, i: int) -> float:
        """The probability the net gave its own prediction for sample ``i``."""
        return float(self.probs[i, self.predicted[i]])


def evaluate(net: Any, x: np.ndarray, t: np.ndarray, batch_size: int = 1000, dtype: str | None = None
             ) -> Evaluation:
    """Run ``net`` over host images ``x`` with labels ``t`` (class indices)."""
    logits = predict_logits(net, x, batch_size, dtype).astype(np.float64)
    labels = np.asarray(t).astype(np.int64)
    # argmax of the logits as the net's own accuracy() takes it (not of the rounded probabilities).
    return Evaluation(labels=labels, probs=softmax(logits), predicted=logits.argmax(axis=1))
