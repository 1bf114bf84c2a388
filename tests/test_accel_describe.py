"""The fast paths in use are visible: ``fast_paths.describe``, the trainer's start line, summary.json, the doctor."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import no_cuda
from xpnet import backend, fast_paths, nets

ROOT = Path(__file__).resolve().parents[1]


def test_describe_says_what_runs_on_each_backend(strict_dev: backend.Device) -> None:
    cpu = backend.cpu()
    conv = nets.SimpleConvNet((1, 12, 12), {"filter_num": 2, "filter_size": 3}, hidden_size=4, device=cpu)
    on = fast_paths.describe(cpu, conv)
    assert on["flat buffers"] and on["fused conv block"] and on["NumPy out= updates"] and not on["CuPy kernels"]
    conv.fuse = False
    assert not fast_paths.describe(cpu, conv)["fused conv block"]
    book = nets.TwoLayerNet(4, 3, 2, device=cpu, flat=False)
    assert not fast_paths.describe(cpu, book)["flat buffers"]
    strict = fast_paths.describe(strict_dev)
    assert strict["flat buffers"] and not (strict["CuPy kernels"] or strict["NumPy out= updates"]
                                           or strict["allocator tuning"])
    assert "fused conv block" not in strict  # a device alone has no blocks to fuse
    assert fast_paths.describe_line(strict_dev).startswith("fast paths: flat buffers on, CuPy kernels off")


def _train(tmp_path: Path, mnist_path: Path, *extra: str, device: str = "cpu") -> subprocess.CompletedProcess[str]:
    """A short convnet run on ``device`` (named, never "auto": on a GPU host auto would be the GPU)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "XPNET_OFFLINE": "1"}
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "train.py"), "--data-dir", str(mnist_path),
                           "--model", "convnet", "--limit-train", "200", "--epochs", "1", "--device", device,
                           "--out", str(tmp_path / "run"), *extra], capture_output=True, text=True, env=env,
                          timeout=300)


def test_the_trainer_says_which_fast_paths_are_on(tmp_path: Path, mnist_path: Path) -> None:
    p = _train(tmp_path, mnist_path)
    assert p.returncode == 0, p.stderr
    [line] = [ln for ln in p.stderr.splitlines() if "fast paths:" in ln]
    assert "flat buffers on" in line and "fused conv block on" in line and "CuPy kernels off" in line
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["fast_paths"]["fused conv block"] is True


def test_the_trainer_says_cupy_kernels_are_on_on_a_cuda_device(tmp_path: Path, mnist_path: Path) -> None:
    ok, reason, _ = backend.cuda_status()
    if not ok:
        no_cuda(f"cupy backend skipped: {reason}")
    p = _train(tmp_path, mnist_path, device="cuda")
    assert p.returncode == 0, p.stderr
    [line] = [ln for ln in p.stderr.splitlines() if "fast paths:" in ln]
    assert "CuPy kernels on" in line and "NumPy out= updates off" in line
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["fast_paths"]["CuPy kernels"] is True


def test_quiet_leaves_the_fast_path_line_out(tmp_path: Path, mnist_path: Path) -> None:
    p = _train(tmp_path, mnist_path, "--quiet")
    assert p.returncode == 0, p.stderr
    assert "fast paths" not in p.stderr + p.stdout


@pytest.mark.parametrize("flag", [[], ["--json"]])
def test_the_doctor_lists_the_fast_paths(flag: list[str]) -> None:
    p = subprocess.run([sys.executable, "-m", "xpnet", "doctor", *flag], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert p.returncode == 0, p.stderr
    if flag:
        assert "flat buffers on" in json.loads(p.stdout)["fast_paths"]["cpu"]
    else:
        assert "fast paths" in p.stdout and "NumPy out= updates on" in p.stdout
