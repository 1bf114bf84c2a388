"""A run, described as plain data: what to train, on what, for how long.

The CLI turns flags into a :class:`RunConfig`; checkpoints store it as JSON so a
resumed run rebuilds the same net, optimizer and data. The builders here are the
one place that maps the config's names onto the book's classes.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from xpnet import backend

MODELS = ("two-layer", "mlp", "convnet", "deep-convnet")
#: The data sets known by name; --dataset also takes an image folder or an .npz (recorded absolute).
DATASETS = ("mnist", "fashion-mnist", "cifar10")
ACTIVATIONS = ("relu", "sigmoid", "tanh")
OPTIMIZERS = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam")
SCHEDULES = ("constant", "step", "cosine")
DEFAULT_LR_GAMMA = 0.1

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
    test_split: float = 0.2
    image_size: int | None = None
    channels: int | None = None
    strict_images: bool = False
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
    schedule: str = "constant"
    warmup_epochs: int = 0
    lr_steps: tuple[int, ...] | None = None
    lr_gamma: float | None = None
    augment: str | None = None
    clip_norm: float | None = None

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
        self._validate_dataset()
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
        self._validate_schedule()
        if self.clip_norm is not None and not (math.isfinite(self.clip_norm) and self.clip_norm > 0):
            raise ConfigError(f"--clip-norm must be a positive number, got {self.clip_norm!r}")
        if self.augment is not None:
            self.augment = str(self.augment_spec())
        return self

    @property
    def dataset_is_path(self) -> bool:
        """True when --dataset is a folder or .npz rather than one of :data:`DATASETS`."""
        return self.dataset not in DATASETS

    def _validate_dataset(self) -> None:
        """Names must be known; a path is only checked for its form here (a saved model must load without it)."""
        if not isinstance(self.dataset, str) or not self.dataset.strip():
            raise ConfigError(f"--dataset must be {', '.join(DATASETS)}, an image folder or an .npz, got "
                              f"{self.dataset!r}")
        if not (isinstance(self.test_split, float | int) and 0.0 < self.test_split < 1.0):
            raise ConfigError(f"--test-split must be between 0 and 1 (exclusive), got {self.test_split!r}")
        if self.image_size is not None and not (isinstance(self.image_size, int) and 1 <= self.image_size <= 4096):
            raise ConfigError(f"--image-size must be a side in pixels from 1 to 4096, got {self.image_size!r}")
        if self.channels not in (None, 1, 3):
            raise ConfigError(f"--channels must be 1 (grey) or 3 (colour), got {self.channels!r}")
        folder = self.dataset_is_path and not self.dataset.lower().endswith(".npz")
        if not folder:
            for flag, used in (("--image-size", self.image_size is not None), ("--channels", self.channels is not None),
                               ("--strict-images", self.strict_images)):
                if used:
                    raise ConfigError(f"{flag} applies to an image folder (--dataset DIR), not to {self.dataset}")

    def _validate_schedule(self) -> None:
        _choice("--schedule", self.schedule, SCHEDULES)
        if not isinstance(self.warmup_epochs, int) or self.warmup_epochs < 0:
            raise ConfigError(f"--warmup-epochs must be an integer >= 0, got {self.warmup_epochs!r}")
        if self.warmup_epochs >= self.epochs:
            raise ConfigError(f"--warmup-epochs {self.warmup_epochs} must be less than --epochs {self.epochs}")
        if self.schedule != "step":
            for flag, value in (("--lr-steps", self.lr_steps), ("--lr-gamma", self.lr_gamma)):
                if value is not None:
                    raise ConfigError(f"{flag} applies to --schedule step only (got --schedule {self.schedule})")
            return
        steps = self.lr_steps
        if not steps:
            raise ConfigError("--schedule step needs --lr-steps E1[,E2...]: the epochs after which the lr is "
                              "multiplied by --lr-gamma")
        if any(not isinstance(e, int) or e < 1 for e in steps) or \
                any(b <= a for a, b in zip(steps, steps[1:], strict=False)):
            raise ConfigError(f"--lr-steps must be increasing positive epoch numbers, got {_csv(steps)}")
        if steps[-1] >= self.epochs:
            raise ConfigError(f"--lr-steps {_csv(steps)}: every step must come before --epochs {self.epochs} "
                              "(one at or after the last epoch never applies)")
        if self.lr_gamma is not None and not (math.isfinite(self.lr_gamma) and self.lr_gamma > 0):
            raise ConfigError(f"--lr-gamma must be a positive number, got {self.lr_gamma!r}")

    def augment_spec(self) -> Any:
        """--augment as an :class:`xpnet.data.Augment` (None when off); ConfigError when malformed."""
        if self.augment is None:
            return None
        from xpnet.data import Augment

        try:
            return Augment.parse(str(self.augment))
        except ValueError as exc:
            raise ConfigError(f"--augment: {exc}") from None

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
        d["lr_steps"] = list(self.lr_steps) if self.lr_steps is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        """The inverse of to_dict; unknown keys (from a newer xpnet) are an error, not silently dropped."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"unknown config keys {unknown}")
        d = dict(d)
        for key in ("hidden", "lr_steps"):
            if d.get(key) is not None:
                d[key] = tuple(int(h) for h in d[key])
        return cls(**d)

    def hyper_parameters(self) -> dict[str, Any]:
        """The resolved settings (defaults filled in) for summaries and logs."""
        d = self.to_dict()
        d["hidden"] = list(self.hidden_sizes)
        d["init"] = self.init_name
        d["lr"] = self.resolved_lr()
        if self.schedule == "step" and self.lr_gamma is None:
            d["lr_gamma"] = DEFAULT_LR_GAMMA
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

def net_input(cfg: RunConfig, sample_shape: tuple[int, ...]) -> tuple[int, ...]:
    """The input shape of ``cfg.model`` for samples of ``sample_shape``: (D,) for MLPs (images flattened),
    (C, H, W) for conv nets (grey (H, W) images get one channel; square vectors are taken as grey images)."""
    shape = tuple(int(s) for s in sample_shape)
    if cfg.model in ("two-layer", "mlp"):
        return (math.prod(shape),)
    if len(shape) == 3:
        return shape
    if len(shape) == 2:
        return (1, *shape)
    side = math.isqrt(shape[0]) if len(shape) == 1 else 0
    if side * side == shape[0] and side > 0:
        return (1, side, side)
    raise ConfigError(f"--model {cfg.model} needs images, but {cfg.dataset} holds vectors of shape {shape}; "
                      f"use --model mlp or give (N, C, H, W) arrays")


def build_net(cfg: RunConfig, dev: backend.Device, input_shape: tuple[int, ...] = (1, 28, 28),
              num_classes: int = 10) -> Any:
    """The book's net for ``cfg.model`` on ``dev`` for samples of ``input_shape`` (the data's: see
    :func:`net_input`) and ``num_classes`` outputs, weights drawn from ``cfg.seed``."""
    from xpnet import nets

    common: dict[str, Any] = {"device": dev, "seed": cfg.seed, "dtype": cfg.dtype}
    hidden = cfg.hidden_sizes
    shape = net_input(cfg, input_shape)
    if cfg.model == "two-layer":
        return nets.TwoLayerNet(shape[0], hidden[0], num_classes, weight_init_std=cfg.weight_init_std(), **common)
    if cfg.model == "mlp":
        return nets.MultiLayerNet(shape[0], list(hidden), num_classes, activation=cfg.activation,
                                  weight_init_std=cfg.weight_init_std(),
                                  weight_decay_lambda=cfg.weight_decay, use_dropout=cfg.dropout > 0,
                                  dropout_ratio=cfg.dropout if cfg.dropout > 0 else 0.5,
                                  use_batchnorm=cfg.batchnorm, **common)
    if cfg.model == "convnet":
        return nets.SimpleConvNet(input_dim=shape, hidden_size=hidden[0], output_size=num_classes,
                                  weight_init_std=cfg.weight_init_std(),
                                  weight_decay_lambda=cfg.weight_decay, **common)
    return nets.DeepConvNet(input_dim=shape, hidden_size=hidden[0], output_size=num_classes,
                            weight_decay_lambda=cfg.weight_decay, **common)


def build_optimizer(cfg: RunConfig) -> Any:
    """The optimizer; on the host its fused update starts compiling now, in the background, while the data
    loads (xpnet.accel.prepare; NumPy's update runs, with the same bits, until it is ready)."""
    from xpnet import accel, optim

    opt = optim.create(cfg.optimizer, lr=cfg.lr)
    accel.prepare(opt)
    return opt


def build_schedule(cfg: RunConfig, steps_per_epoch: int) -> Any:
    """The learning-rate schedule of ``cfg`` (None for a constant lr without warm-up: nothing to do per step)."""
    if cfg.schedule == "constant" and cfg.warmup_epochs == 0:
        return None
    from xpnet.train import schedules

    gamma = cfg.lr_gamma if cfg.lr_gamma is not None else DEFAULT_LR_GAMMA
    return schedules.create(cfg.schedule, cfg.resolved_lr(), steps_per_epoch=steps_per_epoch, epochs=cfg.epochs,
                            warmup_epochs=cfg.warmup_epochs, steps=cfg.lr_steps, gamma=gamma)


@dataclass
class Data:
    """The loaders of one run plus what the summary says about the data.

    ``evals`` are measured every epoch: train and val, plus test only when there is no
    validation set (then the last epoch is the model); ``test`` is the test loader either way.
    """

    train: Any
    evals: dict[str, Any]
    info: dict[str, Any]
    test: Any = None


def load_data(cfg: RunConfig) -> Any:
    """The dataset (host arrays); raises xpnet.data.DataError for missing or bad files."""
    from xpnet import data

    return data.open_dataset(cfg.dataset, data_dir=cfg.data_dir, image_size=cfg.image_size, channels=cfg.channels,
                             test_split=cfg.test_split, strict_images=cfg.strict_images)


def build_net_and_data(cfg: RunConfig, dev: backend.Device, dataset: Any = None,
                       with_test: bool = True) -> tuple[Any, Data]:
    """The data first, then the net that fits it (input shape and class count), then its loaders."""
    ds = dataset if dataset is not None else load_data(cfg)
    net = build_net(cfg, dev, tuple(ds.x_train.shape[1:]), ds.num_classes)
    return net, build_data(cfg, dev, tuple(net.input_shape), dataset=ds, with_test=with_test)


def build_data(cfg: RunConfig, dev: backend.Device, input_shape: tuple[int, ...],
               dataset: Any = None, with_test: bool = True) -> Data:
    """Split, limit and wrap the dataset in loaders that put batches on ``dev``.

    The validation set is carved out before --limit-train, so limiting the training
    set never changes which images are held out. ``with_test=False`` (a hyper-parameter
    search) builds no test loader and never touches the dataset's test arrays.
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
    common: dict[str, Any] = {"device": dev, "flatten": flatten, "dtype": cfg.dtype, "num_classes": ds.num_classes}
    try:
        train = data.DataLoader(x, t, cfg.batch_size, shuffle=True, seed=cfg.seed, augment=cfg.augment_spec(),
                                **common)
    except ValueError as exc:
        raise ConfigError(f"--augment {cfg.augment}: {exc}") from None

    def evaluation(xe: Any, te: Any) -> Any:
        return data.DataLoader(xe, te, min(cfg.eval_batch_size, len(xe)), shuffle=False, **common)

    # Train accuracy over all of a big set costs a third of an epoch on a CPU; --train-eval-size trims it.
    n_eval = len(x) if cfg.train_eval_size is None else min(cfg.train_eval_size, len(x))
    evals = {"train": evaluation(x[:n_eval], t[:n_eval])}
    test = evaluation(ds.x_test, ds.t_test) if with_test else None
    if xv is not None:  # choose on validation, test once at the end (never per epoch)
        evals["val"] = evaluation(xv, tv)
    elif test is not None:
        evals["test"] = test
    info = {"name": ds.name, "source": str(ds.source), "is_sample": bool(ds.is_sample),
            "n_train": int(len(x)), "n_train_eval": int(n_eval),
            "n_val": int(len(xv)) if xv is not None else 0,
            "n_test": int(len(ds.x_test)) if with_test else 0, "kind": ds.kind,
            "sample_shape": [int(s) for s in ds.x_train.shape[1:]], "classes": list(ds.classes),
            "decode_s": round(float(ds.decode_s), 3), "cache_hit": bool(ds.cache_hit)}
    return Data(train, evals, info, test)


def build_trainer(cfg: RunConfig, net: Any, data: Data, *, optimizer: Any = None, callbacks: Sequence[Any] = (),
                  config: dict[str, Any] | None = None, dist: Any = None) -> Any:
    """The Trainer of ``cfg``: its optimizer, epochs, learning-rate schedule and gradient clipping.

    The one place a RunConfig becomes a training loop: `xpnet train`, every search trial and
    the search's ``--final`` run call it, so none of them can train differently from the others
    (a trial once ignored --schedule and --clip-norm that its command applied). ``dist``: one rank of a
    data-parallel run (:class:`xpnet.dist.parallel.DataParallel`).
    """
    from xpnet.train.trainer import Trainer

    return Trainer(net, optimizer if optimizer is not None else build_optimizer(cfg), data.train,
                   epochs=cfg.epochs, evals=data.evals, callbacks=callbacks,
                   config=config if config is not None else {"run": cfg.to_dict(), "data": data.info},
                   schedule=build_schedule(cfg, len(data.train)), clip_norm=cfg.clip_norm, dist=dist)


#: Units a DURATION flag (``--checkpoint-every 10m``) may end in, in seconds; none means seconds.
DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """Seconds in ``90s``, ``10m``, ``1.5h``, ``250ms`` or a plain number of seconds; ValueError otherwise."""
    s = text.strip().lower()
    number = s.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = s[len(number):] or "s"
    try:
        value = float(number) * DURATION_UNITS[unit]
    except (ValueError, KeyError):
        raise ValueError(f"expected a duration like 90s, 10m or 1h, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"expected a duration >= 0 like 90s, 10m or 1h, got {text!r}")
    return value
