"""Metrics on disk: metrics.csv (a row per epoch) and summary.json (the whole run).

Both are rewritten whole and atomically, so a crash leaves the previous version.
"""

from __future__ import annotations

import csv
import io
import math
import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

from xpnet.train.files import write_json, write_text
from xpnet.train.trainer import Callback, FitResult, Record, Trainer

#: metrics.csv columns, in order; an empty cell means "not measured" (e.g. no validation set).
COLUMNS = ("epoch", "step", "train_loss", "train_acc", "val_acc", "test_acc", "train_seconds",
           "eval_seconds", "samples", "samples_per_s", "elapsed_seconds", "lr")


def history_csv(history: list[Record]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for rec in history:
        w.writerow([_cell(rec.get(c)) for c in COLUMNS])
    return buf.getvalue()


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.6g}" if abs(v) >= 1e4 or 0 < abs(v) < 1e-3 else f"{v:.6f}"
    return str(v)


def write_history_csv(path: str | os.PathLike[str], history: list[Record]) -> Path:
    return write_text(path, history_csv(history))


class MetricsCSV(Callback):
    """Callback: rewrite metrics.csv after every epoch (and once more when the run ends)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def on_epoch_end(self, trainer: Trainer, record: Record) -> None:
        write_history_csv(self.path, trainer.history)

    def on_fit_end(self, trainer: Trainer, result: FitResult) -> None:
        write_history_csv(self.path, trainer.history)


def package_versions() -> dict[str, str]:
    """Versions of Python and of the packages that decide a run's numbers."""
    out = {"python": platform.python_version(), "xpnet": _version("xpnet")}
    for name in ("numpy", "array-api-compat", "cupy-cuda12x", "cupy", "matplotlib", "tqdm",
                 "array-api-strict"):
        v = _version(name)
        if v != "not installed":
            out[name] = v
    out["platform"] = f"{platform.system()} {platform.machine()}"
    return out


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        if dist == "xpnet":
            from xpnet._version import __version__

            return __version__
        return "not installed"


def final_results(result: FitResult, selection: Any = None) -> dict[str, Any]:
    """The numbers a summary reports: the selected epoch's accuracies, totals and throughput.

    ``selection`` (an :class:`xpnet.train.selection.Selection`) names the epoch whose weights the
    run ends with and their test accuracy; without one, that is the last epoch.
    """
    hist = result.history
    end = last = hist[-1] if hist else {}
    if selection is not None and selection.selected_epoch is not None:
        last = next((r for r in hist if r["epoch"] == selection.selected_epoch), last)
    train_s = sum(r["train_seconds"] for r in hist)
    samples = sum(r["samples"] for r in hist)
    best = max((r for r in hist if r.get("val_acc") is not None), key=lambda r: r["val_acc"], default=None)
    return {
        "status": result.status,
        "reason": result.reason,
        "epochs": result.epochs,
        "steps": result.steps,
        "train_loss": last.get("train_loss"),
        "train_acc": last.get("train_acc"),
        "val_acc": last.get("val_acc"),
        "test_acc": selection.test_acc if selection is not None else last.get("test_acc"),
        "selected_on": selection.selected_on if selection is not None else None,
        "selected_epoch": last.get("epoch"),
        "best_val_acc": best["val_acc"] if best else None,
        "best_epoch": best["epoch"] if best else None,
        "seconds": end.get("elapsed_seconds", 0.0),
        "train_seconds": train_s,
        "samples_per_s": samples / train_s if train_s > 0 else None,
    }


def write_summary(path: str | os.PathLike[str], summary: dict[str, Any]) -> Path:
    return write_json(path, summary)
