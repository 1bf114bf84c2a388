"""Training chosen on validation: schedules in the loop, clipping, best weights restored, exact resume with all on.

Runs use the synthetic image set of test_train (ten noisy prototypes), so they take a second each.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.test_train import assert_same_params, blobs, params
from xpnet import backend, nets, optim
from xpnet.data import Augment, DataLoader
from xpnet.train import (
    BestCheckpoint,
    Callback,
    Checkpoint,
    CheckpointError,
    EarlyStopping,
    StopAfterSteps,
    Trainer,
    schedules,
    select_and_test,
)
from xpnet.train import checkpoint as ckpt
from xpnet.train.clipping import clip_grad_norm, global_norm

X, T = blobs(900, seed=7)
XTR, TTR, XV, TV = X[:600], T[:600], X[600:], T[600:]
XT, TT = blobs(300, seed=8)
FLIP_SHIFT = Augment(2, True)


def build(dev: backend.Device, *, epochs: int = 4, schedule: str | None = "cosine", clip: float | None = 1.0,
          augment: Augment | None = FLIP_SHIFT, callbacks: tuple[Any, ...] = (), lr: float = 0.002,
          batchnorm: bool = True, log_every: int = 7) -> Trainer:
    """A run with everything on: dropout, batch norm, Adam, warm-up + cosine, clipping, augmentation, val."""
    net = nets.MultiLayerNet(784, [64, 32], 10, use_dropout=True, dropout_ratio=0.2, use_batchnorm=batchnorm,
                             device=dev, seed=3)
    loader = DataLoader(XTR, TTR, 50, seed=5, device=dev, augment=augment)
    evals = {"train": DataLoader(XTR, TTR, 200, shuffle=False, device=dev),
             "val": DataLoader(XV, TV, 300, shuffle=False, device=dev)}
    sched = None
    if schedule is not None:
        sched = schedules.create(schedule, lr, steps_per_epoch=len(loader), epochs=epochs, warmup_epochs=1,
                                 steps=(2,) if schedule == "step" else None)
    return Trainer(net, optim.create("adam", lr=lr), loader, epochs=epochs, evals=evals,
                   callbacks=list(callbacks), log_every=log_every, schedule=sched, clip_norm=clip,
                   config={"run": {"test": True}})


def held_out_test(dev: backend.Device | None = None) -> DataLoader:
    return DataLoader(XT, TT, 300, shuffle=False, device=dev)


def snapshot(trainer: Trainer) -> dict[str, np.ndarray]:
    """A copy of the parameters (on the CPU, to_host hands back the live arrays)."""
    return {k: v.copy() for k, v in params(trainer).items()}


class LRLog(Callback):
    def __init__(self) -> None:
        self.lrs: list[float] = []

    def on_step_end(self, trainer: Trainer) -> None:
        self.lrs.append(trainer.optimizer.lr)


# --- schedules and clipping in the loop -------------------------------------------------------------

def test_the_schedule_sets_the_lr_of_every_step() -> None:
    log = LRLog()
    tr = build(backend.cpu(), schedule="step", callbacks=(log,))
    result = tr.fit()
    assert result.status == "completed"
    assert log.lrs == [tr.schedule(i) for i in range(48)]
    assert log.lrs[:12] == pytest.approx([0.002 * (i + 1) / 12 for i in range(12)])  # warm-up
    assert log.lrs[12:24] == [0.002] * 12 and log.lrs[24:] == pytest.approx([0.0002] * 24)
    assert [r["lr"] for r in result.history] == pytest.approx([0.002, 0.002, 0.0002, 0.0002])


def test_clip_grad_norm_scales_to_the_bound_and_keeps_direction(dev: backend.Device) -> None:
    rng = np.random.default_rng(0)
    raw = {"W1": rng.normal(size=(4, 3)), "b1": rng.normal(size=3)}
    norm = float(np.sqrt(sum((g * g).sum() for g in raw.values())))
    grads = {k: dev.asarray(v.copy()) for k, v in raw.items()}
    before = float(backend.to_host(clip_grad_norm(grads, norm / 4)))
    assert before == pytest.approx(norm)
    assert float(backend.to_host(global_norm(grads))) == pytest.approx(norm / 4, rel=1e-5)
    for k, v in raw.items():
        np.testing.assert_allclose(backend.to_host(grads[k]), v / 4, rtol=1e-5)
    small = {k: dev.asarray(v.copy()) for k, v in raw.items()}
    clip_grad_norm(small, norm * 2)  # under the bound: untouched
    for k, v in raw.items():
        np.testing.assert_allclose(backend.to_host(small[k]), v, rtol=1e-6)
    with pytest.raises(ValueError, match="max_norm must be > 0"):
        clip_grad_norm(grads, 0.0)


def test_clip_works_on_a_nets_own_gradients() -> None:
    """The net's gradient dict (flat-backed on the CPU) is clipped in place, as the optimizer reads it."""
    net = nets.MultiLayerNet(784, [32], 10, device="cpu", seed=0)
    x = X[:50].reshape(50, 784).astype(np.float32) / 255
    grads = net.gradient(x, T[:50].astype(np.int64))
    want = {k: backend.to_host(v, copy=True) for k, v in grads.items()}
    norm = float(np.sqrt(sum((g.astype(np.float64) ** 2).sum() for g in want.values())))
    clip_grad_norm(grads, norm / 10)
    for k, v in want.items():
        np.testing.assert_allclose(backend.to_host(grads[k]), v / 10, rtol=1e-4, atol=1e-7)


def test_clipping_bounds_each_update() -> None:
    """With plain SGD the update is lr·g, so a clipped run moves the weights by at most lr·max_norm per step."""
    net = nets.MultiLayerNet(784, [32], 10, device="cpu", seed=0)
    loader = DataLoader(XTR, TTR, 50, seed=1)
    moves: list[float] = []

    class Track(Callback):
        def on_fit_start(self, trainer: Trainer) -> None:
            self.prev = snapshot(trainer)

        def on_step_end(self, trainer: Trainer) -> None:
            now = snapshot(trainer)
            moves.append(float(np.sqrt(sum(((now[k] - self.prev[k]).astype(np.float64) ** 2).sum()
                                           for k in now))))
            self.prev = now

    Trainer(net, optim.SGD(lr=0.5), loader, epochs=1, clip_norm=0.01, callbacks=[Track()]).fit()
    assert len(moves) == 12 and max(moves) <= 0.5 * 0.01 * (1 + 1e-3)
    assert min(moves) > 0.5 * 0.01 * 0.99  # the raw gradients are far above 0.01: every step is clipped


# --- best weights and the one test evaluation ---------------------------------------------------------

class Snapshots(Callback):
    """The net's parameters after every epoch (to compare the restored ones against)."""

    def __init__(self) -> None:
        self.by_epoch: dict[int, dict[str, np.ndarray]] = {}

    def on_epoch_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        self.by_epoch[record["epoch"]] = snapshot(trainer)


class Spoil(Callback):
    """From epoch ``epoch`` on, a ruinous learning rate: validation accuracy peaks before it."""

    def __init__(self, epoch: int = 4, lr: float = 0.5) -> None:
        self.epoch, self.lr = epoch, lr

    def on_epoch_start(self, trainer: Trainer) -> None:
        if trainer.epoch + 1 >= self.epoch:
            trainer.optimizer.lr = self.lr


def test_restore_best_puts_the_best_val_epoch_back_and_tests_it_once(tmp_path: Path) -> None:
    snaps = Snapshots()
    best = BestCheckpoint(tmp_path / "best.npz")
    tr = build(backend.cpu(), epochs=8, schedule=None, clip=None, augment=None,
               callbacks=(Spoil(), snaps, EarlyStopping(patience=3), best))
    result = tr.fit()
    vals = [r["val_acc"] for r in result.history]
    best_epoch = vals.index(max(vals)) + 1  # the first epoch with the highest val accuracy
    assert best_epoch <= 3 and result.status == "early-stopped" and result.epochs == best_epoch + 3
    assert best.best_epoch == best_epoch and best.best == max(vals)
    assert all(r["test_acc"] is None for r in result.history)  # no test set during training
    last = snapshot(tr)

    test = held_out_test()
    calls = {"n": 0}
    evaluate = tr.evaluate

    def counting(loader: Any) -> float:
        calls["n"] += 1
        return evaluate(loader)

    tr.evaluate = counting  # type: ignore[method-assign]
    sel = select_and_test(tr, test, best)
    assert calls["n"] == 1
    assert sel.selected_on == "val" and sel.selected_epoch == best_epoch and sel.val_acc == max(vals)
    for k, v in snaps.by_epoch[best_epoch].items():
        np.testing.assert_array_equal(params(tr)[k], v, err_msg=k)
    assert any(not np.array_equal(last[k], params(tr)[k]) for k in last)
    assert sel.test_acc == evaluate(test) and sel.test_acc > 0.9
    # best.npz is a full checkpoint of that epoch, readable like any other.
    state = ckpt.load(tmp_path / "best.npz")
    assert ckpt.from_json_array(state["trainer/state"])["epoch"] == best_epoch
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.npz"]  # written atomically, no temp files


def test_without_best_the_last_epoch_is_selected_and_without_val_nothing_is_chosen() -> None:
    tr = build(backend.cpu(), epochs=2)
    tr.fit()
    sel = select_and_test(tr, held_out_test())
    assert (sel.selected_on, sel.selected_epoch) == ("val", 2) and 0 <= sel.test_acc <= 1
    del tr.evals["val"]
    tr.history = [{**r, "val_acc": None, "test_acc": 0.5} for r in tr.history]
    sel = select_and_test(tr)
    assert (sel.selected_on, sel.selected_epoch, sel.test_acc) == (None, 2, 0.5)


def test_a_resumed_run_finds_its_best_epoch_in_best_npz(tmp_path: Path) -> None:
    first = build(backend.cpu(), epochs=6, schedule=None, augment=None,
                  callbacks=(Spoil(), StopAfterSteps(60), BestCheckpoint(tmp_path / "best.npz"),
                             Checkpoint(tmp_path / "c.npz")))
    first.fit()
    resumed_best = BestCheckpoint(tmp_path / "best.npz")
    resumed = build(backend.cpu(), epochs=6, schedule=None, augment=None, callbacks=(Spoil(), resumed_best))
    resumed.load_state_dict(ckpt.load(tmp_path / "c.npz"))
    resumed.fit()
    vals = [r["val_acc"] for r in resumed.history]
    assert resumed_best.best_epoch == vals.index(max(vals)) + 1 <= 3  # an epoch of the first session
    assert select_and_test(resumed, None, resumed_best).selected_epoch == resumed_best.best_epoch


# --- exact resume with everything on ---------------------------------------------------------------------

@pytest.mark.parametrize("stop_after", [24, 31])  # at an epoch's end; in the middle of epoch 3
def test_resume_is_bit_identical_with_everything_on(tmp_path: Path, stop_after: int) -> None:
    cpu = backend.cpu()
    straight_best = BestCheckpoint(tmp_path / "straight_best.npz")
    straight = build(cpu, epochs=5, callbacks=(EarlyStopping(patience=10), straight_best))
    straight.fit()

    first = build(cpu, epochs=5, callbacks=(StopAfterSteps(stop_after), Checkpoint(tmp_path / "c.npz"),
                                            EarlyStopping(patience=10), BestCheckpoint(tmp_path / "best.npz")))
    assert first.fit().steps == stop_after
    resumed_best = BestCheckpoint(tmp_path / "best.npz")
    resumed = build(cpu, epochs=5, log_every=3, callbacks=(EarlyStopping(patience=10), resumed_best))
    resumed.load_state_dict(ckpt.load(tmp_path / "c.npz"))
    assert resumed.fit().status == "completed"

    assert_same_params(straight, resumed)
    assert resumed.step_losses == straight.step_losses
    keys = ("epoch", "step", "train_loss", "train_acc", "val_acc", "lr")
    assert [{k: r[k] for k in keys} for r in resumed.history] == [{k: r[k] for k in keys} for r in straight.history]
    assert resumed_best.best_epoch == straight_best.best_epoch
    a, b = ckpt.load(tmp_path / "straight_best.npz"), ckpt.load(tmp_path / "best.npz")
    for k in (k for k in a if k.startswith("net/W")):
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_a_checkpoint_from_another_schedule_is_refused(tmp_path: Path) -> None:
    tr = build(backend.cpu(), epochs=2, schedule="cosine", callbacks=(Checkpoint(tmp_path / "c.npz"),))
    tr.fit()
    state = ckpt.load(tmp_path / "c.npz")
    assert ckpt.from_json_array(state["trainer/schedule"])["name"] == "cosine"
    for other in ("step", None):
        with pytest.raises(CheckpointError, match="trained with schedule"):
            build(backend.cpu(), epochs=4, schedule=other).load_state_dict(state)
    longer = build(backend.cpu(), epochs=4, schedule="cosine", lr=0.01)  # more epochs, another base lr: fine
    longer.load_state_dict(state)
    assert longer.fit().status == "completed"


def test_best_npz_written_after_the_resumed_checkpoint_is_kept_until_beaten(tmp_path: Path) -> None:
    """The process died after best.npz (epoch 3) but before checkpoint.npz (still epoch 2) was replaced."""
    import shutil

    class KeepEpoch2(Callback):
        def on_epoch_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
            if record["epoch"] == 2:
                shutil.copy(tmp_path / "c.npz", tmp_path / "c2.npz")

    kw: dict[str, Any] = {"epochs": 4, "schedule": None, "augment": None, "lr": 0.0003}
    best = BestCheckpoint(tmp_path / "best.npz")
    straight = build(backend.cpu(), callbacks=(best, Checkpoint(tmp_path / "c.npz"), KeepEpoch2()), **kw)
    straight.fit()
    vals = [r["val_acc"] for r in straight.history]
    assert best.best_epoch == vals.index(max(vals)) + 1 >= 3  # the file now holds an epoch after 2
    want = {k: v for k, v in ckpt.load(tmp_path / "best.npz").items() if k.startswith("net/")}

    resumed_best = BestCheckpoint(tmp_path / "best.npz")
    resumed = build(backend.cpu(), callbacks=(resumed_best,), **kw)
    resumed.load_state_dict(ckpt.load(tmp_path / "c2.npz"))
    resumed_best.on_fit_start(resumed)
    assert resumed_best.best_epoch == best.best_epoch and resumed_best.best == max(vals[:2])
    resumed.fit()
    assert resumed_best.best_epoch == best.best_epoch and resumed_best.best == max(vals)
    got = ckpt.load(tmp_path / "best.npz")
    for k, v in want.items():
        np.testing.assert_array_equal(got[k], v, err_msg=k)
    assert select_and_test(resumed, None, resumed_best).selected_epoch == best.best_epoch
