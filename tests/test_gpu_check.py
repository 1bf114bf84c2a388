"""scripts/gpu_check.py (``make gpu-check``): stages with budgets that fit a short GPU host, each killed at its
budget, the report rewritten after every stage; refuses cleanly without CUDA."""

from __future__ import annotations

import importlib.util
import json
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.helpers import load_script
from xpnet import backend

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_check.py"


@pytest.fixture
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


def test_the_plan_as_json_needs_no_cuda_and_fits_the_budget() -> None:
    run = subprocess.run([sys.executable, str(SCRIPT), "--plan", "--json"], capture_output=True, text=True,
                         timeout=120, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    stages = json.loads(run.stdout)["stages"]
    assert len(stages) >= 4 and all(isinstance(s["name"], str) and s["budget_s"] > 0 for s in stages)
    assert {"doctor", "tests", "train", "sync", "bench", "nccl"} <= {s["name"] for s in stages}
    assert sum(s["budget_s"] for s in stages) <= 480


def test_the_docs_list_the_stages_and_budgets_as_planned(gpu_check: ModuleType) -> None:
    text = (ROOT / "docs" / "gpu.md").read_text()
    rows = dict(re.findall(r"^\| `(\w+)` \| (\d+) \|", text, re.MULTILINE))
    assert rows == {s.name: str(s.budget_s) for s in gpu_check.STAGES}
    assert f"({gpu_check.plan()['total_budget_s']} s together" in text


def _write_outputs(work: Path, acc: float = 0.981, failed_test: bool = True) -> None:
    """What each stage's command leaves in the work folder, as the real ones write it."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "doctor.json").write_text(json.dumps({
        "devices": [{"name": "NVIDIA H100 80GB HBM3"}], "versions": {"cupy": "14.2.0 (cupy-cuda13x)"},
        "cuda": {"driver supports CUDA": "13.0", "NVRTC": "13.0"}, "cuda_ok": True}))
    failure = '<failure message="boom"/>' if failed_test else ""
    (work / "tests.xml").write_text(
        f'<testsuites><testsuite tests="3" failures="{int(failed_test)}" errors="0" skipped="1">'
        '<testcase classname="tests.test_x" name="test_a"/>'
        f'<testcase classname="tests.test_x" name="test_b">{failure}</testcase>'
        '<testcase classname="tests.test_x" name="test_c"><skipped/></testcase>'
        '</testsuite></testsuites>')
    (work / "main-job").mkdir(exist_ok=True)
    (work / "main-job" / "summary.json").write_text(json.dumps(
        {"status": "completed", "results": {"test_acc": acc, "seconds": 42.0, "epochs": 10}}))
    (work / "sync.json").write_text(json.dumps({"steps": 100, "flushes": 2, "syncs_between_readbacks": 0,
                                                "ok": True}))
    (work / "bench.json").write_text(json.dumps({"results": [
        {"config": "mlp", "title": "MLP", "xpnet": {"samples_per_s": 1e6}, "torch": {"samples_per_s": 2e6}}]}))
    (work / "nccl.json").write_text(json.dumps({"ranks": 1, "steps": 20, "same_weights": True, "ok": True}))


def _real_mnist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mnist = tmp_path / "data" / "mnist"
    mnist.mkdir(parents=True)
    (mnist / "train-images-idx3-ubyte.gz").write_bytes(b"")
    monkeypatch.setenv("XPNET_DATA_DIR", str(tmp_path / "data"))


def test_the_report_collects_the_stages_outputs(gpu_check: ModuleType, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    _real_mnist(tmp_path, monkeypatch)
    work = tmp_path / "work"
    _write_outputs(work)
    rep = gpu_check.new_report(work)
    for name in gpu_check.STAGE_NAMES:
        rep[name] = gpu_check.READERS[name](work)
    rep["stages"][0].update(status="passed", rc=0, seconds=1.0)
    rep["stages"][1].update(status=gpu_check.verdict("tests", 1, False, rep["tests"]), rc=1, seconds=100.0)
    gpu_check.write_report(tmp_path / "out", rep)
    assert rep["doctor"]["gpu"] == ["NVIDIA H100 80GB HBM3"] and rep["doctor"]["driver_cuda"] == "13.0"
    assert rep["train"]["test_acc"] == 0.981 and rep["train"]["bar"] == {"required": 0.975, "ok": True}
    assert rep["tests"]["passed"] == 1 and rep["tests"]["failed"] == ["tests.test_x::test_b"]
    assert rep["sync"]["flushes"] == 2
    assert rep["ok"] is False and rep["complete"] is False  # one stage failed, four not run
    md = (tmp_path / "out" / "report.md").read_text()
    assert "| MLP | 1,000,000 | 2,000,000 |" in md and "FAILED" in md and "test accuracy 0.981" in md
    assert "FAILED tests.test_x::test_b" in md and "| train | 100 | pending |" in md


@pytest.mark.parametrize(("acc", "expect"), [(0.981, 0), (0.97, 1)])
def test_the_whole_flow_and_the_main_job_bar(gpu_check: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             acc: float, expect: int) -> None:
    """Every stage in order, each within its budget (each replaced by a stand-in writing what the real one
    writes); the main job must reach 97.5% on real MNIST."""
    _real_mnist(tmp_path, monkeypatch)
    monkeypatch.setattr(gpu_check, "missing", lambda: None)
    work = tmp_path / "work"
    ran: list[tuple[str, float, dict[str, str]]] = []

    def fake_run(cmd: list[str], budget_s: float, log: Path, env: dict[str, str] | None = None,
                 stdout: Path | None = None) -> tuple[int, float, bool]:
        ran.append((log.stem, budget_s, env or {}))
        _write_outputs(work, acc=acc, failed_test=False)
        return 0, 0.1, False

    monkeypatch.setattr(gpu_check, "run_bounded", fake_run)
    out = tmp_path / "report"
    assert gpu_check.main(["--out", str(out), "--work", str(work)]) == expect
    assert [n for n, _, _ in ran] == ["doctor", "tests", "train", "sync", "bench", "nccl"]
    assert [b for _, b, _ in ran] == [s.budget_s for s in gpu_check.STAGES]
    envs = {n: e for n, _, e in ran}
    assert envs["tests"] == {"XPNET_REQUIRE_CUPY": "1"}
    assert envs["nccl"] == {"XPNET_MPI": "1"}  # MPI with one rank, no launcher
    assert "XPNET_OFFLINE" not in envs["train"]  # real MNIST, not the bundled sample
    rep = json.loads((out / "report.json").read_text())
    assert rep["train"]["bar"] == {"required": 0.975, "ok": expect == 0}
    assert {s["name"]: s["status"] for s in rep["stages"]}["train"] == ("passed" if expect == 0 else "failed")
    assert rep["complete"] and rep["ended"] == "completed"
    assert sorted(p.name for p in out.iterdir()) == ["report.json", "report.md"]  # the stand-ins wrote no logs


def _stages(gpu_check: ModuleType, monkeypatch: pytest.MonkeyPatch, commands: dict[str, tuple[int, str]]) -> None:
    """Replace the stage list with ``name -> (budget, python source)``, each run as ``python -c``."""
    stages = tuple(gpu_check.Stage(n, b, "a stand-in") for n, (b, _) in commands.items())
    monkeypatch.setattr(gpu_check, "STAGES", stages)
    monkeypatch.setattr(gpu_check, "STAGE_NAMES", tuple(commands))
    monkeypatch.setattr(gpu_check, "missing", lambda: None)
    monkeypatch.setattr(gpu_check, "stage_commands", lambda work: {
        n: ([sys.executable, "-c", textwrap.dedent(src)], {}, None) for n, (_, src) in commands.items()})


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")


def test_a_stage_is_killed_at_its_budget_with_its_children_and_the_report_names_it(
        gpu_check: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "report"
    pid_file = tmp_path / "grandchild.pid"
    _stages(gpu_check, monkeypatch, {
        "quick": (30, "print('done')"),
        "stuck": (1, f"""
            import subprocess, sys, time
            child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
            open({str(pid_file)!r}, "w").write(str(child.pid))
            time.sleep(600)
        """),
        # Runs only after "stuck" was stopped, and passes only if the report on disk already says so.
        "after": (30, f"""
            import json, sys
            rep = json.load(open({str(out / 'report.json')!r}))
            status = {{s["name"]: s["status"] for s in rep["stages"]}}
            sys.exit(0 if status == {{"quick": "passed", "stuck": "killed at budget", "after": "running"}} else 1)
        """),
    })
    assert gpu_check.main(["--out", str(out), "--work", str(tmp_path / "work")]) == 1
    rep = json.loads((out / "report.json").read_text())
    assert {s["name"]: s["status"] for s in rep["stages"]} == {
        "quick": "passed", "stuck": "killed at budget", "after": "passed"}
    assert rep["ok"] is False and rep["ended"] == "completed"
    assert "| stuck | 1 | killed at budget |" in (out / "report.md").read_text()
    assert (out / "quick.log").read_text().strip() == "done"
    grandchild = int(pid_file.read_text())
    for _ in range(500):  # SIGTERM went to the whole process group: the stage's own child dies too
        if _gone(grandchild):
            break
        subprocess.run([sys.executable, "-c", "pass"])  # give it a moment without a fixed sleep
    assert _gone(grandchild), "the stage's child outlived the stage"


def test_a_signal_stops_the_running_stage_and_the_report_says_where(
        gpu_check: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGTERM to the check (here sent by the stage itself to its parent) ends the stage, writes the report
    and exits 128 + 15; later stages stay pending."""
    out = tmp_path / "report"
    _stages(gpu_check, monkeypatch, {
        "first": (30, "import os, signal, time; os.kill(os.getppid(), signal.SIGTERM); time.sleep(600)"),
        "second": (30, "print('never')"),
    })
    before = signal.getsignal(signal.SIGTERM)
    assert gpu_check.main(["--out", str(out), "--work", str(tmp_path / "work")]) == 128 + signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is before  # the check put the handler back
    rep: dict[str, Any] = json.loads((out / "report.json").read_text())
    assert {s["name"]: s["status"] for s in rep["stages"]} == {"first": "interrupted", "second": "pending"}
    assert rep["ended"] == "interrupted by SIGTERM during first"


def test_one_stage_updates_its_entry_in_the_existing_report(gpu_check: ModuleType, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "report"
    _stages(gpu_check, monkeypatch, {"a": (30, "pass"), "b": (30, "raise SystemExit(3)")})
    assert gpu_check.main(["--out", str(out), "--stage", "b"]) == 1
    assert gpu_check.main(["--out", str(out), "--stage", "a"]) == 1  # b's failure is still in the report
    rep = json.loads((out / "report.json").read_text())
    assert [(s["name"], s["status"], s["rc"]) for s in rep["stages"]] == [("a", "passed", 0), ("b", "failed", 3)]
