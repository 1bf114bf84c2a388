"""``python -m xpnet doctor``: runs here, finds the CPU working, and explains CUDA either way."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from xpnet import backend
from xpnet import diagnosis as doctor
from xpnet.cli import doctor as doctor_cli


def _doctor(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "xpnet", "doctor", *args],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def text_run() -> subprocess.CompletedProcess[str]:
    return _doctor()


def test_doctor_exits_0_and_reports_cpu_works(text_run: subprocess.CompletedProcess[str]) -> None:
    assert text_run.returncode == 0, text_run.stdout + text_run.stderr
    out = text_run.stdout
    for name in ("python", "xpnet", "numpy", "array-api-compat", "cupy"):
        assert f"\n  {name} " in out
    cpu_line = next(line for line in out.splitlines() if line.strip().startswith("cpu "))
    assert " OK " in cpu_line and "matmul checked" in cpu_line


def test_doctor_explains_cuda(text_run: subprocess.CompletedProcess[str]) -> None:
    ok, reason, count = backend.cuda_status()
    out = text_run.stdout
    if ok:
        assert "cuda:0" in out and "compute capability" in out
        assert f"CUDA works on {count} device(s)" in out
    else:
        assert "UNUSABLE" in out and reason in out
        assert "\nadvice\n" in out
        assert "CUDA is unusable, so --device cuda warns and trains on the CPU" in out


def test_doctor_json_and_require_cuda() -> None:
    run = _doctor("--json", "--require-cuda")
    data = json.loads(run.stdout)
    assert data["cpu_ok"] is True
    assert data["cuda"]["usable"] is backend.cuda_status()[0]
    assert run.returncode == (0 if data["cuda_ok"] else 2)


def test_console_script_entry_point_is_the_same_main() -> None:
    assert doctor_cli.main(["--json"]) == 0


@pytest.mark.parametrize(("reason", "expect"), [
    ("CuPy is not installed or failed to import (ModuleNotFoundError: No module named 'cupy'); install it",
     "xpnet[cuda12]"),
    ("the NVIDIA driver is missing or too old for this CuPy build (cudaErrorInsufficientDriver: ...)",
     "supports CUDA 12"),
    ("no CUDA device is visible (check nvidia-smi and CUDA_VISIBLE_DEVICES)", "nvidia-smi"),
    ("CUDA runtime error (cudaErrorUnknown)", "--gpus all"),
])
def test_advice_names_the_fix(reason: str, expect: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(doctor.importlib.util, "find_spec", lambda name: None)
    assert any(expect in tip for tip in doctor.advice_for(reason))


def test_failed_cpu_check_exits_nonzero(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setattr(doctor, "matmul_check", lambda dev: (False, "matmul failed: broken"))
    assert doctor_cli.main([]) == 1
    assert "the CPU backend does not work" in capsys.readouterr().out


def test_python_m_xpnet_without_command_prints_usage() -> None:
    run = subprocess.run([sys.executable, "-m", "xpnet"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "doctor" in run.stdout


@pytest.mark.parametrize(("driver", "expect"), [(13000, "xpnet[cuda13]"), (13020, "cupy-cuda13x"),
                                                (12080, "xpnet[cuda12]"), (12090, "cupy-cuda12x"), (11080, None)])
def test_the_doctor_names_the_cupy_for_the_driver(driver: int, expect: str | None) -> None:
    got = doctor.matching_cupy(driver)
    assert got is None if expect is None else expect in got


def test_advice_for_a_cupy_that_cannot_compile(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 11, defect 1: devices are visible but no kernel compiles (no CUDA headers): say what to install."""
    monkeypatch.setattr(doctor, "cuda_facts", lambda: {"CuPy for this driver": "cupy-cuda13x (pip install ...)"})
    tips = doctor.advice_for("CuPy cannot compile or run a kernel on cuda:0 (RuntimeError: Failed to find CUDA "
                             "headers); install CuPy with its CUDA toolkit wheels")
    assert "cupy-cuda12x[ctk]" in tips[0] and "cupy-cuda13x" in tips[1]


def test_kernel_check_fails_where_there_is_no_compiled_kernel() -> None:
    ok, detail = doctor.kernel_check(backend.cpu())
    assert not ok and "no compiled kernel" in detail


def test_doctor_measures_the_blas_with_and_without_a_kernel_pin(monkeypatch: pytest.MonkeyPatch) -> None:
    from xpnet.accel import tuning

    if tuning.blas_info()["threads"] is None:
        pytest.skip("NumPy's BLAS is not an OpenBLAS xpnet can reach: there is no kernel to pin")
    monkeypatch.delenv("OPENBLAS_CORETYPE", raising=False)
    facts, advice = doctor.blas_facts()
    assert facts["float32 GEMM GFLOP/s"] > 0 and facts["kernel"] == tuning.blas_info()["core"]
    assert "without the pin" not in facts and advice == []
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Prescott")  # the pin is read by a fresh process, not this one
    facts, advice = doctor.blas_facts()
    assert facts["pinned by OPENBLAS_CORETYPE"] == "Prescott"
    native = facts["without the pin"]
    assert " kernel, " in native and native.endswith(" GFLOP/s"), native
    assert all("OPENBLAS_CORETYPE=Prescott" in a for a in advice)


def test_the_probe_reports_the_kernel_a_pin_picks() -> None:
    from xpnet.accel import tuning

    if tuning.blas_info()["threads"] is None or "avx2" not in tuning.cpu_flags():
        pytest.skip("needs NumPy's OpenBLAS on an x86-64 CPU with AVX2, where OPENBLAS_CORETYPE=Haswell runs")
    env = {**os.environ, "OPENBLAS_CORETYPE": "Haswell"}
    out = subprocess.run([sys.executable, "-c", "from xpnet import diagnosis; diagnosis.blas_probe()"], env=env,
                         capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(out.stdout)["kernel"] == "Haswell"
