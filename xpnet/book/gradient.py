"""The book's ``common.gradient``: central-difference gradients (ch. 4), from :mod:`xpnet.gradcheck`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from xpnet import gradcheck

__all__ = ["numerical_gradient", "np"]


def numerical_gradient(f: Callable[[Any], Any], x: Any) -> Any:
    """∂f/∂x with h = 1e-4 for an array ``x`` of any shape (``x`` is nudged in place and restored)."""
    return gradcheck.numerical_gradient(f, x, h=1e-4)
