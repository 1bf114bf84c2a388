"""Training: the Trainer loop, its callbacks (early stopping, checkpoints, CSV, plots, progress), and
the run config the CLI builds. Import from here; the submodules are implementation detail."""

from xpnet.train.checkpoint import Checkpoint, CheckpointError
from xpnet.train.config import ConfigError, RunConfig, build_data, build_net, build_optimizer
from xpnet.train.metrics import MetricsCSV
from xpnet.train.plots import Plot, plot_curves
from xpnet.train.progress import ConsoleProgress
from xpnet.train.trainer import Callback, EarlyStopping, FitResult, StopAfterSteps, Trainer

__all__ = [
    "Callback", "Checkpoint", "CheckpointError", "ConfigError", "ConsoleProgress", "EarlyStopping",
    "FitResult", "MetricsCSV", "Plot", "RunConfig", "StopAfterSteps", "Trainer", "build_data", "build_net",
    "build_optimizer", "plot_curves",
]
