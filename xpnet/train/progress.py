"""Console progress: a tqdm bar per epoch on a terminal or in a notebook, one plain line per epoch otherwise.

Logs and CI capture stderr to files, where a bar's carriage returns are noise; so
the terminal bar is only drawn when the stream is a TTY. A Jupyter kernel's streams are
no TTY, and its output is a web page where carriage returns pile up as text: there the
bar is tqdm's notebook widget and the epoch lines go to stdout (stderr shows as red).
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from xpnet.train import jupyter
from xpnet.train.trainer import Callback, FitResult, Record, Trainer

MODES = ("auto", "bar", "notebook", "lines")


def format_record(rec: Record, epochs: int) -> str:
    """One line per epoch: loss, accuracies, time and throughput."""
    parts = [f"epoch {rec['epoch']}/{epochs}", f"loss {rec['train_loss']:.4f}"]
    for key, label in (("train_acc", "train"), ("val_acc", "val"), ("test_acc", "test")):
        if rec.get(key) is not None:
            parts.append(f"{label} {rec[key]:.4f}")
    parts.append(f"{rec['train_seconds'] + rec['eval_seconds']:.1f}s")
    if rec.get("samples_per_s"):
        parts.append(f"{rec['samples_per_s']:,.0f} samples/s")
    return "  ".join(parts)


class ConsoleProgress(Callback):
    """Progress on ``stream``: ``mode`` is "auto", "bar" (tqdm on the stream), "notebook" or "lines".

    "auto" picks the notebook bar in a Jupyter kernel that has ipywidgets (else lines there), a bar
    when the stream is a TTY, and lines otherwise. ``stream`` defaults to stderr, or stdout in a notebook.
    """

    def __init__(self, stream: TextIO | None = None, mode: str = "auto") -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be {', '.join(MODES[:-1])} or {MODES[-1]}, got {mode!r}")
        # Only in a notebook (or when asked): tqdm.notebook imports ipywidgets, which a script never needs.
        notebook = mode == "notebook" or (mode == "auto" and jupyter.in_jupyter())
        notebook_bar = jupyter.notebook_bar_class() if notebook else None
        if mode == "notebook" and notebook_bar is None:
            raise ValueError("mode 'notebook' needs ipywidgets: pip install ipywidgets")
        if notebook:
            mode = "notebook" if notebook_bar is not None else "lines"
            stream = stream if stream is not None else sys.stdout
        self.stream = stream if stream is not None else sys.stderr
        if mode == "auto":
            isatty = getattr(self.stream, "isatty", None)
            mode = "bar" if isatty is not None and isatty() else "lines"
        self.mode = mode
        self._bar_class = notebook_bar if mode == "notebook" else None
        self._bar: Any = None
        self._t0 = 0.0
        self._samples0 = 0
        self._loss_sum = 0.0
        self._loss_n = 0

    def on_epoch_start(self, trainer: Trainer) -> None:
        self._t0, self._samples0 = time.perf_counter(), trainer.epoch_samples
        start = trainer.global_step - trainer.step_in_epoch
        done = trainer.step_losses[start:]
        self._loss_sum, self._loss_n = float(sum(done)), len(done)
        if self.mode == "lines":
            return
        if self._bar_class is None:
            from tqdm import tqdm

            self._bar_class = tqdm
        self._bar = self._bar_class(total=trainer.steps_per_epoch, initial=trainer.step_in_epoch,
                                    desc=f"epoch {trainer.epoch + 1}/{trainer.epochs}", unit="step",
                                    file=self.stream, leave=False, dynamic_ncols=True)

    def on_log(self, trainer: Trainer, losses: list[float]) -> None:
        self._loss_sum += sum(losses)
        self._loss_n += len(losses)
        if self._bar is None:
            return
        self._bar.n = trainer.step_in_epoch
        elapsed = time.perf_counter() - self._t0
        rate = (trainer.epoch_samples - self._samples0) / elapsed if elapsed > 0 else 0.0
        loss = self._loss_sum / self._loss_n if self._loss_n else float("nan")
        self._bar.set_postfix_str(f"loss {loss:.4f}, {rate:,.0f} samples/s", refresh=False)
        self._bar.refresh()

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def on_epoch_end(self, trainer: Trainer, record: Record) -> None:
        self._close()
        print(format_record(record, trainer.epochs), file=self.stream, flush=True)

    def on_fit_end(self, trainer: Trainer, result: FitResult) -> None:
        self._close()
