"""xpnet-train: flags → RunConfig → Trainer, with every failure a one-line message.

Exit codes: 0 trained (also early-stopped), 2 bad input (flags, files named by
flags; nothing is written), 3 the loss diverged (the last good checkpoint is
kept), 130 interrupted by Ctrl-C and 143 by SIGTERM (a checkpoint is saved),
1 anything else (e.g. a full disk). summary.json's status says which.

Everything is checked before the first byte is written: the flags, the device,
the data, the --resume checkpoint and the --out folder.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as _dt
import logging
import math
import os
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

from xpnet import accel, backend
from xpnet.accel import tuning
from xpnet.dist.comm import MPIUnavailable, launched_rank
from xpnet.dist.launch import Launch
from xpnet.train import checkpoint as ckpt
from xpnet.train import config as cfgmod
from xpnet.train import signals
from xpnet.train.config import ConfigError, RunConfig

PROG = "xpnet-train"
EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_DIVERGED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130  # SIGTERM: 143
#: Time-based checkpoints unless --checkpoint-every says otherwise: a crash loses at most this much.
DEFAULT_CHECKPOINT_EVERY = "10m"
OUTPUTS = ("summary.json", "metrics.csv", "curves.png", ckpt.FILENAME, "best.npz")

_DEFAULTS = RunConfig()


class UsageError(Exception):
    """Bad input found after parsing (a file, a combination of flags): exit 2, one line."""


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


def _augment(s: str) -> str:
    from xpnet.data import Augment

    try:
        return str(Augment.parse(s))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


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
        description="Train one of the book's nets on MNIST or Fashion-MNIST, on the CPU (NumPy) "
                    "or an NVIDIA GPU (CuPy). Writes metrics.csv, summary.json, curves.png and "
                    "checkpoint.npz into --out.",
        epilog="exit status: 0 trained, 2 bad input, 3 diverged (lower --lr), 130 interrupted by Ctrl-C, "
               "143 by SIGTERM (continue with --resume OUT/checkpoint.npz), 1 failed (e.g. disk full)")
    g = p.add_argument_group("data")
    g.add_argument("--dataset", choices=cfgmod.DATASETS, help=f"default {d.dataset}")
    g.add_argument("--data-dir", metavar="DIR",
                   help="folder with the IDX files (default: $XPNET_DATA_DIR or xpnet's own lookup)")
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
    g.add_argument("--augment", type=_augment, metavar="shift[:K][,flip]",
                   help="training batches only, on the device: random shifts by up to K pixels (default 2) "
                        "and/or horizontal flips (for Fashion-MNIST, not digits)")
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


# --- messages --------------------------------------------------------------------------------

def _say(msg: str) -> None:
    print(f"{PROG}: {msg}", file=sys.stderr, flush=True)


class _Notices:
    """Show each distinct warning (from ``warnings`` or the ``xpnet`` logger) once, on one line.

    The data module both warns and logs the same message (e.g. when it falls back to
    the bundled sample), so the two share one memory of what was already said.
    """

    def __init__(self, quiet: bool) -> None:
        self.quiet, self.seen = quiet, set()

    def say(self, text: str, always: bool = False) -> None:
        text = text.strip().splitlines()[0] if text.strip() else "warning"
        if (self.quiet and not always) or text in self.seen:
            return
        self.seen.add(text)
        _say(f"warning: {text}")

    def showwarning(self, message: Any, category: type[Warning], filename: str, lineno: int,
                    file: Any = None, line: str | None = None) -> None:
        # A run on another device than asked for matters even with --quiet.
        self.say(str(message) or category.__name__, always=issubclass(category, backend.CudaFallbackWarning))

    def handler(self) -> logging.Handler:
        notices = self

        class _Handler(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                notices.say(record.getMessage())

        return _Handler(logging.WARNING)


@contextlib.contextmanager
def _notices(quiet: bool) -> Iterator[None]:
    """Route warnings and xpnet's log records to one-line messages for the duration of a run."""
    notices = _Notices(quiet)
    log = logging.getLogger("xpnet")
    handler, propagate = notices.handler(), log.propagate
    log.addHandler(handler)
    log.propagate = False  # no second copy through the root logger or logging's last resort
    try:
        with warnings.catch_warnings():  # restores the caller's warning display afterwards
            warnings.simplefilter("default")
            # NumPy's overflow/invalid-value warnings only precede a divergence, which the trainer
            # detects and explains (with a hint) itself.
            warnings.filterwarnings("ignore", r"(overflow|invalid value|divide by zero) encountered",
                                    RuntimeWarning)
            warnings.showwarning = notices.showwarning
            yield
    finally:
        log.removeHandler(handler)
        log.propagate = propagate


# --- the run ---------------------------------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``xpnet-train`` and ``scripts/train.py``; returns the exit status.

    Under ``mpiexec -n N`` (N > 1) every rank runs this: one data-parallel run (docs/distributed.md).
    """
    try:
        launch = Launch()
    except MPIUnavailable as exc:
        if launched_rank() == 0:
            _say(f"error: {exc}")
        return EXIT_USAGE
    with launch.quiet_others():  # rank 0 alone prints
        parser = build_parser()
        args = parser.parse_args(argv)
        args.argv = [PROG, *(sys.argv[1:] if argv is None else argv)]  # for the summary
        args.launch = launch
        if launch.parallel and not args.out and not args.resume:  # the clock names it: rank 0's name
            args.out = launch.same(str(_default_out()))
        try:
            # SIGTERM stops like Ctrl-C from here on (the trainer makes both graceful while it trains); as a
            # container's PID 1 the process would otherwise never see it.
            with signals.raise_on_signals(), _notices(args.quiet):
                return _main(parser, args)
        except KeyboardInterrupt as exc:  # before training started (e.g. while reading the data): nothing written
            signum = signals.signum_of(exc)
            _say(f"interrupted by {signals.signal_name(signum)}; nothing was written")
            launch.abort(signals.exit_status(signum))  # other ranks may be waiting for this one
            return signals.exit_status(signum)


def _usage(parser: argparse.ArgumentParser, msg: str) -> NoReturn:
    parser.error(msg)  # prints usage + "xpnet-train: error: msg", exits 2


def _main(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    launch, error, said = args.launch, None, False
    try:
        plan = _prepare(parser, args)
    except UsageError as exc:
        error = str(exc)
    except SystemExit as exc:  # parser.error: the usage and the message are out already
        if not launch.parallel:
            raise
        error, said = f"bad arguments (exit {exc.code})", True
    error = launch.agree(error)  # every rank goes on, or none: the first reason, once (rank 0)
    if error is not None:
        if not said:
            _say(f"error: {error}")
        return EXIT_USAGE
    return _run(plan, launch)


class _Plan:
    """Everything checked and built, nothing written yet."""

    cfg: RunConfig
    device: backend.Device
    net: Any
    optimizer: Any
    data: cfgmod.Data
    out: Path
    resume: Path | None
    resume_state: dict[str, Any] | None
    quiet: bool
    checkpoint_every: float | None
    device_request: str
    argv: list[str]


#: Flags that map one to one onto RunConfig fields (argparse dest == field name).
_CONFIG_FLAGS = ("dataset", "data_dir", "model", "hidden", "activation", "init", "batchnorm", "dropout",
                 "weight_decay", "optimizer", "lr", "epochs", "batch_size", "val_split", "limit_train",
                 "seed", "dtype", "patience", "train_eval_size", "schedule", "warmup_epochs", "lr_steps",
                 "lr_gamma", "clip_norm", "augment")


def _flag(field: str) -> str:
    return "--" + field.replace("_", "-")


def _prepare(parser: argparse.ArgumentParser, args: argparse.Namespace) -> _Plan:
    given = {f: getattr(args, f) for f in _CONFIG_FLAGS if getattr(args, f) is not None}
    plan = _Plan()
    plan.quiet, plan.device_request, plan.argv = bool(args.quiet), args.device, list(args.argv)
    plan.checkpoint_every = args.checkpoint_every
    plan.resume, plan.resume_state = None, None

    # 1. The config: from the flags, or from the checkpoint plus the flags a resume may change.
    if args.resume:
        plan.resume = Path(args.resume)
        try:
            plan.resume_state = ckpt.load(plan.resume)
            stored = ckpt.read_config(plan.resume_state)
            cfg = RunConfig.from_dict(stored["run"])
        except (ckpt.CheckpointError, ConfigError, KeyError, TypeError) as exc:
            raise UsageError(f"--resume: {exc}") from None
        if plan.resume.is_dir():
            plan.resume = plan.resume / ckpt.FILENAME
        for field, value in given.items():
            if field in cfgmod.RESUMABLE:
                setattr(cfg, field, value)
                continue
            # Compare resolved values: --hidden 256,128 equals a stored "model default".
            want, have = dataclasses.replace(cfg, **{field: value}).hyper_parameters(), cfg.hyper_parameters()
            if want != have:
                changeable = ", ".join(_flag(f) for f in cfgmod.RESUMABLE if f in _CONFIG_FLAGS)
                raise UsageError(f"{_flag(field)} {_show(want[field])} differs from the checkpoint's "
                                 f"{_show(have[field])}; a resumed run keeps its settings (only {changeable} "
                                 "may change)")
    else:
        cfg = RunConfig(**given)
    try:
        cfg.validate()
    except ConfigError as exc:
        _usage(parser, str(exc))
    plan.cfg = cfg

    if plan.resume_state is not None:
        st = ckpt.from_json_array(plan.resume_state["trainer/state"])
        if int(st["epoch"]) >= cfg.epochs and int(st["step_in_epoch"]) == 0:
            raise UsageError(f"the checkpoint has already trained {st['epoch']} of {cfg.epochs} epochs; "
                             f"pass --epochs N with N > {st['epoch']} to train further")

    # 2. The output folder: it must be writable and must not hold another run.
    plan.out = _choose_out(args.out, plan.resume)

    # 3. The device (warns once when cuda falls back to the CPU).
    try:
        plan.device = backend.device(args.launch.device(args.device))  # several ranks: their own GPUs
    except (backend.DeviceError, ValueError) as exc:
        _usage(parser, str(exc))

    # 4. Net, optimizer and data: the slow checks (the data is read and decoded here).
    if cfg.data_dir is not None and not Path(cfg.data_dir).is_dir():
        raise UsageError(f"--data-dir {cfg.data_dir} is not a folder")
    from xpnet.data import DataError

    try:
        plan.net = cfgmod.build_net(cfg, plan.device)
        plan.optimizer = cfgmod.build_optimizer(cfg)
    except (ValueError, TypeError) as exc:
        raise UsageError(str(exc)) from None
    try:
        plan.data = cfgmod.build_data(cfg, plan.device, tuple(plan.net.input_shape))
    except ConfigError as exc:
        _usage(parser, str(exc))
    except (DataError, OSError) as exc:
        raise UsageError(_one_line(exc)) from None
    if plan.resume_state is not None:
        stored_data = ckpt.read_config(plan.resume_state).get("data", {})
        for key in ("name", "n_train", "n_val", "n_test"):
            if key in stored_data and stored_data[key] != plan.data.info[key]:
                raise UsageError(f"--resume: the checkpoint was trained on {key}={stored_data[key]}, "
                                 f"but the data now gives {plan.data.info[key]}")
    return plan


def _show(v: Any) -> str:
    return ",".join(map(str, v)) if isinstance(v, tuple | list) else str(v)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__


def _choose_out(out_arg: str | None, resume: Path | None) -> Path:
    """Where the run writes; refuse a folder holding another run's files or one we cannot write."""
    out = Path(out_arg) if out_arg else resume.parent if resume is not None else _default_out()
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a folder")
    if out.is_dir():
        taken = [f for f in OUTPUTS if (out / f).exists()]
        ours = resume is not None and _same_dir(resume.parent, out)
        if taken and not ours:
            raise UsageError(f"--out {out} already holds a run ({', '.join(taken)}); choose another --out "
                             f"or continue it with --resume {out / ckpt.FILENAME}")
    # The nearest existing ancestor must be a folder we may create things in.
    probe = out
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise UsageError(f"--out {out} cannot be created or written ({probe} is not a writable folder)")
    return out


def _default_out() -> Path:
    """runs/<date-time>, with -2, -3, ... if that is taken."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out, n = Path("runs") / stamp, 2
    while out.exists():
        out, n = Path("runs") / f"{stamp}-{n}", n + 1
    return out


def _same_dir(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def _make_out(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".probe.", dir=out)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise UsageError(f"--out {out} cannot be written: {exc.strerror or exc}") from None


def _describe_net(cfg: RunConfig, net: Any) -> dict[str, Any]:
    n_params = sum(math.prod(tuple(p.shape)) for p in net.params.values())
    return {"name": cfg.model, "class": type(net).__name__, "input_shape": list(net.input_shape),
            "hidden": list(cfg.hidden_sizes), "n_params": int(n_params)}


def _run(plan: _Plan, launch: Launch) -> int:
    from xpnet.train import metrics
    from xpnet.train.checkpoint import Checkpoint
    from xpnet.train.metrics import MetricsCSV
    from xpnet.train.plots import Plot, plot_curves
    from xpnet.train.progress import ConsoleProgress
    from xpnet.train.selection import BEST_FILENAME, BestCheckpoint, select_and_test
    from xpnet.train.trainer import EarlyStopping, Trainer

    cfg, out, dev = plan.cfg, plan.out, plan.device
    if dev.is_host:
        # An application's choice, not the library's: glibc keeps freed blocks, so the temporaries every
        # step reallocates cost no page faults (see accel.tuning.keep_freed_host_memory).
        tuning.keep_freed_host_memory()
    info = plan.data.info
    blas = tuning.blas_info() if dev.is_host else None  # NumPy's BLAS kernel, and any pin of it
    model = _describe_net(cfg, plan.net)
    dist, root = launch.data_parallel(), launch.is_root  # rank 0 alone prints and writes files
    callbacks: list[Any] = []
    if not plan.quiet and root:
        callbacks.append(ConsoleProgress(sys.stderr))
    best = None
    if cfg.patience is not None:
        best = BestCheckpoint(out / BEST_FILENAME)
        callbacks += [EarlyStopping(cfg.patience), best]
    checkpoint = Checkpoint(out / ckpt.FILENAME, every=plan.checkpoint_every)
    title = f"{info['name']} · {cfg.model} {','.join(map(str, cfg.hidden_sizes))} · {cfg.optimizer} " \
            f"lr {cfg.resolved_lr():g}{_schedule_words(cfg)} · batch {cfg.batch_size}"
    # The checkpoint first: on SIGTERM it is what must be on disk before a process manager's grace period ends.
    callbacks.append(checkpoint)
    if root:
        callbacks += [MetricsCSV(out / "metrics.csv"), Plot(out / "curves.png", title=title)]
    try:
        trainer = Trainer(plan.net, plan.optimizer, plan.data.train, epochs=cfg.epochs, evals=plan.data.evals,
                          callbacks=callbacks, config={"run": cfg.to_dict(), "data": info, "model": model},
                          schedule=cfgmod.build_schedule(cfg, len(plan.data.train)), clip_norm=cfg.clip_norm,
                          dist=dist)
    except ValueError as exc:  # the batches cannot be cut for this many ranks (the same on every rank)
        _say(f"error: {exc}")
        return EXIT_USAGE
    if dist is not None and plan.data.test is not None:
        dist.shard(plan.data.test)
    if plan.resume_state is not None:
        try:
            trainer.load_state_dict(plan.resume_state)
        except (ValueError, KeyError, TypeError) as exc:
            _say(f"error: --resume: the checkpoint does not fit this run: {_one_line(exc)}")
            return EXIT_USAGE
        checkpoint.saved_step, checkpoint.saved_epoch = trainer.global_step, trainer.epoch
        plan.optimizer.lr = cfg.resolved_lr()  # --lr may change on resume; the stored one must not win
    summary = _start_summary(plan, model, blas, with_best=best is not None)
    summary["distributed"] = launch.summary()
    failed = _start_files(out, summary) if root else None
    failed = launch.same(failed)  # rank 0 made the folder, or every rank stops here
    if failed is not None:
        return failed

    if not plan.quiet:
        _start_line(plan, trainer, model, blas, launch)
    t0 = time.perf_counter()
    try:
        result = trainer.fit()
    except KeyboardInterrupt as exc:  # a second Ctrl-C/SIGTERM: stop at once, keep the last checkpoint
        signum = signals.signum_of(exc)
        result = trainer.result(time.perf_counter() - t0, "interrupted",
                                f"interrupted by a second {signals.signal_name(signum)}")
        result.signal = signals.signal_name(signum)
        _record_end(summary, out, result, time.perf_counter() - t0, write=root)
        where = f"; the last checkpoint (epoch {checkpoint.saved_epoch}, step {checkpoint.saved_step}) is " \
                f"{checkpoint.path}" if checkpoint.saved_step is not None else "; no checkpoint was written"
        _say(f"interrupted by {result.signal}{where}")
        launch.abort(signals.exit_status(signum))  # the other ranks may be waiting in the step's allreduce
        return signals.exit_status(signum)
    except Exception as exc:  # the disk filled up, the folder went away, or a bug: say so, record it
        error = _one_line(exc)
        if isinstance(exc, OSError):
            error = f"cannot write {exc.filename or out}: {exc.strerror or exc}"
        result = trainer.result(time.perf_counter() - t0, "failed", error)
        recorded = _record_end(summary, out, result, time.perf_counter() - t0, error=error, write=root)
        _say(f"error: {error}" + ("" if recorded else " (summary.json could not be updated either)"))
        if launch.parallel:  # the other ranks wait for this one in a collective: end them all
            if not isinstance(exc, OSError):
                traceback.print_exc(file=sys.__stderr__)
            launch.abort(EXIT_FAIL)
        if not isinstance(exc, OSError):
            raise  # a bug: its traceback is what a report needs
        return EXIT_FAIL
    selection = None
    if result.ok:  # the test set, once, on the weights chosen by validation (or the last epoch's)
        with_val = "val" in plan.data.evals
        selection = select_and_test(trainer, plan.data.test if with_val else None, best)
        if with_val and selection.test_acc is not None and selection.selected_epoch is not None and root:
            plot_curves(out / "curves.png", trainer.history, trainer.step_losses, title,
                        final_test=(selection.selected_epoch, selection.test_acc))
        if with_val and not plan.quiet and selection.test_acc is not None:
            _say(f"test {selection.test_acc:.4f} with the weights of epoch {selection.selected_epoch} "
                 f"(val {selection.val_acc:.4f}; chosen on val: "
                 f"{'best epoch' if best is not None else 'last epoch'})")
    wall = time.perf_counter() - t0

    res = _record_end(summary, out, result, wall, selection=selection, write=root)
    print(_final_line(info["name"], cfg, dev, res or metrics.final_results(result, selection), out))
    if res is None:
        _say(f"error: summary.json could not be written to {out}")
        return EXIT_FAIL
    return _end_message(plan, trainer, checkpoint, result)


def _start_files(out: Path, summary: dict[str, Any]) -> int | None:
    """Make the run folder and write the starting summary.json; the exit status if that failed, else None."""
    from xpnet.train import metrics

    try:
        _make_out(out)
    except UsageError as exc:
        _say(f"error: {exc}")
        return EXIT_USAGE
    try:
        metrics.write_summary(out / "summary.json", summary)
    except OSError as exc:
        _say(f"error: cannot write {exc.filename or out / 'summary.json'}: {exc.strerror or exc}")
        return EXIT_FAIL
    return None


def _start_summary(plan: _Plan, model: dict[str, Any], blas: dict[str, Any] | None, with_best: bool
                   ) -> dict[str, Any]:
    """summary.json as the run starts (status "running"); a resumed run keeps its start and its commands."""
    from xpnet.train import metrics
    from xpnet.train.selection import BEST_FILENAME

    cfg, out, dev, info = plan.cfg, plan.out, plan.device, plan.data.info
    started = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
    summary: dict[str, Any] = {
        "status": "running",
        "command": plan.argv,
        "started": started,
        "out": str(out),
        "resumed_from": str(plan.resume) if plan.resume else None,
        "dataset": info,
        "device": {"name": dev.name, "backend": dev.backend, "requested": plan.device_request,
                   **({"blas": blas} if blas is not None else {})},
        "model": model,
        "fast_paths": accel.describe(dev, plan.net),
        "hyper_parameters": cfg.hyper_parameters(),
        "versions": metrics.package_versions(),
        "files": {"metrics": "metrics.csv", "curves": "curves.png", "checkpoint": ckpt.FILENAME,
                  **({"best": BEST_FILENAME} if with_best else {})},
    }
    summary["commands"] = [summary["command"]]
    if plan.resume_state is not None:  # a continued run keeps when it started and every command it took
        try:
            old = _read_json(out / "summary.json")
            summary["started"] = old.get("started", started)
            summary["commands"] = [*old.get("commands", [old["command"]]), summary["command"]]
        except (OSError, ValueError, KeyError, TypeError):
            pass
    return summary


def _start_line(plan: _Plan, trainer: Any, model: dict[str, Any], blas: dict[str, Any] | None,
                launch: Launch) -> None:
    """What runs where, the fast paths, and a note when the BLAS kernel is pinned below what the CPU can do."""
    cfg, dev, info = plan.cfg, plan.device, plan.data.info
    where = f"resuming at epoch {trainer.epoch + 1}, step {trainer.global_step}" if plan.resume \
        else f"{cfg.epochs} epochs of {trainer.steps_per_epoch} steps"
    _say(f"{cfg.model} {'-'.join(map(str, [*model['input_shape'], *cfg.hidden_sizes, 10]))} "
         f"({model['n_params']:,} params) on {info['name']} ({info['n_train']} train, "
         f"{info['n_val']} val, {info['n_test']} test) | {dev.name} ({dev.backend}) | {cfg.optimizer} lr "
         f"{cfg.resolved_lr():g}{_schedule_words(cfg)}"
         f"{f' | augment {cfg.augment}' if cfg.augment else ''} | {where} | out: {plan.out}"
         f"{f' | {launch.words()}' if launch.parallel else ''}")
    _say(accel.describe_line(dev, plan.net))
    note = tuning.pin_note(blas["core"], blas["pinned"], tuning.cpu_flags()) if blas is not None else None
    if note:
        _say(f"note: {note}")


def _end_message(plan: _Plan, trainer: Any, checkpoint: Any, result: Any) -> int:
    """The last word on a run that ended without an exception, and its exit status."""
    cfg = plan.cfg
    if result.status == "diverged":
        kept = (f"the last good checkpoint (epoch {checkpoint.saved_epoch}) is kept at {checkpoint.path}"
                if checkpoint.saved_epoch is not None and checkpoint.path.exists()
                else "no checkpoint was written")
        _say(f"error: training diverged: {result.reason}. Try a lower --lr (this run used "
             f"{cfg.resolved_lr():g}); {kept}")
        return EXIT_DIVERGED
    if result.status == "interrupted":
        where = (f"after epoch {trainer.epoch}" if trainer.step_in_epoch == 0 else
                 f"in epoch {trainer.epoch + 1} at step {trainer.step_in_epoch}/{trainer.steps_per_epoch}")
        _say(f"interrupted by {result.signal or 'a stop request'} {where}; checkpoint saved to "
             f"{checkpoint.path}. Continue with: {PROG} --resume {checkpoint.path}")
        return signals.exit_status(result.signal) if result.signal else EXIT_INTERRUPTED
    if result.status == "early-stopped" and not plan.quiet:
        _say(f"stopped early: {result.reason}")
    return EXIT_OK


def _schedule_words(cfg: RunConfig) -> str:
    """' cosine, warm-up 2' and the like for the header line and the plot title ('' for a constant lr)."""
    words = [] if cfg.schedule == "constant" else [cfg.schedule]
    if cfg.schedule == "step":
        gamma = cfg.lr_gamma if cfg.lr_gamma is not None else cfgmod.DEFAULT_LR_GAMMA
        words = [f"step x{gamma:g} after {_show(cfg.lr_steps or ())}"]
    if cfg.warmup_epochs:
        words.append(f"warm-up {cfg.warmup_epochs}")
    if cfg.clip_norm is not None:
        words.append(f"clip {cfg.clip_norm:g}")
    return (" " + ", ".join(words)) if words else ""


def _record_end(summary: dict[str, Any], out: Path, result: Any, wall: float,
                error: str | None = None, selection: Any = None, write: bool = True) -> dict[str, Any] | None:
    """Write summary.json with how the run ended; the results written, or None if even that failed.

    Called after a failed write too: the atomic write that failed has already removed its temp file,
    and the summary is a few kilobytes, so a full disk usually still takes it.
    """
    from xpnet.train import metrics

    res = metrics.final_results(result, selection)
    res["wall_seconds_this_session"] = wall
    if result.signal:
        res["signal"] = result.signal
    if error is not None:
        res["error"] = error
    finished = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
    summary.update(status=result.status, finished=finished, results=res, history=result.history)
    if not write:  # another rank of a data-parallel run writes it
        return res
    try:
        metrics.write_summary(out / "summary.json", summary)
    except OSError:
        return None
    return res


def _read_json(path: Path) -> dict[str, Any]:
    import json

    with open(path, encoding="utf-8") as f:
        return dict(json.load(f))


def _final_line(name: str, cfg: RunConfig, dev: backend.Device, res: dict[str, Any], out: Path) -> str:
    def acc(k: str) -> str:
        return f"{res[k]:.4f}" if res.get(k) is not None else "-"

    sps = f"{res['samples_per_s']:,.0f} samples/s" if res.get("samples_per_s") else "- samples/s"
    return (f"{name} {cfg.model}: test {acc('test_acc')}  val {acc('val_acc')}  train {acc('train_acc')}  "
            f"{res['epochs']} epochs  {res['seconds']:.1f}s  {sps}  on {dev.name}  [{res['status']}]  {out}")


if __name__ == "__main__":
    sys.exit(main())
