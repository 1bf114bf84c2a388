"""Using a trained model end to end on small real runs: ``xpnet.load``, ``xpnet eval``, ``predict``, ``export``.

The runs are trained once per module through ``xpnet train`` on real MNIST (and Fashion-MNIST where it is
there), one epoch on a few thousand images: seconds, and good enough that the predictions mean something.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import xpnet
from tests.conftest import mnist_dir
from xpnet import cli as commands
from xpnet.model_io.evaluate import evaluate, softmax
from xpnet.train import checkpoint as ckpt


def xpnet_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``xpnet ARGS`` in-process: (exit status, stdout, stderr)."""
    rc = commands.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def train(out: Path, data_dir: Path, *args: str) -> Path:
    rc = commands.main(["train", "--data-dir", str(data_dir), "--epochs", "1", "--quiet", "--out", str(out), *args])
    assert rc == 0
    return out


@pytest.fixture(scope="module")
def mnist_data() -> Path:
    d = mnist_dir()
    if d is None:
        pytest.skip("real MNIST not found: set XPNET_DATA_DIR to a folder holding mnist/")
    return d


@pytest.fixture(scope="module")
def fashion_data(mnist_data: Path) -> Path:
    for d in (mnist_data.parent / "fashion-mnist", mnist_data / "fashion-mnist"):
        if (d / "t10k-images-idx3-ubyte.gz").exists():
            return d
    pytest.skip("real Fashion-MNIST not found beside MNIST")


@pytest.fixture(scope="module")
def mlp_run(tmp_path_factory: pytest.TempPathFactory, mnist_data: Path) -> Path:
    """An MLP with batch norm and dropout: the state a loader must restore is more than the weights."""
    return train(tmp_path_factory.mktemp("runs") / "mlp", mnist_data, "--batchnorm", "--dropout", "0.1",
                 "--limit-train", "10000", "--hidden", "100,50", "--lr", "0.003")


@pytest.fixture(scope="module")
def conv_run(tmp_path_factory: pytest.TempPathFactory, mnist_data: Path) -> Path:
    return train(tmp_path_factory.mktemp("runs") / "conv", mnist_data, "--model", "convnet", "--hidden", "30",
                 "--limit-train", "1000", "--batch-size", "50", "--lr", "0.003")


@pytest.fixture(scope="module")
def fashion_run(tmp_path_factory: pytest.TempPathFactory, fashion_data: Path) -> Path:
    return train(tmp_path_factory.mktemp("runs") / "fashion", fashion_data, "--dataset", "fashion-mnist",
                 "--limit-train", "3000", "--hidden", "64")


def dataset_test_set(data_dir: Path, name: str = "mnist") -> tuple[np.ndarray, np.ndarray]:
    from xpnet.data import load_dataset

    ds = load_dataset(name, data_dir=data_dir)
    return ds.x_test, ds.t_test


def summary(run: Path) -> dict[str, Any]:
    return json.loads((run / "summary.json").read_text())


def one_line_error(err: str, *needles: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err and all(n in lines[0] for n in needles), (lines, needles)


# --- xpnet.load ---------------------------------------------------------------------------------------

def test_load_restores_the_trained_net(mlp_run: Path, mnist_data: Path) -> None:
    net = xpnet.load(mlp_run, device="cpu")
    same = xpnet.load(mlp_run / "checkpoint.npz", device="cpu")
    stored = ckpt.section(ckpt.load(mlp_run), "net")
    state = net.state_dict()
    assert set(state) == set(stored) and {"running_mean1", "running_var2"} <= set(state)
    for k, v in stored.items():
        np.testing.assert_array_equal(np.asarray(state[k]), v)
    x = dataset_test_set(mnist_data)[0][:50].reshape(50, 784).astype(np.float32) / 255
    logits = np.asarray(net.predict(x))
    assert logits.shape == (50, 10) and not np.allclose(logits.sum(axis=1), 1)  # logits, not probabilities
    np.testing.assert_array_equal(logits, np.asarray(same.predict(x)))
    np.testing.assert_array_equal(logits, np.asarray(net.predict(x)))  # evaluation: no dropout, no BN update


def test_load_on_every_backend(mlp_run: Path, mnist_data: Path, dev: xpnet.Device) -> None:
    x = dataset_test_set(mnist_data)[0][:20].reshape(20, 784).astype(np.float32) / 255
    want = np.asarray(xpnet.load(mlp_run, device="cpu").predict(x))
    net = xpnet.load(mlp_run, device=dev)
    assert net.device.name == dev.name
    got = xpnet.to_host(net.predict(xpnet.to_device(x, dev)))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_a_run_folder_prefers_best_npz(mlp_run: Path, conv_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(mlp_run, run, ignore=shutil.ignore_patterns("eval"))
    shutil.copy(conv_run / "checkpoint.npz", run / "best.npz")  # stands for the best-validation weights
    assert type(xpnet.load(run, device="cpu")).__name__ == "SimpleConvNet"
    assert type(xpnet.load(run / "checkpoint.npz", device="cpu")).__name__ == "MultiLayerNet"
    # A weights-only best.npz (net/* entries) takes the config from the run's checkpoint.npz.
    full = ckpt.load(mlp_run)
    moved = {k: (v + 1 if k == "net/b3" else v) for k, v in full.items() if k.startswith("net/")}
    np.savez(run / "best.npz", format=np.asarray(ckpt.FORMAT), **moved)
    net = xpnet.load(run, device="cpu")
    np.testing.assert_array_equal(np.asarray(net.state_dict()["b3"]), full["net/b3"] + 1)
    np.savez(run / "best.npz", W1=np.zeros(3))
    with pytest.raises(ValueError, match="best.npz"):
        xpnet.load(run, device="cpu")


# --- xpnet eval -------------------------------------------------------------------------------------

@pytest.mark.parametrize("which", ["mlp_run", "conv_run"])
def test_eval_reproduces_the_runs_test_accuracy(which: str, request: pytest.FixtureRequest,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    run: Path = request.getfixturevalue(which)
    rc, out, err = xpnet_cli(capsys, "eval", run, "--device", "cpu")
    assert rc == 0, err
    report = json.loads((run / "eval" / "eval.json").read_text())
    test_acc = summary(run)["results"]["test_acc"]
    assert report["test_acc"] == test_acc and report["run_test_acc"] == test_acc and report["matches_run"] is True
    assert f"test {test_acc:.4f}" in out and "= the run's test_acc" in out

    n = report["dataset"]["n_test"]
    m = np.array(report["confusion"]["counts"])
    assert n == 10000 and m.sum() == n and int(np.trace(m)) == report["correct"] == round(test_acc * n)
    for c in report["per_class"]:
        assert c["n"] == m[c["label"]].sum() and c["correct"] == m[c["label"], c["label"]]
        assert c["accuracy"] == pytest.approx(c["correct"] / c["n"]) and c["name"] == str(c["label"])
    mistakes = report["mistakes"]
    assert len(mistakes) == n - report["correct"]
    assert all(mk["true"] != mk["predicted"] for mk in mistakes)
    conf = [mk["confidence"] for mk in mistakes]
    assert conf == sorted(conf, reverse=True) and 0.1 <= conf[-1] <= conf[0] <= 1
    for name in ("confusion.png", "mistakes.png"):
        with Image.open(run / "eval" / name) as im:
            assert im.format == "PNG" and im.width > 400 and im.height > 300


def test_eval_mistakes_are_the_nets_mistakes(mlp_run: Path, mnist_data: Path,
                                             capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Recomputed independently, the most confident mistake is the one eval.json puts first."""
    rc, _, err = xpnet_cli(capsys, "eval", mlp_run, "--out", tmp_path / "ev", "--mistakes", "12")
    assert rc == 0, err
    report = json.loads((tmp_path / "ev" / "eval.json").read_text())
    x, t = dataset_test_set(mnist_data)
    probs = softmax(np.asarray(xpnet.load(mlp_run, device="cpu").predict(x.reshape(-1, 784) / np.float32(255)),
                               dtype=np.float64))
    wrong = np.flatnonzero(probs.argmax(1) != t)
    top = wrong[np.argmax(probs[wrong].max(axis=1))]
    first = report["mistakes"][0]
    assert (first["index"], first["true"], first["predicted"]) == (top, t[top], probs[top].argmax())
    assert first["confidence"] == pytest.approx(probs[top].max(), abs=1e-6)


def test_eval_fashion_names_its_classes(fashion_run: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = xpnet_cli(capsys, "eval", fashion_run, "--out", tmp_path / "ev")
    assert rc == 0, err
    report = json.loads((tmp_path / "ev" / "eval.json").read_text())
    assert report["dataset"]["name"] == "fashion-mnist" and report["matches_run"] is True
    assert [c["name"] for c in report["per_class"]][:2] == ["T-shirt/top", "Trouser"]
    assert "worst class" in out


def test_eval_bad_input_writes_nothing(mlp_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plain = tmp_path / "weights.npz"
    np.savez(plain, W1=np.zeros((3, 3)))
    text = tmp_path / "notes.npz"
    text.write_text("hello")
    empty = tmp_path / "empty"
    empty.mkdir()
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    out = tmp_path / "out"
    cases = [
        ((mlp_run, "--dataset", "fashion-mnist"), ("trained on mnist", "fashion-mnist")),
        ((mlp_run, "--dataset", "cifar"), ("--dataset", "cifar")),
        ((mlp_run, "--data-dir", tmp_path / "nowhere"), ("--data-dir", "not a folder")),
        ((plain,), ("not an xpnet checkpoint",)),
        ((text,), ("not a readable checkpoint",)),
        ((tmp_path / "missing",), ("no such run folder or checkpoint",)),
        ((empty,), ("without best.npz or checkpoint.npz",)),
    ]
    for args, needles in cases:
        rc, stdout, err = xpnet_cli(capsys, "eval", *args, "--out", out)
        assert rc == 2 and stdout == "", args
        one_line_error(err, "xpnet eval: error:", *needles)
        assert not out.exists()
    rc, _, err = xpnet_cli(capsys, "eval", mlp_run, "--out", a_file)
    assert rc == 2
    one_line_error(err, "exists and is not a folder")


# --- xpnet predict ----------------------------------------------------------------------------------

def photo(digit: np.ndarray, path: Path, at: tuple[int, int], seed: int) -> None:
    """A test digit as someone might photograph it: large, dark ink on light paper, off-centre, a big JPEG."""
    side = 28 * 10
    big = np.asarray(Image.fromarray(digit).resize((side, side), Image.Resampling.BICUBIC), dtype=np.float64)
    paper = np.full((1500, 2000), 232.0)
    paper[at[0]:at[0] + side, at[1]:at[1] + side] -= big.clip(0, 255) * 0.85
    paper += np.random.default_rng(seed).normal(0, 4, paper.shape)
    grey = paper.clip(0, 255).astype(np.uint8)
    Image.fromarray(np.stack([grey, grey, grey], -1)).save(path, quality=85)


def test_predict_photos_as_the_dataset_images(mlp_run: Path, mnist_data: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """Big off-centre dark-on-light JPEGs of test digits get the labels the originals get (where the net is sure)."""
    x, t = dataset_test_set(mnist_data)
    net = xpnet.load(mlp_run, device="cpu")
    probs = softmax(np.asarray(net.predict(x[:2000].reshape(-1, 784) / np.float32(255)), dtype=np.float64))
    picks = [int(np.flatnonzero((t[:2000] == d) & (probs.max(1) > 0.9) & (probs.argmax(1) == d))[0])
             for d in range(10)]
    files = []
    for k, i in enumerate(picks):
        files.append(tmp_path / f"digit{t[i]}.jpg")
        photo(x[i], files[-1], at=(100 + 90 * k, 1600 - 150 * k), seed=k)
    np.save(tmp_path / "originals.npy", x[picks])
    show = tmp_path / "seen"
    rc, out, err = xpnet_cli(capsys, "predict", mlp_run, *files, tmp_path / "originals.npy", "--json", "--top", "3",
                             "--show", show)
    assert rc == 0, err
    result = json.loads(out)
    assert [r["file"] for r in result] == [str(f) for f in files] + \
        [f"{tmp_path / 'originals.npy'}[{k}]" for k in range(10)]
    for r in result:
        probs_k = [e["prob"] for e in r["top"]]
        assert len(r["top"]) == 3 and probs_k == sorted(probs_k, reverse=True) and sum(probs_k) <= 1 + 1e-9
        assert all(e["name"] == str(e["label"]) for e in r["top"])
    photos, originals = result[:10], result[10:]
    assert [r["top"][0]["label"] for r in originals] == list(range(10))
    assert [r["top"][0]["label"] for r in photos] == list(range(10))
    seen = sorted(p.name for p in show.iterdir())
    assert len(seen) == 20 and "digit7_28x28.png" in seen and "originals-9_28x28.png" in seen
    with Image.open(show / "digit3_28x28.png") as im:
        assert im.size == (28, 28) and im.mode == "L"
    with Image.open(show / "originals-4_28x28.png") as im:  # a .npy input is shown as it was given
        np.testing.assert_array_equal(np.asarray(im), x[picks[4]])
    # What --show wrote can be fed back in (and is not overwritten by its own preview).
    again = show / "digit3_28x28.png"
    before = again.read_bytes()
    rc, out, _ = xpnet_cli(capsys, "predict", mlp_run, again, "--show", show)
    assert rc == 0 and out.split()[1] == "3" and again.read_bytes() == before

    rc, out, _ = xpnet_cli(capsys, "predict", mlp_run, files[0], "--top", "2")
    assert rc == 0 and len(out.splitlines()) == 1 and out.split()[1] == "0" and len(out.split()) == 5


def test_predict_fashion_uses_class_names(fashion_run: Path, fashion_data: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    x, _ = dataset_test_set(fashion_data, "fashion-mnist")
    Image.fromarray(255 - x[0]).resize((300, 300)).save(tmp_path / "item.png")  # dark garment on white
    rc, out, err = xpnet_cli(capsys, "predict", fashion_run, tmp_path / "item.png", "--json", "--top", "10")
    assert rc == 0, err
    [r] = json.loads(out)
    assert sorted(e["name"] for e in r["top"]) == sorted(
        ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"])
    assert sum(e["prob"] for e in r["top"]) == pytest.approx(1.0)
    # Asked to classify digits with a clothing model: refused, nothing written.
    rc, out, err = xpnet_cli(capsys, "predict", fashion_run, tmp_path / "item.png", "--dataset", "mnist",
                             "--show", tmp_path / "seen")
    assert rc == 2 and out == ""
    one_line_error(err, "trained on fashion-mnist", "cannot classify mnist")
    assert not (tmp_path / "seen").exists()


def test_predict_bad_input_prints_and_writes_nothing(mlp_run: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.png"
    d = np.zeros((28, 28), np.uint8)
    d[4:24, 12:16] = 255
    Image.fromarray(d).save(good)
    fake = tmp_path / "fake.jpg"
    fake.write_text("GIF89a? no")
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((100, 100), 250, np.uint8)).save(blank)
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((5, 32, 32)))
    show = tmp_path / "seen"
    for bad, needle in ((fake, "not an image"), (blank, "empty"), (wrong, "(5, 32, 32)"),
                        (tmp_path / "none.png", "no such file")):
        rc, out, err = xpnet_cli(capsys, "predict", mlp_run, good, bad, "--show", show)
        assert rc == 2 and out == ""
        one_line_error(err, "xpnet predict: error:", str(bad), needle)
        assert not show.exists()
    rc, out, err = xpnet_cli(capsys, "predict", mlp_run, good, "--top", "0")
    assert rc == 2 and out == ""
    one_line_error(err, "--top")


# --- xpnet export -----------------------------------------------------------------------------------

def test_export_onnx_runs_in_onnxruntime_like_xpnet(conv_run: Path, mnist_data: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    target = tmp_path / "model.onnx"
    rc, out, err = xpnet_cli(capsys, "export", conv_run, "--format", "onnx", "-o", target)
    assert rc == 0, err
    assert out.startswith(f"{target}: onnx")
    model = onnx.load(str(target))
    onnx.checker.check_model(model, full_check=True)
    props = {p.key: p.value for p in model.metadata_props}
    assert props["dataset"] == "mnist" and json.loads(props["classes"]) == [str(i) for i in range(10)]

    x, t = dataset_test_set(mnist_data)
    xs = (x[:1000].astype(np.float32) / 255)[:, None]
    sess = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    theirs = softmax(sess.run(["logits"], {"input": xs})[0].astype(np.float64))
    ours = evaluate(xpnet.load(conv_run, device="cpu"), x[:1000], t[:1000]).probs
    assert float(np.abs(theirs - ours).max()) <= 1e-5

    before = target.read_bytes()
    rc, _, err = xpnet_cli(capsys, "export", conv_run, "-o", target)
    assert rc == 2 and target.read_bytes() == before
    one_line_error(err, "exists", "--force")
    assert xpnet_cli(capsys, "export", conv_run, "-o", target, "--force")[0] == 0
    rc, _, err = xpnet_cli(capsys, "export", conv_run, "-o", conv_run / "checkpoint.npz", "--force", "--format", "npz")
    assert rc == 2
    one_line_error(err, "the model's own checkpoint")


def test_export_npz(mlp_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = xpnet_cli(capsys, "export", mlp_run, "--format", "npz", "-o", tmp_path / "w.npz")
    assert rc == 0, err
    with np.load(tmp_path / "w.npz", allow_pickle=False) as z:
        names = set(z.files)
        meta = json.loads(str(z["meta"]))
    per_layer = {f"{k}{i}" for i in (1, 2) for k in ("W", "b", "gamma", "beta", "running_mean", "running_var")}
    assert names == per_layer | {"W3", "b3", "meta"}
    assert meta["dataset"] == "mnist" and meta["model"] == "mlp"


def test_export_without_the_onnx_extra(mlp_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnx", None)  # `import onnx` now raises ImportError
    rc, out, err = xpnet_cli(capsys, "export", mlp_run, "-o", tmp_path / "m.onnx")
    assert rc == 2 and out == ""
    one_line_error(err, "pip install 'xpnet[onnx]'")
    assert not (tmp_path / "m.onnx").exists()
