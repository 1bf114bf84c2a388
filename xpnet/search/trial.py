"""One trial: the flags Optuna drew → a train config → the Trainer, judged on validation accuracy.

The trainer is built as `xpnet train` builds it (one function, :func:`~xpnet.train.config.build_trainer`:
the same optimizer, lr schedule and gradient clipping), with three extra callbacks'
worth of behaviour: every epoch's validation accuracy goes to Optuna (the pruner
may stop the trial), the curve is stored with the trial (so results can be
drawn from the study alone, on any machine), and a checkpoint is written every
epoch into the trial's folder so a retried trial continues where it stopped.
The test set is never loaded: the loaders are built without it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

from xpnet import backend
from xpnet.runflags import TrainFlags
from xpnet.search import space as spacemod
from xpnet.train import checkpoint as ckpt
from xpnet.train.config import RunConfig, build_net_and_data, build_trainer, load_data
from xpnet.train.trainer import Callback, Record, Trainer

#: How a trial ended, as stored in its "status" user attribute (Optuna's own state is coarser).
STATUSES = ("running", "completed", "early-stopped", "pruned", "diverged", "interrupted", "error")


class TrialInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped a trial: Optuna records it as failed (its status says interrupted)
    and re-raises it, as it does KeyboardInterrupt, so the worker stops instead of starting another.
    ``signum`` is the signal that stopped it (the exit status is 128 + signum)."""

    def __init__(self, message: str, signum: int = signal.SIGINT) -> None:
        super().__init__(message)
        self.signum = int(signum)


class _Report(Callback):
    """Per epoch: report validation accuracy to Optuna, store the curve, stop if the pruner says so."""

    def __init__(self, trial: Any, first_new_epoch: int) -> None:
        self.trial, self.first_new_epoch, self.pruned = trial, first_new_epoch, False

    def on_epoch_end(self, trainer: Trainer, record: Record) -> None:
        history = trainer.history
        self.trial.set_user_attr("curve", {"val": [r.get("val_acc") for r in history],
                                           "train": [r.get("train_acc") for r in history]})
        self.trial.set_user_attr("epochs", trainer.epoch)
        val = record.get("val_acc")
        if val is None or trainer.epoch < self.first_new_epoch:
            return
        self.trial.report(float(val), trainer.epoch)
        if self.trial.should_prune():
            self.pruned = True
            trainer.request_stop("completed", f"pruned by Optuna after epoch {trainer.epoch}")


@dataclasses.dataclass
class TrialSetup:
    """What every trial of one worker shares."""

    base_argv: list[str]  # the fixed train flags (the user's, plus --val-split and --seed)
    space: spacemod.Space
    out: Path  # the search folder; trials write into out/trials/NNNN
    device: str
    worker: str
    quiet: bool = False


class Objective:
    """Optuna's objective: run one trial, return its best validation accuracy."""

    def __init__(self, setup: TrialSetup, dataset: Any = None) -> None:
        self.setup = setup
        self.flags = TrainFlags()
        self.device = backend.device(setup.device)
        self.host = socket.gethostname()
        self._dataset = dataset
        self.last_status: str | None = None

    def dataset(self, cfg: RunConfig) -> Any:
        """The training images, loaded once per worker; the test arrays are dropped before any trial."""
        if self._dataset is None:
            ds = load_data(cfg)
            self._dataset = dataclasses.replace(ds, x_test=ds.x_test[:0], t_test=ds.t_test[:0])
        return self._dataset

    def argv(self, params: dict[str, Any]) -> list[str]:
        return [*self.setup.base_argv, *spacemod.to_argv(self.setup.space, params, self.flags.is_switch)]

    def __call__(self, trial: Any) -> float:
        s = self.setup
        params = {name: p.suggest(trial, name) for name, p in s.space.items()}
        argv = self.argv(params)
        cfg = self.flags.config(argv)
        # A retried trial (its worker died, or the search was interrupted) carries the original's folder.
        folder = trial.user_attrs.get("dir") or str(s.out / "trials" / f"{trial.number:04d}")
        retry_of = trial.user_attrs.get("trial") if trial.user_attrs.get("dir") else None
        for key, value in (("dir", folder), ("trial", retry_of if retry_of is not None else trial.number),
                           ("retry_of", retry_of), ("status", "running"), ("device", self.device.name),
                           ("worker", s.worker), ("host", self.host), ("pid", os.getpid()),
                           ("pid_of_trial", trial.number), ("argv", argv)):
            trial.set_user_attr(key, value)
        import optuna

        try:
            value = self._train(trial, cfg, Path(folder), retry_of)
        except optuna.TrialPruned:
            raise
        except TrialInterrupted:
            self.last_status = "interrupted"
            trial.set_user_attr("status", "interrupted")
            raise
        except Exception as exc:
            self.last_status = "error"
            why = (f"{type(exc).__name__}: {exc}".strip().splitlines() or ["error"])[0]
            print(f"xpnet search: trial {trial.number} failed: {why}", file=sys.stderr, flush=True)
            with contextlib.suppress(Exception):  # the trial may already be closed (failed by another worker)
                trial.set_user_attr("status", "error")
                trial.set_user_attr("error", why)
            raise
        return value

    def _train(self, trial: Any, cfg: RunConfig, folder: Path, retry_of: int | None) -> float:
        import optuna

        from xpnet.train.checkpoint import Checkpoint
        from xpnet.train.metrics import MetricsCSV

        def fresh() -> Trainer:
            net, data = build_net_and_data(cfg, self.device, dataset=self.dataset(cfg), with_test=False)
            return build_trainer(cfg, net, data)  # as `xpnet train` builds it: schedule, clipping and all

        trainer = fresh()
        path = folder / ckpt.FILENAME
        resumed = 0
        if retry_of is not None and path.is_file():
            try:
                trainer.load_state_dict(ckpt.load(path))
                resumed = trainer.epoch
            except (ckpt.CheckpointError, ValueError, KeyError, TypeError):  # unusable: start the trial over
                trainer = fresh()
        report = _Report(trial, first_new_epoch=resumed + 1)
        callbacks: list[Any] = [report, Checkpoint(path), MetricsCSV(folder / "metrics.csv")]
        if cfg.patience is not None:
            from xpnet.train.trainer import EarlyStopping

            callbacks.insert(0, EarlyStopping(cfg.patience))
        trainer.callbacks = callbacks
        folder.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        result = trainer.fit()
        seconds = time.perf_counter() - t0
        vals = [r["val_acc"] for r in result.history if r.get("val_acc") is not None]
        best = max(vals) if vals else 0.0
        trial.set_user_attr("seconds", round(trainer.seconds, 3))  # every epoch, those before a retry too
        trial.set_user_attr("best_epoch", 1 + vals.index(best) if vals else None)
        if result.status == "interrupted":
            raise TrialInterrupted(f"trial {trial.number} interrupted at epoch {trainer.epoch}",
                                   signal.Signals[result.signal] if result.signal else signal.SIGINT)
        status = "pruned" if report.pruned else result.status
        trial.set_user_attr("status", status)
        self.last_status = status
        if result.status == "diverged":
            trial.set_user_attr("reason", result.reason)
        # A finished trial needs no checkpoint: its curve is in the study, its config in its flags.
        path.unlink(missing_ok=True)
        self._say(trial, status, best, trainer.epoch, seconds)
        if report.pruned:
            raise optuna.TrialPruned(f"pruned after epoch {trainer.epoch}")
        return best

    def _say(self, trial: Any, status: str, best: float, epochs: int, seconds: float) -> None:
        if self.setup.quiet:
            return
        params = " ".join(f"{k}={spacemod.format_value(v) if not isinstance(v, float) else f'{v:.3g}'}"
                          for k, v in trial.params.items())
        print(f"xpnet search: trial {trial.number} [{self.setup.worker} {self.device.name}] {status}: "
              f"val {best:.4f} after {epochs} epochs, {seconds:.1f}s  {params}", file=sys.stderr, flush=True)
