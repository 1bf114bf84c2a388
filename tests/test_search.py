"""xpnet search (issue 15): trials on the Trainer through Optuna, results, --final and bad input.

The training cases use real MNIST (skipped without it) with tiny runs: a few hundred
images, a few epochs, one BLAS thread, calling ``xpnet.cli.search.main`` in-process.
Cases that need a process of their own (--workers, kill -9, signals) are in
test_search_processes.py, the PostgreSQL cases in test_search_postgres.py.
"""

from __future__ import annotations

import functools
import json
import shlex
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

optuna = pytest.importorskip("optuna", reason="xpnet search needs Optuna (pip install 'xpnet[search]')")

from tests.helpers import call_main  # noqa: E402
from tests.search_runs import ROOT, TINY, env, read_csv  # noqa: E402
from xpnet import backend  # noqa: E402
from xpnet.cli import train as train_cli  # noqa: E402
from xpnet.cli.search import main  # noqa: E402
from xpnet.data.loader import validation_split  # noqa: E402
from xpnet.search import space as spacemod  # noqa: E402
from xpnet.search import storage as storagemod  # noqa: E402
from xpnet.search import trial as trialmod  # noqa: E402
from xpnet.search.final import run_final  # noqa: E402
from xpnet.train import checkpoint as ckpt  # noqa: E402

run_main = functools.partial(call_main, main)  # (capsys, *args) -> (status, stdout, stderr)
#: MNIST's training set; the search holds out --val-split of it before --limit-train.
MNIST_TRAIN = 60000


def held_out(ratio: float = 0.2, seed: int = 0) -> int:
    """How many of MNIST's training images --val-split holds out (the same split function's count)."""
    idx = np.arange(MNIST_TRAIN)
    return len(validation_split(idx, idx, ratio=ratio, seed=seed)[1][0])


def one_line(err: str) -> str:
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def load_study(out: Path, name: str = "mlp-mnist") -> Any:
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    return optuna.load_study(study_name=name, storage=JournalStorage(JournalFileBackend(str(out / "study.journal"))))


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XPNET_OFFLINE", "1")


# --- a whole search, in-process ------------------------------------------------------------------

def test_search_writes_results_and_the_best_command_reproduces_it(tmp_path: Path, mnist: None,
                                                                    capsys: pytest.CaptureFixture[str],
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "s"
    (tmp_path / "again").mkdir()
    rc, stdout, err = run_main(capsys, *TINY, "--epochs", "2", "--trials", "4", "--sampler", "random",
                               "--pruner", "none", "--out", str(out), "--seed", "3")
    assert rc == 0, err
    rows = read_csv(out / "trials.csv")
    assert [r["number"] for r in rows] == ["0", "1", "2", "3"]
    assert {r["state"] for r in rows} <= {"completed", "diverged"}
    for name in ("lr", "weight-decay", "dropout", "hidden", "batch-size", "optimizer"):  # the mlp default space
        assert all(r[name] for r in rows), name
    assert all(r["device"] == "cpu" and r["epochs"] == "2" and float(r["seconds"]) > 0 for r in rows)
    best = json.loads((out / "best.json").read_text())
    assert best["val_acc"] == max(float(r["val_acc"]) for r in rows if r["state"] == "completed") or \
        abs(best["val_acc"] - max(float(r["val_acc"]) for r in rows)) < 1e-4
    assert stdout.strip().splitlines()[-1].startswith(f"search mlp-mnist: best trial {best['trial']} val ")
    for fig in ("history.png", "params.png", "best_curves.png"):
        assert (out / fig).stat().st_size > 1000, fig
    # The test set was never evaluated: the trials' metrics have no test accuracy.
    for r in read_csv(out / "trials" / f"{best['trial']:04d}" / "metrics.csv"):
        assert r["test_acc"] == "" and r["val_acc"] != ""
    # A finished trial keeps its metrics but not its checkpoint (it is needed only to resume).
    for r in rows:
        folder = out / "trials" / f"{int(r['number']):04d}"
        assert (folder / "metrics.csv").is_file() and not (folder / ckpt.FILENAME).exists(), sorted(folder.iterdir())
    # best.json's command is an `xpnet train` command line that gives the same validation accuracy, run as
    # printed (in a fresh folder: its output goes to runs/ there), on the device the trial trained on.
    assert best["command"].startswith("xpnet train ") and "--val-split 0.2" in best["command"]
    words = shlex.split(best["command"])
    assert words[words.index("--device") + 1] == rows[best["trial"]]["device"] == "cpu"
    with monkeypatch.context() as here:
        here.chdir(tmp_path / "again")
        rc = train_cli.main(words[2:])
    assert rc == 0
    capsys.readouterr()
    (summary_path,) = (tmp_path / "again" / "runs").glob("*/summary.json")
    summary = json.loads(summary_path.read_text())
    assert max(r["val_acc"] for r in summary["history"]) == pytest.approx(best["val_acc"], abs=1e-12)

    # Re-running the same command continues the study: two more trials, the first four untouched.
    rc, _, err = run_main(capsys, *TINY, "--epochs", "2", "--trials", "6", "--sampler", "random",
                          "--pruner", "none", "--out", str(out), "--seed", "3")
    assert rc == 0, err
    again = read_csv(out / "trials.csv")
    assert len(again) == 6 and again[:4] == rows
    assert "4 of 6 trials done" in err
    params = [tuple(r[k] for k in ("lr", "weight-decay")) for r in again]
    assert len(set(params)) == 6, "a continued study replayed earlier draws"


SCHEDULED = ["--schedule", "cosine", "--warmup-epochs", "1", "--clip-norm", "1"]


def test_trials_and_the_best_command_train_with_the_schedule_and_clipping(
        tmp_path: Path, mnist: None, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 24 item 2: a trial trains as its `xpnet train` command does, --schedule/--clip-norm included."""
    space = tmp_path / "space.toml"
    space.write_text('[lr]\nkind = "log-uniform"\nlow = 0.05\nhigh = 0.3\n')
    out = tmp_path / "s"
    rc, _, err = run_main(capsys, *TINY, "--optimizer", "sgd", "--epochs", "3", "--trials", "2", "--sampler",
                          "random", "--pruner", "none", "--space", str(space), "--out", str(out), *SCHEDULED,
                          "--final")
    assert rc == 0, err
    st = load_study(out)
    for t in st.trials:
        lrs = [float(r["lr"]) for r in read_csv(out / "trials" / f"{t.number:04d}" / "metrics.csv")]
        # Cosine after one warm-up epoch: the peak lr after epoch 1, then down towards 0 at the last step.
        assert len(lrs) == 3 and lrs[0] == pytest.approx(t.params["lr"], rel=1e-3), lrs
        assert lrs[0] > lrs[1] > lrs[2] and lrs[2] < 0.1 * lrs[0], lrs
    best = json.loads((out / "best.json").read_text())
    for flag in ("--schedule cosine", "--warmup-epochs 1", "--clip-norm 1"):
        assert flag in best["command"], best["command"]
    trial_rows = read_csv(out / "trials" / f"{best['trial']:04d}" / "metrics.csv")
    rc = train_cli.main([*best["argv"], "--device", "cpu", "--out", str(tmp_path / "again"), "--quiet"])
    assert rc == 0
    capsys.readouterr()
    again = read_csv(tmp_path / "again" / "metrics.csv")
    assert [r["val_acc"] for r in again] == [r["val_acc"] for r in trial_rows]
    assert [r["lr"] for r in again] == [r["lr"] for r in trial_rows]
    # --final trains as its recorded command does too (the schedule and the clipping included).
    final = json.loads((out / "final" / "final.json").read_text())
    assert all(flag in final["command"] for flag in ("--schedule cosine", "--warmup-epochs 1", "--clip-norm 1"))
    rc = train_cli.main([*final["argv"], "--device", "cpu", "--out", str(tmp_path / "final-again"), "--quiet"])
    assert rc == 0
    capsys.readouterr()
    columns = ("train_loss", "train_acc", "lr")
    assert [[r[c] for c in columns] for r in read_csv(tmp_path / "final-again" / "metrics.csv")] == \
        [[r[c] for c in columns] for r in read_csv(out / "final" / "metrics.csv")]


def test_pruner_stops_trials_early(tmp_path: Path, mnist: None, capsys: pytest.CaptureFixture[str]) -> None:
    space = tmp_path / "space.toml"
    # Half of this lr range learns nothing in a few epochs: the median pruner has something to cut.
    space.write_text('[lr]\nkind = "log-uniform"\nlow = 1e-6\nhigh = 0.3\n')
    out = tmp_path / "s"
    rc, _, err = run_main(capsys, *TINY, "--optimizer", "sgd", "--epochs", "4", "--trials", "12",
                          "--sampler", "random", "--pruner", "median", "--space", str(space), "--out", str(out))
    assert rc == 0, err
    rows = read_csv(out / "trials.csv")
    pruned = [r for r in rows if r["state"] == "pruned"]
    assert pruned, rows
    assert all(int(r["epochs"]) < 4 for r in pruned)
    st = load_study(out)
    assert sum(t.state.name == "PRUNED" for t in st.trials) == len(pruned)


def test_final_trains_on_train_plus_val_and_tests_once(tmp_path: Path, mnist: None,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "s"
    rc, stdout, err = run_main(capsys, *TINY, "--epochs", "2", "--trials", "2", "--sampler", "random",
                               "--pruner", "none", "--out", str(out), "--final")
    assert rc == 0, err
    final = json.loads((out / "final" / "final.json").read_text())
    best = json.loads((out / "best.json").read_text())
    assert final["trial"] == best["trial"] and "test_acc" not in best
    assert 0.0 <= final["test_acc"] <= 1.0 and final["n_test"] > 0
    # The validation images went back into training: 300 + 20% of the training set.
    assert final["n_train"] > 300 and "--val-split 0" in final["command"]
    assert final["n_train"] == 300 + held_out(0.2) and final["n_test"] == 10000
    # It learned: far above chance (0.1) on the 10 000 test images, after the epochs the best trial peaked at.
    assert final["test_acc"] > 0.6, final
    assert final["epochs"] == best["best_epoch"] and "--device cpu" in final["command"]
    assert stdout.strip().splitlines()[-1].startswith(f"final mlp-mnist: trial {best['trial']} on train+val")
    # The final run evaluated no test accuracy per epoch, only the one at the end.
    assert all(r["test_acc"] == "" for r in read_csv(out / "final" / "metrics.csv"))


def test_final_trains_for_the_epoch_at_which_the_best_trial_peaked(tmp_path: Path, mnist: None) -> None:
    """A best trial of 3 epochs whose validation accuracy peaked after the first: the final run trains 1."""
    argv = ["--limit-train", "300", "--train-eval-size", "100", "--epochs", "3", "--val-split", "0.2", "--seed", "0"]
    best = SimpleNamespace(number=7, value=0.8, params={}, user_attrs={"argv": argv, "best_epoch": 1})
    final = run_final(best, tmp_path / "final", "cpu")
    assert final["epochs"] == 1 and len(read_csv(tmp_path / "final" / "metrics.csv")) == 1
    assert final["n_train"] == 300 + held_out(0.2) and "--epochs 1" in final["command"]
    assert final["test_acc"] is not None and final["trial"] == 7


# --- bad input: one line, exit 2, nothing started -------------------------------------------------

def _space(tmp_path: Path, text: str) -> str:
    p = tmp_path / "space.toml"
    p.write_text(text)
    return str(p)


@pytest.mark.parametrize(("text", "expect"), [
    ('[learning-rate]\nkind = "log-uniform"\nlow = 1e-4\nhigh = 1e-1\n', "--learning-rate is not an xpnet train flag"),
    ('[lr]\nkind = "normal"\nlow = 1e-4\nhigh = 1e-1\n', "kind 'normal' is not one of"),
    ('[lr]\nkind = "log-uniform"\nlow = 0\nhigh = 1e-1\n', "needs low > 0"),
    ('[lr]\nkind = "uniform"\nlow = 0.5\nhigh = 0.1\n', "must be less than high"),
    ('[optimizer]\nchoices = ["sgd", "lbfgs"]\n', "value 'lbfgs' is rejected by xpnet train"),
    ('[batchnorm]\nchoices = ["yes"]\n', "--batchnorm is an on/off switch"),
    ('[out]\nchoices = ["x"]\n', "--out cannot be searched"),
    ('[lr]\nkind = "log-uniform"\nlow = 1e-4\nhigh = 1e-1\nstep = 2\n', "unknown key 'step'"),
    ("[lr\n", "not valid TOML"),
])
def test_bad_space_files(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, expect: str) -> None:
    path = _space(tmp_path, text)
    rc, _, err = run_main(capsys, "--space", path, "--out", str(tmp_path / "o"))
    assert rc == 2
    line = one_line(err)
    assert expect in line and path in line, line
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(("args", "expect"), [
    (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    (["--device", "cpu"], "use --devices"),
    (["--val-split", "0"], "--val-split"),
    (["--trials", "0"], "--trials"),
    (["--timeout", "soon"], "--timeout"),
    (["--sampler", "grid"], "--sampler"),
    (["--model", "convnet", "--dropout", "0.3"], "--dropout applies to --model mlp only"),
    (["--storage", "mysql://h/db"], "unsupported scheme 'mysql'"),
    (["--study", "a b"], "--study"),
    (["--space", "missing.toml"], "no such file"),
])
def test_bad_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], expect: str) -> None:
    rc, _, err = run_main(capsys, *args, "--out", str(tmp_path / "o"))
    assert rc == 2
    assert expect in one_line(err)


def test_default_space_with_a_model_flag_it_cannot_take_is_refused_per_flag(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    space = _space(tmp_path, '[dropout]\nkind = "uniform"\nlow = 0.0\nhigh = 0.5\n')
    rc, _, err = run_main(capsys, "--model", "convnet", "--space", space, "--out", str(tmp_path / "o"))
    assert rc == 2 and "--dropout" in one_line(err) and "mlp only" in err


def test_a_numbered_gpu_that_is_not_there_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ok, _, count = backend.cuda_status()
    rc, _, err = run_main(capsys, "--devices", f"cpu,cuda:{count + 7}", "--out", str(tmp_path / "o"))
    assert rc == 2
    line = one_line(err)
    assert f"--devices cuda:{count + 7}" in line
    assert (f"has {count} CUDA device" in line) if ok else ("CUDA is unusable" in line)


def test_unreachable_database_names_host_and_port(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # A port bound but not listening refuses every connection, and nothing else can take it meanwhile.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        # What an earlier test may leave for the garbage collector to find during this run (a process
        # never waited for, an unclosed file) is no concern of the person running the search.
        real_open = storagemod.open_storage

        def open_storage(url: str | None, out: Path) -> Any:
            warnings.warn("unclosed file <_io.FileIO name=7 mode='rb' closefd=True>", ResourceWarning,
                          stacklevel=2)
            return real_open(url, out)

        monkeypatch.setattr(storagemod, "open_storage", open_storage)
        rc, _, err = run_main(capsys, "--storage", f"postgresql://xpnet:secret@127.0.0.1:{port}/db",
                              "--out", str(tmp_path / "o"))
    assert rc == 2
    line = one_line(err)
    assert f"127.0.0.1:{port}" in line and "secret" not in line
    assert "connection refused" in line.lower() and not (tmp_path / "o").exists()


def test_a_study_refuses_another_space_or_objective(tmp_path: Path, mnist: None,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "s"
    rc, _, err = run_main(capsys, *TINY, "--epochs", "1", "--trials", "1", "--out", str(out), "--pruner", "none")
    assert rc == 0, err
    other = _space(tmp_path, '[lr]\nkind = "log-uniform"\nlow = 1e-3\nhigh = 1e-1\n')
    rc, _, err = run_main(capsys, *TINY, "--epochs", "1", "--trials", "2", "--out", str(out), "--space", other)
    assert rc == 2
    line = one_line(err)
    assert "different search space" in line and "--study NEW_NAME" in line
    rc, _, err = run_main(capsys, *TINY, "--epochs", "3", "--trials", "2", "--out", str(out))
    assert rc == 2
    line = one_line(err)
    assert "different objective" in line and "epochs" in line
    # A new study name in the same folder starts over.
    rc, _, err = run_main(capsys, *TINY, "--epochs", "3", "--trials", "1", "--out", str(out), "--study", "fresh",
                          "--pruner", "none")
    assert rc == 0, err
    assert len(read_csv(out / "trials.csv")) == 1


def test_space_file_round_trip_and_defaults(tmp_path: Path) -> None:
    path = _space(tmp_path, '[lr]\nkind = "log-uniform"\nlow = 1e-4\nhigh = 1e-1\n'
                            '["--batch_size"]\nkind = "int"\nlow = 32\nhigh = 256\n'
                            '[hidden]\nchoices = ["100", "256,128"]\n')
    space = spacemod.load(path)
    assert list(space) == ["lr", "batch-size", "hidden"]
    assert space["batch-size"] == spacemod.Param("int", 32, 256)
    argv = spacemod.to_argv(space, {"lr": 0.1 / 3, "batch-size": 64, "hidden": "100"}, lambda n: False)
    assert argv == ["--lr", repr(0.1 / 3), "--batch-size", "64", "--hidden", "100"]
    assert float(argv[1]) == 0.1 / 3  # every digit survives
    # Flags given on the command line leave the default space.
    assert "optimizer" not in spacemod.default_space("mlp", ["optimizer"])
    assert "dropout" not in spacemod.default_space("convnet")


def test_timeout_starts_no_trial_after_it(tmp_path: Path, mnist: None, capsys: pytest.CaptureFixture[str]) -> None:
    out, timeout = tmp_path / "s", 2.0
    t0 = time.time()
    rc, _, err = run_main(capsys, *TINY, "--epochs", "1", "--trials", "1000", "--timeout", f"{timeout:g}s",
                          "--pruner", "none", "--out", str(out))
    assert rc == 0, err
    rows = read_csv(out / "trials.csv")
    assert all(r["state"] == "completed" for r in rows)
    trials = load_study(out).trials
    assert len(trials) == len(rows) >= 1
    starts = sorted(t.datetime_start.timestamp() for t in trials)
    # The clock starts when the first trial is about to: every trial started within the timeout of it
    # (plus the moment between the worker's look at the clock and the trial's start) ...
    assert starts[-1] <= starts[0] + timeout + 1.0, [s - starts[0] for s in starts]
    # ... and the search stopped because the time was up: the last trial ended after it.
    assert max(t.datetime_complete.timestamp() for t in trials) >= t0 + timeout


def test_the_search_never_gives_a_trial_the_test_set(tmp_path: Path, mnist: None, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """Every trial's data is built without a test loader, from a dataset that holds no test image."""
    built: list[tuple[int, int, bool]] = []
    real_build = trialmod.build_net_and_data

    def build_net_and_data(cfg: Any, dev: Any, dataset: Any = None, with_test: bool = True) -> Any:
        net, data = real_build(cfg, dev, dataset=dataset, with_test=with_test)
        built.append((len(dataset.x_test) + len(dataset.t_test), len(data.evals), "test" in data.evals))
        return net, data

    monkeypatch.setattr(trialmod, "build_net_and_data", build_net_and_data)
    rc, _, err = run_main(capsys, *TINY, "--epochs", "1", "--trials", "2", "--pruner", "none", "--out",
                          str(tmp_path / "s"))
    assert rc == 0, err
    assert built == [(0, 2, False)] * 2  # train and val evaluated, no test image anywhere


def test_module_entry_and_help() -> None:
    proc = subprocess.run([sys.executable, "-m", "xpnet", "search", "--help"], capture_output=True, text=True,
                          env=env(), cwd=ROOT, timeout=60)
    assert proc.returncode == 0 and "--trials" in proc.stdout and "--storage" in proc.stdout
    listed = subprocess.run([sys.executable, "-m", "xpnet", "--help"], capture_output=True, text=True, env=env(),
                            cwd=ROOT, timeout=60)
    assert any(line.split()[:1] == ["search"] for line in listed.stdout.splitlines()), listed.stdout
