"""A run, described as plain data: what to train, on what, for how long.

The CLI turns flags into a :class:`RunConfig`; checkpoints store it as JSON so a
resumed run rebuilds the same net, optimizer and data. The builders here are the
one place that maps the config's names onto the book's classes.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from xpnet import backend

MODELS = ("two-layer", "mlp", "convnet", "deep-convnet")
DATASETS = ("mnist", "fashion-mnist")
ACTIVATIONS = ("relu", "sigmoid", "tanh")
OPTIMIZERS = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam")

#: Hidden sizes when --hidden is not given: the book's for the conv nets, a measured one for the MLP.
DEFAULT_HIDDEN = {"two-layer": (100,), "mlp": (256, 128), "convnet": (100,), "deep-convnet": (50,)}
#: The book's weight_init_std names for the two named schemes.
INIT_NAMES = {"he": "relu", "xavier": "sigmoid"}

#: Fields a resumed run may change; everything else must match the checkpoint. A lower lr is
#: what one wants after a divergence; the rest only decide when to stop or where the data is.
RESUMABLE = ("epochs", "lr", "patience", "data_dir", "eval_batch_size", "train_eval_size")


class ConfigError(ValueError):
    """The run's settings do not fit together (the message names the flags)."""


@dataclass
class RunConfig:
    """Everything that decides a run's result (device and output folder excluded)."""

    dataset: str = "mnist"
    data_dir: str | None = None
    model: str = "mlp"
    hidden: tuple[int, ...] | None = None
    activation: str = "relu"
    init: str | None = None
    batchnorm: bool = False
    dropout: float = 0.0
    weight_decay: float = 0.0
    optimizer: str = "adam"
    lr: float | None = None
    epochs: int = 10
    batch_size: int = 100
    val_split: float = 0.0
    limit_train: int | None = None
    seed: int = 0
    dtype: str = "float32"
    patience: int | None = None
    eval_batch_size: int = 1000
    train_eval_size: int | None = None

    # --- derived values -------------------------------------------------------------------
    @property
    def hidden_sizes(self) -> tuple[int, ...]:
        return tuple(self.hidden) if self.hidden is not None else DEFAULT_HIDDEN[self.model]

    @property
    def init_name(self) -> str:
        """--init as given, or the model's default (He for ReLU MLPs, Xavier otherwise, 0.01 for the rest)."""
        if self.init is not None:
            return self.init
        if self.model == "mlp":
            return "he" if self.activation == "relu" else "xavier"
        return "0.01"

    def weight_init_std(self) -> float | str:
        """--init in the book's weight_init_std spelling: 'relu', 'sigmoid' or a float."""
        name = self.init_name
        return INIT_NAMES[name] if name in INIT_NAMES else float(name)

    # --- checks -----------------------------------------------------------------------------
    def validate(self) -> RunConfig:
        """Raise ConfigError on the first setting that cannot work; return self."""
        _choice("--dataset", self.dataset, DATASETS)
        _choice("--model", self.model, MODELS)
        _choice("--activation", self.activation, ACTIVATIONS)
        _choice("--optimizer", self.optimizer, OPTIMIZERS)
        _choice("--dtype", self.dtype, backend.DTYPES)
        for name, value in (("--epochs", self.epochs), ("--batch-size", self.batch_size),
                            ("--eval-batch-size", self.eval_batch_size)):
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if self.limit_train is not None and self.limit_train < 1:
            raise ConfigError(f"--limit-train must be a positive integer, got {self.limit_train!r}")
        if self.train_eval_size is not None and self.train_eval_size < 1:
            raise ConfigError(f"--train-eval-size must be a positive integer, got {self.train_eval_size!r}")
        if self.patience is not None and self.patience < 1:
            raise ConfigError(f"--patience must be a positive integer, got {self.patience!r}")
        if self.lr is not None and not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"--lr must be a positive number, got {self.lr!r}")
        if not 0.0 <= self.val_split < 1.0:
            raise ConfigError(f"--val-split must be in [0, 1), got {self.val_split!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"--dropout must be in [0, 1), got {self.dropout!r}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ConfigError(f"--weight-decay must be a number >= 0, got {self.weight_decay!r}")
        if self.patience is not None and self.val_split == 0:
            raise ConfigError("--patience watches validation accuracy: add --val-split (e.g. 0.1)")
        hidden = self.hidden_sizes
        if not hidden or any(not isinstance(h, int) or h < 1 for h in hidden):
            raise ConfigError(f"--hidden must be positive integers, got {self.hidden!r}")
        self._validate_init()
        self._validate_model_flags(hidden)
        return self

    def _validate_init(self) -> None:
        name = self.init_name
        if name in INIT_NAMES:
            return
        try:
            std = float(name)
        except ValueError:
            raise ConfigError(f"--init must be he, xavier or a positive std like 0.01, got {name!r}"
                              ) from None
        if not (math.isfinite(std) and std > 0):
            raise ConfigError(f"--init std must be a positive number, got {name!r}")

    def _validate_model_flags(self, hidden: tuple[int, ...]) -> None:
        m = self.model
        if m != "mlp":
            if len(hidden) != 1:
                raise ConfigError(f"--model {m} has one hidden layer: give --hidden N, not {_csv(hidden)}")
            only_mlp = [("--activation", self.activation != "relu"), ("--batchnorm", self.batchnorm),
                        ("--dropout", self.dropout > 0)]
            for flag, used in only_mlp:
                if used:
                    raise ConfigError(f"{flag} applies to --model mlp only (got --model {m})")
        if m == "two-layer" and self.weight_decay > 0:
            raise ConfigError("--weight-decay needs --model mlp, convnet or deep-convnet (the book's "
                              "TwoLayerNet has none)")
        if m == "deep-convnet" and self.init is not None:
            raise ConfigError("--model deep-convnet always uses He initialisation: drop --init")

    # --- (de)serialisation ------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["hidden"] = list(self.hidden) if self.hidden is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        """The inverse of to_dict; unknown keys (from a newer xpnet) are an error, not silently dropped."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"unknown config keys {unknown}")
        d = dict(d)
        if d.get("hidden") is not None:
            d["hidden"] = tuple(int(h) for h in d["hidden"])
        return cls(**d)

    def hyper_parameters(self) -> dict[str, Any]:
        """The resolved settings (defaults filled in) for summaries and logs."""
        d = self.to_dict()
        d["hidden"] = list(self.hidden_sizes)
        d["init"] = self.init_name
        d["lr"] = self.resolved_lr()
        return d

    def resolved_lr(self) -> float:
        """--lr, or the optimizer's own default."""
        if self.lr is not None:
            return float(self.lr)
        from xpnet import optim

        return float(optim.create(self.optimizer).lr)


def _choice(flag: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{flag} must be one of {', '.join(choices)}, got {value!r}")


def _csv(values: tuple[int, ...]) -> str:
    return ",".join(str(v) for v in values)


# --- builders --------------------------------------------------------------------------------

def build_net(cfg: RunConfig, dev: backend.Device) -> Any:
    """The book's net for ``cfg.model`` on ``dev``, weights drawn from ``cfg.seed``."""
    from xpnet import nets

    common: dict[str, Any] = {"device": dev, "seed": cfg.seed, "dtype": cfg.dtype}
    hidden = cfg.hidden_sizes
    if cfg.model == "two-layer":
        return nets.TwoLayerNet(784, hidden[0], 10, weight_init_std=cfg.weight_init_std(), **common)
    if cfg.model == "mlp":
        return nets.MultiLayerNet(784, list(hidden), 10, activation=cfg.activation,
                                  weight_init_std=cfg.weight_init_std(),
                                  weight_decay_lambda=cfg.weight_decay, use_dropout=cfg.dropout > 0,
                                  dropout_ratio=cfg.dropout if cfg.dropout > 0 else 0.5,
                                  use_batchnorm=cfg.batchnorm, **common)
    if cfg.model == "convnet":
        return nets.SimpleConvNet(input_dim=(1, 28, 28), hidden_size=hidden[0], output_size=10,
                                  weight_init_std=cfg.weight_init_std(),
                                  weight_decay_lambda=cfg.weight_decay, **common)
    return nets.DeepConvNet(input_dim=(1, 28, 28), hidden_size=hidden[0], output_size=10,
                            weight_decay_lambda=cfg.weight_decay, **common)


def build_optimizer(cfg: RunConfig) -> Any:
    from xpnet import optim

    return optim.create(cfg.optimizer, lr=cfg.lr)


@dataclass
class Data:
    """The loaders of one run plus what the summary says about the data."""

    train: Any
    evals: dict[str, Any]
    info: dict[str, Any]


def load_data(cfg: RunConfig) -> Any:
    """The dataset (host arrays); raises xpnet.data.DataError for missing or bad files."""
    from xpnet import data

    return data.load_dataset(cfg.dataset, data_dir=cfg.data_dir)


def build_data(cfg: RunConfig, dev: backend.Device, input_shape: tuple[int, ...],
               dataset: Any = None) -> Data:
    """Split, limit and wrap the dataset in loaders that put batches on ``dev``.

    The validation set is carved out before --limit-train, so limiting the training
    set never changes which images are held out.
    """
    from xpnet import data

    ds = dataset if dataset is not None else load_data(cfg)
    x, t = ds.x_train, ds.t_train
    xv = tv = None
    if cfg.val_split > 0:
        (x, t), (xv, tv) = data.validation_split(x, t, ratio=cfg.val_split, seed=cfg.seed)
    if cfg.limit_train is not None:
        if cfg.limit_train > len(x):
            held = f" ({len(xv)} held out by --val-split)" if xv is not None else ""
            raise ConfigError(f"--limit-train {cfg.limit_train} is larger than the {len(x)} training "
                              f"images of {ds.name}{held}")
        x, t = x[:cfg.limit_train], t[:cfg.limit_train]
    if cfg.batch_size > len(x):
        raise ConfigError(f"--batch-size {cfg.batch_size} is larger than the {len(x)} training images")
    flatten = len(input_shape) == 1
    common: dict[str, Any] = {"device": dev, "flatten": flatten, "dtype": cfg.dtype}
    train = data.DataLoader(x, t, cfg.batch_size, shuffle=True, seed=cfg.seed, **common)

    def evaluation(xe: Any, te: Any) -> Any:
        return data.DataLoader(xe, te, min(cfg.eval_batch_size, len(xe)), shuffle=False, **common)

    # Train accuracy over all of a big set costs a third of an epoch on a CPU; --train-eval-size trims it.
    n_eval = len(x) if cfg.train_eval_size is None else min(cfg.train_eval_size, len(x))
    evals = {"train": evaluation(x[:n_eval], t[:n_eval])}
    if xv is not None:
        evals["val"] = evaluation(xv, tv)
    evals["test"] = evaluation(ds.x_test, ds.t_test)
    info = {"name": ds.name, "source": str(ds.source), "is_sample": bool(ds.is_sample),
            "n_train": int(len(x)), "n_train_eval": int(n_eval),
            "n_val": int(len(xv)) if xv is not None else 0,
            "n_test": int(len(ds.x_test))}
    return Data(train, evals, info)
