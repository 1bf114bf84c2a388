"""xpnet-train chooses on validation: per-epoch train+val, one test at the end, schedules, augmentation,
clipping, best.npz, exact resume with all of them, and a one-line error for every bad new flag."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.test_cli import files, net_arrays, run_main
from xpnet.runflags import build_parser
from xpnet.train import checkpoint as ckpt
from xpnet.train.checkpoint import Checkpoint


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XPNET_OFFLINE", "1")


def rows(out: Path) -> list[dict[str, str]]:
    return list(csv.DictReader((out / "metrics.csv").read_text().splitlines()))


def summary(out: Path) -> dict[str, Any]:
    return json.loads((out / "summary.json").read_text())


def kill_after_epoch(monkeypatch: pytest.MonkeyPatch, epoch: int) -> None:
    """Like kill -9 right after epoch ``epoch``'s checkpoint was written: the process stops there."""
    original = Checkpoint.on_epoch_end

    def on_epoch_end(self: Checkpoint, trainer: Any, record: dict[str, Any]) -> None:
        original(self, trainer, record)
        if trainer.epoch == epoch:
            raise KeyboardInterrupt

    monkeypatch.setattr(Checkpoint, "on_epoch_end", on_epoch_end)


EVERYTHING = ["--limit-train", "2000", "--val-split", "0.1", "--device", "cpu", "--quiet", "--hidden", "48",
              "--dropout", "0.1", "--batchnorm", "--seed", "2", "--epochs", "4", "--schedule", "step",
              "--lr-steps", "2,3", "--lr-gamma", "0.3", "--warmup-epochs", "1", "--clip-norm", "2",
              "--augment", "shift:1", "--patience", "3", "--train-eval-size", "500", "--batch-size", "50"]


def test_val_split_reports_val_per_epoch_and_tests_once_on_the_selected_weights(
        tmp_path: Path, mnist_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from xpnet.train import plots

    marks: list[Any] = []
    draw = plots.plot_curves

    def recording(*args: Any, **kwargs: Any) -> Any:
        marks.append(kwargs.get("final_test"))
        return draw(*args, **kwargs)

    monkeypatch.setattr(plots, "plot_curves", recording)
    out = tmp_path / "run"
    rc, stdout, err = run_main(capsys, "--data-dir", str(mnist_path), *EVERYTHING, "--out", str(out))
    assert rc == 0, err
    assert sorted(files(out)) == ["best.npz", "checkpoint.npz", "curves.png", "metrics.csv", "summary.json"]
    r = rows(out)
    assert len(r) == 4 and all(row["val_acc"] and not row["test_acc"] for row in r)  # never test per epoch
    assert [float(row["lr"]) for row in r] == pytest.approx([0.001, 0.001, 0.0003, 0.00009])
    s = summary(out)
    res = s["results"]
    assert res["selected_on"] == "val" and res["status"] in ("completed", "early-stopped")
    vals = [float(row["val_acc"]) for row in r]
    assert res["selected_epoch"] == vals.index(max(vals)) + 1 == res["best_epoch"]
    assert res["val_acc"] == pytest.approx(max(vals), abs=1e-6) and res["test_acc"] > 0.8  # chance: 0.1
    assert s["files"]["best"] == "best.npz"
    hp = s["hyper_parameters"]
    assert (hp["schedule"], hp["lr_steps"], hp["lr_gamma"], hp["augment"], hp["clip_norm"]) == \
        ("step", [2, 3], 0.3, "shift:1", 2.0)
    assert f"test {res['test_acc']:.4f}" in stdout and "[completed]" in stdout
    best = ckpt.load(out / "best.npz")
    assert ckpt.from_json_array(best["trainer/state"])["epoch"] == res["selected_epoch"]
    assert marks[-1] == (res["selected_epoch"], res["test_acc"])  # the plot's last drawing marks the test


def test_without_val_split_nothing_changes(tmp_path: Path, mnist_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    rc, _, err = run_main(capsys, "--data-dir", str(mnist_path), "--limit-train", "1000", "--epochs", "2",
                          "--device", "cpu", "--quiet", "--hidden", "32", "--out", str(out))
    assert rc == 0, err
    r = rows(out)
    assert all(row["test_acc"] and not row["val_acc"] for row in r)
    res = summary(out)["results"]
    assert res["selected_on"] is None and res["selected_epoch"] == 2
    assert res["test_acc"] == pytest.approx(float(r[-1]["test_acc"]))
    assert "best.npz" not in files(out)


def test_killed_and_resumed_with_everything_on_is_bit_identical(
        tmp_path: Path, mnist_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    data = ["--data-dir", str(mnist_path)]
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert run_main(capsys, *data, *EVERYTHING, "--out", str(straight))[0] == 0
    with monkeypatch.context() as m:
        kill_after_epoch(m, 2)
        rc, _, err = run_main(capsys, *data, *EVERYTHING, "--out", str(split))
        assert rc == 130, err
    assert ckpt.from_json_array(ckpt.load(split / "checkpoint.npz")["trainer/state"])["epoch"] == 2
    rc, _, err = run_main(capsys, "--resume", str(split / "checkpoint.npz"), "--quiet")
    assert rc == 0, err
    for name in ("checkpoint.npz", "best.npz"):
        a, b = net_arrays(straight / name), net_arrays(split / name)
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=f"{name} {k}")
    keep = ("epoch", "step", "train_loss", "train_acc", "val_acc", "lr")
    assert [{k: row[k] for k in keep} for row in rows(straight)] == [{k: row[k] for k in keep} for row in rows(split)]
    ra, rb = summary(straight)["results"], summary(split)["results"]
    assert {k: ra[k] for k in ("selected_epoch", "val_acc", "test_acc")} == \
        {k: rb[k] for k in ("selected_epoch", "val_acc", "test_acc")}


def test_lr_on_resume_replaces_the_schedules_base(tmp_path: Path, mnist_path: Path,
                                                 capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "run"
    args = ["--data-dir", str(mnist_path), "--limit-train", "1000", "--device", "cpu", "--quiet", "--hidden", "32",
            "--epochs", "3", "--schedule", "step", "--lr-steps", "2", "--lr", "0.002", "--out", str(out)]
    with monkeypatch.context() as m:
        kill_after_epoch(m, 1)
        assert run_main(capsys, *args)[0] == 130
    rc, _, err = run_main(capsys, "--resume", str(out), "--lr", "0.01", "--quiet")
    assert rc == 0, err
    assert [float(row["lr"]) for row in rows(out)] == pytest.approx([0.002, 0.01, 0.001])
    assert summary(out)["hyper_parameters"]["lr"] == 0.01
    # The schedule itself is part of the run: changing it on resume is refused.
    rc, _, err = run_main(capsys, "--resume", str(out), "--epochs", "4", "--schedule", "cosine")
    assert rc == 2 and "--schedule cosine differs from the checkpoint's step" in err


def test_a_cosine_run_resumed_with_more_epochs_stretches_the_rest_of_its_curve(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """3 epochs of warm-up + cosine, then --resume --epochs 5: epochs 4 and 5 follow the cosine that ends at
    epoch 5 (the step it resumes at, on the longer curve), not the old one that reached 0 at epoch 3."""
    from xpnet.train import schedules

    out = tmp_path / "run"
    args = ["--limit-train", "1000", "--device", "cpu", "--quiet", "--hidden", "16", "--seed", "3",
            "--schedule", "cosine", "--warmup-epochs", "1", "--lr", "0.004", "--out", str(out)]
    assert run_main(capsys, *args, "--epochs", "3")[0] == 0
    rc, _, err = run_main(capsys, "--resume", str(out), "--epochs", "5", "--quiet")
    assert rc == 0, err
    history = summary(out)["history"]
    n = history[0]["step"]  # steps per epoch
    short, long = (schedules.create("cosine", 0.004, steps_per_epoch=n, epochs=e, warmup_epochs=1) for e in (3, 5))
    lrs = [r["lr"] for r in history]  # each epoch's last step's
    assert [r["epoch"] for r in history] == [1, 2, 3, 4, 5]
    assert lrs[:3] == pytest.approx([short(e * n - 1) for e in (1, 2, 3)])
    assert lrs[3:] == pytest.approx([long(e * n - 1) for e in (4, 5)])
    assert lrs[3] > lrs[4] > 0 and lrs[3] > 10 * lrs[2]  # the old curve had run out; the new one goes on
    assert [float(row["lr"]) for row in rows(out)] == pytest.approx(lrs, rel=1e-5, abs=1e-6)  # metrics.csv too


BAD_FLAGS = [
    (["--schedule", "linear"], "invalid choice"),
    (["--warmup-epochs", "-1"], "integer >= 0"),
    (["--warmup-epochs", "10", "--epochs", "10"], "--warmup-epochs 10 must be less than --epochs 10"),
    (["--lr-steps", "5"], "--lr-steps applies to --schedule step only"),
    (["--lr-gamma", "0.5", "--schedule", "cosine"], "--lr-gamma applies to --schedule step only"),
    (["--schedule", "step"], "--schedule step needs --lr-steps"),
    (["--schedule", "step", "--lr-steps", "10,5", "--epochs", "20"], "increasing positive epoch numbers"),
    (["--schedule", "step", "--lr-steps", "10,x"], "comma-separated epoch numbers"),
    (["--schedule", "step", "--lr-steps", "0"], "comma-separated epoch numbers"),
    (["--schedule", "step", "--lr-steps", "5,10", "--epochs", "10"], "every step must come before --epochs 10"),
    (["--schedule", "step", "--lr-steps", "5", "--lr-gamma", "0"], "positive number"),
    (["--clip-norm", "0"], "positive number"),
    (["--clip-norm", "inf"], "positive number"),
    (["--augment", "bogus"], "expected shift[:K][,flip]"),
    (["--augment", "shift:0"], "shift:K needs a positive integer K"),
    (["--augment", "shift,rotate"], "expected shift[:K][,flip]"),
    (["--patience", "3"], "--patience watches validation accuracy"),
]


@pytest.mark.parametrize(("args", "message"), BAD_FLAGS, ids=[" ".join(a) for a, _ in BAD_FLAGS])
def test_bad_new_flags_are_one_line_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 args: list[str], message: str) -> None:
    out = tmp_path / "run"
    rc, stdout, err = run_main(capsys, *args, "--out", str(out))
    assert rc == 2
    assert err.startswith("usage: xpnet-train") and "Traceback" not in err
    [line] = [ln for ln in err.splitlines() if "error:" in ln]
    assert line.startswith("xpnet-train: error:") and message in line
    assert stdout == "" and not out.exists()


def test_augment_that_does_not_fit_the_images_is_a_one_line_error(
        tmp_path: Path, mnist_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    rc, _, err = run_main(capsys, "--data-dir", str(mnist_path), "--augment", "shift:30", "--out", str(out))
    assert rc == 2 and "Traceback" not in err
    [line] = [ln for ln in err.splitlines() if "error:" in ln]
    assert "--augment shift:30" in line and "smaller than the image" in line and not out.exists()


@pytest.mark.parametrize("spelling", ["none", "None"])
def test_augment_none_is_off_so_a_search_can_draw_it(spelling: str) -> None:
    assert build_parser().parse_args(["--augment", spelling]).augment is None
    assert build_parser().parse_args(["--augment", "shift:1"]).augment == "shift:1"
