"""Run under ``mpiexec -n 2 python -m tests.dist_worker OUT``: data-parallel scenarios for tests/test_dist.py.

Each rank writes what it saw to ``OUT/<scenario>.rank<r>.npz``; the tests compare the ranks with each
other and with one process (:func:`build` makes the same run there, with ``dist=None``).
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

import numpy as np

from xpnet import backend, nets, optim
from xpnet.data.loader import DataLoader
from xpnet.train import checkpoint as ckpt
from xpnet.train import schedules
from xpnet.train.trainer import Callback, StopAfterSteps, Trainer

# 107 samples in batches of 25: parts of 12 and 13, and a last batch of 7 (3 and 4): uneven splits.
N_TRAIN, BATCH, N_VAL = 107, 25, 50


def blobs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    protos = np.random.default_rng(123).integers(0, 256, (10, 28, 28))
    rng = np.random.default_rng(seed)
    t = rng.integers(0, 10, n)
    return np.clip(protos[t] + rng.normal(0, 90, (n, 28, 28)), 0, 255).astype(np.uint8), t


def build(dist: Any = None, *, epochs: int = 2, dropout: bool = False, batchnorm: bool = False,
          optimizer: str = "sgd", callbacks: tuple[Any, ...] = (), log_every: int = 3) -> Trainer:
    """float64 MLP with weight decay, a cosine schedule and clipping: the same run for 1 process and N ranks."""
    dev = backend.cpu()
    x, t = blobs(N_TRAIN + N_VAL, seed=0)
    net = nets.MultiLayerNet(784, [32, 16], 10, weight_decay_lambda=0.01, use_dropout=dropout,
                             dropout_ratio=0.3, use_batchnorm=batchnorm, device=dev, seed=3, dtype="float64")
    opt = optim.SGD(lr=0.1) if optimizer == "sgd" else optim.Adam(lr=0.01)
    train = DataLoader(x[:N_TRAIN], t[:N_TRAIN], BATCH, seed=5, device=dev, dtype="float64")
    val = DataLoader(x[N_TRAIN:], t[N_TRAIN:], 16, shuffle=False, device=dev, dtype="float64")
    sched = schedules.create("cosine", 0.1, steps_per_epoch=len(train), epochs=epochs)
    return Trainer(net, opt, train, epochs=epochs, evals={"val": val}, callbacks=callbacks,
                   log_every=log_every, schedule=sched, clip_norm=0.5, dist=dist)


def state_of(tr: Trainer) -> dict[str, np.ndarray]:
    """The trainer's whole state, with its epoch records' accuracies and losses."""
    out = {k: v for k, v in tr.state_dict().items() if v.dtype.kind in "fciu"}
    out["val_acc"] = np.array([r["val_acc"] for r in tr.history], dtype=np.float64)
    return out


class SignalAt(Callback):
    """Send this process ``signum`` after step ``step`` (a signal that reached one rank only)."""

    def __init__(self, step: int, signum: int) -> None:
        self.step, self.signum = step, signum

    def on_step_end(self, trainer: Trainer) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.signum)


class CountingCheckpoint(ckpt.Checkpoint):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.saves: list[int] = []

    def save(self, trainer: Any) -> None:
        self.saves.append(trainer.global_step)
        super().save(trainer)


def main(out: Path) -> None:
    from xpnet.dist.comm import world
    from xpnet.dist.parallel import DataParallel

    comm = world()
    rank = comm.rank

    def dp() -> DataParallel:
        return DataParallel(comm)

    def write(name: str, **arrays: Any) -> None:
        np.savez(out / f"{name}.rank{rank}.npz", **arrays)

    # The same training as one process (float64, no dropout, no batch norm).
    tr = build(dp())
    result = tr.fit()
    write("same", status=result.status, **state_of(tr))

    # Dropout: per-rank seeds; the weights stay identical.
    tr = build(dp(), epochs=1, dropout=True)
    tr.fit()
    write("dropout", seed=tr.net.rng.seed, **{k: v for k, v in tr.net.state_dict().items() if k != "rng"})

    # Batch norm: live running statistics mid-epoch, what a checkpoint gets, and after an epoch's end.
    tr = build(dp(), epochs=2, batchnorm=True, callbacks=(StopAfterSteps(7),))
    tr.fit()
    live = {k: backend.to_host(v) for k, v in tr.net.state_dict().items() if k.startswith("running_")}
    saved = {k[4:]: v for k, v in tr.state_dict().items() if k.startswith("net/running_")}
    tr2 = build(dp(), epochs=1, batchnorm=True)
    tr2.fit()
    ended = {k: backend.to_host(v) for k, v in tr2.net.state_dict().items() if k.startswith("running_")}
    write("batchnorm", **{f"live/{k}": v for k, v in live.items()}, **{f"saved/{k}": v for k, v in saved.items()},
          **{f"ended/{k}": v for k, v in ended.items()})

    # A SIGTERM that reaches rank 1 alone, after step 2: every rank stops after the same step.
    tr = build(dp(), epochs=5, log_every=4, callbacks=(SignalAt(2, signal.SIGTERM),) if rank == 1 else ())
    result = tr.fit()
    write("stop", status=result.status, signal=str(result.signal), step=tr.global_step)

    # A time-based checkpoint due on rank 1's clock alone (after step 2): both save after the same step,
    # rank 0 alone writes.
    box: list[Trainer] = []
    clock = (lambda: 100.0 if box and box[0].global_step >= 2 else 0.0) if rank == 1 else (lambda: 0.0)
    cp = CountingCheckpoint(out / f"vote.rank{rank}.npz", every=10.0, clock=clock)
    tr = build(dp(), epochs=1, callbacks=(cp,))
    box.append(tr)
    tr.fit()
    write("save_vote", saves=np.array(cp.saves))

    # Resume: stopped mid-epoch (step 6 of 5 per epoch) and at an epoch's end (step 5), then continued,
    # against one uninterrupted run; dropout and Adam, so every kind of state must come back.
    tr = build(dp(), epochs=3, dropout=True, optimizer="adam")
    tr.fit()
    write("resume_full", **state_of(tr))
    for stop in (6, 5):
        path = out / f"resume{stop}.npz"
        tr = build(dp(), epochs=3, dropout=True, optimizer="adam",
                   callbacks=(StopAfterSteps(stop), ckpt.Checkpoint(path)))
        tr.fit()
        tr = build(dp(), epochs=3, dropout=True, optimizer="adam")
        tr.load_state_dict(ckpt.load(path))
        tr.fit()
        write(f"resume{stop}", **state_of(tr))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
