"""curves.png: the book's two pictures of a run, loss per step and accuracy per epoch.

Drawn with matplotlib's object API on an Agg canvas, so it never needs a display
and never changes the global pyplot backend of a program that imports xpnet. In a
notebook, :class:`LivePlot` (or ``Plot(live=True)``) shows the same picture under the
cell and redraws it in place after every epoch.
"""

from __future__ import annotations

import contextlib
import io
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from xpnet.train import jupyter
from xpnet.train.files import atomic_write
from xpnet.train.trainer import Callback, FitResult, Record, Trainer


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Moving average over ``window`` steps (shorter at the start, so it covers every step)."""
    if len(values) == 0 or window <= 1:
        return values.astype(np.float64)
    c = np.cumsum(np.insert(values.astype(np.float64), 0, 0.0))
    idx = np.arange(1, len(values) + 1)
    lo = np.maximum(idx - window, 0)
    return (c[idx] - c[lo]) / (idx - lo)


def _import_matplotlib() -> tuple[Any, Any, Any]:
    """The three matplotlib classes a plot needs (the import is the slow part of a first plot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    return FigureCanvasAgg, Figure, MaxNLocator


def _import_early() -> None:
    """:func:`_import_matplotlib` ahead of time; a failure is left for the plot itself to report."""
    with contextlib.suppress(Exception):  # plot_curves raises it again, in the main thread, with its message
        _import_matplotlib()


def curves_figure(history: list[Record], step_losses: list[float] | np.ndarray, title: str = "",
                  final_test: tuple[int, float] | None = None) -> Any:
    """The loss and accuracy curves of a run as a matplotlib Figure on an Agg canvas (no pyplot).

    ``final_test`` (epoch, accuracy) marks the one test evaluation of a run chosen on validation.
    """
    FigureCanvasAgg, Figure, MaxNLocator = _import_matplotlib()  # noqa: N806 (classes)

    fig = Figure(figsize=(11, 4.2), dpi=100)
    FigureCanvasAgg(fig)
    ax_loss, ax_acc = fig.subplots(1, 2)

    losses = np.asarray(step_losses, dtype=np.float64)
    steps = np.arange(1, len(losses) + 1)
    if len(losses):
        window = max(1, min(100, len(losses) // 20))
        ax_loss.plot(steps, losses, color="tab:blue", alpha=0.25, linewidth=0.6, label="per step")
        ax_loss.plot(steps, smooth(losses, window), color="tab:blue", linewidth=1.5,
                     label=f"moving average ({window} steps)")
    if history:
        # Each epoch's mean loss sits in the middle of the steps it averages.
        ends = [r["step"] for r in history]
        mids = [(a + b) / 2 for a, b in zip([0, *ends[:-1]], ends, strict=True)]
        ax_loss.plot(mids, [r["train_loss"] for r in history], "o-", color="tab:red", markersize=4,
                     label="epoch mean")
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("training loss")
    ax_loss.set_title("loss")
    if len(losses) and np.all(losses[np.isfinite(losses)] > 0) and np.isfinite(losses).any():
        ax_loss.set_yscale("log")
    ax_loss.grid(True, alpha=0.3)
    ax_loss.legend(loc="upper right", fontsize=8)

    epochs = [r["epoch"] for r in history]
    styles = (("train_acc", "train", "o-"), ("val_acc", "validation", "^-"), ("test_acc", "test", "s--"))
    for key, label, style in styles:
        pts = [(e, r[key]) for e, r in zip(epochs, history, strict=True) if r.get(key) is not None]
        if pts:
            xs, ys = zip(*pts, strict=True)
            ax_acc.plot(xs, ys, style, markersize=4, label=label)
    if final_test is not None:
        ax_acc.plot([final_test[0]], [final_test[1]], "*", color="black", markersize=10,
                    label=f"test, once (epoch {final_test[0]} weights)")
    ax_acc.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("accuracy")
    ax_acc.set_title("accuracy")
    ax_acc.grid(True, alpha=0.3)
    if history:
        ax_acc.legend(loc="lower right", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    # Fixed margins: tight_layout measured every label for a quarter of a second per picture.
    fig.subplots_adjust(left=0.065, right=0.985, bottom=0.12, top=0.84 if title else 0.9, wspace=0.2)
    return fig


def plot_curves(path: str | os.PathLike[str], history: list[Record], step_losses: list[float] | np.ndarray,
                title: str = "", final_test: tuple[int, float] | None = None) -> Path:
    """Write :func:`curves_figure` as a PNG (atomically)."""
    fig = curves_figure(history, step_losses, title, final_test)

    def write(f: Any) -> None:
        fig.savefig(f, format="png")

    return atomic_write(path, write)


def curves_png(history: list[Record], step_losses: list[float] | np.ndarray, title: str = "") -> bytes:
    """:func:`curves_figure` as PNG bytes, for a notebook to show."""
    buf = io.BytesIO()
    curves_figure(history, step_losses, title).savefig(buf, format="png")
    return buf.getvalue()


class LivePlot(Callback):
    """Callback: in a notebook, the run's loss and accuracy figure under the cell, redrawn in place.

    It is drawn after every epoch (about 0.1 s of matplotlib each) and once more at the end, so
    the last picture shows the whole run. Outside Jupyter it does nothing: a script writes
    curves.png with :class:`Plot` instead.
    """

    def __init__(self, title: str = "") -> None:
        self.title = title
        self.drawn = 0  # pictures shown so far
        self._image: jupyter.LiveImage | None = None

    def draw(self, trainer: Trainer) -> None:
        if self._image is None:
            return
        self._image.show(curves_png(trainer.history, trainer.step_losses, self.title))
        self.drawn += 1

    def on_fit_start(self, trainer: Trainer) -> None:
        # Decided per run: the same callback object then behaves alike in a kernel and in a script.
        self._image = jupyter.LiveImage() if jupyter.in_jupyter() else None

    def on_epoch_end(self, trainer: Trainer, record: Record) -> None:
        self.draw(trainer)

    def on_fit_end(self, trainer: Trainer, result: FitResult) -> None:
        self.draw(trainer)


class Plot(Callback):
    """Callback: draw curves.png when the run ends, and after an epoch at most every ``every`` seconds.

    A drawing costs about 0.1 s of matplotlib on the CI machine, and the training loop waits for it;
    so a run sees a fresh picture only every ``every`` seconds (``0``: after every epoch, ``None``: only
    at the end). The picture is the same either way: the last one always shows the whole run.
    ``live=True`` also shows it in a notebook, redrawn after every epoch (a :class:`LivePlot`).
    ``clock`` is for tests.
    """

    def __init__(self, path: str | os.PathLike[str], title: str = "", every: float | None = 60.0,
                 clock: Callable[[], float] = time.monotonic, live: bool = False) -> None:
        self.path, self.title, self.every, self.clock = Path(path), title, every, clock
        self.drawn = 0  # pictures drawn so far
        self.live = LivePlot(title) if live else None
        self._last = clock()

    def draw(self, trainer: Trainer) -> None:
        plot_curves(self.path, trainer.history, trainer.step_losses, self.title)
        self.drawn += 1
        self._last = self.clock()

    def on_fit_start(self, trainer: Trainer) -> None:
        self._last = self.clock()
        if self.live is not None:
            self.live.on_fit_start(trainer)
        # Importing matplotlib takes a third of a second; done now, in a thread, it overlaps the training
        # (whose NumPy calls release the GIL) instead of delaying the end of the run.
        threading.Thread(target=_import_early, name="xpnet-import-matplotlib", daemon=True).start()

    def on_epoch_end(self, trainer: Trainer, record: Record) -> None:
        if self.every is not None and self.clock() - self._last >= self.every:
            self.draw(trainer)
        if self.live is not None:
            self.live.on_epoch_end(trainer, record)

    def on_fit_end(self, trainer: Trainer, result: FitResult) -> None:
        self.draw(trainer)
        if self.live is not None:
            self.live.on_fit_end(trainer, result)
