"""Small shared test helpers (not fixtures): random device arrays, a fixed dropout mask source, a command's
main run in-process, and scripts imported as modules."""

from __future__ import annotations

import importlib.util
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn

import numpy as np
import pytest

from xpnet.backend import Device, cuda_status, to_device, to_host


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


def two_gpus() -> None:
    """Skip a test that needs two GPUs unless CUDA works (see :func:`no_cuda`) and two are visible."""
    ok, reason, count = cuda_status()
    if not ok:
        no_cuda(f"cupy backend skipped: {reason}")
    if count < 2:
        pytest.skip(f"needs two GPUs, {count} visible")


def call_main(main: Callable[[list[str]], int], capsys: pytest.CaptureFixture[str], *args: str
              ) -> tuple[int, str, str]:
    """A command's ``main`` in-process: (exit status, stdout, stderr); argparse's SystemExit becomes a status."""
    try:
        rc = main(list(args))
    except SystemExit as exc:
        rc = int(exc.code or 0)
    out, err = capsys.readouterr()
    return rc, out, err


def load_script(path: Path, name: str) -> ModuleType:
    """Import a script under ``scripts/`` as a module (registered in sys.modules: dataclasses look it up)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def reachable_arrays(obj: Any, seen: set[int], depth: int = 0) -> list[Any]:
    """Every array reachable from ``obj`` through attributes, dicts, lists and tuples."""
    if id(obj) in seen or depth > 7:
        return []
    seen.add(id(obj))
    if hasattr(obj, "__array_namespace__"):
        return [obj]
    if isinstance(obj, dict):
        items = list(obj.values())
    elif isinstance(obj, list | tuple):
        items = list(obj)
    elif hasattr(obj, "__dict__") and type(obj).__module__.startswith("xpnet"):
        items = list(vars(obj).values())
    else:
        return []
    return [a for item in items for a in reachable_arrays(item, seen, depth + 1)]


def book_mnist(**kwargs: Any) -> Any:
    """The book facade's ``load_mnist(**kwargs)``, quiet when it falls back to the bundled sample."""
    from xpnet.book.mnist import load_mnist
    from xpnet.data import SampleDataWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SampleDataWarning)
        return load_mnist(**kwargs)


def on_device(a: Any, dev: Device) -> bool:
    """True when ``a`` lives on ``dev``: a NumPy array for the host, the device's own array type elsewhere."""
    return isinstance(a, np.ndarray) if dev.is_host else (not isinstance(a, np.ndarray) and a.device == dev.native)
