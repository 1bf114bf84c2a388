"""Training: the Trainer loop, its callbacks (early stopping, best weights, checkpoints, CSV, plots,
progress), learning-rate schedules, gradient clipping, selection on validation data, and the run config
the CLI builds. Import from here; the submodules are implementation detail, except
``xpnet.train.signals`` (SIGINT/SIGTERM handling for any long loop, e.g. a search worker)."""

from xpnet.train import schedules
from xpnet.train.checkpoint import Checkpoint, CheckpointError
from xpnet.train.clipping import clip_grad_norm
from xpnet.train.config import ConfigError, RunConfig, build_data, build_net, build_optimizer, build_schedule
from xpnet.train.metrics import MetricsCSV
from xpnet.train.plots import LivePlot, Plot, curves_figure, plot_curves
from xpnet.train.progress import ConsoleProgress
from xpnet.train.selection import BestCheckpoint, Selection, select_and_test
from xpnet.train.trainer import Callback, EarlyStopping, FitResult, StopAfterSteps, Trainer

__all__ = [
    "BestCheckpoint", "Callback", "Checkpoint", "CheckpointError", "ConfigError", "ConsoleProgress",
    "EarlyStopping", "FitResult", "LivePlot", "MetricsCSV", "Plot", "RunConfig", "Selection", "StopAfterSteps",
    "Trainer", "build_data", "build_net", "build_optimizer", "build_schedule", "clip_grad_norm", "curves_figure",
    "plot_curves", "schedules", "select_and_test",
]
