"""The Trainer as a library: learning, exact resume, devices, divergence, callbacks.

Most tests train on a small synthetic image set (ten noisy prototypes) so they run
anywhere in seconds; the one that must learn real digits uses real MNIST.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from xpnet import backend, nets, optim
from xpnet.data import DataLoader, load_dataset
from xpnet.train import (
    BestCheckpoint,
    Callback,
    Checkpoint,
    CheckpointError,
    EarlyStopping,
    MetricsCSV,
    Plot,
    StopAfterSteps,
    Trainer,
    select_and_test,
)
from xpnet.train import checkpoint as ckpt
from xpnet.train.metrics import COLUMNS


def blobs(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (n, 28, 28) images: one of ten fixed random prototypes plus heavy noise."""
    protos = np.random.default_rng(123).integers(0, 256, (10, 28, 28))
    rng = np.random.default_rng(seed)
    t = rng.integers(0, 10, n)
    x = np.clip(protos[t] + rng.normal(0, 90, (n, 28, 28)), 0, 255).astype(np.uint8)
    return x, t.astype(np.uint8)


X, T = blobs(600, seed=0)
XT, TT = blobs(300, seed=1)


def make(dev: backend.Device, *, net: str = "mlp", batch_size: int = 50, lr: float | None = None,
         optimizer: str = "adam", callbacks: tuple[Any, ...] = (), epochs: int = 2,
         x: np.ndarray = X, t: np.ndarray = T, xt: np.ndarray = XT, tt: np.ndarray = TT,
         log_every: int = 7) -> Trainer:
    """A fresh trainer; every random choice is seeded, so two calls build the same run."""
    if net == "mlp":  # dropout + batch norm + Adam: every kind of state a checkpoint must carry
        model = nets.MultiLayerNet(784, [64, 32], 10, use_dropout=True, dropout_ratio=0.2,
                                   use_batchnorm=True, device=dev, seed=3)
    else:
        model = nets.SimpleConvNet(conv_param={"filter_num": 8, "filter_size": 5}, hidden_size=32,
                                   weight_init_std="he", device=dev, seed=3)
    flat = len(model.input_shape) == 1
    loader = DataLoader(x, t, batch_size, seed=5, device=dev, flatten=flat)
    evals = {"train": DataLoader(x, t, 200, shuffle=False, device=dev, flatten=flat),
             "test": DataLoader(xt, tt, 200, shuffle=False, device=dev, flatten=flat)}
    return Trainer(model, optim.create(optimizer, lr=lr), loader, epochs=epochs, evals=evals,
                   callbacks=list(callbacks), log_every=log_every, config={"run": {"test": True}})


def params(trainer: Trainer) -> dict[str, np.ndarray]:
    return {k: backend.to_host(v) for k, v in trainer.net.params.items()}


def assert_same_params(a: Trainer, b: Trainer) -> None:
    pa, pb = params(a), params(b)
    assert pa.keys() == pb.keys()
    for k in pa:
        np.testing.assert_array_equal(pa[k], pb[k], err_msg=k)


# --- learning -----------------------------------------------------------------------------------

def test_learns_and_records_every_epoch(dev: backend.Device) -> None:
    tr = make(dev, epochs=3)
    result = tr.fit()
    assert result.status == "completed" and result.epochs == 3 and result.steps == 3 * 12
    assert [r["epoch"] for r in result.history] == [1, 2, 3]
    assert len(tr.step_losses) == 36 and all(math.isfinite(v) for v in tr.step_losses)
    last = result.history[-1]
    assert last["test_acc"] > 0.9  # ten classes: chance is 0.1
    assert result.history[0]["train_loss"] > last["train_loss"]
    assert last["train_loss"] == pytest.approx(float(np.mean(tr.step_losses[24:])))
    assert last["samples"] == 600 and last["samples_per_s"] > 0 and last["val_acc"] is None


def test_one_forward_per_step_and_no_loss_recomputation() -> None:
    tr = make(backend.cpu(), epochs=1)
    calls = {"gradient": 0, "loss": 0}
    gradient, loss = tr.net.gradient, tr.net.loss

    def counting_gradient(x: Any, t: Any) -> Any:
        calls["gradient"] += 1
        return gradient(x, t)

    def counting_loss(*a: Any, **k: Any) -> Any:
        calls["loss"] += 1
        return loss(*a, **k)

    tr.net.gradient, tr.net.loss = counting_gradient, counting_loss
    tr.fit()
    assert calls == {"gradient": 12, "loss": 0}


class ReadCounter(np.ndarray):
    """Host arrays standing in for device ones: every read back to the host is counted in ``READS``.

    Results of operations stay ReadCounters (0-d reductions and np.stack included), so a loss read
    with ``float()`` counts; the test also counts each ReadCounter handed to ``backend.to_host``.
    """

    READS: list[str] = []

    def __array_wrap__(self, arr: Any, context: Any = None, return_scalar: bool = False) -> Any:
        return np.asarray(arr).view(ReadCounter)

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        out = super().__array_function__(func, types, args, kwargs)
        return out.view(ReadCounter) if isinstance(out, np.ndarray) else out


def _counted(name: str) -> Any:
    def read(self: ReadCounter, *args: Any) -> Any:
        ReadCounter.READS.append(name)
        return getattr(np.asarray(self), name)(*args)
    return read


for _name in ("__bool__", "__int__", "__float__", "__index__", "item", "tolist"):
    setattr(ReadCounter, _name, _counted(_name))


class CountingLoader(DataLoader):
    """A DataLoader (labels validated once, as the Trainer expects) whose batches count their reads."""

    def __iter__(self) -> Any:
        for x, t in super().__iter__():
            yield x.view(ReadCounter), t.view(ReadCounter)


def test_losses_are_read_back_in_batches_not_every_step(monkeypatch: pytest.MonkeyPatch) -> None:
    """Trainer.fit on batches that count host reads: the only reads are the loss read-backs every
    ``log_every`` steps (a ``float(loss)`` per step, or any other per-step read, would show)."""
    to_host = backend.to_host

    def counting_to_host(x: Any, copy: bool = False) -> np.ndarray:
        if isinstance(x, ReadCounter):
            ReadCounter.READS.append("to_host")
        return to_host(x, copy)

    monkeypatch.setattr(backend, "to_host", counting_to_host)
    monkeypatch.setattr(ReadCounter, "READS", [])
    reads_at_step: list[int] = []
    seen: list[int] = []

    class Count(Callback):
        def on_step_end(self, trainer: Trainer) -> None:
            reads_at_step.append(len(ReadCounter.READS))

        def on_log(self, trainer: Trainer, losses: list[float]) -> None:
            seen.append(len(losses))

    net = nets.MultiLayerNet(784, [64, 32], 10, use_dropout=True, use_batchnorm=True, weight_decay_lambda=1e-3,
                             device=backend.cpu(), seed=3)
    tr = Trainer(net, optim.Adam(), CountingLoader(X, T, 50, seed=5), epochs=1, callbacks=[Count()], log_every=5)
    assert tr.fit().status == "completed" and tr.global_step == 12
    assert seen == [5, 5, 2]  # 12 steps: two full reads of 5, then the epoch's rest
    assert isinstance(tr.net.last_loss, ReadCounter)  # the losses were counting arrays too
    assert reads_at_step == [0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 2]  # one read after steps 5 and 10
    assert ReadCounter.READS == ["to_host"] * 3  # ... and the epoch's rest, also in one transfer
    assert len(tr.step_losses) == 12 and all(math.isfinite(v) for v in tr.step_losses)


@pytest.mark.slow
def test_real_mnist_on_the_simulated_device(strict_dev: backend.Device, mnist_path: Path) -> None:
    """The library trainer on array_api_strict's device1: a few hundred steps learn real digits."""
    ds = load_dataset("mnist", data_dir=mnist_path)
    net = nets.MultiLayerNet(784, [100], 10, device=strict_dev, seed=0)
    loader = DataLoader(ds.x_train[:6000], ds.t_train[:6000], 50, seed=0, device=strict_dev)
    test = DataLoader(ds.x_test[:2000], ds.t_test[:2000], 500, shuffle=False, device=strict_dev)
    result = Trainer(net, optim.create("adam"), loader, epochs=2, evals={"test": test}).fit()
    assert result.status == "completed" and result.steps == 240
    assert result.history[-1]["test_acc"] > 0.88


def test_same_run_on_numpy_and_the_simulated_device(strict_dev: backend.Device) -> None:
    a, b = make(backend.cpu(), epochs=1), make(strict_dev, epochs=1)
    ra, rb = a.fit(), b.fit()
    assert ra.history[-1]["test_acc"] == pytest.approx(rb.history[-1]["test_acc"], abs=0.02)
    for k, v in params(a).items():
        np.testing.assert_allclose(params(b)[k], v, rtol=1e-4, atol=1e-5, err_msg=k)


# --- exact resume -------------------------------------------------------------------------------

@pytest.mark.parametrize("stop_after", [12, 17])  # at an epoch's end; in the middle of epoch 2
def test_resume_is_bit_identical(tmp_path: Path, stop_after: int) -> None:
    cpu = backend.cpu()
    straight = make(cpu, epochs=3)
    straight.fit()

    first = make(cpu, epochs=3, callbacks=(StopAfterSteps(stop_after), Checkpoint(tmp_path / "c.npz")))
    r1 = first.fit()
    assert r1.status == "completed" and r1.steps == stop_after and "reached" in r1.reason
    state = ckpt.load(tmp_path / "c.npz")
    assert ckpt.from_json_array(state["trainer/state"])["global_step"] == stop_after

    resumed = make(cpu, epochs=3, log_every=3)  # a different read-back rhythm must not matter
    resumed.load_state_dict(state)
    r2 = resumed.fit()
    assert r2.status == "completed" and r2.steps == 36
    assert_same_params(straight, resumed)
    assert resumed.step_losses == straight.step_losses
    for a, b in zip(straight.history, resumed.history, strict=True):
        assert {k: a[k] for k in ("epoch", "step", "train_loss", "train_acc", "test_acc")} == \
               {k: b[k] for k in ("epoch", "step", "train_loss", "train_acc", "test_acc")}


def test_checkpoint_loads_on_another_device(tmp_path: Path, strict_dev: backend.Device) -> None:
    tr = make(backend.cpu(), epochs=1, callbacks=(Checkpoint(tmp_path / "c.npz"),))
    tr.fit()
    other = make(strict_dev, epochs=1)
    ckpt.load_net(tmp_path / "c.npz", other.net)
    x = XT[:50].reshape(50, 784).astype(np.float32) / 255
    want = backend.to_host(tr.net.predict(x))
    got = backend.to_host(other.net.predict(strict_dev.asarray(x)))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(got.argmax(1), want.argmax(1))
    # The whole trainer state (optimizer moments, loader position) moves too, and training goes on there.
    other.epochs = 2
    other.load_state_dict(ckpt.load(tmp_path / "c.npz"))
    assert other.fit().status == "completed" and other.global_step == 24


def test_checkpoint_is_plain_arrays_and_written_atomically(tmp_path: Path) -> None:
    path = tmp_path / "c.npz"
    make(backend.cpu(), epochs=1, callbacks=(Checkpoint(path),)).fit()
    with np.load(path, allow_pickle=False) as z:
        keys = set(z.files)
    assert {"format", "trainer/state", "trainer/config", "trainer/history", "trainer/step_losses",
            "loader/epoch", "loader/step", "optim/iter", "net/W1", "net/running_mean1", "net/rng"} <= keys
    assert any(k.startswith("optim/m/") for k in keys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.npz"]  # no temp file (failures: test_atomic_writes)
    assert ckpt.read_config(ckpt.load(path)) == {"run": {"test": True}}


@pytest.mark.parametrize("content", [b"", b"not a zip file at all", b"PK\x03\x04broken"])
def test_corrupt_checkpoint_is_one_clear_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.npz"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        ckpt.load(path)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        ckpt.load(tmp_path / "missing.npz")
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(CheckpointError, match="not an xpnet checkpoint"):
        ckpt.load(tmp_path / "other.npz")


def test_a_checkpoint_never_holds_nan_weights(tmp_path: Path) -> None:
    state = make(backend.cpu()).state_dict()
    state["net/W1"] = state["net/W1"].copy()
    state["net/W1"][0, 0] = np.nan
    with pytest.raises(CheckpointError, match="NaN"):
        ckpt.save(tmp_path / "c.npz", state)
    assert not (tmp_path / "c.npz").exists()


# --- divergence ---------------------------------------------------------------------------------

class BlowUpAtEpoch(Callback):
    """Set a ruinous learning rate when epoch ``epoch`` starts (epochs before it train normally)."""

    def __init__(self, epoch: int, lr: float = 1e6) -> None:
        self.epoch, self.lr = epoch, lr

    def on_epoch_start(self, trainer: Trainer) -> None:
        if trainer.epoch + 1 == self.epoch:
            trainer.optimizer.lr = self.lr


def test_divergence_stops_and_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "c.npz"
    tr = make(backend.cpu(), epochs=4, optimizer="sgd", lr=0.1,
              callbacks=(BlowUpAtEpoch(2), Checkpoint(path), MetricsCSV(tmp_path / "m.csv")))
    with np.errstate(all="ignore"):
        result = tr.fit()
    assert result.status == "diverged" and not result.ok
    assert "NaN" in result.reason or "nan" in result.reason or "inf" in result.reason
    assert result.epochs == 1 and len(result.history) == 1
    state = ckpt.load(path)
    assert ckpt.from_json_array(state["trainer/state"])["epoch"] == 1
    assert all(np.isfinite(v).all() for k, v in state.items() if k.startswith("net/") and v.dtype.kind == "f")
    assert len((tmp_path / "m.csv").read_text().splitlines()) == 2  # header + the good epoch


# --- callbacks ----------------------------------------------------------------------------------

class FakeTrainer:
    def __init__(self, accs: list[float]) -> None:
        self.history = [{"epoch": i + 1, "val_acc": a} for i, a in enumerate(accs)]
        self.epoch = len(accs)
        self.stopped: tuple[str, str] | None = None

    def request_stop(self, status: str, reason: str) -> None:
        self.stopped = (status, reason)


@pytest.mark.parametrize(("accs", "stops"), [
    ([0.5, 0.6, 0.7], False),
    ([0.5, 0.7, 0.69], False),
    ([0.5, 0.7, 0.69, 0.7], True),  # equal is not better
    ([0.9, 0.8, 0.85], True),
])
def test_early_stopping_patience(accs: list[float], stops: bool) -> None:
    es = EarlyStopping(patience=2)
    fake = FakeTrainer(accs)
    es.on_epoch_end(fake, fake.history[-1])  # type: ignore[arg-type]
    assert (fake.stopped is not None) == stops
    if stops:
        assert fake.stopped[0] == "early-stopped" and "best" in fake.stopped[1]


class Snapshots(Callback):
    """Host copies of the weights at every epoch's end."""

    def __init__(self) -> None:
        self.by_epoch: dict[int, dict[str, np.ndarray]] = {}

    def on_epoch_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        self.by_epoch[record["epoch"]] = {k: v.copy() for k, v in params(trainer).items()}


def test_early_stopping_in_a_run(tmp_path: Path) -> None:
    x, t = blobs(900, seed=2)
    snaps, best = Snapshots(), BestCheckpoint(tmp_path / "best.npz")
    tr = make(backend.cpu(), epochs=30, x=x[:600], t=t[:600],
              callbacks=(snaps, EarlyStopping(patience=2), best))
    tr.evals["val"] = DataLoader(x[600:], t[600:], 300, shuffle=False)
    result = tr.fit()
    assert result.status == "early-stopped" and result.epochs < 30
    best_val = max(r["val_acc"] for r in result.history)
    assert all(r["val_acc"] <= best_val for r in result.history[-2:])
    vals = [r["val_acc"] for r in result.history]
    best_epoch = vals.index(best_val) + 1  # the first epoch that reached it (equal is not better)
    assert result.epochs == best_epoch + 2 == len(result.history)  # stopped exactly `patience` epochs later
    assert "epoch " + str(best_epoch) in result.reason
    assert select_and_test(tr, best=best).selected_epoch == best_epoch
    for k, v in snaps.by_epoch[best_epoch].items():  # the run ends with the best epoch's weights
        np.testing.assert_array_equal(params(tr)[k], v, err_msg=k)
    assert any(not np.array_equal(snaps.by_epoch[result.epochs][k], params(tr)[k]) for k in params(tr))


def test_metrics_csv_and_plot(tmp_path: Path) -> None:
    import csv

    from matplotlib.image import imread

    tr = make(backend.cpu(), epochs=2, callbacks=(MetricsCSV(tmp_path / "m.csv"), Plot(tmp_path / "c.png")))
    tr.fit()
    with open(tmp_path / "m.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == COLUMNS and [r["epoch"] for r in rows] == ["1", "2"]
    assert rows[0]["val_acc"] == "" and 0.0 <= float(rows[1]["test_acc"]) <= 1.0
    img = imread(tmp_path / "c.png")
    assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 400
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.png", "m.csv"]


def test_conv_net_trains_through_the_same_loop() -> None:
    tr = make(backend.cpu(), net="conv", epochs=3, lr=0.01)
    result = tr.fit()
    assert result.status == "completed" and result.history[-1]["test_acc"] > 0.7  # chance: 0.1


def test_progress_lines_and_bar() -> None:
    import io

    from xpnet.train import ConsoleProgress

    lines = io.StringIO()
    make(backend.cpu(), epochs=2, callbacks=(ConsoleProgress(lines),)).fit()
    text = lines.getvalue().splitlines()
    assert len(text) == 2 and text[0].startswith("epoch 1/2  loss ") and "samples/s" in text[1]
    assert "train 0." in text[1] and "test 0." in text[1] and "val" not in text[1]

    bar = io.StringIO()
    make(backend.cpu(), epochs=1, callbacks=(ConsoleProgress(bar, mode="bar"),)).fit()
    drawn = bar.getvalue()
    assert "\r" in drawn and "epoch 1/1" in drawn and "samples/s" in drawn and "loss " in drawn


def test_plot_is_drawn_at_most_every_n_seconds_and_always_at_the_end(tmp_path: Path) -> None:
    from matplotlib.image import imread

    from xpnet.train import plot_curves

    now = [0.0]

    class Tick(Callback):  # each epoch takes 40 "seconds"
        def on_epoch_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
            now[0] += 40.0

    throttled = Plot(tmp_path / "c.png", every=60.0, clock=lambda: now[0])
    tr = make(backend.cpu(), epochs=3, callbacks=(Tick(), throttled))
    tr.fit()
    assert throttled.drawn == 2  # after epoch 2 (80 s since the start), then at the end
    # The last picture is the one an every-epoch plot would have ended with: the whole run.
    plot_curves(tmp_path / "direct.png", tr.history, tr.step_losses)
    every = Plot(tmp_path / "e.png", every=0.0)
    every.on_fit_end(tr, tr.result(0.0))
    np.testing.assert_array_equal(imread(tmp_path / "e.png"), imread(tmp_path / "direct.png"))
    np.testing.assert_array_equal(imread(tmp_path / "c.png"), imread(tmp_path / "direct.png"))

    end_only = Plot(tmp_path / "x.png", every=None)
    make(backend.cpu(), epochs=2, callbacks=(end_only,)).fit()
    assert end_only.drawn == 1
