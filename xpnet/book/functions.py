"""The book's ``common.functions`` (ch. 3–4), on whatever array library the input belongs to.

sigmoid, relu, softmax, cross_entropy_error and sum_squared_error are xpnet's own
(:mod:`xpnet.functions`); the rest are the book's one-line companions built on them.
"""

from __future__ import annotations

from typing import Any

from xpnet import functions as F
from xpnet.backend import array_namespace as namespace
from xpnet.book._device import as_array, np  # np re-exported: the book's `from common.functions import *` brings it

__all__ = ["identity_function", "step_function", "sigmoid", "sigmoid_grad", "relu", "relu_grad", "softmax",
           "sum_squared_error", "cross_entropy_error", "softmax_loss", "np"]

Array = Any


def _arr(x: Any) -> Array:
    """Numbers and lists as float64 NumPy arrays, as the book's ch. 3 examples use them."""
    return as_array(x, dtype="float64")


def identity_function(x: Array) -> Array:
    return x


def step_function(x: Array) -> Array:
    """1 where x > 0, else 0, as integers (ch. 3's perceptron step)."""
    x = _arr(x)
    xp = namespace(x)
    return xp.astype(x > 0, xp.int64)


def sigmoid(x: Array) -> Array:
    return F.sigmoid(_arr(x))


def sigmoid_grad(x: Array) -> Array:
    s = sigmoid(x)
    return (1.0 - s) * s


def relu(x: Array) -> Array:
    return F.relu(_arr(x))


def relu_grad(x: Array) -> Array:
    """1 where x >= 0 (the book's convention at 0), else 0."""
    x = _arr(x)
    return namespace(x).astype(x >= 0, x.dtype)


def softmax(x: Array) -> Array:
    return F.softmax(_arr(x))


def sum_squared_error(y: Array, t: Array) -> Array:
    return F.sum_squared_error(_arr(y), _arr(t))


def cross_entropy_error(y: Array, t: Array) -> Array:
    """Mean cross-entropy; ``t`` in any of the book's forms: class indices (N,) or (N, 1), or one-hot
    shaped like ``y`` even when its values are integers (ch. 4's ``t = np.array([0, 0, 1])``)."""
    return F.cross_entropy_error(_arr(y), as_array(t))


def softmax_loss(X: Array, t: Array) -> Array:  # noqa: N803 - the book's name
    return cross_entropy_error(softmax(X), t)
