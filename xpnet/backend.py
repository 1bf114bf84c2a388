"""Devices: which array library runs the math, and on which device.

Everything above this module is written once against an Array API namespace
``xp``; a :class:`Device` says which one (NumPy, CuPy, or any Array API library
such as array_api_strict for tests) and which native device arrays live on.
This is the only place that knows library names.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import array_api_compat
import numpy as np


class DeviceError(ValueError):
    """A device was asked for that does not exist (e.g. ``cuda:7`` on a 1-GPU machine)."""


class CudaFallbackWarning(UserWarning):
    """``cuda`` was asked for but cannot be used; xpnet runs on the CPU instead."""


@dataclass(frozen=True)
class Device:
    """An array namespace plus the native device its arrays live on.

    ``name`` is for people ("cpu", "cuda:0", "array_api_strict:device1");
    ``xp`` is the Array API namespace; ``native`` is what ``device=`` takes.
    """

    name: str = field(compare=False)
    xp: ModuleType = field(repr=False)
    native: Any = field(repr=False)

    @property
    def backend(self) -> str:
        """Short library name: 'numpy', 'cupy' or the module name of the namespace."""
        if array_api_compat.is_numpy_namespace(self.xp):
            return "numpy"
        if array_api_compat.is_cupy_namespace(self.xp):
            return "cupy"
        return self.xp.__name__.split(".")[-1]

    @property
    def is_host(self) -> bool:
        """True when arrays on this device are plain NumPy arrays in host memory."""
        return self.backend == "numpy"

    def asarray(self, x: Any, dtype: Any = None) -> Any:
        """Move ``x`` (host or device array, or Python data) onto this device."""
        return to_device(x, self, dtype=dtype)

    def zeros(self, shape: tuple[int, ...] | int, dtype: Any) -> Any:
        return self.xp.zeros(shape, dtype=dtype, device=self.native)

    def dtype(self, name: str) -> Any:
        """The namespace's dtype object for 'float32', 'float64', 'uint8', ..."""
        try:
            return getattr(self.xp, name)
        except AttributeError:
            raise TypeError(f"dtype {name!r} is not available on device {self.name}") from None

    def synchronize(self) -> None:
        """Wait for queued device work (a no-op on the host); used for honest timings."""
        if self.backend == "cupy":
            import cupy

            cupy.cuda.get_current_stream().synchronize()

    def rng(self, seed: int) -> DeviceRNG:
        return DeviceRNG(self, seed)


def cpu() -> Device:
    return Device("cpu", array_api_compat.array_namespace(np.empty(0)), "cpu")


def wrap(xp: ModuleType, native: Any, name: str | None = None) -> Device:
    """Wrap any Array API namespace and device object (tests use array_api_strict)."""
    return Device(name or f"{xp.__name__}:{native}", xp, native)


def cuda_status() -> tuple[bool, str, int]:
    """Whether CUDA can be used, why not if it cannot, and how many devices are visible."""
    try:
        import cupy
    except Exception as exc:  # ImportError, or a broken CUDA library underneath
        return False, f"CuPy is not installed or failed to import ({exc.__class__.__name__}: {exc}); " \
            "install it with: pip install 'xpnet[cuda12]'", 0
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        if "insufficient" in msg.lower() or "driver" in msg.lower():
            reason = f"the NVIDIA driver is missing or too old for this CuPy build ({msg})"
        else:
            reason = f"CUDA runtime error ({msg})"
        return False, reason, 0
    if count == 0:
        return False, "no CUDA device is visible (check nvidia-smi and CUDA_VISIBLE_DEVICES)", 0
    return True, "", count


_SPEC = re.compile(r"^(auto|cpu|cuda)(?::(\d+))?$")


def device(spec: str | Device = "auto") -> Device:
    """Resolve "auto" | "cpu" | "cuda" | "cuda:N" (or pass a Device through).

    ``cuda`` without a usable GPU warns once, naming the reason, and returns the
    CPU; ``cuda:N`` past the number of visible GPUs is an error.
    """
    if isinstance(spec, Device):
        return spec
    m = _SPEC.match(str(spec).strip().lower())
    if not m or (m.group(1) != "cuda" and m.group(2) is not None):
        raise DeviceError(f"unknown device {spec!r}; expected auto, cpu, cuda or cuda:N")
    kind, index = m.group(1), m.group(2)
    if kind == "cpu":
        return cpu()
    ok, reason, count = cuda_status()
    if kind == "auto":
        return _cuda(0) if ok else cpu()
    if not ok:
        warnings.warn(f"--device {spec}: CUDA is unusable: {reason}. Falling back to CPU.",
                      CudaFallbackWarning, stacklevel=2)
        return cpu()
    n = int(index or 0)
    if n >= count:
        raise DeviceError(f"device {spec!r} does not exist: {count} CUDA device(s) visible "
                          f"(valid: {', '.join(f'cuda:{i}' for i in range(count))})")
    return _cuda(n)


def _cuda(index: int) -> Device:
    import cupy

    xp = array_api_compat.array_namespace(cupy.empty(0))
    return Device(f"cuda:{index}", xp, cupy.cuda.Device(index))


def device_of(x: Any) -> Device:
    """The Device an array lives on."""
    xp = array_api_compat.array_namespace(x)
    if array_api_compat.is_numpy_namespace(xp):
        return cpu()
    native = array_api_compat.device(x)
    if array_api_compat.is_cupy_namespace(xp):
        return Device(f"cuda:{native.id}", xp, native)
    return wrap(xp, native)


def to_host(x: Any, copy: bool = False) -> np.ndarray:
    """Bring any array (NumPy, CuPy, any DLPack-capable Array API array) to a NumPy array.

    ``copy=True`` guarantees a snapshot that later in-place updates cannot change
    (a host array, or a DLPack view of one, is otherwise returned as is).
    """
    if array_api_compat.is_cupy_array(x):
        return x.get()
    if isinstance(x, np.ndarray | np.generic) or not hasattr(x, "__dlpack__"):
        return np.array(x, copy=True) if copy else np.asarray(x)
    host = np.from_dlpack(x)
    return host.copy() if copy else host


def to_device(x: Any, dev: Device, dtype: Any = None) -> Any:
    """Copy ``x`` onto ``dev`` (a no-op when it is already there with that dtype)."""
    if dev.backend == "cupy":
        import cupy

        with dev.native:
            out = cupy.asarray(x)
    elif dev.is_host:
        out = to_host(x)
    else:
        try:
            same = array_api_compat.array_namespace(x) is dev.xp and x.device == dev.native
        except TypeError:
            same = False
        out = x if same else dev.xp.asarray(to_host(x), device=dev.native)
    if dtype is not None and out.dtype != dtype:
        out = dev.xp.astype(out, dtype)
    return out


def host_rng(seed: int | None) -> np.random.Generator:
    """The host generator initial weights are drawn from: same seed, same weights, any device."""
    return np.random.Generator(np.random.PCG64(seed))


class DeviceRNG:
    """Uniform random numbers made on a device (dropout masks).

    The Array API has no RNG, so each library gets its own: CuPy's generator on
    the GPU; NumPy's on the host for NumPy and for other namespaces (then moved).
    The state round-trips through :meth:`state_dict` as plain text, so a resumed
    run draws the same masks (exactly on the host; on CuPy the stream restarts
    from a seed derived from the draw count).
    """

    def __init__(self, dev: Device, seed: int | None) -> None:
        self.device = dev
        self.seed = 0 if seed is None else int(seed)
        self.draws = 0
        self._reset()

    def _reset(self) -> None:
        entropy = [self.seed, self.draws, 0x5EED]
        if self.device.backend == "cupy":
            import cupy

            s = int(np.random.SeedSequence(entropy).generate_state(1)[0])
            with self.device.native:
                self._gen = cupy.random.default_rng(s)
        else:
            self._gen = np.random.Generator(np.random.PCG64(np.random.SeedSequence(entropy)))

    def random(self, shape: tuple[int, ...], dtype: Any) -> Any:
        """Uniform [0, 1) numbers of ``shape`` on the device."""
        self.draws += 1
        if self.device.backend == "cupy":
            with self.device.native:
                return self._gen.random(shape, dtype=dtype)
        host = self._gen.random(shape, dtype=np.float32)
        return to_device(host, self.device, dtype=dtype)

    def state_dict(self) -> dict[str, str]:
        state: dict[str, Any] = {"seed": self.seed, "draws": self.draws}
        if self.device.backend != "cupy":
            state["bit_generator"] = self._gen.bit_generator.state
        return {"rng": json.dumps(state)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        s = json.loads(str(state["rng"]))
        self.seed, self.draws = int(s["seed"]), int(s["draws"])
        self._reset()
        if "bit_generator" in s and self.device.backend != "cupy":
            self._gen.bit_generator.state = s["bit_generator"]


def has_strided_views(x: Any) -> bool:
    """Capability check for fast paths: NumPy and CuPy arrays can be re-viewed with custom strides."""
    return array_api_compat.is_numpy_array(x) or array_api_compat.is_cupy_array(x)


def as_strided(x: Any, shape: tuple[int, ...], strides: tuple[int, ...]) -> Any:
    """A read-only strided view of a NumPy or CuPy array (check :func:`has_strided_views` first)."""
    if array_api_compat.is_cupy_array(x):
        from cupy.lib.stride_tricks import as_strided as cupy_as_strided

        return cupy_as_strided(x, shape=shape, strides=strides)
    return np.lib.stride_tricks.as_strided(x, shape=shape, strides=strides, writeable=False)


# -- BLAS introspection (benchmarks report it; thread count is the biggest CPU knob) ------------------

_BLAS: list[Any] = []  # [ctypes library, symbol prefix, symbol suffix] once found; [None] if not


def _openblas() -> tuple[Any, str, str] | None:
    """NumPy's bundled OpenBLAS through ctypes, found among the loaded libraries (Linux)."""
    if not _BLAS:
        found: tuple[Any, str, str] | None = None
        try:
            import ctypes

            with open("/proc/self/maps") as maps:
                paths = {line.split()[-1] for line in maps if "openblas" in line.lower() and "/" in line}
            for path in sorted(paths):
                lib = ctypes.CDLL(path)
                for prefix, suffix in (("scipy_openblas_", "64_"), ("openblas_", "64_"), ("openblas_", "")):
                    if hasattr(lib, f"{prefix}get_num_threads{suffix}"):
                        found = (lib, prefix, suffix)
                        break
                if found:
                    break
        except OSError:
            found = None
        _BLAS.append(found)
    return _BLAS[0]


def blas_info() -> dict[str, Any]:
    """Which BLAS NumPy uses, its kernel (e.g. 'Haswell', 'SkylakeX') and its thread count, where known."""
    import ctypes

    ob = _openblas()
    if ob is None:
        return {"name": "unknown", "core": "unknown", "threads": None}
    lib, prefix, suffix = ob
    texts = []
    for fn in ("get_config", "get_corename"):
        f = getattr(lib, f"{prefix}{fn}{suffix}")
        f.restype = ctypes.c_char_p
        texts.append(f().decode(errors="replace").strip())
    threads = int(getattr(lib, f"{prefix}get_num_threads{suffix}")())
    return {"name": texts[0], "core": texts[1], "threads": threads}


def set_blas_threads(n: int) -> bool:
    """Set NumPy's OpenBLAS thread count at run time; False where the BLAS is not one we can reach."""
    ob = _openblas()
    if ob is None:
        return False
    lib, prefix, suffix = ob
    getattr(lib, f"{prefix}set_num_threads{suffix}")(int(n))
    return True


# -- fast paths: capability checks and the library-specific calls behind them -------------------------
#
# Layers and optimizers are written once against the Array API. Where NumPy or CuPy can do the same
# work with fewer temporaries (``out=``), or in one fused GPU kernel, the helpers below do it; every
# other library gets the portable expression, which the tests run on array_api_strict.

_NAMESPACES: dict[type, ModuleType] = {}
_NATIVE: dict[type, ModuleType | None] = {}


def namespace(x: Any) -> ModuleType:
    """``array_namespace(x)``, remembered per array type: layers ask on every pass and the lookup is slow."""
    ns = _NAMESPACES.get(type(x))
    if ns is None:
        ns = _NAMESPACES[type(x)] = array_api_compat.array_namespace(x)
    return ns


def _native(x: Any) -> ModuleType | None:
    """numpy or cupy itself (not the compat wrapper) when ``x`` is one of their arrays, else None."""
    if not _FAST[-1]:
        return None
    kind = type(x)
    if kind not in _NATIVE:
        if array_api_compat.is_numpy_array(x):
            _NATIVE[kind] = np
        elif array_api_compat.is_cupy_array(x):
            import cupy

            _NATIVE[kind] = cupy
        else:
            _NATIVE[kind] = None
    return _NATIVE[kind]


def has_out(x: Any) -> bool:
    """Capability check: NumPy and CuPy functions can write their result into an existing array (``out=``)."""
    return _native(x) is not None


def matmul(a: Any, b: Any, out: Any = None) -> Any:
    """``a @ b``; with ``out``, the result lands in that array (in place on NumPy/CuPy, copied in elsewhere)."""
    if out is None:
        return a @ b
    lib = _native(out)
    if lib is not None:
        return lib.matmul(a, b, out=out)
    out[...] = a @ b
    return out


def reduce_sum(a: Any, axis: int, out: Any = None) -> Any:
    """``sum(a, axis=axis)`` (a bias gradient), written into ``out`` when given."""
    if out is None:
        return namespace(a).sum(a, axis=axis)
    lib = _native(out)
    if lib is not None:
        return lib.sum(a, axis=axis, out=out)
    out[...] = namespace(a).sum(a, axis=axis)
    return out


def launch_bound(x: Any) -> bool:
    """Capability check: on a GPU (CuPy) each operation is a kernel launch, so one big strided copy
    beats a loop of small ones; on the host the loop of contiguous copies is as fast."""
    lib = _native(x)
    return lib is not None and lib is not np


_WRITE_THROUGH: dict[tuple[str, str], bool] = {}


def views_share_memory(dev: Device) -> bool:
    """Capability check: does writing into a reshaped slice of an array change the array itself?

    NumPy, CuPy and array_api_strict say yes; the Array API leaves it to the library, so we ask
    once per device by trying it, and parameters only share one flat buffer where it holds.
    """
    key = (dev.backend, str(dev.native))
    if key not in _WRITE_THROUGH:
        xp = dev.xp
        try:
            buf = xp.zeros(6, dtype=xp.float32, device=dev.native)
            view = xp.reshape(buf[2:6], (2, 2))
            view[...] = xp.ones((2, 2), dtype=xp.float32, device=dev.native)
            view += 1.0
            _WRITE_THROUGH[key] = float(xp.sum(buf)) == 8.0 and float(buf[0]) == 0.0
        except Exception:  # a library whose arrays refuse in-place writes: no shared buffer
            _WRITE_THROUGH[key] = False
    return _WRITE_THROUGH[key]


class FlatParams(dict):
    """Named arrays that are all views into ONE contiguous 1-D buffer, ``flat``.

    It is a plain dict to everyone (``params["W1"]`` is an array the layer uses), but an optimizer
    that sees ``flat`` can update every parameter in a handful of vectorised operations instead of
    a few per parameter. ``order`` sets the buffer order (weights first, so weight decay is one slice);
    the dict keeps the order of ``shapes`` (the book's W1, b1, W2, ...).
    """

    def __init__(self, shapes: dict[str, tuple[int, ...]], dev: Device, dtype: Any,
                 order: list[str] | None = None) -> None:
        super().__init__()
        sizes = {k: math.prod(s) for k, s in shapes.items()}
        spans: dict[str, tuple[int, int]] = {}
        start = 0
        for k in order if order is not None else shapes:
            spans[k] = (start, start + sizes[k])
            start += sizes[k]
        if set(spans) != set(shapes):
            raise ValueError("FlatParams: order must name every parameter exactly once")
        self.device, self.dtype = dev, dtype
        self.layout = tuple((k, spans[k], tuple(shapes[k])) for k in shapes)
        self.flat = dev.zeros(start, dtype)
        xp = dev.xp
        for k, (a, b), shape in self.layout:
            super().__setitem__(k, xp.reshape(self.flat[a:b], shape))
        self._views = dict(self)

    @classmethod
    def like(cls, other: FlatParams) -> FlatParams:
        """A zero-filled buffer with the same names, shapes and order (for gradients, optimizer state)."""
        new = cls.__new__(cls)
        dict.__init__(new)
        new.device, new.dtype, new.layout = other.device, other.dtype, other.layout
        new.flat = other.device.zeros(other.flat.shape[0], other.dtype)
        xp = other.device.xp
        for k, (a, b), shape in new.layout:
            dict.__setitem__(new, k, xp.reshape(new.flat[a:b], shape))
        new._views = dict(new)
        return new

    def span(self, key: str) -> tuple[int, int]:
        for k, ab, _ in self.layout:
            if k == key:
                return ab
        raise KeyError(key)

    def intact(self) -> bool:
        """True while every name still maps to its view (nobody rebound ``params[key]`` to another array)."""
        views = self._views
        return len(self) == len(views) and all(self.get(k) is v for k, v in views.items())


def same_flat_layout(a: FlatParams, b: FlatParams) -> bool:
    """Both are intact and hold the same names, shapes and order: one buffer-wide update fits both."""
    return (a.layout is b.layout or a.layout == b.layout) and a.intact() and b.intact()


_FAST = [True]


@contextlib.contextmanager
def portable_only() -> Iterator[None]:
    """Within this block every fast path is off (no ``out=``, no fused kernels): tests compare the two."""
    _FAST.append(False)
    try:
        yield
    finally:
        _FAST.pop()


# One fused CUDA kernel per optimizer step and per activation backward: the portable code launches one
# kernel per operator and round-trips every temporary through GPU memory. Each line below is the
# optimizer's or layer's portable formula, written in C. Outputs are read-modify-write.
_CUPY_UPDATES = {
    "SGD": ("T g, T lr", "T p", "p -= lr * g"),
    "Momentum": ("T g, T lr, T mom", "T p, T v", "v = mom * v - lr * g; p += v"),
    "Nesterov": ("T g, T lr, T mom", "T p, T v",
                 "v = mom * v - lr * g; p += mom * mom * v; p -= ((T)1 + mom) * lr * g"),
    "AdaGrad": ("T g, T lr", "T p, T h", "h += g * g; p -= lr * g / (sqrt(h) + (T)1e-7)"),
    "RMSprop": ("T g, T lr, T decay", "T p, T h",
                "h = decay * h + ((T)1 - decay) * g * g; p -= lr * g / (sqrt(h) + (T)1e-7)"),
    "Adam": ("T g, T lr_t, T beta1, T beta2", "T p, T m, T v",
             "m += ((T)1 - beta1) * (g - m); v += ((T)1 - beta2) * (g * g - v); "
             "p -= lr_t * m / (sqrt(v) + (T)1e-7)"),
}
_CUPY_ACTIVATIONS = {
    "relu": ("T x", "T y", "y = x > (T)0 ? x : (T)0"),
    "relu_backward": ("T y, T dout", "T dx", "dx = y > (T)0 ? dout : (T)0"),
    "sigmoid_backward": ("T y, T dout", "T dx", "dx = dout * ((T)1 - y) * y"),
    "tanh_backward": ("T y, T dout", "T dx", "dx = dout * ((T)1 - y * y)"),
}
_KERNELS: dict[str, Any] = {}


# NumPy has no fused kernels, but the optimizers with several temporaries per step can reuse one
# scratch array through ``out=``: measured 128 -> 110 us for an Adam step on the MLP's 89,610 parameters.
_SCRATCH: dict[tuple[Any, ...], np.ndarray] = {}


def _scratch(p: np.ndarray, i: int = 0) -> np.ndarray:
    key = (p.shape, p.dtype, i)
    if key not in _SCRATCH:
        _SCRATCH[key] = np.empty_like(p)
    return _SCRATCH[key]


# Each does the portable formula's operations in the portable formula's order, so the results are
# bitwise the same (Adam turns gradient rounding noise into whole steps: a reordering would show).

def _scaled_step(p: np.ndarray, lr: float, num: np.ndarray, sq: np.ndarray) -> None:
    """p -= lr * num / (sqrt(sq) + 1e-7)"""
    a, b = _scratch(p, 0), _scratch(p, 1)
    np.multiply(num, lr, out=a)
    np.sqrt(sq, out=b)
    b += 1e-7
    a /= b
    p -= a


def _host_adagrad(g: np.ndarray, lr: float, p: np.ndarray, h: np.ndarray) -> None:
    s = _scratch(p)
    np.multiply(g, g, out=s)
    h += s
    _scaled_step(p, lr, g, h)


def _host_rmsprop(g: np.ndarray, lr: float, decay: float, p: np.ndarray, h: np.ndarray) -> None:
    s = _scratch(p)
    h *= decay
    np.multiply(g, 1.0 - decay, out=s)
    s *= g
    h += s
    _scaled_step(p, lr, g, h)


def _host_adam(g: np.ndarray, lr_t: float, beta1: float, beta2: float, p: np.ndarray, m: np.ndarray,
               v: np.ndarray) -> None:
    s = _scratch(p)
    np.subtract(g, m, out=s)
    s *= 1.0 - beta1
    m += s
    np.multiply(g, g, out=s)
    s -= v
    s *= 1.0 - beta2
    v += s
    _scaled_step(p, lr_t, m, v)


_HOST_UPDATES = {"AdaGrad": _host_adagrad, "RMSprop": _host_rmsprop, "Adam": _host_adam}


def fused(name: str, x: Any) -> Any:
    """The fused version of ``name`` for ``x``'s library when there is one and fast paths are on, else None:
    a CuPy kernel, or for a few optimizers on NumPy an update through one reused scratch array.

    Optimizer versions take (g, *hyper-parameters, p, *state) and update p and the state in place;
    activation kernels take their inputs and return the result.
    """
    if not _FAST[-1] or _native(x) is None:
        return None
    if _native(x) is np:
        return _HOST_UPDATES.get(name)
    kernel = _KERNELS.get(name)
    if kernel is None:
        import cupy

        spec = _CUPY_UPDATES.get(name) or _CUPY_ACTIVATIONS.get(name)
        if spec is None:
            return None
        in_params, out_params, body = spec
        kernel = _KERNELS[name] = cupy.ElementwiseKernel(in_params, out_params, body, f"xpnet_{name.lower()}")
    return kernel


# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_HOST_ALLOCATOR: list[bool] = []


def keep_freed_host_memory() -> bool:
    """Ask glibc's malloc to reuse freed blocks instead of handing them back to the kernel (Linux).

    A training step frees and reallocates the same megabyte-sized temporaries every time; by
    default glibc maps big blocks fresh (and trims the heap back), so each step pays a page fault
    per 4 KiB of temporaries — measured: more than half the time of a NumPy max-pooling backward
    pass on a virtual machine. Blocks up to 32 MiB now come from the heap and stay there (the
    process keeps its peak memory). Process-wide and idempotent; False where it is not glibc.
    Opt out with XPNET_KEEP_FREED_MEMORY=0.
    """
    if not _HOST_ALLOCATOR:
        ok = False
        if os.environ.get("XPNET_KEEP_FREED_MEMORY", "1") != "0" and sys.platform.startswith("linux"):
            try:
                import ctypes

                libc = ctypes.CDLL("libc.so.6")
                ok = bool(libc.mallopt(_M_MMAP_THRESHOLD, 32 * 2**20)) and bool(
                    libc.mallopt(_M_TRIM_THRESHOLD, 512 * 2**20))
            except (OSError, AttributeError):
                ok = False
        _HOST_ALLOCATOR.append(ok)
    return _HOST_ALLOCATOR[0]
