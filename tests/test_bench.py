"""scripts/bench.py: runs in --tiny mode, writes valid JSON atomically, counts FLOPs right, fails in one line.

No timing is asserted: throughput on a shared machine says nothing about correctness.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest

from tests.helpers import load_script
from xpnet import backend

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "scripts" / "bench.py"


def run(*args: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(BENCH), *args], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT)


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_script(BENCH, "xpnet_bench")


def test_tiny_run_writes_valid_json(tmp_path: Path) -> None:
    out = tmp_path / "deep" / "bench.json"
    proc = run("--tiny", "--no-torch", "--configs", "mlp,conv", "--threads", "1", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert [r["config"] for r in data["results"]] == ["mlp", "conv"]
    assert data["machine"]["threads"]["xpnet_blas"] in (1, None)
    pinned = os.environ.get("OPENBLAS_CORETYPE") or None  # the machine line says when the kernel was pinned
    assert data["machine"]["blas"]["pinned"] == pinned
    assert ("(pinned by OPENBLAS_CORETYPE)" in proc.stdout.splitlines()[0]) is (pinned is not None)
    assert data["matmul_gflops"] > 0 and data["tiny"] is True
    for row in data["results"]:
        x = row["xpnet"]
        assert x["samples_per_s"] > 0 and len(x["repeats_step_ms"]) == 5
        assert x["peak_mem_mib"] is None or x["peak_mem_mib"] >= 0
        assert row["ceiling_samples_per_s"] > 0 and "torch" not in row
    assert [p.name for p in out.parent.iterdir()] == ["bench.json"]  # no temporary left behind
    assert "MLP 784-100-100-10" in proc.stdout and "xpnet/s" in proc.stdout and "ceiling" in proc.stdout


def test_tiny_run_against_pytorch(tmp_path: Path) -> None:
    pytest.importorskip("torch", reason="PyTorch is not installed (pip install torch==2.13.0)")
    out = tmp_path / "b.json"
    proc = run("--tiny", "--configs", "mlp", "--threads", "1", "--no-memory", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    row = json.loads(out.read_text())["results"][0]
    assert row["ratio"] == pytest.approx(row["xpnet"]["samples_per_s"] / row["torch"]["samples_per_s"])
    # Same layers, same initial weights, same batch: the first losses agree.
    assert row["torch"]["first_loss"] == pytest.approx(row["xpnet"]["first_loss"], rel=1e-4)
    assert "xpnet/torch" in proc.stdout


def test_tiny_e2e_times_both_jobs(tmp_path: Path, mnist_path: Path) -> None:
    """--e2e runs the real train.py and the PyTorch twin (1 epoch on 1000 images here) and reports the ratio."""
    pytest.importorskip("torch", reason="PyTorch is not installed (pip install torch==2.13.0)")
    import os

    out = tmp_path / "e2e.json"
    proc = subprocess.run([sys.executable, str(BENCH), "--e2e", "--tiny", "--threads", "1", "--out", str(out)],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path,
                          env={**os.environ, "XPNET_DATA_DIR": str(mnist_path.parent)})
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    jobs = data["e2e"]["jobs"]
    assert list(jobs) == ["xpnet", "torch", "torch-slicing"]
    assert jobs["xpnet"]["command"] == "python scripts/train.py --epochs 1 --limit-train 1000"
    for j in jobs.values():
        assert len(j["wall_s"]) == 1 and j["median_wall_s"] > 0
    assert data["e2e"]["ratio_vs_torch"] == pytest.approx(jobs["torch"]["median_wall_s"] /
                                                          jobs["xpnet"]["median_wall_s"])
    assert "xpnet is" in proc.stdout and "GFLOP/s" in proc.stdout and data["date"] in proc.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e2e.json"]  # runs went to a temporary folder


def test_flops_per_sample_counts_forward_and_twice_backward(bench: ModuleType) -> None:
    from xpnet import nets

    mlp = nets.MultiLayerNet(784, [100, 100], 10, device="cpu")
    fwd = 2 * (784 * 100 + 100 * 100 + 100 * 10)
    assert bench.runners.flops_per_sample(mlp) == 3 * fwd - 2 * 784 * 100  # the first layer's dx is skipped
    conv = nets.SimpleConvNet(device="cpu")
    conv.predict(conv.device.xp.zeros((1, 1, 28, 28), dtype=conv.device.xp.float32))
    conv_fwd = 2 * 30 * 25 * 24 * 24
    affine_fwd = 2 * (4320 * 100 + 100 * 10)
    assert bench.runners.flops_per_sample(conv) == 2 * conv_fwd + 3 * affine_fwd


def test_torch_twin_has_the_same_initial_weights(bench: ModuleType) -> None:
    torch = pytest.importorskip("torch", reason="PyTorch is not installed (pip install torch==2.13.0)")
    import numpy as np

    from xpnet import nets
    from xpnet.backend import to_host

    net = nets.SimpleConvNet((1, 10, 10), {"filter_num": 3, "filter_size": 3}, hidden_size=7, device="cpu")
    twin = bench.runners.torch_twin(net, "cpu")
    x = np.random.default_rng(0).random((4, 1, 10, 10), dtype=np.float32)
    with torch.no_grad():
        theirs = twin(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(theirs, to_host(net.predict(x)), rtol=1e-4, atol=1e-6)


def test_tiny_breakdown_splits_the_step_by_layer(tmp_path: Path) -> None:
    out = tmp_path / "b.json"
    proc = run("--tiny", "--breakdown", "--configs", "conv", "--threads", "1", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    row = json.loads(out.read_text())["breakdown"][0]
    parts = [p["part"] for p in row["parts"]]
    assert parts[0] == "ConvReluPool 1 forward" and parts[-2:] == ["SGD.update", parts[-1]]
    assert parts[-1].startswith("rest of the step")
    assert sum(p["us"] for p in row["parts"]) == pytest.approx(row["clocked_step_us"])
    assert row["bare_step_us"] > 0 and "Affine 2 backward" in proc.stdout and "torch" not in proc.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["--configs", "mlp,resnet"], "unknown config(s) ['resnet']"),
    (["--repeats", "0"], "--repeats must be >= 1"),
    (["--threads", "0"], "--threads must be >= 1"),
    (["--device", "tpu"], "unknown device 'tpu'"),
    (["--breakdown", "--e2e"], "--breakdown splits one step; --e2e times whole jobs"),
])
def test_bad_requests_fail_in_one_line(args: list[str], message: str) -> None:
    proc = run("--tiny", "--no-torch", *args)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bench.py: error: ") and message in lines[0], proc.stderr


def test_unusable_cuda_is_an_error_not_a_silent_cpu_run() -> None:
    from xpnet.backend import cuda_status

    ok, reason, _ = cuda_status()
    if ok:
        pytest.skip("a CUDA device is visible")
    proc = run("--tiny", "--no-torch", "--device", "cuda")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "CUDA is unusable" in lines[0] and reason in lines[0]


def test_unwritable_out_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    proc = run("--tiny", "--no-torch", "--no-memory", "--configs", "mlp", "--out", str(blocker / "b.json"))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bench.py: error: "), proc.stderr


def test_gpu_memory_figure_is_the_runs_peak_not_the_pools_cache(bench: ModuleType,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 11, defect 10: CuPy's pool keeps freed blocks; total - used counted them as the run's memory."""

    class Pool:  # CuPy's pool: reuses cached free blocks, grows only when they do not fit
        def __init__(self) -> None:
            self.used, self.free = 100 * 2**20, 400 * 2**20  # 400 MiB cached from earlier work

        def used_bytes(self) -> int:
            return self.used

        def total_bytes(self) -> int:
            return self.used + self.free

        def free_all_blocks(self) -> None:
            self.free = 0

        def alloc(self, n: int) -> None:
            reuse = min(n, self.free)
            self.free -= reuse
            self.used += n

        def release(self, n: int) -> None:
            self.used -= n
            self.free += n

    pool = Pool()
    monkeypatch.setitem(sys.modules, "cupy", SimpleNamespace(get_default_memory_pool=lambda: pool))

    class Runner:  # a run whose working set peaks at 50 MiB
        dev = SimpleNamespace(synchronize=lambda: None)

        def run(self, steps: int) -> None:
            for _ in range(steps):
                pool.alloc(50 * 2**20)
                pool.release(50 * 2**20)

    from benchkit import memory  # beside bench.py, on the path the bench fixture's import set

    assert memory._device_memory(Runner(), 3) == pytest.approx(50.0)


def test_a_time_worker_times_one_framework_in_its_own_process() -> None:
    spec = {"framework": "xpnet", "config": "mlp", "device": "cpu", "threads": 1, "data": "random", "seconds": 0.05}
    proc = run("--_time-worker", json.dumps(spec))
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["step_s"] > 0 and 0 < got["first_loss"] < 10  # ln(10) ≈ 2.3 for a fresh 10-class net


def test_repeats_alternate_between_fresh_processes(bench: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def fake_worker(flag: str, spec: dict) -> dict:
        assert flag == "--_time-worker" and spec["config"] == "conv" and spec["threads"] == 2
        calls.append(spec["framework"])
        return {"step_s": 0.01 * len(calls), "first_loss": 2.3}

    monkeypatch.setattr(bench.steps, "in_worker", fake_worker)
    args = SimpleNamespace(repeats=3, threads=2, data="random")
    per_step, first = bench.steps.time_in_processes("conv", ["xpnet", "torch"], args, bench.backend.cpu())
    assert calls == ["xpnet", "torch", "torch", "xpnet", "xpnet", "torch"]
    assert per_step == {"xpnet": [0.01, 0.04, 0.05], "torch": [0.02, 0.03, 0.06]}
    assert first == {"xpnet": 2.3, "torch": 2.3}


def test_a_full_run_times_in_fresh_processes(tmp_path: Path) -> None:
    """Every repeat is timed in a new child of the bench process: each Python process started logs itself
    (a sitecustomize on PYTHONPATH), and the log must show one distinct worker per repeat."""
    log, hook = tmp_path / "processes.jsonl", tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import json, os, sys\n"
        f"with open({str(log)!r}, 'a') as f:\n"
        "    f.write(json.dumps({'pid': os.getpid(), 'ppid': os.getppid(), 'argv': sys.argv}) + '\\n')\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(hook), os.environ.get("PYTHONPATH")])))
    out = tmp_path / "b.json"
    proc = subprocess.run([sys.executable, str(BENCH), "--repeats", "2", "--no-torch", "--no-memory", "--configs",
                           "conv", "--threads", "1", "--out", str(out)], capture_output=True, text=True,
                          timeout=300, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr
    row = json.loads(out.read_text())["results"][0]
    assert row["flops_per_sample"] > 0 and len(row["xpnet"]["repeats_step_ms"]) == 2
    assert 0 < row["xpnet"]["first_loss"] < 10
    started = [json.loads(line) for line in log.read_text().splitlines()]
    [parent] = [p for p in started if "--out" in p["argv"]]
    workers = [p for p in started if "--_time-worker" in p["argv"]]
    assert len(workers) == 2 and len({p["pid"] for p in workers}) == 2  # one process per repeat
    assert all(p["ppid"] == parent["pid"] != p["pid"] for p in workers)  # each a child of the bench run


@pytest.mark.parametrize("name", ["mlp", "conv"])
def test_timed_steps_do_not_read_the_device_back(bench: ModuleType, name: str) -> None:
    """The timed xpnet steps never sync (issue 23, item 2): on a device whose arrays raise when read back,
    the labels are checked once when the runner is made, then every step runs without a read-back."""
    from tests import sync_double

    dev = sync_double.sync_detector_device()
    cfg = bench.runners.CONFIGS[name]
    with sync_double.allow():  # making the runner may read back: the one label check per pooled batch
        runner = bench.runners.XpnetRunner(cfg, dev, bench.runners.host_batches(cfg, "random", 2))
    assert runner.net.last_layer.check_labels is False
    with sync_double.forbid():
        runner.run(3)
    bad = bench.runners.host_batches(cfg, "random", 1)
    bad[0][1][0] = 10  # a label past the 10 outputs is still refused, once, when the runner is made
    with pytest.raises(ValueError, match="label"):
        bench.runners.XpnetRunner(cfg, backend.cpu(), bad)


def test_ranks_times_one_rank_against_two(tmp_path: Path) -> None:
    if not (Path(sys.executable).parent / "mpiexec").exists():
        pytest.skip(f"no mpiexec beside {sys.executable} (pip install 'xpnet[mpi]')")
    out = tmp_path / "ranks.json"
    proc = run("--ranks", "2", "--threads", "2", "--tiny", "--no-torch", "--configs", "mlp", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    [row] = json.loads(out.read_text())["ranks"]
    one, many = row["one"], row["many"]
    assert (one["ranks"], one["threads"], many["ranks"], many["threads"]) == (1, 2, 2, 1)
    assert one["allreduce_alone_s"] is None and 0 < many["allreduce_share"] < 1 and many["allreduce_alone_s"] > 0
    assert many["allreduce_bytes"] == 4 * (784 * 100 + 100 + 100 * 100 + 100 + 100 * 10 + 10)
    assert row["speedup"] == many["steps_per_s"] / one["steps_per_s"]
    assert "2 ranks x 1 threads" in proc.stdout and "of a step" in proc.stdout


@pytest.mark.parametrize(("args", "words"), [(("--ranks", "3", "--threads", "2"), "--ranks 3: needs 2 <= N <= "),
                                             (("--ranks", "2", "--threads", "2", "--e2e"), "drop --e2e")])
def test_ranks_bad_flags_are_one_line(args: tuple[str, ...], words: str) -> None:
    proc = run(*args, "--no-torch")
    assert proc.returncode == 2 and words in proc.stderr and "Traceback" not in proc.stderr
