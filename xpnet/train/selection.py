"""Model selection on validation data, and the one test evaluation at the end (the book, ch. 6.5).

While training, only train and validation accuracy are measured. :class:`BestCheckpoint`
keeps the state of the best-validation epoch in ``best.npz`` (atomically, beside
``checkpoint.npz``). When the run ends, :func:`select_and_test` puts the selected
weights into the net (the best epoch's when there is a BestCheckpoint, else the last
epoch's) and evaluates the test set once, on those weights.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xpnet.train import checkpoint as ckpt
from xpnet.train.trainer import Callback, Record, Trainer

BEST_FILENAME = "best.npz"


class BestCheckpoint(Callback):
    """Callback: save the trainer's state whenever ``monitor`` beats every earlier epoch (ties keep the first).

    The file is a full checkpoint (so ``checkpoint.load_net`` and ``--resume`` read it); a host
    copy of the net's state stays in memory for :meth:`restore`. A resumed run picks up the best
    epoch from the file it finds at ``path``.
    """

    def __init__(self, path: str | os.PathLike[str], monitor: str = "val_acc") -> None:
        self.path, self.monitor = Path(path), monitor
        self.best: float | None = None
        self.best_epoch: int | None = None
        self._net_state: dict[str, np.ndarray] | None = None

    def on_fit_start(self, trainer: Trainer) -> None:
        if self.best_epoch is not None or not self.path.exists():
            return
        try:  # a resumed run: the best epoch so far is the one in the file
            epoch = int(ckpt.from_json_array(ckpt.load(self.path)["trainer/state"])["epoch"])
        except (ckpt.CheckpointError, KeyError, ValueError):
            return  # unreadable: the next improvement replaces it
        seen = {r["epoch"]: r.get(self.monitor) for r in trainer.history if r.get(self.monitor) is not None}
        if epoch in seen:
            self.best, self.best_epoch = float(seen[epoch]), epoch
        elif epoch > trainer.epoch and seen:
            # Written after the checkpoint we resume from (the process died in between): those weights
            # stand until an epoch beats everything recorded so far (the re-run of that epoch does, on a CPU).
            self.best, self.best_epoch = max(seen.values()), epoch

    def on_epoch_end(self, trainer: Trainer, record: Record) -> None:
        value = record.get(self.monitor)
        if value is None or (self.best is not None and not value > self.best):
            return
        state = trainer.state_dict()
        try:
            if trainer.writes:
                ckpt.save(self.path, state)
            else:  # another rank of a data-parallel run writes it
                ckpt.check_finite(state)
        except ckpt.CheckpointError as exc:
            trainer.request_stop("diverged", str(exc))
            return
        self.best, self.best_epoch = float(value), int(record["epoch"])
        self._net_state = ckpt.section(state, "net")

    def restore(self, trainer: Trainer) -> int | None:
        """Load the best epoch's weights (and BatchNorm statistics) into ``trainer.net``; return that epoch."""
        if self.best_epoch is None:
            return None
        if self._net_state is None:
            self._net_state = ckpt.section(ckpt.load(self.path), "net")
        trainer.net.load_state_dict(self._net_state)
        return self.best_epoch


@dataclass
class Selection:
    """Which epoch's weights the run ends with, how they were chosen, and their accuracies."""

    selected_on: str | None  # "val", or None: no validation set, the last epoch
    selected_epoch: int | None
    val_acc: float | None
    test_acc: float | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def select_and_test(trainer: Trainer, test: Any = None, best: BestCheckpoint | None = None) -> Selection:
    """Put the selected weights into the net and evaluate ``test`` (a loader) once on them.

    With validation records, the selected epoch is the best-validation one when ``best``
    is given (its weights are restored), else the last. Without validation, it is the
    last epoch, and its per-epoch test accuracy is reused when ``test`` is not given.
    """
    history = trainer.history
    if not history:
        return Selection(None, None, None, None)
    has_val = any(r.get("val_acc") is not None for r in history)
    epoch = history[-1]["epoch"]
    if has_val and best is not None:
        restored = best.restore(trainer)
        epoch = restored if restored is not None else epoch
    rec = next((r for r in history if r["epoch"] == epoch), {})
    test_acc = trainer.evaluate(test) if test is not None else rec.get("test_acc")
    return Selection("val" if has_val else None, epoch, rec.get("val_acc"), test_acc)
