"""The book's plain functions (ch. 3–4), written for any Array API namespace.

Each takes arrays of one library and returns arrays of the same library on the
same device; nothing here imports NumPy or CuPy. A compute module on the lowest compute floor:
it needs only ``backend``.
"""

from __future__ import annotations

from typing import Any

from xpnet.backend import array_namespace

Array = Any


def sigmoid(x: Array) -> Array:
    """1 / (1 + e^-x), computed without overflow for large |x|."""
    xp = array_namespace(x)
    e = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def relu(x: Array) -> Array:
    return array_namespace(x).maximum(x, 0.0)


def tanh(x: Array) -> Array:
    return array_namespace(x).tanh(x)


def log_softmax(x: Array) -> Array:
    """log softmax over the last axis; subtracting the max keeps exp() finite."""
    xp = array_namespace(x)
    z = x - xp.max(x, axis=-1, keepdims=True)
    return z - xp.log(xp.sum(xp.exp(z), axis=-1, keepdims=True))


def softmax(x: Array) -> Array:
    xp = array_namespace(x)
    e = xp.exp(x - xp.max(x, axis=-1, keepdims=True))
    return e / xp.sum(e, axis=-1, keepdims=True)


def is_index_labels(t: Array) -> bool:
    return array_namespace(t).isdtype(t.dtype, "integral")


def one_hot(t: Array, num_classes: int, dtype: Any = None) -> Array:
    """Class indices (N,) → one-hot (N, num_classes), built on t's device.

    Indices outside [0, num_classes) are an error, not a silent all-zero row.
    """
    xp = array_namespace(t)
    if t.ndim != 1:
        raise ValueError(f"class-index labels must be 1-D, got shape {tuple(t.shape)}")
    if t.shape[0] and bool(xp.any((t < 0) | (t >= num_classes))):
        raise ValueError(f"labels out of range: expected class indices in [0, {num_classes}), "
                         f"got min {int(xp.min(t))} and max {int(xp.max(t))}")
    return one_hot_unchecked(t, num_classes, dtype if dtype is not None else xp.float32)


def one_hot_unchecked(t: Array, num_classes: int, dtype: Any) -> Array:
    """:func:`one_hot` without the range check, for callers that check more cheaply
    (an out-of-range label gives an all-zero row, so the sum of the result is short of N)."""
    xp = array_namespace(t)
    hot = xp.reshape(t, (-1, 1)) == xp.arange(num_classes, device=t.device)
    return xp.astype(hot, dtype)


def flat_index_labels(t: Array, y: Array) -> Array:
    """The book's column of class indices, (N, 1), as (N,); any other labels as they are.

    The book's losses take it (ch. 7's gradient check labels one sample ``[[1]]``). Labels shaped
    like ``y`` stay one-hot even when they are integers, as the book reads them (``t.size == y.size``).
    """
    if t.ndim == 2 and t.shape[1] == 1 and tuple(t.shape) != tuple(y.shape) and is_index_labels(t):
        return array_namespace(t).reshape(t, (-1,))
    return t


def as_one_hot(t: Array, y: Array) -> Array:
    """Labels in any of the book's forms, indices (N,) or (N, 1) or one-hot (N, C), as one-hot shaped like ``y``."""
    xp = array_namespace(y)
    n, c = y.shape[0], y.shape[-1]
    if tuple(t.shape) == tuple(y.shape):
        return xp.astype(t, y.dtype) if t.dtype != y.dtype else t
    if is_index_labels(t):
        index = flat_index_labels(t, y)
        if index.shape != (n,):
            raise ValueError(f"labels shape {tuple(t.shape)} does not match batch of {n} "
                             f"(expected ({n},) or ({n}, 1), or one-hot ({n}, {c}))")
        return one_hot(index, c, y.dtype)
    raise ValueError(f"one-hot labels shape {tuple(t.shape)} does not match output shape {tuple(y.shape)}")


def cross_entropy_error(y: Array, t: Array) -> Array:
    """Mean cross-entropy of probabilities ``y`` against labels (one-hot or indices, see :func:`as_one_hot`).

    Like the book, adds 1e-7 inside the log so a zero probability stays finite, and reads a
    single sample ``y`` of shape (C,) as a batch of one.
    """
    xp = array_namespace(y)
    if y.ndim == 1:
        y, t = xp.reshape(y, (1, -1)), xp.reshape(t, (1, -1))
    hot = as_one_hot(t, y)
    return -xp.sum(hot * xp.log(y + 1e-7)) / y.shape[0]


def sum_squared_error(y: Array, t: Array) -> Array:
    """0.5 Σ (y - t)², the book's ch. 4 loss (summed over the whole batch)."""
    xp = array_namespace(y)
    return 0.5 * xp.sum((y - t) ** 2)


def mean_squared_error(y: Array, t: Array) -> Array:
    """The book's sum-squared error averaged over the batch (first axis)."""
    n = y.shape[0] if y.ndim > 1 else 1
    return sum_squared_error(y, t) / n
