"""Where the book facade puts its arrays: the device and dtype chosen by ``use()`` or the environment.

The book's scripts never say where arrays live; they call ``load_mnist`` and build nets.
So the facade keeps one process-wide choice: ``XPNET_DEVICE`` (auto, cpu, cuda, cuda:N;
default cpu, as in the book) and ``XPNET_DTYPE`` (the nets' float type; default float64,
the book's own), or :func:`use`, which overrides both. Everything the facade creates
after that lives there; nothing created before moves.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import array_api_compat
import numpy as np

from xpnet import backend
from xpnet.backend import DTYPES, CudaFallbackWarning, Device, DeviceError

_STATE: dict[str, Any] = {"device": None, "dtype": None}


def use(device: str | Device = "cpu", dtype: str | None = None) -> Device:
    """Put everything the book facade creates from now on onto ``device`` ("cpu", "cuda", "cuda:N",
    "auto", or a :class:`~xpnet.backend.Device`); ``dtype`` sets the nets' float type.

    ``cuda`` without a usable GPU warns once and uses the CPU, like ``xpnet-train --device cuda``.
    """
    dev = device if isinstance(device, Device) else _resolve(str(device), f"xpnet.book.use({str(device)!r})")
    if dtype is not None:
        _STATE["dtype"] = _check_dtype(dtype, "dtype")
    _STATE["device"] = dev
    return dev


def reset() -> None:
    """Forget :func:`use`: the next array or net reads ``$XPNET_DEVICE`` and ``$XPNET_DTYPE`` again."""
    _STATE["device"] = _STATE["dtype"] = None


def current_device() -> Device:
    """The facade's device: the last :func:`use`, else ``$XPNET_DEVICE`` (resolved once), else the CPU."""
    dev = _STATE["device"]
    if dev is None:
        spec = os.environ.get("XPNET_DEVICE", "").strip() or "cpu"
        dev = _STATE["device"] = _resolve(spec, f"XPNET_DEVICE={spec}")
    return dev


def _resolve(spec: str, origin: str) -> Device:
    """``backend.device(spec)``, its one-line fallback warning and its errors naming ``origin`` (the
    variable or the call) instead of the command line's ``--device``."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CudaFallbackWarning)
        try:
            dev = backend.device(spec)
        except DeviceError as exc:
            raise DeviceError(f"{origin}: {exc}") from None
    for w in caught:
        warnings.warn(str(w.message).replace(f"--device {spec}:", f"{origin}:"), w.category, stacklevel=3)
    return dev


def current_dtype() -> str:
    """The float type of the nets the facade builds: :func:`use`'s, else ``$XPNET_DTYPE``, else float64."""
    if _STATE["dtype"] is None:
        _STATE["dtype"] = _check_dtype(os.environ.get("XPNET_DTYPE", "").strip() or "float64", "XPNET_DTYPE")
    return str(_STATE["dtype"])


def _check_dtype(name: str, what: str) -> str:
    if name not in DTYPES:
        raise ValueError(f"{what}={name!r}: expected one of {', '.join(DTYPES)}")
    return name


def host_seed() -> int:
    """A weight seed drawn from NumPy's global generator, so ``np.random.seed(n)`` in a book script
    makes its nets reproducible, and two nets built one after the other differ, as in the book."""
    return int(np.random.randint(0, 2**31 - 1))


# -- arrays the book's own indexing keeps on the device ----------------------------------------------

def is_host(x: Any) -> bool:
    return isinstance(x, np.ndarray | np.generic)


def as_array(x: Any, dtype: Any = None) -> Any:
    """Python numbers and lists (the book's ch. 3–6 examples) as NumPy arrays; arrays as they are."""
    return x if array_api_compat.is_array_api_obj(x) else np.asarray(x, dtype=dtype)


def to_book(x: Any, dev: Device) -> Any:
    """``x`` on ``dev``, as an array that the book's ``x[np.random.choice(...)]`` indexing works on.

    NumPy arrays (CPU) and CuPy arrays (which take NumPy index arrays themselves) come back as they
    are. Other Array API libraries refuse host index arrays and want full-rank indices, so their
    arrays get a subclass whose ``[]`` moves the index to the device (see :func:`book_array`).
    """
    out = backend.to_device(x, dev)
    if dev.backend in ("numpy", "cupy"):
        return out
    return book_array(out)


_SUBCLASSES: dict[type, type] = {}


def book_array(x: Any) -> Any:
    """Re-type an array of a strict Array API library (array_api_strict in the tests) so that
    ``[]`` accepts what the book passes: NumPy or list index arrays, a leading index without the
    trailing ``...``, slices past the end. Results of arithmetic keep the type where the library
    builds them from ``self``'s class. Returns ``x`` unchanged where the library forbids this."""
    base = type(x)
    if base in _SUBCLASSES.values():
        return x
    sub = _SUBCLASSES.get(base)
    if sub is None:
        try:
            sub = type(f"Book{base.__name__}", (base,), {"__slots__": (), "__getitem__": _book_getitem})
        except TypeError:
            return x
        _SUBCLASSES[base] = sub
    try:
        x.__class__ = sub
    except TypeError:
        return x
    return x


def _is_index_array(k: Any) -> bool:
    if isinstance(k, list):
        return True
    if isinstance(k, np.ndarray):
        return k.ndim > 0
    return array_api_compat.is_array_api_obj(k) and getattr(k, "ndim", 0) > 0


def _book_getitem(self: Any, key: Any) -> Any:
    base = type(self).__mro__[1]
    parts = key if isinstance(key, tuple) else (key,)
    if parts and _is_index_array(parts[0]) and all(isinstance(p, slice) and p == slice(None) for p in parts[1:]):
        # x[mask] and x[mask, :] (the book's shuffle): rows by an index array, on the device
        return book_array(take_rows(self, parts[0]))
    n_axes = sum(p is not None and p is not Ellipsis for p in parts)
    fixed = tuple(_clip(p, self.shape[i]) if isinstance(p, slice) and i < len(self.shape)
                  else int(p) if isinstance(p, np.integer) else p for i, p in enumerate(parts))
    if Ellipsis not in fixed and n_axes < self.ndim:
        fixed = (*fixed, Ellipsis)
    out = base.__getitem__(self, fixed)
    return book_array(out) if array_api_compat.is_array_api_obj(out) else out


def _clip(s: slice, n: int) -> slice:
    """NumPy clips ``x[:1000]`` on 300 rows to 300; the Array API leaves it undefined."""
    if s.step is not None and s.step < 0:
        return s
    start, stop, step = s.indices(n)
    return slice(start, max(start, stop), step)


def take_rows(x: Any, index: Any) -> Any:
    """``x[index]`` along the first axis for any array library, ``index`` given as NumPy ints or bools,
    a list, or an array of ``x``'s own library (moved to ``x``'s device when it is not there)."""
    if is_host(x):
        return x[np.asarray(index) if isinstance(index, list) else index]
    idx = index
    if isinstance(idx, list) or is_host(idx):
        idx = np.asarray(idx)
        if idx.dtype == np.bool_:
            idx = np.flatnonzero(idx)
        idx = backend.to_device(idx.astype(np.int64), backend.device_of(x))
    xp = backend.array_namespace(x)
    if xp.isdtype(idx.dtype, "bool"):
        idx = xp.nonzero(idx)[0]
    return xp.take(x, idx, axis=0)
