"""scripts/gpu_check.py (``make gpu-check``): refuses cleanly without CUDA; its report says what ran."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.helpers import load_script
from xpnet import backend

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check() -> ModuleType:
    return load_script(SCRIPT, "xpnet_gpu_check")


def test_refuses_at_once_with_one_line_and_exit_2_without_cuda(tmp_path: Path) -> None:
    ok, reason, _ = backend.cuda_status()
    if ok:
        pytest.skip("CUDA is usable here: gpu-check would run")
    run = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path / "r")], capture_output=True,
                         text=True, timeout=120, cwd=ROOT)
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpu-check: cannot run here: ")
    assert (reason in lines[0]) or "lacks" in lines[0]
    assert not (tmp_path / "r").exists(), "nothing is written when it cannot run"


def test_names_the_missing_modules(gpu_check: ModuleType, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(gpu_check.importlib.util, "find_spec",
                        lambda name: None if name in ("cupy", "array_api_strict") else real(name))
    assert gpu_check.main([]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "lacks array_api_strict, cupy" in err and "GPU_PYTHON=" in err


def test_report_collects_the_steps_outputs(gpu_check: ModuleType, tmp_path: Path) -> None:
    (tmp_path / "doctor.json").write_text(json.dumps({
        "devices": [{"name": "NVIDIA H100 80GB HBM3"}], "versions": {"cupy": "14.2.0 (cupy-cuda13x)"},
        "cuda": {"driver supports CUDA": "13.0", "NVRTC": "13.0"}}))
    (tmp_path / "bench.json").write_text(json.dumps({"results": [
        {"config": "mlp", "title": "MLP", "xpnet": {"samples_per_s": 1e6}, "torch": {"samples_per_s": 2e6}}]}))
    (tmp_path / "main-job").mkdir()
    (tmp_path / "main-job" / "summary.json").write_text(json.dumps(
        {"status": "completed", "results": {"test_acc": 0.981, "seconds": 42.0, "epochs": 10}}))
    (tmp_path / "nosync-main.json").write_text(json.dumps({"steps": 300, "ok": True}))
    steps = [{"name": "doctor", "rc": 0, "seconds": 1.0}, {"name": "nosync-main", "rc": 0, "seconds": 3.0},
             {"name": "tests", "rc": 1, "seconds": 100.0}]
    rep = gpu_check.summarize(tmp_path, steps)
    assert rep["gpu"] == ["NVIDIA H100 80GB HBM3"] and rep["driver_cuda"] == "13.0"
    assert rep["main_job"]["test_acc"] == 0.981 and rep["steps"][1]["result"]["steps"] == 300
    assert rep["ok"] is False  # one step failed
    md = gpu_check.markdown(rep)
    assert "| MLP | 1,000,000 | 2,000,000 |" in md and "FAILED" in md and "test accuracy 0.981" in md


@pytest.mark.parametrize(("acc", "expect"), [(0.981, 0), (0.97, 1)])
def test_the_whole_flow_and_the_main_job_bar(gpu_check: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             acc: float, expect: int) -> None:
    """Every step in order (each replaced by a stand-in writing what the real one writes); the main job must
    reach 97.5% on real MNIST."""
    mnist = tmp_path / "data" / "mnist"
    mnist.mkdir(parents=True)
    (mnist / "train-images-idx3-ubyte.gz").write_bytes(b"")
    monkeypatch.setenv("XPNET_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setattr(gpu_check, "missing", lambda: None)
    ran: list[tuple[str, dict[str, str]]] = []

    def fake_step(name: str, cmd: list[str], out: Path, env: dict[str, str] | None = None,
                  timeout: int = 0, stdout: Path | None = None) -> dict[str, object]:
        ran.append((name, env or {}))
        if name == "main-job":
            (out / "main-job").mkdir(exist_ok=True)
            (out / "main-job" / "summary.json").write_text(json.dumps(
                {"status": "completed", "results": {"test_acc": acc, "seconds": 30.0}}))
        return {"name": name, "command": cmd, "rc": 0, "seconds": 0.1}

    monkeypatch.setattr(gpu_check, "run_step", fake_step)
    out = tmp_path / "report"
    assert gpu_check.main(["--out", str(out)]) == expect
    names = [n for n, _ in ran]
    assert names == ["doctor", "doctor-json", "tests", "bench", "main-job", "nosync-main", "nosync-dropout-batchnorm",
                     "nccl-1rank"]
    assert dict(ran)["nccl-1rank"] == {"XPNET_MPI": "1"}  # MPI with one rank, no launcher
    assert dict(ran)["tests"] == {"XPNET_REQUIRE_CUPY": "1"}
    assert "XPNET_OFFLINE" not in dict(ran)["main-job"]  # real MNIST, not the bundled sample
    rep = json.loads((out / "report.json").read_text())
    assert rep["main_job_bar"] == {"required": 0.975, "ok": expect == 0}
    assert (out / "report.md").exists()
