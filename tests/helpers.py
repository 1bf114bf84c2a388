"""Small shared test helpers (not fixtures): random device arrays and a fixed dropout mask source."""

from __future__ import annotations

import os
from typing import Any, NoReturn

import numpy as np
import pytest

from xpnet.backend import Device, to_device, to_host


def randn(dev: Device, *shape: int, seed: int = 0, dtype: str = "float64", scale: float = 1.0) -> Any:
    host = np.random.default_rng(seed).standard_normal(shape) * scale
    return to_device(host.astype(dtype), dev)


def labels(dev: Device, n: int, classes: int, seed: int = 1) -> Any:
    return to_device(np.random.default_rng(seed).integers(0, classes, n), dev)


def host(x: Any) -> np.ndarray:
    return to_host(x)


class FixedRNG:
    """Stands in for a DeviceRNG: the same uniform numbers for a given shape on every call (fixed dropout masks)."""

    def __init__(self, dev: Device, seed: int = 7) -> None:
        self.dev, self.seed, self.cache = dev, seed, {}

    def random(self, shape: tuple[int, ...], dtype: Any) -> Any:
        if shape not in self.cache:
            u = np.random.default_rng([self.seed, *shape]).random(shape)
            self.cache[shape] = to_device(u, self.dev, dtype=dtype)
        return self.cache[shape]

    def state_dict(self) -> dict[str, str]:
        return {"rng": "{}"}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


REQUIRE_CUPY = "XPNET_REQUIRE_CUPY"


def no_cuda(reason: str) -> NoReturn:
    """Skip a test that needs CUDA, saying why; with XPNET_REQUIRE_CUPY=1 (``make gpu-check``) fail it instead,
    so a GPU run cannot pass by skipping the very tests it is for."""
    if os.environ.get(REQUIRE_CUPY) == "1":
        pytest.fail(f"{REQUIRE_CUPY}=1 but {reason}", pytrace=False)
    pytest.skip(reason)

