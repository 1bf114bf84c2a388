"""The experiment gallery (issue 5): every script runs in --quick mode and shows the book's finding.

Each experiment runs once per session as a real subprocess (its CLI is part of what
is tested) into a temporary folder; the tests then read its results.json and check
the qualitative result the book reports. Every assertion can fail: each compares
two measured numbers, or a measured number against the value a broken run gives
(e.g. ln 10 ≈ 2.30, the loss of a net that has learnt nothing).

Quick modes use real MNIST when XPNET_DATA_DIR (or xpnet's other places) has it
and otherwise xpnet's bundled sample, so they run everywhere; the one full-mode
test needs the real MNIST and skips without it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import matplotlib.image as mpimg
import pytest

from tests.helpers import load_script
from xpnet import backend

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts" / "experiments"
EXPERIMENTS = ("gradients", "logic_gates", "optimizer_paths", "optimizer_compare", "weight_init", "batch_norm",
               "overfitting", "hyperparameter_search")
COMMON_KEYS = {"experiment", "device", "seed", "quick", "elapsed_s", "figures", "notes"}
KEYS = {
    "gradients": {"gradient_check", "gradient_field", "agree"},
    "logic_gates": {"config", "single_layer", "two_layer_xor"},
    "optimizer_paths": {"function", "start", "steps", "optimizers", "final_f"},
    "optimizer_compare": {"config", "data", "optimizers", "final_loss", "losses_every_10"},
    "weight_init": {"histograms", "mnist"},
    "batch_norm": {"config", "data", "scales", "runs", "bn_faster_count"},
    "overfitting": {"config", "data", "runs", "gap"},
    "hyperparameter_search": {"config", "trials_file", "trials_total", "trial_ids", "best", "best5_lr_range",
                              "best5_weight_decay_range"},
}


def run_script(name: str, out: Path, *args: str, env: dict[str, str] | None = None,
               timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``python scripts/experiments/<name>.py --out OUT ARGS`` with this interpreter; no downloads."""
    full_env = {**os.environ, "XPNET_OFFLINE": "1", "MPLBACKEND": "Agg", **(env or {})}
    cmd = [sys.executable, str(SCRIPTS / f"{name}.py"), "--out", str(out), *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=timeout)


class Runs:
    """Runs each experiment's quick mode at most once per test session."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.cache: dict[str, tuple[dict[str, Any], Path]] = {}

    def get(self, name: str) -> tuple[dict[str, Any], Path]:
        if name not in self.cache:
            out = self.root / name
            proc = run_script(name, out, "--quick", "--device", "cpu")
            assert proc.returncode == 0, f"{name} --quick failed:\n{proc.stdout}\n{proc.stderr}"
            self.cache[name] = (json.loads((out / "results.json").read_text()), out)
        return self.cache[name]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    return Runs(tmp_path_factory.mktemp("experiments"))


def load_module(name: str) -> ModuleType:
    """Import a script as a module (they import ``_common`` from their own folder)."""
    if str(SCRIPTS) not in sys.path:
        sys.path.insert(0, str(SCRIPTS))
    return load_script(SCRIPTS / f"{name}.py", f"exp_{name}")


# -- every experiment: outputs exist, decode, and carry their keys --------------------------------------------

@pytest.mark.parametrize("name", EXPERIMENTS)
def test_outputs(runs: Runs, name: str) -> None:
    results, out = runs.get(name)
    missing = (COMMON_KEYS | KEYS[name]) - set(results)
    assert not missing, f"{name}/results.json lacks {sorted(missing)}"
    assert results["experiment"] == name and results["quick"] is True and results["device"] == "cpu"
    assert results["figures"], f"{name} wrote no figure"
    for fig in results["figures"]:
        image = mpimg.imread(out / fig)
        assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100, f"{fig}: {image.shape}"
    leftovers = [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
    assert not leftovers, f"temporary files left behind: {leftovers}"


# -- the book's findings -----------------------------------------------------------------------------------

def test_backprop_matches_numerical_gradient(runs: Runs) -> None:
    r, _ = runs.get("gradients")
    errors = r["gradient_check"]["relative_error"]
    assert set(errors) == {"W1", "b1", "W2", "b2"}
    assert all(e < 1e-6 for e in errors.values()), errors
    assert r["gradient_field"]["max_abs_error_vs_exact"] < 1e-6


def test_one_layer_cannot_learn_xor_two_layers_can(runs: Runs) -> None:
    r, _ = runs.get("logic_gates")
    single = r["single_layer"]
    for gate in ("AND", "OR", "NAND"):
        assert single[gate]["accuracy"] == 1.0, (gate, single[gate])
    assert single["XOR"]["accuracy"] <= 0.75 and single["XOR"]["final_loss"] > 0.6, single["XOR"]
    two = r["two_layer_xor"]
    assert two["0.3"]["solved_fraction"] == 1.0, two["0.3"]
    # The learning rate matters: 0.3 ends far lower than 0.1 in the same number of steps.
    assert two["0.3"]["median_final_loss"] < 0.5 * two["0.1"]["median_final_loss"], two


def test_sgd_zigzags_adaptive_methods_do_not(runs: Runs) -> None:
    opt = runs.get("optimizer_paths")[0]["optimizers"]
    assert opt["SGD"]["y_sign_changes"] >= 10 and opt["AdaGrad"]["y_sign_changes"] <= 1, opt
    for name in ("AdaGrad", "RMSprop"):
        assert opt[name]["final_f"] < opt["SGD"]["final_f"], (name, opt[name]["final_f"], opt["SGD"]["final_f"])


def test_momentum_adagrad_adam_beat_sgd_on_mnist(runs: Runs) -> None:
    final = runs.get("optimizer_compare")[0]["final_loss"]
    for name in ("Momentum", "AdaGrad", "Adam"):
        assert final[name] < 0.8 * final["SGD"], final


def test_small_init_stalls_he_learns(runs: Runs) -> None:
    r, _ = runs.get("weight_init")
    final = r["mnist"]["final_loss"]
    assert final["std=0.01"] > 2.2, final  # ln 10 = 2.30: it has learnt nothing
    assert final["He"] < final["std=0.01"] - 1.0 and final["He"] < final["Xavier"], final
    relu = r["histograms"]["relu"]
    assert relu["std=0.01"]["std"][-1] < 1e-3 * relu["std=0.01"]["std"][0], relu["std=0.01"]  # vanishes
    he = relu["He"]["std"]
    assert 0.5 < he[-1] / he[0] < 2.0, he  # He keeps ReLU activations at the same scale through the layers
    sig = r["histograms"]["sigmoid"]
    assert sig["std=1"]["saturated_fraction"][-1] > 0.3 > sig["Xavier"]["saturated_fraction"][-1], sig


def test_batch_norm_trains_faster_at_most_scales(runs: Runs) -> None:
    r, _ = runs.get("batch_norm")
    assert len(r["runs"]) == 16
    assert r["bn_faster_count"] >= 12, [(x["scale"], x["bn_final"], x["no_bn_final"]) for x in r["runs"]]


def test_weight_decay_narrows_the_gap(runs: Runs) -> None:
    r, _ = runs.get("overfitting")
    gap, base = r["gap"], r["runs"]["baseline"]
    assert base["final_train"] >= 0.95 and gap["baseline"] > 0.15, base  # it does overfit
    assert gap["weight decay λ=0.1"] < gap["baseline"] - 0.03, gap


# -- hyperparameter search: streaming, resume, purity ----------------------------------------------------------

def test_hyperparameter_search_resumes_without_recomputing(tmp_path: Path) -> None:
    out = tmp_path / "hps"
    first = run_script("hyperparameter_search", out, "--quick", "--device", "cpu", "--trials", "3", "--workers", "2")
    assert first.returncode == 0, first.stderr
    before = (out / "trials.csv").read_text().splitlines()
    assert len(before) == 1 + 3 and {line.split(",")[1] for line in before[1:]} == {"completed"}
    assert {line.split(",")[-3] for line in before[1:]} <= {"w0@" + os.uname().nodename, "w1@" + os.uname().nodename}
    again = run_script("hyperparameter_search", out, "--quick", "--device", "cpu", "--trials", "5", "--resume")
    assert again.returncode == 0, again.stderr
    lines = (out / "trials.csv").read_text().splitlines()
    assert len(lines) == 1 + 5
    # The first three trials are untouched (same params, same accuracy, same seconds).
    assert lines[:4] == before
    assert "2 trials to run (3 done)" in again.stdout
    results = json.loads((out / "results.json").read_text())
    assert results["trials_run_now"] == 2 and results["trials_total"] == 5
    assert sorted(results["trial_ids"]) == [0, 1, 2, 3, 4]
    vals = [b["val_acc"] for b in results["best"]]
    assert vals == sorted(vals, reverse=True)
    # Without --resume an existing search is not silently extended.
    refused = run_script("hyperparameter_search", out, "--quick", "--device", "cpu", "--trials", "6")
    assert refused.returncode == 1 and "--resume" in refused.stderr and "Traceback" not in refused.stderr


def test_the_same_seed_draws_and_trains_the_same_trials(tmp_path: Path) -> None:
    """A trial depends only on (--seed, its number): in this process or a worker's, now or on resume."""
    runs = []
    for name, extra in (("a", ["--workers", "2"]), ("b", [])):
        proc = run_script("hyperparameter_search", tmp_path / name, "--quick", "--device", "cpu", "--trials", "2",
                          "--epochs", "3", *extra)
        assert proc.returncode == 0, proc.stderr
        rows = [line.split(",")[:5] for line in (tmp_path / name / "trials.csv").read_text().splitlines()]
        runs.append(rows)  # number, state, val_acc, lr, weight-decay
    assert runs[0] == runs[1]
    other = run_script("hyperparameter_search", tmp_path / "c", "--quick", "--device", "cpu", "--trials", "2",
                       "--epochs", "3", "--seed", "1")
    assert other.returncode == 0, other.stderr
    assert (tmp_path / "c" / "trials.csv").read_text().splitlines()[1].split(",")[3] != runs[0][1][3]


# -- command-line behaviour --------------------------------------------------------------------------------

def _one_clean_line(stderr: str) -> None:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr


@pytest.mark.parametrize("args", [["--seed", "banana"], ["--no-such-flag"], ["--trials", "0"]])
def test_bad_flags_are_one_line(tmp_path: Path, args: list[str]) -> None:
    proc = run_script("hyperparameter_search", tmp_path / "o", "--quick", *args)
    assert proc.returncode == 2
    _one_clean_line(proc.stderr)


def test_bad_device_is_one_line(tmp_path: Path) -> None:
    proc = run_script("optimizer_paths", tmp_path / "o", "--quick", "--device", "tpu")
    assert proc.returncode == 1 and "unknown device" in proc.stderr
    _one_clean_line(proc.stderr)


def test_cuda_without_gpu_warns_and_runs_on_cpu(tmp_path: Path) -> None:
    ok, _, _ = backend.cuda_status()
    if ok:
        pytest.skip("a CUDA device is visible: there is no fallback to see")
    proc = run_script("optimizer_paths", tmp_path / "o", "--quick", "--device", "cuda")
    assert proc.returncode == 0, proc.stderr
    assert "Falling back to CPU" in proc.stderr
    assert json.loads((tmp_path / "o" / "results.json").read_text())["device"] == "cpu"


def test_missing_data_is_one_line(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {"XPNET_DATA_DIR": str(empty), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    full = run_script("overfitting", tmp_path / "o", env=env)  # full mode needs the real MNIST
    assert full.returncode == 1 and "full MNIST was not found" in full.stderr, full.stderr
    assert "Traceback" not in full.stderr
    wrong = run_script("overfitting", tmp_path / "o", "--data-dir", str(tmp_path / "nowhere"), env=env)
    assert wrong.returncode == 1 and "does not exist" in wrong.stderr and "Traceback" not in wrong.stderr


def test_full_mode_runs_on_real_mnist(tmp_path: Path, mnist_path: Path) -> None:
    """The cheapest full mode (the book's gradient check on 784-50-10) on the real MNIST."""
    proc = run_script("gradients", tmp_path / "o", "--device", "cpu", "--data-dir", str(mnist_path))
    assert proc.returncode == 0, proc.stderr
    r = json.loads((tmp_path / "o" / "results.json").read_text())
    assert r["quick"] is False and r["gradient_check"]["net"]["sizes"] == [784, 50, 10]
    assert r["gradient_check"]["max_relative_error"] < 1e-6
    assert r["gradient_check"]["data"]["is_sample"] is False


def test_sigterm_stops_an_experiment_as_ctrl_c_does(tmp_path: Path) -> None:
    """A long experiment under `docker stop`: SIGTERM ends it at once with status 143 and one line, no traceback."""
    import signal

    full_env = {**os.environ, "XPNET_OFFLINE": "1", "MPLBACKEND": "Agg"}
    cmd = [sys.executable, str(SCRIPTS / "optimizer_compare.py"), "--out", str(tmp_path), "--quick",
           "--device", "cpu"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env)
    assert proc.stdout is not None
    first = proc.stdout.readline()  # "[optimizer_compare] device cpu, ...": the experiment has begun
    assert "device cpu" in first
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "Traceback" not in err and "interrupted by SIGTERM" in err
    assert not (tmp_path / "results.json").exists()
