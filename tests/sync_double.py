"""A CPU stand-in for a GPU that must not be read back: NumPy arrays that raise when a value reaches Python.

A device->host sync on CuPy is a read of a device value into Python (``bool``/``int``/``float``/``item``/
``tolist``, ``.get()``). :class:`SyncDetector` arrays raise :class:`SyncError` on exactly those reads unless a
:func:`allow` block is open, and every operation on one returns one (0-d reductions included), so a single
``float(loss)`` anywhere in a training step is caught. :func:`sync_detector_device` is a Device whose every
array is one, so whole nets, optimizers and loaders run on it unchanged.
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Iterator
from typing import Any

import array_api_compat.numpy as compat_np
import numpy as np

from xpnet import backend


class SyncError(AssertionError):
    pass


class SyncDetector(np.ndarray):
    """Host arrays that act like device arrays: reading one back into Python raises outside :func:`allow`."""

    allowed = False  # the one switch :func:`allow` and :func:`forbid` turn

    def __array_wrap__(self, arr: Any, context: Any = None, return_scalar: bool = False) -> Any:
        return np.asarray(arr).view(type(self))  # never unwrap to a NumPy scalar


def _guarded(name: str) -> Any:
    base = getattr(np.ndarray, name)

    def read(self: SyncDetector, *args: Any) -> Any:
        if not SyncDetector.allowed:
            raise SyncError(f"device->host sync: {name} read a value back into Python")
        return base(self, *args)

    return read


for _name in ("__bool__", "__int__", "__float__", "__index__", "item", "tolist"):
    setattr(SyncDetector, _name, _guarded(_name))


@contextlib.contextmanager
def _switch(allowed: bool) -> Iterator[None]:
    before, SyncDetector.allowed = SyncDetector.allowed, allowed
    try:
        yield
    finally:
        SyncDetector.allowed = before


def allow() -> contextlib.AbstractContextManager[None]:
    """Reads back are fine inside (a trainer's read-back point)."""
    return _switch(True)


def forbid() -> contextlib.AbstractContextManager[None]:
    return _switch(False)


class DeviceArray(SyncDetector):
    """The arrays of :func:`sync_detector_device`: their namespace is that device's, not NumPy's."""


def _made(fn: Any) -> Any:
    def make(*args: Any, **kwargs: Any) -> Any:
        kwargs.pop("device", None)
        return np.asarray(fn(*args, **kwargs)).view(DeviceArray)

    return make


def _namespace() -> types.ModuleType:
    ns = types.ModuleType("sync_detector")
    ns.__dict__.update({k: v for k, v in vars(compat_np).items() if not k.startswith("__")})
    for name in ("asarray", "zeros", "ones", "empty", "full", "arange", "linspace", "eye",
                 "zeros_like", "ones_like", "empty_like", "full_like"):
        setattr(ns, name, _made(getattr(compat_np, name)))
    return ns


_NS = _namespace()
# xpnet looks namespaces up per array type (backend.array_namespace): DeviceArray's is this device's, as a
# CuPy array's is CuPy's, so nets accept these arrays as their own and compute with them.
backend._NAMESPACES[DeviceArray] = _NS


def sync_detector_device() -> backend.Device:
    """A Device (backend ``sync_detector``) whose every array is a :class:`DeviceArray`."""
    return backend.wrap(_NS, "cpu", name="sync_detector:cpu")
