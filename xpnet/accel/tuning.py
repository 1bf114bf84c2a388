"""Process-wide tuning of the host: NumPy's BLAS threads and glibc's malloc.

Both are the application's call, not the library's: ``xpnet-train``, the experiments and
``bench.py`` call them; importing xpnet changes nothing in a process. (Per-product BLAS thread counts
were tried and dropped: one session they sped the MLP step up, the next they slowed it; docs/performance.md.)
On accel's lower floor: process settings, imports no xpnet module.
"""

from __future__ import annotations

import os
import sys
from typing import Any

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
    """Which BLAS NumPy uses, its kernel (e.g. 'Haswell', 'SkylakeX'), its thread count where known, and the
    kernel ``OPENBLAS_CORETYPE`` pins (:func:`blas_pin`)."""
    import ctypes

    ob = _openblas()
    if ob is None:
        return {"name": "unknown", "core": "unknown", "threads": None, "pinned": blas_pin()}
    lib, prefix, suffix = ob
    texts = []
    for fn in ("get_config", "get_corename"):
        f = getattr(lib, f"{prefix}{fn}{suffix}")
        f.restype = ctypes.c_char_p
        texts.append(f().decode(errors="replace").strip())
    threads = int(getattr(lib, f"{prefix}get_num_threads{suffix}")())
    return {"name": texts[0], "core": texts[1], "threads": threads, "pinned": blas_pin()}


# OpenBLAS kernels that use AVX-512; the others it ships for x86-64 (Haswell, Zen, Sandybridge, ...) stop at AVX2.
AVX512_KERNELS = frozenset({"skylakex", "cooperlake", "sapphirerapids"})


def blas_pin() -> str | None:
    """The kernel ``OPENBLAS_CORETYPE`` pins, if set: OpenBLAS reads it once, when NumPy loads it."""
    return os.environ.get("OPENBLAS_CORETYPE") or None


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (``avx512f``, ...) from /proc/cpuinfo; empty where there is none."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def pin_note(core: str, pin: str | None, flags: frozenset[str]) -> str | None:
    """One line when a pinned OpenBLAS kernel leaves AVX-512 unused on a CPU that has it, else None.

    Some machines set ``OPENBLAS_CORETYPE=Haswell`` for old OpenBLAS builds that misread new CPUs. On the CI
    VM (AMD EPYC with AVX-512, NumPy 2.4's OpenBLAS 0.3.31) that pin cost NumPy's float32 GEMM 40% of its
    rate (254–266 vs 435–449 GFLOP/s, bench.py runs within ten minutes); unpinned, OpenBLAS picks SkylakeX.
    """
    if pin is None or "avx512f" not in flags or core.lower() in AVX512_KERNELS:
        return None
    return (f"OPENBLAS_CORETYPE={pin} keeps NumPy's OpenBLAS on its {core} kernel, but this CPU has AVX-512: "
            f"unset it unless your OpenBLAS needs it (xpnet doctor measures both)")


def set_blas_threads(n: int) -> bool:
    """Set NumPy's OpenBLAS thread count at run time; False where the BLAS is not one we can reach."""
    ob = _openblas()
    if ob is None:
        return False
    lib, prefix, suffix = ob
    getattr(lib, f"{prefix}set_num_threads{suffix}")(int(n))
    return True


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


def host_memory_kept() -> bool:
    """Whether :func:`keep_freed_host_memory` has been called and took effect (it is not called here)."""
    return bool(_HOST_ALLOCATOR and _HOST_ALLOCATOR[0])

