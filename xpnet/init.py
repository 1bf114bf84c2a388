"""Initial weights by the book's names (ch. 6.2): a std, 'xavier'/'sigmoid', 'he'/'relu'.

Weights are drawn on the host from a seeded ``numpy.random.Generator`` (passed
in; see backend.host_rng) and then moved, so one seed gives bit-identical
initial weights on every device — the Array API itself has no RNG.
"""

from __future__ import annotations

import math
from typing import Any

from xpnet.backend import Device, to_device

NAMES = {"relu": "he", "he": "he", "sigmoid": "xavier", "xavier": "xavier"}


def init_scale(weight_init_std: float | str, fan_in: int) -> float:
    """The std of the initial weights: a number as given, Xavier sqrt(1/n), He sqrt(2/n); n = fan-in."""
    if isinstance(weight_init_std, str):
        kind = NAMES.get(weight_init_std.lower())
        if kind is None:
            raise ValueError(f"unknown weight_init_std {weight_init_std!r}; "
                             f"use a number or one of {sorted(NAMES)}")
        return math.sqrt((2.0 if kind == "he" else 1.0) / fan_in)
    std = float(weight_init_std)
    if not math.isfinite(std) or std < 0:
        raise ValueError(f"weight_init_std must be a finite number >= 0, got {weight_init_std!r}")
    return std


def normal(rng: Any, shape: tuple[int, ...], std: float, device: Device, dtype: str) -> Any:
    """std · N(0, 1) of ``shape``, drawn in float64 on the host, cast to ``dtype`` there, then moved."""
    host = (rng.standard_normal(size=shape) * std).astype(dtype)
    return to_device(host, device)


def zeros(shape: tuple[int, ...] | int, device: Device, dtype: str) -> Any:
    return device.zeros(shape, device.dtype(dtype))


def ones(shape: tuple[int, ...] | int, device: Device, dtype: str) -> Any:
    return device.xp.ones(shape, dtype=device.dtype(dtype), device=device.native)
