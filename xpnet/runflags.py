"""The train flags and their one translation into a RunConfig, below both `xpnet train` and the search.

`xpnet train` parses its command line with :func:`build_parser` and turns it into a
:class:`RunConfig` with :func:`config_of`; the search's trials are train command lines
(the user's fixed flags plus the flags a trial drew) read by the same parser
(:class:`TrainFlags`), and best.json's command is one (:func:`command`). So a trial is
configured exactly as its command is, and a new train flag reaches the search unchanged.
What is built from the RunConfig (net, optimizer, schedule, clipping, Trainer) is
:func:`xpnet.train.config.build_trainer` and friends, shared the same way.
"""

from __future__ import annotations

import argparse
import math
import shlex
from collections.abc import Sequence
from typing import Any

from xpnet import backend
from xpnet.train import config as cfgmod
from xpnet.train.config import ConfigError, RunConfig

PROG = "xpnet-train"
#: The command a person runs to reproduce a trial.
TRAIN_COMMAND = "xpnet train"
#: Time-based checkpoints unless --checkpoint-every says otherwise: a crash loses at most this much.
DEFAULT_CHECKPOINT_EVERY = "10m"
#: Flags that map one to one onto RunConfig fields (argparse dest == field name).
CONFIG_FLAGS = ("dataset", "data_dir", "model", "hidden", "activation", "init", "batchnorm", "dropout",
                "weight_decay", "optimizer", "lr", "epochs", "batch_size", "val_split", "limit_train",
                "seed", "dtype", "patience", "train_eval_size", "schedule", "warmup_epochs", "lr_steps",
                "lr_gamma", "clip_norm", "augment", "test_split", "image_size", "channels", "strict_images")

_DEFAULTS = RunConfig()


# --- argument types: each error message says what is wanted ------------------------------------

def _positive_int(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        v = 0
    if v < 1 or str(v) != s.strip().lstrip("+"):
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {s!r}")
    return v


def _nonneg_int(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        v = -1
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {s!r}")
    return v


def _to_float(s: str) -> float:
    """The number in ``s``, or NaN when there is none (every caller then rejects it with its own message)."""
    try:
        return float(s)
    except ValueError:
        return math.nan


def _float_in(lo: float, hi: float | None, what: str) -> Any:
    def parse(s: str) -> float:
        v = _to_float(s)
        if not math.isfinite(v) or v < lo or (hi is not None and v >= hi):
            raise argparse.ArgumentTypeError(f"must be {what}, got {s!r}")
        return v

    return parse


def _positive_float(s: str) -> float:
    v = _to_float(s)
    if not (math.isfinite(v) and v > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {s!r}")
    return v


def _duration(s: str) -> float | None:
    """Seconds, or None for "off"/0 (epoch ends only)."""
    if s.strip().lower() == "off":
        return None
    try:
        v = cfgmod.parse_duration(s)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{exc} (or off)") from None
    return v or None


def _hidden(s: str) -> tuple[int, ...]:
    parts = [p.strip() for p in s.split(",")]
    try:
        sizes = tuple(int(p) for p in parts)
    except ValueError:
        sizes = ()
    if not sizes or any(h < 1 for h in sizes):
        raise argparse.ArgumentTypeError(f"must be comma-separated positive integers like 100,100, got {s!r}")
    return sizes


def _epochs_list(s: str) -> tuple[int, ...]:
    parts = [p.strip() for p in s.split(",")]
    try:
        epochs = tuple(int(p) for p in parts)
    except ValueError:
        epochs = ()
    if not epochs or any(e < 1 for e in epochs):
        raise argparse.ArgumentTypeError(f"must be comma-separated epoch numbers like 10,15, got {s!r}")
    return epochs


def _augment(s: str) -> str | None:
    from xpnet.data import Augment

    if s.strip().lower() == "none":  # a search may draw "no augmentation" beside the others
        return None
    try:
        return str(Augment.parse(s))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _dataset(s: str) -> str:
    """A known name, or an image folder / .npz made absolute (so eval and predict find it from anywhere)."""
    from xpnet.data import DataError
    from xpnet.data.catalog import canonical

    try:
        return canonical(s)
    except DataError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix(f"--dataset {s.strip()}: ")) from None


def _fraction(s: str) -> float:
    v = _to_float(s)
    if not (math.isfinite(v) and 0.0 < v < 1.0):
        raise argparse.ArgumentTypeError(f"must be a fraction between 0 and 1 (exclusive), got {s!r}")
    return v


def _channels(s: str) -> int:
    if s.strip() not in ("1", "3"):
        raise argparse.ArgumentTypeError(f"must be 1 (grey) or 3 (colour), got {s!r}")
    return int(s)


def _init(s: str) -> str:
    name = s.strip().lower()
    if name in cfgmod.INIT_NAMES:
        return name
    std = _to_float(name)
    if not (math.isfinite(std) and std > 0):
        raise argparse.ArgumentTypeError(f"must be he, xavier or a positive std like 0.01, got {s!r}")
    return repr(std)


def build_parser() -> argparse.ArgumentParser:
    """The flags; config flags default to None so a resumed run can tell which ones were given."""
    d = _DEFAULTS
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Train one of the book's nets on MNIST, Fashion-MNIST, CIFAR-10, a folder of pictures or "
                    "an .npz of arrays, on the CPU (NumPy) "
                    "or an NVIDIA GPU (CuPy). Writes metrics.csv, summary.json, curves.png and "
                    "checkpoint.npz into --out.",
        epilog="exit status: 0 trained, 2 bad input, 3 diverged (lower --lr), 130 interrupted by Ctrl-C, "
               "143 by SIGTERM (continue with --resume OUT/checkpoint.npz), 1 failed (e.g. disk full)")
    g = p.add_argument_group("data")
    g.add_argument("--dataset", type=_dataset, metavar="NAME|DIR|FILE.npz",
                   help=f"{', '.join(cfgmod.DATASETS)}; a folder of pictures (DIR/<class>/* or DIR/train|test/"
                        f"<class>/*) or an .npz with x_train, y_train[, x_test, y_test, class_names] "
                        f"(docs/data.md; default {d.dataset})")
    g.add_argument("--data-dir", metavar="DIR",
                   help="folder with the IDX files or CIFAR-10's archive (default: $XPNET_DATA_DIR or xpnet's "
                        "own lookup)")
    g.add_argument("--test-split", type=_fraction, metavar="F",
                   help=f"a folder or .npz without a test set: hold out this fraction of every class as the "
                        f"test set, by a fixed seed (default {d.test_split})")
    g.add_argument("--image-size", type=_positive_int, metavar="N",
                   help="a folder: resize every picture to NxN (default: the most common size)")
    g.add_argument("--channels", type=_channels, metavar="1|3",
                   help="a folder: grey or colour (default: 3 when any picture is in colour, else 1)")
    g.add_argument("--strict-images", action="store_true", default=None,
                   help="a folder: refuse files that are not pictures (default: skip them with one warning)")
    g.add_argument("--val-split", type=_float_in(0.0, 1.0, "in [0, 1)"), metavar="R",
                   help="hold out this fraction of the training set for validation; epochs then report "
                        "train and val only and the test set is evaluated once, at the end, on the weights "
                        "chosen by val (default 0: test after every epoch)")
    g.add_argument("--limit-train", type=_positive_int, metavar="N",
                   help="train on the first N training images only (quick runs)")
    g.add_argument("--train-eval-size", type=_positive_int, metavar="N",
                   help="measure train accuracy on the first N training images only (default: all, "
                        "as the book does; that costs a third of an epoch on a CPU)")
    g = p.add_argument_group("model")
    g.add_argument("--model", choices=cfgmod.MODELS, help=f"default {d.model}")
    g.add_argument("--hidden", type=_hidden, metavar="N[,N...]",
                   help="hidden layer sizes (default: mlp 256,128; two-layer 100; convnet 100; "
                        "deep-convnet 50)")
    g.add_argument("--activation", choices=cfgmod.ACTIVATIONS, help="mlp only; default relu")
    g.add_argument("--init", type=_init, metavar="he|xavier|STD",
                   help="initial weight scale (default: he for relu, xavier otherwise; 0.01 for "
                        "two-layer and convnet)")
    g.add_argument("--batchnorm", action="store_true", default=None, help="mlp only: batch normalisation")
    g.add_argument("--dropout", type=_float_in(0.0, 1.0, "in [0, 1)"), metavar="R",
                   help="mlp only: dropout ratio (default 0: off)")
    g.add_argument("--weight-decay", type=_float_in(0.0, None, "a number >= 0"), metavar="L",
                   help="L2 weight decay lambda (default 0)")
    g.add_argument("--dtype", choices=backend.DTYPES, help=f"default {d.dtype}")
    g = p.add_argument_group("training")
    g.add_argument("--optimizer", choices=cfgmod.OPTIMIZERS, help=f"default {d.optimizer}")
    g.add_argument("--lr", type=_positive_float, help="learning rate (default: the optimizer's own)")
    g.add_argument("--epochs", type=_positive_int, metavar="N",
                   help=f"epochs in all, counting those a resumed run has done (default {d.epochs})")
    g.add_argument("--batch-size", type=_positive_int, metavar="N", help=f"default {d.batch_size}")
    g.add_argument("--schedule", choices=cfgmod.SCHEDULES,
                   help="learning rate per step: constant, step (x --lr-gamma after each of --lr-steps) or "
                        "cosine (down to 0 at the last step); default constant")
    g.add_argument("--warmup-epochs", type=_nonneg_int, metavar="N",
                   help="raise the lr linearly from 0 over the first N epochs (default 0)")
    g.add_argument("--lr-steps", type=_epochs_list, metavar="E1[,E2...]",
                   help="--schedule step: the epochs after which the lr is multiplied by --lr-gamma")
    g.add_argument("--lr-gamma", type=_positive_float, metavar="G",
                   help=f"--schedule step: the factor (default {cfgmod.DEFAULT_LR_GAMMA})")
    g.add_argument("--clip-norm", type=_positive_float, metavar="X",
                   help="scale the gradients so their global L2 norm is at most X (default: off)")
    g.add_argument("--augment", type=_augment, metavar="shift[:K]|crop:P[,flip]|none",
                   help="training batches only, on the device: random shifts by up to K pixels (default 2), "
                        "or crop:P, CIFAR's pad-P random crops (the same moves), and/or horizontal flips "
                        "(for Fashion-MNIST and photos, not digits); none: off (the default)")
    g.add_argument("--patience", type=_positive_int, metavar="N",
                   help="stop when validation accuracy has not improved for N epochs and end with the best "
                        "epoch's weights, kept in best.npz (needs --val-split)")
    g.add_argument("--seed", type=_nonneg_int, help=f"weights, shuffling, dropout and augmentation (default {d.seed})")
    g = p.add_argument_group("run")
    g.add_argument("--device", default="auto", metavar="auto|cpu|cuda|cuda:N",
                   help="auto picks CUDA when usable; cuda without a GPU warns and uses the CPU "
                        "(default auto)")
    g.add_argument("--out", metavar="DIR", help="output folder (default runs/<timestamp>; "
                   "with --resume, the checkpoint's folder)")
    g.add_argument("--resume", metavar="PATH", help="continue from a checkpoint.npz (or its folder)")
    g.add_argument("--checkpoint-every", type=_duration, default=_duration(DEFAULT_CHECKPOINT_EVERY),
                   metavar="DURATION", help="also save the checkpoint mid-epoch once this much time has passed "
                   f"since the last save, e.g. 90s, 10m, 1h, or off (default {DEFAULT_CHECKPOINT_EVERY}); "
                   "checkpoints are always saved at epoch ends and on Ctrl-C/SIGTERM")
    g.add_argument("--quiet", action="store_true",
                   help="print only errors, a CUDA fallback warning and the final summary line")
    return p




def given_config(args: argparse.Namespace) -> dict[str, Any]:
    """The RunConfig fields the parsed flags set (flags left out are None and keep RunConfig's defaults)."""
    return {f: getattr(args, f) for f in CONFIG_FLAGS if getattr(args, f, None) is not None}


def config_of(args: argparse.Namespace) -> RunConfig:
    """The RunConfig that parsed train flags describe, validated (ConfigError if its settings do not fit)."""
    return RunConfig(**given_config(args)).validate()


class FlagError(ValueError):
    """A train flag the trainer's parser refuses (the message is argparse's, one line)."""


class TrainFlags:
    """The trainer's parser, raising FlagError instead of printing usage and exiting."""

    def __init__(self) -> None:
        parser = build_parser()
        parser.allow_abbrev = False  # --hid must not silently mean --hidden in a space file

        def error(message: str) -> Any:
            raise FlagError(message)

        parser.error = error  # type: ignore[method-assign]
        self.parser = parser

    def parse(self, argv: Sequence[str]) -> argparse.Namespace:
        return self.parser.parse_args(list(argv))

    def is_switch(self, name: str) -> bool:
        """Whether ``--name`` takes no value (--batchnorm); FlagError if the trainer has no such flag."""
        try:
            self.parse([f"--{name}"])
        except FlagError as exc:
            if "expected one argument" in str(exc):
                return False
            raise FlagError(f"--{name} is not an xpnet train flag") from None
        return True

    def config(self, argv: Sequence[str]) -> RunConfig:
        """The RunConfig a train command line describes (ConfigError if its settings do not fit)."""
        return config_of(self.parse(argv))

    def given(self, argv: Sequence[str]) -> list[str]:
        """The flag names (without --) that ``argv`` sets."""
        return [a[2:].split("=", 1)[0] for a in argv if a.startswith("--")]


def command(argv: Sequence[str]) -> str:
    """The shell command that runs ``xpnet train`` with ``argv``."""
    return " ".join([TRAIN_COMMAND, *(shlex.quote(a) for a in argv)])


__all__ = ["ConfigError", "FlagError", "TRAIN_COMMAND", "TrainFlags", "build_parser", "command", "config_of"]
