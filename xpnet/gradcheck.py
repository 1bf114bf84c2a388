"""Numerical differentiation (the book's ch. 4) and gradient checking (ch. 5.7).

Central differences on any array, on any backend: each element is nudged in
place by ±h, so it works wherever ``x[idx] = value`` does.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from xpnet.backend import array_namespace

Array = Any


def numerical_diff(f: Callable[[float], float], x: float, h: float = 1e-4) -> float:
    """(f(x + h) − f(x − h)) / 2h."""
    return (f(x + h) - f(x - h)) / (2 * h)


def numerical_gradient(f: Callable[[Array], Any], x: Array, h: float = 1e-4) -> Array:
    """∂f/∂x by central differences for an array ``x`` of any shape; ``x`` is restored afterwards."""
    xp = array_namespace(x)
    grad = xp.zeros_like(x)
    for idx in itertools.product(*(range(n) for n in x.shape)):
        old = float(x[idx])  # a copy: on CuPy x[idx] is a 0-d view that the next line would change
        x[idx] = old + h
        f_plus = float(f(x))
        x[idx] = old - h
        f_minus = float(f(x))
        x[idx] = old
        grad[idx] = (f_plus - f_minus) / (2 * h)
    return grad


def relative_error(a: Array, b: Array, floor: float = 1e-3) -> float:
    """max |a − b| / max(max |a|, max |b|, floor): the worst element, relative to the gradient's scale.

    The floor keeps a gradient that is zero by construction (a bias just before
    batch norm) from dividing rounding noise by zero.
    """
    xp = array_namespace(a)
    scale = max(float(xp.max(xp.abs(a))), float(xp.max(xp.abs(b))), floor)
    return float(xp.max(xp.abs(a - b))) / scale


def gradient_check(net: Any, x: Array, t: Array, h: float = 1e-5) -> dict[str, float]:
    """Backprop vs numerical gradient of ``net.loss(x, t, train_flg=True)`` per parameter.

    Use float64 nets: in float32 the central difference itself is only good to ~1e-3.
    """
    analytic = net.gradient(x, t)
    numeric = net.numerical_gradient(x, t, h=h)
    return {key: relative_error(analytic[key], numeric[key]) for key in net.params}
