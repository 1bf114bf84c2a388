"""The device RNG never lets CuPy's Philox kernel run past its state buffer (issue 23, item 1).

CuPy launches ceil(size / 256) * 256 threads over a Philox4x3210 generator of ``size`` states, each reading
and writing ``state + thread id`` unchecked, so a state count that is not a multiple of 256 (a 1000-number
draw, dropout on (100, 50) or (100, 10)) reads and writes past the buffer. A stand-in CuPy records the sizes
xpnet asks for; on a GPU the masks of such shapes are checked against a second, identical draw."""

from __future__ import annotations

import contextlib
import math
import sys
import types
from typing import Any

import numpy as np
import pytest

from tests.helpers import no_cuda
from xpnet import backend

SHAPES = [(1000,), (100, 50), (100, 10), (3,), (256,), (257,), (300, 300), (70_000,)]


def _recording_cupy(sizes: list[int]) -> types.ModuleType:
    cupy = types.ModuleType("cupy")

    class Philox:
        def __init__(self, seed: Any, size: int = -1) -> None:
            self.seed, self.size = seed, size
            sizes.append(size)

    class Generator:
        def __init__(self, bitgen: Philox) -> None:
            self.rng = np.random.default_rng(bitgen.seed)

        def random(self, shape: Any, dtype: Any) -> np.ndarray:
            return self.rng.random(shape, dtype=np.float32)

    cupy.random = types.SimpleNamespace(Generator=Generator, Philox4x3210=Philox)
    cupy.float32 = np.float32
    return cupy


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_philox_state_count_is_a_multiple_of_256(shape: tuple[int, ...], monkeypatch: pytest.MonkeyPatch) -> None:
    sizes: list[int] = []
    monkeypatch.setitem(sys.modules, "cupy", _recording_cupy(sizes))
    xp = types.ModuleType("cupy")
    xp.float32 = np.float32
    dev = backend.Device("cuda:0", xp, contextlib.nullcontext())
    assert dev.backend == "cupy"
    dev.rng(7).random(shape, np.float32)
    [size] = sizes
    assert size % 256 == 0, f"{size} states: CuPy's last block of 256 threads runs past them"
    assert min(math.prod(shape), 1 << 16) <= size <= 1 << 16  # one state per number, capped as before


@pytest.mark.parametrize("shape", [(1000,), (100, 50), (100, 10)], ids=str)
def test_cupy_draws_of_awkward_shapes_repeat_exactly(shape: tuple[int, ...]) -> None:
    ok, reason, _ = backend.cuda_status()
    if not ok:
        no_cuda(f"cupy backend skipped: {reason}")
    dev = backend.device("cuda:0")
    a, b = dev.rng(3), dev.rng(3)
    for _ in range(3):
        x, y = backend.to_host(a.random(shape, dev.xp.float32)), backend.to_host(b.random(shape, dev.xp.float32))
        np.testing.assert_array_equal(x, y)
        assert ((x >= 0) & (x < 1)).all()
