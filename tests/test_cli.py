"""xpnet-train end to end: real MNIST runs, outputs, resume, divergence, Ctrl-C and bad input.

Runs that need a fresh interpreter (the console entry, the CUDA fallback warning,
SIGINT) go through a subprocess; the rest call ``xpnet.cli.train.main`` in-process, which
is the same code without paying the start-up for each case.
"""

from __future__ import annotations

import csv
import functools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import call_main
from xpnet import backend
from xpnet.accel import tuning
from xpnet.cli.train import main
from xpnet.train import checkpoint as ckpt
from xpnet.train.metrics import COLUMNS

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "train.py"


def env() -> dict[str, str]:
    e = dict(os.environ, XPNET_OFFLINE="1", PYTHONPATH=str(ROOT))
    e.pop("COLUMNS", None)
    return e


def run_script(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          env=env(), timeout=timeout, cwd=ROOT)


run_main = functools.partial(call_main, main)  # (capsys, *args) -> (status, stdout, stderr)


def net_arrays(path: Path) -> dict[str, np.ndarray]:
    return {k: v for k, v in ckpt.load(path).items() if k.startswith(("net/", "optim/"))}


def files(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())} if d.exists() else {}


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XPNET_OFFLINE", "1")  # never wait on a download in a test


# --- the real thing --------------------------------------------------------------------------------

def test_end_to_end_on_real_mnist(tmp_path: Path, mnist_path: Path) -> None:
    out = tmp_path / "run"
    p = run_script("--data-dir", str(mnist_path), "--limit-train", "6000", "--epochs", "2",
                   "--batch-size", "50", "--val-split", "0.1", "--seed", "1", "--out", str(out))
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stderr and "\r" not in p.stderr  # no progress bar off a TTY
    assert [ln for ln in p.stderr.splitlines() if ln.startswith("epoch ")][-1].startswith("epoch 2/2")
    [line] = p.stdout.splitlines()
    assert line.startswith("mnist mlp: test 0.") and "[completed]" in line
    note = tuning.pin_note(tuning.blas_info()["core"], tuning.blas_pin(), tuning.cpu_flags())
    assert (f"xpnet-train: note: {note}" in p.stderr) if note else "OPENBLAS_CORETYPE" not in p.stderr

    assert sorted(files(out)) == ["checkpoint.npz", "curves.png", "metrics.csv", "summary.json"]
    with open(out / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == COLUMNS and [r["epoch"] for r in rows] == ["1", "2"]
    assert rows[-1]["step"] == "240" and all(r["val_acc"] for r in rows)

    summary = json.loads((out / "summary.json").read_text())
    assert {"status", "dataset", "device", "model", "hyper_parameters", "results", "versions",
            "command", "started", "finished", "history"} <= set(summary)
    assert summary["status"] == "completed"
    assert summary["dataset"]["is_sample"] is False and summary["dataset"]["n_train"] == 6000
    assert summary["dataset"]["n_val"] == 6000 and "mnist" in summary["dataset"]["source"]
    blas = summary["device"].pop("blas", None)  # a CPU run records NumPy's BLAS kernel and any pin of it
    assert summary["device"] == {"name": "cpu", "backend": "numpy", "requested": "auto"} or \
        summary["device"]["backend"] == "cupy"
    if blas is not None:
        assert blas["core"] == tuning.blas_info()["core"] and blas["pinned"] == tuning.blas_pin()
    hp = summary["hyper_parameters"]
    assert hp["optimizer"] == "adam" and hp["lr"] == 0.001 and hp["hidden"] == [256, 128] and hp["seed"] == 1
    res = summary["results"]
    assert res["epochs"] == 2 and res["steps"] == 240 and res["samples_per_s"] > 0
    assert res["test_acc"] > 0.9 and res["val_acc"] > 0.9 and res["train_acc"] > 0.9  # chance: 0.1
    assert "numpy" in summary["versions"]

    from matplotlib.image import imread

    img = imread(out / "curves.png")
    assert img.ndim == 3 and img.shape[:2] == (420, 1100)
    state = ckpt.load(out / "checkpoint.npz")
    assert ckpt.read_config(state)["run"]["limit_train"] == 6000


def test_help_and_module_entry() -> None:
    p = subprocess.run([sys.executable, "-m", "xpnet.cli.train", "--help"], capture_output=True, text=True,
                       env=env(), cwd=ROOT, timeout=60)
    assert p.returncode == 0 and "--resume" in p.stdout and "exit status" in p.stdout


def test_device_cuda_without_a_gpu_warns_once_and_trains_on_cpu(tmp_path: Path, mnist_path: Path) -> None:
    ok, _, _ = backend.cuda_status()
    if ok:
        pytest.skip("CUDA is usable here: there is no fallback to see")
    p = run_script("--device", "cuda", "--data-dir", str(mnist_path), "--limit-train", "500", "--epochs", "1",
                   "--quiet", "--out", str(tmp_path / "run"))
    assert p.returncode == 0, p.stderr
    [warning] = p.stderr.splitlines()  # one line, shown even with --quiet
    assert warning.startswith("xpnet-train: warning: --device cuda: CUDA is unusable")
    assert "Falling back to CPU" in warning
    [line] = p.stdout.splitlines()
    assert "on cpu" in line
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert {k: v for k, v in summary["device"].items() if k != "blas"} == {
        "name": "cpu", "backend": "numpy", "requested": "cuda"}
    assert "core" in summary["device"]["blas"]


def test_quiet_prints_only_the_summary_line(tmp_path: Path, mnist_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run_main(capsys, "--data-dir", str(mnist_path), "--limit-train", "1000", "--epochs", "1",
                            "--device", "cpu", "--quiet", "--out", str(tmp_path / "run"))
    assert rc == 0 and err == ""
    assert len(out.splitlines()) == 1 and "test 0." in out


# --- resume --------------------------------------------------------------------------------------

def test_resume_gives_bit_identical_weights(tmp_path: Path, mnist_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    common = ["--data-dir", str(mnist_path), "--limit-train", "2000", "--device", "cpu", "--quiet",
              "--model", "mlp", "--hidden", "64,32", "--dropout", "0.1", "--batchnorm", "--seed", "4"]
    assert run_main(capsys, *common, "--epochs", "3", "--out", str(tmp_path / "straight"))[0] == 0
    assert run_main(capsys, *common, "--epochs", "1", "--out", str(tmp_path / "split"))[0] == 0
    # Resume takes its settings from the checkpoint; repeating them is fine, --epochs may grow.
    rc, _, err = run_main(capsys, "--resume", str(tmp_path / "split" / "checkpoint.npz"), "--epochs", "3",
                          "--quiet", "--hidden", "64,32")
    assert rc == 0, err
    a = net_arrays(tmp_path / "straight" / "checkpoint.npz")
    b = net_arrays(tmp_path / "split" / "checkpoint.npz")
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    rows = [list(csv.DictReader((tmp_path / d / "metrics.csv").read_text().splitlines()))
            for d in ("straight", "split")]
    assert [r["train_loss"] for r in rows[0]] == [r["train_loss"] for r in rows[1]]
    assert [r["test_acc"] for r in rows[0]] == [r["test_acc"] for r in rows[1]]
    summary = json.loads((tmp_path / "split" / "summary.json").read_text())
    assert summary["resumed_from"].endswith("checkpoint.npz") and summary["results"]["epochs"] == 3
    first, then = summary["commands"]
    assert "--epochs" in first and "1" in first and "--resume" in then


def test_ctrl_c_saves_a_checkpoint_and_resume_finishes(tmp_path: Path, mnist_path: Path) -> None:
    out = tmp_path / "run"
    args = ["--data-dir", str(mnist_path), "--limit-train", "3000", "--hidden", "32", "--epochs", "1000",
            "--device", "cpu", "--out", str(out)]
    proc = subprocess.Popen([sys.executable, str(SCRIPT), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env(), cwd=ROOT)
    assert proc.stderr is not None
    deadline = time.monotonic() + 60
    for line in proc.stderr:  # wait until training is under way
        if line.startswith("epoch 1/") or time.monotonic() > deadline:
            break
    proc.send_signal(signal.SIGINT)
    out_text, err_text = proc.communicate(timeout=60)
    assert proc.returncode == 130, err_text
    assert "Traceback" not in err_text
    assert "checkpoint saved to" in err_text and "--resume" in err_text
    state = ckpt.load(out / "checkpoint.npz")
    done = ckpt.from_json_array(state["trainer/state"])
    assert done["epoch"] >= 1
    assert json.loads((out / "summary.json").read_text())["status"] == "interrupted"
    p = run_script("--resume", str(out / "checkpoint.npz"), "--epochs", str(done["epoch"] + 1), "--quiet")
    assert p.returncode == 0, p.stderr
    assert json.loads((out / "summary.json").read_text())["results"]["epochs"] == done["epoch"] + 1


# --- divergence -------------------------------------------------------------------------------------

def test_divergence_exits_3_and_keeps_the_last_good_checkpoint(tmp_path: Path, mnist_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    common = ["--data-dir", str(mnist_path), "--limit-train", "1000", "--device", "cpu", "--optimizer", "sgd"]
    assert run_main(capsys, *common, "--epochs", "1", "--lr", "0.1", "--quiet", "--out", str(out))[0] == 0
    good = (out / "checkpoint.npz").read_bytes()
    rc, _, err = run_main(capsys, "--resume", str(out), "--epochs", "3", "--lr", "1e6")
    assert rc == 3
    assert "Traceback" not in err and "warning" not in err
    [msg] = [ln for ln in err.splitlines() if "error:" in ln]
    assert "diverged" in msg and "lower --lr" in msg and "epoch 1" in msg
    assert (out / "checkpoint.npz").read_bytes() == good
    assert json.loads((out / "summary.json").read_text())["status"] == "diverged"


def test_divergence_from_the_start_writes_no_checkpoint(tmp_path: Path, mnist_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    rc, _, err = run_main(capsys, "--data-dir", str(mnist_path), "--limit-train", "1000", "--device", "cpu",
                          "--optimizer", "sgd", "--lr", "1e6", "--quiet", "--out", str(out))
    assert rc == 3 and "no checkpoint was written" in err and "lower --lr" in err
    assert not (out / "checkpoint.npz").exists()


# --- bad input ---------------------------------------------------------------------------------------

BAD_FLAGS = [
    (["--model", "resnet"], "invalid choice"),
    (["--dataset", "cifar"], "invalid choice"),
    (["--optimizer", "lbfgs"], "invalid choice"),
    (["--batch-size", "0"], "positive integer"),
    (["--batch-size", "1.5"], "positive integer"),
    (["--hidden", "a,b"], "comma-separated positive integers"),
    (["--hidden", "100,0"], "comma-separated positive integers"),
    (["--epochs", "-1"], "positive integer"),
    (["--lr", "-0.1"], "positive number"),
    (["--lr", "nan"], "positive number"),
    (["--val-split", "1.5"], "in [0, 1)"),
    (["--dropout", "1"], "in [0, 1)"),
    (["--init", "glorot"], "he, xavier"),
    (["--seed", "-3"], "integer >= 0"),
    (["--device", "tpu"], "unknown device"),
    (["--model", "convnet", "--dropout", "0.5"], "--dropout applies to --model mlp only"),
    (["--model", "convnet", "--hidden", "10,10"], "one hidden layer"),
    (["--model", "two-layer", "--weight-decay", "0.1"], "--weight-decay needs"),
    (["--patience", "3"], "--patience watches validation accuracy"),
]


@pytest.mark.parametrize(("args", "message"), BAD_FLAGS, ids=[" ".join(a) for a, _ in BAD_FLAGS])
def test_bad_flags_are_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str],
                                    message: str) -> None:
    out = tmp_path / "run"
    rc, stdout, err = run_main(capsys, *args, "--out", str(out))
    assert rc == 2
    assert err.startswith("usage: xpnet-train")
    [line] = [ln for ln in err.splitlines() if "error:" in ln]
    assert line.startswith("xpnet-train: error:") and message in line
    assert stdout == "" and not out.exists()


def test_bad_files_are_one_line_errors(tmp_path: Path, mnist_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"PK\x03\x04 this is not a checkpoint")
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    data = ["--data-dir", str(mnist_path), "--device", "cpu"]
    cases = [
        (["--resume", str(tmp_path / "missing.npz")], "no such checkpoint"),
        (["--resume", str(corrupt)], "not a readable checkpoint"),
        (["--resume", str(a_file)], "not a readable checkpoint"),
        ([*data, "--out", str(a_file / "run")], "cannot be created or written"),
        ([*data, "--out", str(a_file)], "not a folder"),
        (["--data-dir", str(tmp_path / "nowhere")], "is not a folder"),
        ([*data, "--limit-train", "1000000"], "larger than the 60000 training images"),
        ([*data, "--limit-train", "59000", "--val-split", "0.1"], "held out by --val-split"),
        ([*data, "--limit-train", "50", "--batch-size", "100"], "--batch-size 100 is larger than the 50"),
    ]
    for args, message in cases:
        out = tmp_path / "out"
        rc, stdout, err = run_main(capsys, "--out", str(out), *args)
        assert rc == 2, (args, err)
        assert "Traceback" not in err and stdout == ""
        [line] = [ln for ln in err.splitlines() if "error:" in ln]
        assert line.startswith("xpnet-train: error:") and message in line, (args, line)
        assert not out.exists()
    assert a_file.read_text() == "x" and corrupt.read_bytes().startswith(b"PK")


def test_an_existing_run_is_never_overwritten(tmp_path: Path, mnist_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    common = ["--data-dir", str(mnist_path), "--limit-train", "500", "--device", "cpu", "--quiet"]
    assert run_main(capsys, *common, "--epochs", "1", "--out", str(out))[0] == 0
    before = files(out)
    rc, _, err = run_main(capsys, *common, "--epochs", "2", "--out", str(out))
    assert rc == 2 and "already holds a run" in err and "--resume" in err
    # Resuming a finished run with nothing left to do, or with changed settings, is refused too.
    rc, _, err = run_main(capsys, "--resume", str(out / "checkpoint.npz"))
    assert rc == 2 and "already trained 1 of 1 epochs" in err
    rc, _, err = run_main(capsys, "--resume", str(out), "--epochs", "2", "--hidden", "10")
    assert rc == 2 and "--hidden 10 differs from the checkpoint's 256,128" in err
    rc, _, err = run_main(capsys, "--resume", str(out), "--epochs", "2", "--out", str(tmp_path / "elsewhere"),
                          "--limit-train", "400")
    assert rc == 2 and "--limit-train 400 differs" in err
    assert files(out) == before
