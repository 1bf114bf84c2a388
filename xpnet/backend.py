"""Devices: which array library runs the math, and on which device.

Everything above this module is written once against an Array API namespace
``xp``; a :class:`Device` says which one (NumPy, CuPy, or any Array API library
such as array_api_strict for tests) and which native device arrays live on.
Devices, namespaces, host <-> device transfers and random numbers live here;
every library-specific fast path lives in :mod:`xpnet.accel`.

This is the floor: it imports no other xpnet module, so every module can ask it for a
device. Deciding whether CUDA is usable (including the kernel compile probe) is a device
question and is answered here.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import re
import warnings
import weakref
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import array_api_compat
import numpy as np

DTYPES = ("float32", "float64")  # what nets compute in: float32 to train, float64 for gradient checks

_NAMESPACES: dict[type, ModuleType] = {}

# The Array API's creation functions: on a library with a *current* device (CuPy) they allocate there, whatever
# ``device=`` or the prototype of ``*_like`` says (array-api-compat's CuPy ``zeros`` ignores ``device=``).
CREATION = ("arange", "asarray", "empty", "empty_like", "eye", "from_dlpack", "full", "full_like", "linspace",
            "meshgrid", "ones", "ones_like", "tril", "triu", "zeros", "zeros_like")
_BOUND: dict[tuple[int, str, Any], ModuleType] = {}


def is_scope(native: Any) -> bool:
    """Whether ``native`` is a device that must be *current* for work to land on it (a ``cupy.cuda.Device``:
    a ``with`` block makes it current); NumPy's "cpu" and array_api_strict's devices are not."""
    return hasattr(native, "__enter__")


def _device_key(native: Any) -> Any:
    index = getattr(native, "id", None)  # cupy.cuda.Device is unhashable: key it by its number
    return index if isinstance(index, int) else id(native)


def bound_namespace(xp: ModuleType, native: Any) -> ModuleType:
    """``xp`` with every creation function run inside ``with native:``, so arrays it makes land on ``native``
    whichever device is current. One namespace per (library, device): ``array_namespace`` of an array on that
    device returns this same object, the Device's ``xp``."""
    key = (id(xp), type(native).__qualname__, _device_key(native))
    bound = _BOUND.get(key)
    if bound is None:
        bound = ModuleType(xp.__name__, xp.__doc__)  # the same name: array_api_compat still recognises it
        bound.__dict__.update({k: v for k, v in vars(xp).items() if not k.startswith("__")})
        for name in CREATION:
            fn = getattr(xp, name, None)
            if fn is not None:
                setattr(bound, name, _on(native, fn))
        bound.__wrapped__ = xp
        bound.__device__ = native
        bound = _BOUND.setdefault(key, bound)
    return bound


def _on(native: Any, fn: Any) -> Any:
    def made_on_device(*args: Any, **kwargs: Any) -> Any:
        with native:
            return fn(*args, **kwargs)

    made_on_device.__name__ = getattr(fn, "__name__", "made_on_device")
    return made_on_device


def array_namespace(x: Any) -> ModuleType:
    """The Array API namespace of ``x`` (array_api_compat's), remembered per array type: layers ask on every
    pass and the lookup itself is slow. For an array on a device that must be current (a CuPy GPU) it is that
    device's :func:`bound_namespace`, so ``xp.zeros_like(x)`` lands beside ``x``, not on the current GPU."""
    ns = _NAMESPACES.get(type(x))
    if ns is None:
        ns = _NAMESPACES[type(x)] = array_api_compat.array_namespace(x)
    native = getattr(x, "device", None)
    return bound_namespace(ns, native) if is_scope(native) else ns


def scope_of(x: Any) -> Any:
    """A ``with`` block that makes ``x``'s device current (a no-op where devices are not current-based):
    CuPy launches every kernel, and puts every result, on the current GPU."""
    native = getattr(x, "device", None)
    return native if is_scope(native) else contextlib.nullcontext()


def on_device(method: Any) -> Any:
    """Decorate a method of an object with a ``device``: it runs with that device current."""

    @functools.wraps(method)
    def run(self: Any, *args: Any, **kwargs: Any) -> Any:
        with self.device.context():
            return method(self, *args, **kwargs)

    return run


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

    def __post_init__(self) -> None:
        if is_scope(self.native) and getattr(self.xp, "__device__", None) is not self.native:
            object.__setattr__(self, "xp", bound_namespace(getattr(self.xp, "__wrapped__", self.xp), self.native))

    def __hash__(self) -> int:  # cupy.cuda.Device is unhashable: hash what names the device
        return hash((self.backend, str(self.native)))

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
        with self.context():
            return self.xp.zeros(shape, dtype=dtype, device=self.native)

    def context(self) -> Any:
        """A ``with`` block in which this device is current: CuPy allocates, launches kernels and puts results
        on the *current* GPU, so the entry points (a net's passes, an optimizer's update, a loader's batches,
        the Trainer's fit) run inside one. Other libraries honour ``device=`` and need nothing."""
        return self.native if is_scope(self.native) else contextlib.nullcontext()

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

            with self.native:  # this GPU's stream, not the current GPU's
                cupy.cuda.get_current_stream().synchronize()

    def rng(self, seed: int) -> DeviceRNG:
        return DeviceRNG(self, seed)


def cpu() -> Device:
    return Device("cpu", array_api_compat.array_namespace(np.empty(0)), "cpu")


def wrap(xp: ModuleType, native: Any, name: str | None = None) -> Device:
    """Wrap any Array API namespace and device object (tests use array_api_strict)."""
    return Device(name or f"{xp.__name__}:{native}", xp, native)


def cuda_count() -> tuple[int, str]:
    """How many CUDA devices are visible, and why none when none, without touching any: counting opens no
    CUDA context, so a process that will use one GPU (a search worker) leaves the others alone."""
    try:
        import cupy
    except Exception as exc:  # ImportError, or a broken CUDA library underneath
        return 0, f"CuPy is not installed or failed to import ({exc.__class__.__name__}: {exc}); " \
            "install it with: pip install 'xpnet[cuda12]'"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        if "insufficient" in msg.lower() or "driver" in msg.lower():
            return 0, f"the NVIDIA driver is missing or too old for this CuPy build ({msg})"
        return 0, f"CUDA runtime error ({msg})"
    if count == 0:
        return 0, "no CUDA device is visible (check nvidia-smi and CUDA_VISIBLE_DEVICES)"
    return count, ""


def cuda_status(index: int = 0) -> tuple[bool, str, int]:
    """Whether CUDA device ``index`` can be used, why not if it cannot, and how many devices are visible.
    Only device ``index`` is probed (a context opened there), never the others."""
    count, reason = cuda_count()
    if count == 0:
        return False, reason, 0
    if not 0 <= index < count:
        return False, f"cuda:{index} does not exist: {count} CUDA device(s) visible", count
    import cupy

    problem = _kernel_probe(cupy, index)
    return (False, problem, count) if problem else (True, "", count)


# the cupy module -> {device index: '' or why not}
_PROBE: weakref.WeakKeyDictionary[Any, dict[int, str]] = weakref.WeakKeyDictionary()


def _kernel_probe(cupy: ModuleType, index: int = 0) -> str:
    """'' when GPU ``index`` compiles and runs an elementwise kernel and draws random numbers, else why not.

    Counting devices is not enough: CuPy compiles every elementwise operation (``astype`` too) with
    NVRTC against the CUDA headers, which a bare driver host or a ``-runtime`` image lacks, and cuRAND
    is one more library that can be missing. The answer is kept per cupy module and device."""
    known = _PROBE.setdefault(cupy, {})
    if index not in known:
        try:
            with cupy.cuda.Device(index):
                x = cupy.arange(4, dtype=cupy.float32)
                y = cupy.ElementwiseKernel("T x", "T y", "y = x * x + (T)1", "xpnet_probe")(x)
                r = cupy.random.Generator(cupy.random.Philox4x3210(0)).random(4, dtype=cupy.float32)
                ok = y.get().tolist() == [1.0, 2.0, 5.0, 10.0] and bool(((r >= 0) & (r < 1)).all())
            known[index] = "" if ok else f"a compiled CuPy kernel returned wrong numbers on cuda:{index}"
        except Exception as exc:  # the reason is the answer: CUDA is then unusable, and says why
            text = (str(exc).strip().splitlines() or [""])[0]
            known[index] = (f"CuPy cannot compile or run a kernel on cuda:{index} ({exc.__class__.__name__}: "
                            f"{text}); install CuPy with its CUDA toolkit wheels: pip install 'xpnet[cuda12]' "
                            "(or 'xpnet[cuda13]' on a CUDA 13 driver)")
    return known[index]


_SPEC = re.compile(r"^(auto|cpu|cuda)(?::(\d+))?$")


def device(spec: str | Device = "auto") -> Device:
    """Resolve "auto" | "cpu" | "cuda" | "cuda:N" (or pass a Device through).

    ``cuda`` without a usable GPU warns once, naming the reason, and returns the
    CPU; ``cuda:N`` past the number of visible GPUs is an error. Only the GPU asked for is
    touched (probed, a context opened): resolving cuda:1 leaves cuda:0 alone.
    """
    if isinstance(spec, Device):
        return spec
    m = _SPEC.match(str(spec).strip().lower())
    if not m or (m.group(1) != "cuda" and m.group(2) is not None):
        raise DeviceError(f"unknown device {spec!r}; expected auto, cpu, cuda or cuda:N")
    kind, index = m.group(1), m.group(2)
    if kind == "cpu":
        return cpu()
    n = int(index or 0)
    count, _ = cuda_count()
    if count and n >= count:
        raise DeviceError(f"device {spec!r} does not exist: {count} CUDA device(s) visible "
                          f"(valid: {', '.join(f'cuda:{i}' for i in range(count))})")
    ok, reason, _ = cuda_status(n)
    if kind == "auto":
        return _cuda(0) if ok else cpu()
    if not ok:
        warnings.warn(f"--device {spec}: CUDA is unusable: {reason}. Falling back to CPU.",
                      CudaFallbackWarning, stacklevel=2)
        return cpu()
    return _cuda(n)


def _cuda(index: int) -> Device:
    import cupy

    native = cupy.cuda.Device(index)
    with native:
        xp = array_api_compat.array_namespace(cupy.empty(0))
    return Device(f"cuda:{index}", xp, native)


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
    """Copy ``x`` onto ``dev`` (a no-op when it is already there with that dtype), the cast included: all of
    it with ``dev`` current, so nothing lands on whichever GPU happens to be current."""
    with dev.context():
        if dev.backend == "cupy":
            import cupy

            other_gpu = isinstance(x, cupy.ndarray) and x.device.id != dev.native.id
            out = x.copy() if other_gpu else cupy.asarray(x)  # copy() copies onto the current GPU
        elif dev.is_host:
            out = to_host(x)
        else:
            try:
                same = array_namespace(x) is dev.xp and x.device == dev.native
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

    The Array API has no RNG, so each library gets its own: CuPy's (cuRAND Philox) on the GPU,
    NumPy's PCG64 on the host for NumPy and for other namespaces (then moved). Draw number k comes
    from a generator seeded by (seed, k) alone, so the state is just (seed, draws): a resumed run
    draws the same masks as an uninterrupted one on every backend (the numbers differ between
    libraries; the promise is per backend).
    """

    def __init__(self, dev: Device, seed: int | None) -> None:
        self.device = dev
        self.seed = 0 if seed is None else int(seed)
        self.draws = 0

    def random(self, shape: tuple[int, ...], dtype: Any) -> Any:
        """Uniform [0, 1) numbers of ``shape`` on the device."""
        entropy = np.random.SeedSequence([self.seed, self.draws, 0x5EED])
        self.draws += 1
        if self.device.backend == "cupy":
            import cupy

            # Philox: counter-based, cheap to seed per draw. One state per number, at most 65,536 (CuPy's
            # default is a fixed 1000 * 256 = 256,000, 16 MB of states, made again on every draw), rounded up
            # to a multiple of 256: CuPy launches ceil(size / 256) * 256 threads that each read and write
            # state[thread], unchecked, so any other count runs past the buffer (a (100, 50) dropout mask).
            states = min(-(-math.prod(shape) // 256) * 256, 1 << 16) or 256
            with self.device.native:
                gen = cupy.random.Generator(cupy.random.Philox4x3210(entropy, size=states))
                return gen.random(shape, dtype=dtype)
        host = np.random.Generator(np.random.PCG64(entropy)).random(shape, dtype=np.float32)
        return to_device(host, self.device, dtype=dtype)

    def state_dict(self) -> dict[str, str]:
        return {"rng": json.dumps({"seed": self.seed, "draws": self.draws})}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        s = json.loads(str(state["rng"]))
        self.seed, self.draws = int(s["seed"]), int(s["draws"])
