"""The training loop: mini-batches → one forward+backward → optimizer step, epoch after epoch.

Unlike the book's loop it runs one forward pass per step (the loss of that pass,
``net.last_loss``, is the step's loss), keeps the per-step losses on the device
and reads them back every ``log_every`` steps in one transfer, and evaluates
accuracy in batches on the device. Two optional pieces sit in the step itself: a
learning-rate ``schedule`` (sets ``optimizer.lr`` before each step) and ``clip_norm``
(scales the gradients to a global L2 norm before the update). Everything else (early
stopping, best weights, checkpoints, CSV, plots, progress) hangs off :class:`Callback` hooks.
With ``dist`` (a :class:`xpnet.dist.parallel.DataParallel`) the run is one rank of a data-parallel
run: its few hooks here sum the gradients, the evaluation counts and the stop votes over the ranks.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from xpnet import backend
from xpnet.train import checkpoint as ckpt
from xpnet.train.clipping import clip_grad_norm
from xpnet.train.signals import GracefulStop, signal_name

Record = dict[str, Any]

#: How a run ended, as fit() and summary.json say it. fit() itself never returns "failed": that is
#: the caller's word for an exception out of fit() (a full disk, a bug), which it records.
STATUSES = ("completed", "early-stopped", "interrupted", "diverged", "failed")


class Callback:
    """Hooks the Trainer calls; subclass and override what you need (all are no-ops here).

    ``on_log`` gets the host values of the losses read back since the last call, every
    ``log_every`` steps and at each epoch end: the cheap place for progress output.
    ``on_step_end`` runs every step, so it must not touch device values.
    """

    def on_fit_start(self, trainer: Trainer) -> None: ...

    def on_epoch_start(self, trainer: Trainer) -> None: ...

    def on_step_end(self, trainer: Trainer) -> None: ...

    def on_log(self, trainer: Trainer, losses: list[float]) -> None: ...

    def on_epoch_end(self, trainer: Trainer, record: Record) -> None: ...

    def on_fit_end(self, trainer: Trainer, result: FitResult) -> None: ...


@dataclass
class FitResult:
    """What fit() did: its status, why, and the history of epoch records."""

    status: str
    reason: str
    epochs: int
    steps: int
    seconds: float
    history: list[Record] = field(default_factory=list)
    signal: str | None = None  # "SIGTERM" or "SIGINT" when a signal interrupted the run

    @property
    def last(self) -> Record | None:
        return self.history[-1] if self.history else None

    @property
    def ok(self) -> bool:
        return self.status in ("completed", "early-stopped")


def _labels_validated(net: Any, loader: Any) -> bool:
    """A DataLoader checked its labels against [0, num_classes) when it was built, and the net has at
    least that many outputs: the loss need not check them again on every step."""
    from xpnet.data.loader import DataLoader
    from xpnet.layers import Affine

    affines = [layer for layer in getattr(net, "layers", []) if isinstance(layer, Affine)]
    return (isinstance(loader, DataLoader) and bool(affines) and hasattr(net, "last_layer")
            and loader.num_classes <= affines[-1].W.shape[-1])


class Trainer:
    """Train ``net`` with ``optimizer`` on batches from ``train_loader`` for ``epochs`` epochs.

    ``evals`` maps a name ("train", "val", "test") to an unshuffled loader; after
    each epoch the record gets ``<name>_acc`` for each (leave "test" out to test once,
    at the end, on the weights chosen by validation: see :mod:`xpnet.train.selection`).
    ``schedule`` (step -> lr, e.g. :func:`xpnet.train.schedules.create`) sets the
    optimizer's learning rate before every step; ``clip_norm`` clips the gradients'
    global L2 norm. ``config`` is stored in checkpoints so the run can be rebuilt on resume.
    ``dist`` makes it one rank of a data-parallel run (see :mod:`xpnet.dist`).
    """

    def __init__(self, net: Any, optimizer: Any, train_loader: Any, *, epochs: int,
                 evals: Mapping[str, Iterable[Any]] | None = None, callbacks: Sequence[Any] = (),
                 log_every: int = 50, config: Mapping[str, Any] | None = None,
                 schedule: Any = None, clip_norm: float | None = None, dist: Any = None) -> None:
        if epochs < 0:
            raise ValueError(f"epochs must be >= 0, got {epochs}")
        if log_every < 1:
            raise ValueError(f"log_every must be >= 1, got {log_every}")
        if clip_norm is not None and not (math.isfinite(clip_norm) and clip_norm > 0):
            raise ValueError(f"clip_norm must be a positive number, got {clip_norm!r}")
        self.net = net
        self.optimizer = optimizer
        self.loader = train_loader
        self.epochs = int(epochs)
        self.evals = dict(evals or {})
        self.callbacks = list(callbacks)
        self.log_every = int(log_every)
        self.config = dict(config or {})
        self.schedule = schedule
        self.clip_norm = clip_norm
        self.device: backend.Device = net.device
        self.history: list[Record] = []
        self.step_losses: list[float] = []  # host copies, one per step, filled by _flush()
        self.epoch = 0  # completed epochs
        self.global_step = 0
        self.step_in_epoch = 0
        self.epoch_samples = 0
        self.epoch_seconds = 0.0  # training time of the unfinished epoch (kept across resume)
        self.seconds = 0.0  # training + evaluation time of the finished epochs
        self.stop_status: str | None = None
        self.stop_reason = ""
        self.stop_signal: str | None = None  # the signal's name when one asked the run to stop
        self._pending: list[Any] = []  # device 0-d losses not read back yet
        if _labels_validated(net, train_loader):  # no per-step label check: it would sync the device
            net.last_layer.check_labels = False
        self.dist = dist
        if dist is not None:
            dist.attach(self)

    # --- control -----------------------------------------------------------------------------
    @property
    def steps_per_epoch(self) -> int:
        return len(self.loader)

    @property
    def writes(self) -> bool:
        """Whether this process writes the run's files: always, except on ranks other than 0."""
        return self.dist is None or self.dist.is_root

    def request_stop(self, status: str = "completed", reason: str = "") -> None:
        """Stop after the current step (mid-epoch) or epoch; the first request wins, except divergence.

        ``status`` is one of :data:`STATUSES` ("early_stopped" is read as "early-stopped").
        """
        status = status.replace("_", "-")
        if status not in STATUSES or status == "failed":
            raise ValueError(f"unknown stop status {status!r}; expected one of {STATUSES[:-1]}")
        if self.stop_status is None or status == "diverged":
            self.stop_status, self.stop_reason = status, reason or status

    # --- the loop -------------------------------------------------------------------------------
    def fit(self) -> FitResult:
        """Train until ``epochs`` epochs are done or a stop is requested; SIGINT and SIGTERM stop cleanly.

        The first Ctrl-C or SIGTERM (in the main thread) finishes the current step, then the
        callbacks see status "interrupted" (the checkpoint callback saves); a second one
        raises :class:`xpnet.train.signals.Interrupted` (a KeyboardInterrupt) at once. Under
        ``dist`` the first one is a vote, and every rank stops after the step at which the ranks
        next read their losses (every ``log_every`` steps).
        """
        self.stop_status, self.stop_reason, self.stop_signal = None, "", None
        started = time.perf_counter()
        with GracefulStop(self._on_signal), self.device.context():  # CuPy works on the current GPU: the net's
            self._call("on_fit_start")
            while self.epoch < self.epochs and self.stop_status is None:
                record = self._run_epoch()
                if record is not None:
                    self.history.append(record)
                    self._call("on_epoch_end", record)
            result = self.result(time.perf_counter() - started)
            self._call("on_fit_end", result)
        # A callback may have found the run diverged at the very end (e.g. the checkpoint check).
        if self.stop_status == "diverged" and result.status != "diverged":
            result.status, result.reason = "diverged", self.stop_reason
        return result

    def result(self, seconds: float, status: str | None = None, reason: str = "") -> FitResult:
        """The run so far as a FitResult: the stop requested (or "completed"), or ``status`` if given."""
        status = status or self.stop_status or "completed"
        return FitResult(status, reason or self.stop_reason or status, self.epoch, self.global_step, seconds,
                         list(self.history), self.stop_signal if status == "interrupted" else None)

    def _on_signal(self, signum: int) -> None:
        if self.dist is not None:  # every rank stops after the same step: the vote goes round with the gradients
            self.dist.vote_stop(signum)
            return
        if self.stop_status is None:
            self.stop_signal = signal_name(signum)
        self.request_stop("interrupted", f"interrupted by {signal_name(signum)}")

    def _run_epoch(self) -> Record | None:
        """Train the rest of the current epoch; evaluate and return its record if it finished."""
        n_steps = self.steps_per_epoch
        if self.step_in_epoch == 0:
            self.epoch_samples, self.epoch_seconds = 0, 0.0
        self._call("on_epoch_start")
        t0 = time.perf_counter()
        for x, t in self.loader:
            if self.schedule is not None:
                self.optimizer.lr = self.schedule(self.global_step)
            grads, loss, n = self.net.gradient(x, t), self.net.last_loss, int(x.shape[0])
            if self.dist is not None:  # the step's one collective: the mean gradient of the global batch
                mine, n = self.loader.batch_sizes
                grads, loss = self.dist.allreduce(grads, loss, mine / n)
            if self.clip_norm is not None:
                clip_grad_norm(grads, self.clip_norm)
            self.optimizer.update(self.net.params, grads)
            self._pending.append(loss)
            self.global_step += 1
            self.step_in_epoch += 1
            self.epoch_samples += n
            if len(self._pending) >= self.log_every:
                self._flush()
            self._call("on_step_end")
            # Never break after an epoch's last batch: the loader must run out to roll over its epoch.
            if self.stop_status is not None and self.step_in_epoch < n_steps:
                break
        self._flush()
        self.device.synchronize()
        self.epoch_seconds += time.perf_counter() - t0
        if self.stop_status == "diverged":
            return None
        if self.step_in_epoch < n_steps:
            return None  # stopped mid-epoch; the checkpoint keeps the loader's position
        if self.dist is not None:
            self.dist.sync_batchnorm(self.net, self.global_step)
        bad = self._nonfinite_state()
        if bad is not None:
            self.request_stop("diverged", f"{bad} became NaN or inf by step {self.global_step}")
            return None
        t1 = time.perf_counter()
        accs = {f"{name}_acc": self.evaluate(loader) for name, loader in self.evals.items()}
        eval_seconds = time.perf_counter() - t1
        start = self.global_step - self.step_in_epoch
        losses = self.step_losses[start:self.global_step]
        self.epoch += 1
        self.seconds += self.epoch_seconds + eval_seconds
        record: Record = {
            "epoch": self.epoch,
            "step": self.global_step,
            "train_loss": math.fsum(losses) / len(losses) if losses else float("nan"),
            **{k: None for k in ("train_acc", "val_acc", "test_acc")},
            **accs,
            "train_seconds": self.epoch_seconds,
            "eval_seconds": eval_seconds,
            "samples": self.epoch_samples,
            "samples_per_s": self.epoch_samples / self.epoch_seconds if self.epoch_seconds > 0 else None,
            "elapsed_seconds": self.seconds,
            "lr": float(self.optimizer.lr),  # of the epoch's last step (a schedule changes it)
        }
        self.step_in_epoch, self.epoch_samples, self.epoch_seconds = 0, 0, 0.0
        return record

    def evaluate(self, loader: Iterable[Any]) -> float:
        """Accuracy of the net over every batch of ``loader`` (one host read per batch); under ``dist``
        over every rank's part of them."""
        correct = total = 0
        for x, t in loader:
            n = int(x.shape[0])
            if n:  # a rank's part of a short batch may be empty
                correct += round(float(self.net.accuracy(x, t, batch_size=n)) * n)
                total += n
        if self.dist is not None:
            correct, total = self.dist.sum_counts(correct, total)
        return correct / total if total else float("nan")

    def _flush(self) -> None:
        """Read the pending step losses back in one transfer; a NaN/inf one stops the run."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        xp = self.device.xp
        values = [float(v) for v in backend.to_host(xp.stack(pending)).tolist()]
        first = len(self.step_losses)
        self.step_losses.extend(values)
        for i, v in enumerate(values):
            if not math.isfinite(v):
                self.request_stop("diverged", f"the loss became {v} at step {first + i + 1}")
                break
        if self.dist is not None and self.stop_status is None:
            self.stop_signal = self.dist.read_votes()  # the same on every rank, at the same step
            if self.stop_signal is not None:
                self.request_stop("interrupted", f"interrupted by {self.stop_signal}")
        self._call("on_log", values)

    def _nonfinite_state(self) -> str | None:
        """The first net state entry (weights, BatchNorm statistics) holding NaN or inf, if any.

        Finite losses do not prove finite weights: the epoch's last update, or a BatchNorm
        running variance that overflowed, would otherwise reach the evaluation and the checkpoint.
        """
        for name, v in self.net.state_dict().items():
            a = np.asarray(v)
            if a.dtype.kind in "fc" and not np.isfinite(a).all():
                return f"net state {name}"
        return None

    def _call(self, hook: str, *args: Any) -> None:
        for cb in self.callbacks:
            fn = getattr(cb, hook, None)
            if fn is not None:
                fn(self, *args)

    # --- state ----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """Everything a resumed run needs, as host arrays under the checkpoint's key layout."""
        self._flush()
        out: dict[str, np.ndarray] = {"format": np.asarray(ckpt.FORMAT)}
        for prefix, part in (("net", self.net), ("optim", self.optimizer), ("loader", self.loader)):
            for k, v in part.state_dict().items():
                out[f"{prefix}/{k}"] = np.asarray(backend.to_host(v) if hasattr(v, "__dlpack__") else v)
        out["trainer/step_losses"] = np.asarray(self.step_losses, dtype=np.float64)
        out["trainer/history"] = ckpt.json_array(self.history)
        out["trainer/config"] = ckpt.json_array(self.config)
        out["trainer/state"] = ckpt.json_array({
            "epoch": self.epoch, "epochs": self.epochs, "global_step": self.global_step,
            "step_in_epoch": self.step_in_epoch, "epoch_samples": self.epoch_samples,
            "epoch_seconds": self.epoch_seconds, "seconds": self.seconds,
        })
        if self.schedule is not None:
            out["trainer/schedule"] = ckpt.json_array(self.schedule.state_dict())
        if self.dist is not None:
            self.dist.average_running_stats(out, self.global_step)
        return out

    def load_state_dict(self, arrays: Mapping[str, np.ndarray]) -> None:
        """Restore from :meth:`state_dict` output (or a loaded checkpoint); epochs stays as set."""
        state = ckpt.from_json_array(arrays["trainer/state"])
        losses = np.asarray(arrays.get("trainer/step_losses", np.zeros(0)), dtype=np.float64)
        if len(losses) != int(state["global_step"]):
            raise ckpt.CheckpointError(f"checkpoint is inconsistent: {len(losses)} step losses for "
                                       f"{state['global_step']} steps")
        loader_state = ckpt.scalars(ckpt.section(arrays, "loader"))
        self._check_schedule(arrays)
        self.net.load_state_dict(ckpt.section(arrays, "net"))
        self.optimizer.load_state_dict(ckpt.section(arrays, "optim"))
        self.loader.load_state_dict(loader_state)
        self.history = list(ckpt.from_json_array(arrays["trainer/history"]))
        self.step_losses = [float(v) for v in losses]
        self.epoch = int(state["epoch"])
        self.global_step = int(state["global_step"])
        self.step_in_epoch = int(state["step_in_epoch"])
        self.epoch_samples = int(state["epoch_samples"])
        self.epoch_seconds = float(state["epoch_seconds"])
        self.seconds = float(state["seconds"])
        self._pending = []
        if self.dist is not None:
            self.dist.after_load(self)

    def _check_schedule(self, arrays: Mapping[str, np.ndarray]) -> None:
        """Refuse a checkpoint trained under another schedule; the base lr and the epochs may change."""
        saved = ckpt.from_json_array(arrays["trainer/schedule"]) if "trainer/schedule" in arrays else None
        mine = self.schedule.state_dict() if self.schedule is not None else None

        def shape(d: dict[str, Any] | None) -> dict[str, Any]:  # no schedule = constant, no warm-up
            d = d or {"name": "constant", "warmup_epochs": 0}
            return {k: v for k, v in d.items() if k not in ("lr", "epochs", "steps_per_epoch")}

        if shape(saved) != shape(mine):
            raise ckpt.CheckpointError(f"the checkpoint was trained with schedule {shape(saved)}, "
                                       f"not {shape(mine)}")


class EarlyStopping(Callback):
    """Stop when ``monitor`` (validation accuracy by default) has not improved for ``patience`` epochs.

    Its state is derived from the trainer's history, so a resumed run carries on counting.
    """

    def __init__(self, patience: int, monitor: str = "val_acc", min_delta: float = 0.0) -> None:
        if patience < 1:
            raise ValueError(f"patience must be >= 1, got {patience}")
        self.patience, self.monitor, self.min_delta = patience, monitor, min_delta
        self.best: float | None = None
        self.best_epoch = 0

    def _check(self, trainer: Trainer) -> None:
        self.best, self.best_epoch = None, 0
        for rec in trainer.history:
            v = rec.get(self.monitor)
            if v is not None and (self.best is None or v > self.best + self.min_delta):
                self.best, self.best_epoch = v, rec["epoch"]
        if self.best is not None and trainer.epoch - self.best_epoch >= self.patience:
            trainer.request_stop("early-stopped", f"{self.monitor} has not improved for {self.patience} "
                                 f"epochs (best {self.best:.4f} at epoch {self.best_epoch})")

    def on_fit_start(self, trainer: Trainer) -> None:
        self._check(trainer)

    def on_epoch_end(self, trainer: Trainer, record: Record) -> None:
        self._check(trainer)


class StopAfterSteps(Callback):
    """Stop the run after ``max_steps`` steps in total (mid-epoch if need be): it ends "completed"."""

    def __init__(self, max_steps: int) -> None:
        self.max_steps = max_steps

    def on_step_end(self, trainer: Trainer) -> None:
        if trainer.global_step >= self.max_steps:
            trainer.request_stop("completed", f"reached {self.max_steps} steps")
