"""What xpnet can run on here, and what to do if CUDA can't: the library behind ``xpnet doctor``.

(The command, its flags and exit status, is :mod:`xpnet.cli.doctor`; this module is a library
floor of its own so that other tools, such as scripts/gpu_check.py or a notebook, can ask
:func:`diagnose` for the same facts as data.)

It prints the versions that matter, the backends found, the CUDA devices (name, memory, compute
capability) when there are any, and whether each backend really computes: a small float32 matmul is
run on it and checked against a float64 result made on the host, and on a GPU one of xpnet's compiled
kernels and one random draw too (a cuBLAS matmul compiles nothing: a host without the CUDA headers
passes it and then fails on the first elementwise operation). When CUDA is unusable it says why
(``backend.cuda_status``) and what to do about it, and it says which CuPy build matches the driver.
It also measures NumPy's float32 GEMM rate, and where ``OPENBLAS_CORETYPE`` pins OpenBLAS's kernel, the
rate without the pin (in a fresh process): such a pin cost 40% of it on the CI machine.

"""

from __future__ import annotations

import ctypes
import importlib.metadata
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

MATMUL_N = 64
GEMM_N = 512  # the doctor's speed probe: big enough for every BLAS thread


@dataclass
class Check:
    """One backend on one device, and whether the matmul check passed there."""

    name: str  # "cpu", "cuda", "cuda:0"
    library: str  # "numpy", "cupy"
    ok: bool
    detail: str


@dataclass
class Report:
    versions: dict[str, str | None] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    cuda: dict[str, Any] = field(default_factory=dict)
    devices: list[dict[str, Any]] = field(default_factory=list)
    environment: dict[str, str | None] = field(default_factory=dict)
    advice: list[str] = field(default_factory=list)
    fast_paths: dict[str, str] = field(default_factory=dict)
    blas: dict[str, Any] = field(default_factory=dict)

    @property
    def cpu_ok(self) -> bool:
        return any(c.ok for c in self.checks if c.name == "cpu")

    @property
    def cuda_ok(self) -> bool:
        return any(c.ok for c in self.checks if c.name.startswith("cuda:"))


def _dist_version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cupy_dists() -> list[str]:
    """The installed distributions that provide the ``cupy`` package (cupy-cuda12x, cupy-rocm-6-0, ...)."""
    try:
        return sorted(set(importlib.metadata.packages_distributions().get("cupy", [])))
    except Exception:  # broken metadata must not break the doctor
        return []


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{exc.__class__.__name__}: {text.splitlines()[0]}" if text else exc.__class__.__name__


def _in_container() -> bool:
    return os.path.exists("/.dockerenv") or os.path.exists("/run/.containerenv")


def _libcuda() -> str:
    """Whether the NVIDIA driver's user-space library can be loaded (it comes from the driver, not CuPy)."""
    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return "libcuda.so.1 not found"
    return "libcuda.so.1 loads"


def _cuda_version(v: int) -> str:
    return f"{v // 1000}.{v % 1000 // 10}" if v else "none"


def versions() -> dict[str, str | None]:
    from xpnet._version import __version__

    cupy_dists = _cupy_dists()
    cupy = None
    if cupy_dists:
        cupy = f"{_dist_version(cupy_dists[0])} ({', '.join(cupy_dists)})"
    elif importlib.util.find_spec("cupy") is not None:
        cupy = "installed (version unknown)"
    return {
        "python": f"{platform.python_version()} ({sys.executable})",
        "platform": platform.platform(),
        "xpnet": __version__,
        "numpy": _dist_version("numpy"),
        "array-api-compat": _dist_version("array-api-compat"),
        "cupy": cupy,
        "array-api-strict": _dist_version("array-api-strict") or "not installed (only the tests use it)",
    }


def matmul_check(dev: Any) -> tuple[bool, str]:
    """Run a float32 matmul on ``dev`` and compare it with float64 on the host."""
    import numpy as np

    from xpnet import backend

    rng = np.random.default_rng(0)
    a = rng.standard_normal((MATMUL_N, MATMUL_N)).astype(np.float32)
    b = rng.standard_normal((MATMUL_N, MATMUL_N)).astype(np.float32)
    try:
        f32 = dev.dtype("float32")
        out = dev.xp.matmul(dev.asarray(a, dtype=f32), dev.asarray(b, dtype=f32))
        dev.synchronize()
        got = backend.to_host(out).astype(np.float64)
    except Exception as exc:
        return False, f"matmul failed: {_first_line(exc)}"
    ref = a.astype(np.float64) @ b.astype(np.float64)
    err = float(np.max(np.abs(got - ref)))
    # float32 (or TF32 on a GPU) accumulates ~1e-6..1e-3 relative error here; a wrong result is off by O(1).
    ok = got.shape == ref.shape and err <= 1e-3 * float(np.max(np.abs(ref)))
    verdict = "checked" if ok else "WRONG RESULT"
    return ok, f"{MATMUL_N}x{MATMUL_N} float32 matmul {verdict} (max error {err:.1e})"


def gemm_gflops(n: int = GEMM_N, seconds: float = 0.3) -> float:
    """NumPy's best float32 n×n·n×n rate in GFLOP/s over about ``seconds`` of repeats."""
    import time

    import numpy as np

    a, b = np.ones((n, n), np.float32), np.ones((n, n), np.float32)
    a @ b  # first call: OpenBLAS allocates its buffers and wakes its threads
    best, end = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def blas_probe() -> None:
    """Print this process's BLAS kernel and GEMM rate as JSON (the doctor runs it without the pin)."""
    from xpnet.accel import tuning

    print(json.dumps({"kernel": tuning.blas_info()["core"], "gflops": gemm_gflops()}))


def blas_facts() -> tuple[dict[str, Any], list[str]]:
    """NumPy's BLAS: library, kernel, threads, float32 GEMM rate; where ``OPENBLAS_CORETYPE`` pins the
    kernel, the kernel and rate OpenBLAS gets without the pin (a fresh process), and advice if that is faster."""
    from xpnet.accel import tuning

    info = tuning.blas_info()
    pin = info["pinned"]
    facts: dict[str, Any] = {"library": info["name"], "kernel": info["core"], "threads": info["threads"],
                             "pinned by OPENBLAS_CORETYPE": pin, "float32 GEMM GFLOP/s": round(gemm_gflops())}
    if pin is None:
        return facts, []
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    try:
        proc = subprocess.run([sys.executable, "-c", "from xpnet import diagnosis; diagnosis.blas_probe()"], env=env,
                              capture_output=True, text=True, timeout=120)
        native = json.loads(proc.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError) as exc:
        facts["without the pin"] = f"could not measure: {_first_line(exc)}"
        return facts, []
    facts["without the pin"] = f"{native['kernel']} kernel, {round(native['gflops'])} GFLOP/s"
    if native["gflops"] > 1.1 * facts["float32 GEMM GFLOP/s"]:
        return facts, [f"OPENBLAS_CORETYPE={pin} holds NumPy's products to {facts['float32 GEMM GFLOP/s']} GFLOP/s; "
                       f"without it OpenBLAS picks its {native['kernel']} kernel here ({round(native['gflops'])} "
                       "GFLOP/s): unset it (env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE) unless your OpenBLAS "
                       "needs it"]
    return facts, []


def kernel_check(dev: Any) -> tuple[bool, str]:
    """Run xpnet's fused ReLU kernel (NVRTC-compiled) and one dropout-mask draw on ``dev``; check both."""
    import numpy as np

    from xpnet import accel, backend

    x = np.array([-2.0, -0.5, 0.0, 0.5, 3.0], dtype=np.float32)
    try:
        fused = accel.kernel("relu", dev.asarray(x))
        if fused is None:
            return False, "no compiled kernel for this device"
        y, mask = fused(dev.asarray(x))
        r = backend.to_host(dev.rng(0).random((1000,), dev.dtype("float32")))
        dev.synchronize()
    except Exception as exc:
        return False, f"compiled kernel or RNG failed: {_first_line(exc)}"
    ok = (np.array_equal(backend.to_host(y), np.maximum(x, 0)) and np.array_equal(backend.to_host(mask), x > 0)
          and r.min() >= 0 and r.max() < 1 and 0.4 < r.mean() < 0.6)
    return ok, "compiled ReLU kernel and RNG draw " + ("checked" if ok else "WRONG RESULT")


def matching_cupy(driver_cuda: int) -> str | None:
    """The CuPy package (and xpnet extra) for a driver that supports CUDA ``driver_cuda`` (e.g. 12080), or None."""
    major = driver_cuda // 1000
    if major >= 13:
        return "cupy-cuda13x (pip install 'xpnet[cuda13]')"
    if major == 12:
        return "cupy-cuda12x (pip install 'xpnet[cuda12]')"
    return None


def _device_info(index: int) -> dict[str, Any]:
    import cupy

    info: dict[str, Any] = {"device": f"cuda:{index}"}
    try:
        props = cupy.cuda.runtime.getDeviceProperties(index)
        name = props.get("name", b"?")
        info["name"] = name.decode(errors="replace") if isinstance(name, bytes) else str(name)
        info["memory_gib"] = round(props.get("totalGlobalMem", 0) / 2**30, 1)
        info["compute_capability"] = f"{props.get('major', '?')}.{props.get('minor', '?')}"
    except Exception as exc:
        info["error"] = _first_line(exc)
    try:
        with cupy.cuda.Device(index):
            free, _total = cupy.cuda.runtime.memGetInfo()
        info["free_gib"] = round(free / 2**30, 1)
    except Exception:
        pass
    return info


def cuda_facts() -> dict[str, Any]:
    """CUDA runtime/driver versions as CuPy sees them, plus what the driver side looks like."""
    facts: dict[str, Any] = {
        "driver library": _libcuda(),
        "nvidia-smi": shutil.which("nvidia-smi") or "not found",
    }
    if importlib.util.find_spec("cupy") is None:
        return facts
    try:
        import cupy

        facts["CuPy's CUDA runtime"] = _cuda_version(cupy.cuda.runtime.runtimeGetVersion())
        driver = cupy.cuda.runtime.driverGetVersion()
        facts["driver supports CUDA"] = _cuda_version(driver)
    except Exception as exc:
        facts["CuPy"] = _first_line(exc)
        return facts
    if driver:
        facts["CuPy for this driver"] = matching_cupy(driver) or (
            f"none: CuPy 14 needs a driver for CUDA 12 or 13, this one supports {_cuda_version(driver)}")
    try:
        from cupy_backends.cuda.libs import nvrtc

        major, minor = nvrtc.getVersion()
        facts["NVRTC"] = f"{major}.{minor}"
    except Exception as exc:  # e.g. libnvrtc.so.12 missing on a CUDA 13-only host
        facts["NVRTC"] = f"not loadable: {_first_line(exc)}"
    return facts


def advice_for(reason: str) -> list[str]:
    """What to do about a ``cuda_status`` reason, in the order worth trying."""
    r = reason.lower()
    container = _in_container()
    if "cupy is not installed" in r:
        if importlib.util.find_spec("cupy") is None:
            return ["CuPy is not installed: pip install 'xpnet[cuda12]' (a driver for CUDA 12: R575+ natively, R525+ "
                    "through CUDA minor-version compatibility) or 'xpnet[cuda13]' (a driver for CUDA 13, R580+), "
                    "or `make venv BACKEND=cuda12`, or use the Docker image"]
        return ["CuPy is installed but does not import: reinstall the build for your CUDA "
                "(pip install --force-reinstall 'xpnet[cuda12]') and keep exactly one cupy-* package installed "
                f"(found: {', '.join(_cupy_dists()) or 'none with metadata'})"]
    if "driver" in r:
        tips = []
        if _libcuda().endswith("not found"):
            if container:
                tips.append("no NVIDIA driver is visible in this container: run it with --gpus all "
                            "(Docker needs the NVIDIA Container Toolkit; podman: --device nvidia.com/gpu=all)")
            else:
                tips.append("no NVIDIA driver is installed (libcuda.so.1 is missing): install the NVIDIA driver; "
                            "`nvidia-smi` should then list your GPU")
        tips.append("if the driver is installed but old: update it to one that supports CUDA 12.9 (R575 or "
                    "newer; R525+ runs it only through CUDA minor-version compatibility) or CUDA 13 (R580+, with "
                    "xpnet[cuda13]); `nvidia-smi` shows the highest CUDA version it supports (see backends/README.md)")
        return tips
    if "cannot compile" in r or "nvrtc" in r:
        tips = ["CuPy needs NVRTC and the CUDA headers to compile its kernels: install CuPy with NVIDIA's toolkit "
                "wheels, pip install 'xpnet[cuda12]' (cupy-cuda12x[ctk]), or a -devel CUDA image"]
        driver = cuda_facts().get("CuPy for this driver")
        if driver:
            tips.append(f"the CuPy build for this driver: {driver}; keep exactly one cupy-* package installed")
        return tips
    if "no cuda device" in r:
        tips = ["run `nvidia-smi`: it should list the GPU"]
        if container:
            tips.append("in Docker, pass the GPU in: docker run --gpus all ...")
        cvd = os.environ.get("CUDA_VISIBLE_DEVICES")
        if cvd is not None:
            tips.append(f"CUDA_VISIBLE_DEVICES={cvd!r} limits the devices CUDA sees; unset it or list real ids")
        return tips
    return ["run `nvidia-smi` to check the GPU and driver; in Docker pass --gpus all; check CUDA_VISIBLE_DEVICES"]


def diagnose() -> Report:
    """Everything the doctor prints, as data."""
    from xpnet import backend, fast_paths
    from xpnet.accel import tuning

    rep = Report(versions=versions())
    rep.environment = {k: os.environ.get(k) for k in
                       ("XPNET_DATA_DIR", "CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "CUPY_CACHE_DIR")}

    ok, detail = matmul_check(backend.cpu())
    rep.checks.append(Check("cpu", "numpy", ok, detail))
    if importlib.util.find_spec("array_api_strict") is not None:  # the test suite's simulated accelerator
        import array_api_strict as strict

        ok, detail = matmul_check(backend.wrap(strict, strict.Device("device1"), name="strict"))
        rep.checks.append(Check("strict", "strict", ok, f"{detail} (tests only)"))

    tuning.keep_freed_host_memory()  # as xpnet train does, so the line says whether glibc takes it
    rep.fast_paths = {"cpu": fast_paths.describe_line(backend.cpu())}
    rep.blas, rep.advice = blas_facts()
    rep.cuda = cuda_facts()
    usable, reason, count = backend.cuda_status()
    rep.cuda["usable"] = usable
    rep.cuda["reason"] = reason or None
    rep.cuda["device count"] = count
    if not usable:
        rep.checks.append(Check("cuda", "cupy", False, reason))
        rep.advice += advice_for(reason)
        return rep
    for i in range(count):
        info = _device_info(i)
        rep.devices.append(info)
        try:
            dev = backend.device(f"cuda:{i}")
            ok, detail = matmul_check(dev)
            k_ok, k_detail = kernel_check(dev)
            ok, detail = ok and k_ok, f"{detail}; {k_detail}"
        except Exception as exc:
            ok, detail = False, f"could not use the device: {_first_line(exc)}"
        rep.checks.append(Check(f"cuda:{i}", "cupy", ok, detail))
        if ok:
            rep.fast_paths[f"cuda:{i}"] = fast_paths.describe_line(backend.device(f"cuda:{i}"))
    if not rep.cuda_ok:
        rep.advice += ["CUDA devices are visible but the checks failed on each: update the NVIDIA driver, "
                       "check `nvidia-smi` for errors (ECC, Xid), and check the GPU is not out of memory"]
    return rep


def format_report(rep: Report) -> str:
    lines = ["xpnet doctor", "", "versions"]
    lines += [f"  {k:<18} {v if v is not None else 'not installed'}" for k, v in rep.versions.items()]
    lines += ["", "backends (a small matmul on each, checked against the host)"]
    for c in rep.checks:
        status = "OK" if c.ok else ("UNUSABLE" if c.name == "cuda" else "FAILED")
        lines.append(f"  {c.name:<8} {c.library:<6} {status:<9} {c.detail}")
    lines += ["", "fast paths (xpnet.accel; the trainer's start line also says whether a net runs a fused conv block)"]
    lines += [f"  {k:<8} {v.removeprefix('fast paths: ')}" for k, v in rep.fast_paths.items()]
    lines += ["", "NumPy's BLAS"]
    lines += [f"  {k:<28} {v if v is not None else '(unset)'}" for k, v in rep.blas.items()]
    lines += ["", "CUDA"]
    lines += [f"  {k:<22} {v}" for k, v in rep.cuda.items() if k not in ("usable", "reason")]
    for d in rep.devices:
        if "error" in d:
            lines.append(f"  {d['device']:<22} {d['error']}")
            continue
        free = f", {d['free_gib']} GiB free" if "free_gib" in d else ""
        lines.append(f"  {d['device']:<22} {d['name']}, {d['memory_gib']} GiB{free}, "
                     f"compute capability {d['compute_capability']}")
    lines += ["", "environment"]
    lines += [f"  {k:<22} {v if v is not None else '(unset)'}" for k, v in rep.environment.items()]
    if rep.advice:
        lines += ["", "advice"] + [f"  - {a}" for a in rep.advice]
    lines.append("")
    if not rep.cpu_ok:
        lines.append("result: the CPU backend does not work: reinstall the dependencies "
                     "(pip install -r backends/cpu.txt) and run the doctor again")
    elif rep.cuda_ok:
        n = sum(c.ok for c in rep.checks if c.name.startswith("cuda:"))
        lines.append(f"result: CPU works; CUDA works on {n} device(s): --device cuda trains on the GPU")
    else:
        lines.append("result: CPU works; CUDA is unusable, so --device cuda warns and trains on the CPU")
    return "\n".join(lines)
