"""A CPU stand-in for CuPy's multi-GPU rules: where an array lands depends on the *current* device.

CuPy allocates on the current GPU: array-api-compat's CuPy ``zeros``/``ones``/``empty``/``arange`` ignore
``device=``, ``*_like`` follow the current device rather than the prototype, and every operation's result
lands on the current device too. :class:`FakeGpu` is a ``cupy.cuda.Device`` look-alike (``with`` makes it
current, ``use()`` for good) and :class:`GpuArray` a NumPy array that remembers the device that was current
when it was made, so a test can make fake GPU 0 current, train on fake GPU 1 and find where every array went.
"""

from __future__ import annotations

import types
from typing import Any

import array_api_compat.numpy as compat_np
import numpy as np

from xpnet import backend

_CURRENT = [0]  # the current fake GPU's id
_STACK: list[int] = []


class FakeGpu:
    """Like ``cupy.cuda.Device``: an id, a ``with`` block that makes it current, ``use()``."""

    def __init__(self, id: int) -> None:
        self.id = id

    def __enter__(self) -> FakeGpu:
        _STACK.append(_CURRENT[0])
        _CURRENT[0] = self.id
        return self

    def __exit__(self, *exc: Any) -> None:
        _CURRENT[0] = _STACK.pop()

    def use(self) -> None:
        _CURRENT[0] = self.id

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FakeGpu) and other.id == self.id

    __hash__ = None  # type: ignore[assignment]  # cupy.cuda.Device is unhashable too

    def __repr__(self) -> str:
        return f"<FakeGpu {self.id}>"


def current() -> int:
    return _CURRENT[0]


class GpuArray(np.ndarray):
    """A NumPy array on a fake GPU: new arrays and results on the current one, views where their base is."""

    gpu: int = 0

    def __array_finalize__(self, obj: Any) -> None:
        view = isinstance(obj, GpuArray) and self.base is not None
        self.gpu = obj.gpu if view else _CURRENT[0]

    def __array_wrap__(self, arr: Any, context: Any = None, return_scalar: bool = False) -> Any:
        return np.asarray(arr).view(type(self))  # 0-d results stay arrays on a device, as CuPy's do

    @property
    def device(self) -> FakeGpu:  # type: ignore[override]
        return FakeGpu(self.gpu)


def _on_current(fn: Any, honours_device: bool = False) -> Any:
    def make(*args: Any, device: Any = None, **kwargs: Any) -> Any:
        if honours_device and device is not None:
            with device:
                return np.asarray(fn(*args, **kwargs)).view(GpuArray)
        return np.asarray(fn(*args, **kwargs)).view(GpuArray)  # device= ignored, as compat's CuPy zeros does

    return make


def _namespace() -> types.ModuleType:
    ns = types.ModuleType("fake_cupy")
    ns.__dict__.update({k: v for k, v in vars(compat_np).items() if not k.startswith("__")})
    for name in ("zeros", "ones", "empty", "full", "arange", "eye", "linspace",
                 "zeros_like", "ones_like", "empty_like", "full_like"):
        setattr(ns, name, _on_current(getattr(compat_np, name)))
    ns.asarray = _on_current(compat_np.asarray, honours_device=True)  # compat's CuPy asarray enters device=
    return ns


NS = _namespace()
backend._NAMESPACES[GpuArray] = NS  # xpnet's per-type namespace lookup: these arrays are this namespace's


def fake_gpu_device(index: int) -> backend.Device:
    return backend.wrap(NS, FakeGpu(index), name=f"fake_gpu:{index}")
