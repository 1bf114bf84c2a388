"""``--dataset`` end to end, as a user runs it: train on a folder, an .npz and CIFAR-10 files, then eval,
predict (class names, fresh pictures) and export (an ONNX input of (N, 3, H, W)); broken data exits 2.

Each command runs as ``python -m xpnet ...`` in a fresh interpreter with its own user cache, so
nothing from another test (or the machine) leaks in.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.data_makers import COLOURS, cifar_archive, cifar_files, picture, picture_folder, save_picture
from xpnet.data import cifar

ROOT = Path(__file__).resolve().parents[1]


def xpnet(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, XPNET_OFFLINE="1", PYTHONPATH=str(ROOT), XDG_CACHE_HOME=str(tmp / "cache"))
    env.pop("XPNET_DATA_DIR", None)
    return subprocess.run([sys.executable, "-m", "xpnet", *args], capture_output=True, text=True, env=env,
                          cwd=tmp, timeout=600)


def error_line(p: subprocess.CompletedProcess[str]) -> str:
    """The one line a bad input prints (no traceback)."""
    assert p.returncode == 2, p.stderr
    assert "Traceback" not in p.stderr, p.stderr
    lines = [ln for ln in p.stderr.splitlines() if "error" in ln]
    assert len(lines) == 1, p.stderr
    return lines[0]


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A conv net trained on a folder of PNG/JPEG/BMP/GIF/WebP pictures of two sizes: (workdir, run)."""
    tmp = tmp_path_factory.mktemp("folder-run")
    picture_folder(tmp / "pics", per_class=30, sizes=((16, 16), (16, 16), (24, 20)))
    p = xpnet(tmp, "train", "--dataset", "pics", "--model", "convnet", "--hidden", "20", "--epochs", "3",
              "--batch-size", "10", "--val-split", "0.2", "--optimizer", "adam", "--lr", "0.003",
              "--augment", "crop:2,flip", "--out", "run", "--quiet")
    assert p.returncode == 0, p.stderr
    return tmp, tmp / "run"


def test_training_on_a_folder_learns_and_records_the_data(folder_run: tuple[Path, Path]) -> None:
    tmp, run = folder_run
    summary = json.loads((run / "summary.json").read_text())
    data = summary["dataset"]
    assert data["classes"] == sorted(COLOURS) and data["kind"] == "folder"
    assert data["sample_shape"] == [3, 16, 16] and data["name"] == str((tmp / "pics").resolve())
    assert summary["model"]["input_shape"] == [3, 16, 16]
    assert summary["results"]["val_acc"] >= 0.8  # chance is 1/3
    assert summary["results"]["test_acc"] >= 0.8


def test_predict_names_the_class_of_fresh_pictures(folder_run: tuple[Path, Path]) -> None:
    tmp, run = folder_run
    fresh = {}
    for i, (name, colour) in enumerate(COLOURS.items()):
        # Another size and format than most training pictures, drawn from another seed.
        fresh[name] = save_picture(tmp / f"fresh-{name}.jpg", picture(colour, (40, 30), 9000 + i), "JPEG")
    p = xpnet(tmp, "predict", str(run), *map(str, fresh.values()), "--json", "--top", "2")
    assert p.returncode == 0, p.stderr
    got = {Path(r["file"]).name: r["top"][0]["name"] for r in json.loads(p.stdout)}
    assert got == {f"fresh-{name}.jpg": name for name in COLOURS}


def test_eval_re_reads_the_same_test_set(folder_run: tuple[Path, Path]) -> None:
    tmp, run = folder_run
    p = xpnet(tmp, "eval", str(run), "--out", str(tmp / "eval"))
    assert p.returncode == 0, p.stderr
    report = json.loads((tmp / "eval" / "eval.json").read_text())
    assert report["matches_run"] is True and report["dataset"]["classes"] == sorted(COLOURS)


def test_onnx_export_takes_colour_images_and_names_the_classes(folder_run: tuple[Path, Path]) -> None:
    onnx = pytest.importorskip("onnx")
    tmp, run = folder_run
    p = xpnet(tmp, "export", str(run), "--format", "onnx", "-o", str(tmp / "m.onnx"))
    assert p.returncode == 0, p.stderr
    model = onnx.load(str(tmp / "m.onnx"))
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["N", 3, 16, 16]
    meta = {m.key: m.value for m in model.metadata_props}
    assert json.loads(meta["classes"]) == sorted(COLOURS)


def test_an_npz_trains_an_mlp_with_its_class_names(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    t = np.arange(300) % 3
    x = (rng.normal(0, 1, (300, 10)) + 3 * np.eye(3, 10)[t]).astype(np.float32)
    np.savez(tmp_path / "d.npz", x_train=x, y_train=t, class_names=np.array(["ant", "bee", "cow"]))
    p = xpnet(tmp_path, "train", "--dataset", "d.npz", "--model", "mlp", "--hidden", "16", "--epochs", "8",
              "--lr", "0.01", "--batch-size", "20", "--out", "run", "--quiet")
    assert p.returncode == 0, p.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["dataset"]["classes"] == ["ant", "bee", "cow"] and summary["model"]["input_shape"] == [10]
    assert summary["results"]["test_acc"] >= 0.8
    np.save(tmp_path / "one.npy", x[:2])
    p = xpnet(tmp_path, "predict", "run", "one.npy", "--json")
    assert p.returncode == 0, p.stderr
    assert [r["top"][0]["name"] for r in json.loads(p.stdout)] == [["ant", "bee", "cow"][i] for i in t[:2]]


def test_cifar10_files_train_a_deep_convnet_with_crops(tmp_path: Path) -> None:
    cifar_archive(tmp_path / "data" / "cifar10" / cifar.ARCHIVE, cifar_files(per_batch=40, learnable=True))
    args = ("train", "--dataset", "cifar10", "--data-dir", "data", "--model", "deep-convnet", "--epochs", "2",
            "--batch-size", "20", "--augment", "crop:4,flip", "--quiet")
    p = xpnet(tmp_path, *args, "--out", "run")
    assert p.returncode == 0, p.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["dataset"]["classes"] == list(cifar.CLASSES)
    assert summary["dataset"]["sample_shape"] == [3, 32, 32] and summary["dataset"]["n_train"] == 200
    assert summary["dataset"]["cache_hit"] is False
    again = xpnet(tmp_path, *args, "--epochs", "1", "--out", "run2")
    assert again.returncode == 0, again.stderr
    assert json.loads((tmp_path / "run2" / "summary.json").read_text())["dataset"]["cache_hit"] is True


@pytest.mark.parametrize(("make", "dataset", "names"), [
    (lambda d: (picture_folder(d / "pics", per_class=3),
                (d / "pics" / "red" / "002.bmp").write_bytes((d / "pics" / "red" / "002.bmp").read_bytes()[:90])),
     "pics", "red/002.bmp"),
    (lambda d: np.savez(d / "d.npz", x_train=np.zeros((4, 3))), "d.npz", "'y_train'"),
    (lambda d: cifar_archive(d / cifar.ARCHIVE, {**cifar_files(2), "test_batch.bin": b"\0" * 3000}),
     "cifar10", "test_batch.bin: 3,000 bytes"),
    (lambda d: picture_folder(d / "pics", per_class=2, classes=("red",)), "pics", "found 1 class folder"),
])
def test_broken_data_exits_2_naming_the_fault_and_writes_nothing(tmp_path: Path, make: object, dataset: str,
                                                                 names: str) -> None:
    make(tmp_path)  # type: ignore[operator]
    p = xpnet(tmp_path, "train", "--dataset", dataset, "--data-dir", str(tmp_path), "--out", "run")
    assert names in error_line(p)
    assert not (tmp_path / "run").exists()
    assert not list((tmp_path / "cache").rglob("*.npz"))


def test_search_runs_its_trials_on_a_folder(folder_run: tuple[Path, Path]) -> None:
    tmp, _ = folder_run
    p = xpnet(tmp, "search", "--dataset", "pics", "--model", "convnet", "--hidden", "20", "--epochs", "1",
              "--batch-size", "10", "--val-split", "0.2", "--trials", "1", "--out", "search")
    assert p.returncode == 0, p.stderr
    best = json.loads((tmp / "search" / "best.json").read_text())
    assert best["study"] == "convnet-pics" and best["val_acc"] is not None


def test_resume_refuses_a_folder_whose_classes_changed(tmp_path: Path) -> None:
    picture_folder(tmp_path / "pics", per_class=5, classes=("red", "green"))
    args = ("train", "--dataset", "pics", "--model", "mlp", "--hidden", "8", "--batch-size", "4", "--quiet")
    assert xpnet(tmp_path, *args, "--epochs", "1", "--out", "run").returncode == 0
    (tmp_path / "pics" / "green").rename(tmp_path / "pics" / "lime")  # as many pictures, another class
    p = xpnet(tmp_path, "train", "--resume", "run", "--epochs", "2")
    line = error_line(p)
    assert "the checkpoint was trained on classes=['green', 'red']" in line and "['lime', 'red']" in line
