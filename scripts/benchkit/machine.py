"""The machine a result was measured on: CPU, BLAS kernel, threads, load, and the best float32 GEMM rate.

The GEMM rate is the compute ceiling every config is compared with; the machine line heads every report.
"""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import xpnet
from xpnet import backend
from xpnet.accel import tuning

from .runners import torch_device


def set_threads(n: int, torch_too: bool) -> dict[str, Any]:
    """Same intra-op thread count for NumPy's BLAS and for torch; returns what each really uses."""
    tuning.set_blas_threads(n)
    got: dict[str, Any] = {"xpnet_blas": tuning.blas_info()["threads"]}
    if torch_too:
        import torch

        torch.set_num_threads(n)
        got["torch"] = torch.get_num_threads()
    return got



GEMM_SHAPES = ((100, 784, 100), (784, 100, 100), (512, 512, 512))


def gemm_rates(dev: backend.Device, with_torch: bool, tiny: bool) -> dict[str, dict[str, float]]:
    """Float32 GEMM GFLOP/s for a few relevant shapes (median of 5), on xpnet's device and in torch."""
    rng = np.random.default_rng(1)
    out: dict[str, dict[str, float]] = {}
    for m, k, n in GEMM_SHAPES:
        a, b = rng.random((m, k), dtype=np.float32), rng.random((k, n), dtype=np.float32)
        reps = 2 if tiny else max(5, int(3e8 / (2 * m * k * n)))
        key = f"{m}x{k}x{n}"
        xa, xb = xpnet.to_device(a, dev), xpnet.to_device(b, dev)
        out.setdefault("xpnet", {})[key] = _gemm_rate(xa, xb, dev.synchronize, reps)
        if with_torch:
            import torch

            tdev = torch_device(dev)
            ta, tb = torch.from_numpy(a).to(tdev), torch.from_numpy(b).to(tdev)
            sync = torch.cuda.synchronize if tdev != "cpu" else (lambda: None)
            out.setdefault("torch", {})[key] = _gemm_rate(ta, tb, sync, reps)
    return out


def _gemm_rate(a: Any, b: Any, sync: Callable[[], None], reps: int) -> float:
    a @ b
    sync()
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(reps):
            a @ b
        sync()
        times.append((time.perf_counter() - t0) / reps)
    return 2 * a.shape[0] * a.shape[1] * b.shape[1] / statistics.median(times) / 1e9


def machine(dev: backend.Device, threads: dict[str, Any]) -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
    info: dict[str, Any] = {"cpu": cpu, "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                            else os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__,
                            "blas": tuning.blas_info(), "device": dev.name, "threads": threads,
                            "load_avg": os.getloadavg() if hasattr(os, "getloadavg") else None}
    if "torch" in threads:
        import torch

        info["torch"] = torch.__version__
    return info



def machine_line(result: dict[str, Any]) -> str:
    """One line naming the machine and the software a result was measured with, and when."""
    m = result["machine"]
    blas = m["blas"]
    return (f"{result['date']} | device {m['device']} | {m['cpu']}, {m['cores']} cores | numpy {m['numpy']}, "
            f"BLAS {blas['name'].split('  ')[0]} kernel {blas['core']}"
            + (" (pinned by OPENBLAS_CORETYPE)" if blas.get("pinned") else "")
            + f", {m['threads'].get('xpnet_blas')} threads"
            + (f" | torch {m['torch']}, {m['threads']['torch']} threads" if "torch" in m else "")
            + (f" | load {m['load_avg'][0]:.2f}" if m["load_avg"] else "")
            + f" | best float32 GEMM {result['matmul_gflops']:.0f} GFLOP/s ({result['matmul_best']})")

