"""What the commands share: one-line errors with exit 2, warnings on one line, the model and folder checks."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

from xpnet import backend

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


class Parser(argparse.ArgumentParser):
    """argparse with its usage errors on one line (``prog: error: ... (see prog --help)``), exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class UsageError(Exception):
    """Bad input (a file, a flag, a model that does not fit the request): one line, exit 2, nothing written."""


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__


def say(prog: str, msg: str) -> None:
    print(f"{prog}: {msg}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def one_line_warnings(prog: str) -> Iterator[None]:
    """Show each warning (and each record of the ``xpnet`` logger) once, as ``prog: warning: ...``."""
    seen: set[str] = set()

    def note(text: str) -> None:
        text = text.strip().splitlines()[0] if text.strip() else "warning"
        if text not in seen:
            seen.add(text)
            say(prog, f"warning: {text}")

    class _Handler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            note(record.getMessage())

    log = logging.getLogger("xpnet")
    handler, propagate = _Handler(logging.WARNING), log.propagate
    log.addHandler(handler)
    log.propagate = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")

            def show(message: Any, category: type[Warning], *args: Any, **kwargs: Any) -> None:
                note(str(message) or category.__name__)

            warnings.showwarning = show
            yield
    finally:
        log.removeHandler(handler)
        log.propagate = propagate


class Notices:
    """Show each distinct warning (from ``warnings`` or the ``xpnet`` logger) once, on one line.

    The data module both warns and logs the same message (e.g. when it falls back to
    the bundled sample), so the two share one memory of what was already said.
    """

    def __init__(self, prog: str, quiet: bool) -> None:
        self.prog, self.quiet, self.seen = prog, quiet, set()

    def say(self, text: str, always: bool = False) -> None:
        text = text.strip().splitlines()[0] if text.strip() else "warning"
        if (self.quiet and not always) or text in self.seen:
            return
        self.seen.add(text)
        say(self.prog, f"warning: {text}")

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
def run_notices(prog: str, quiet: bool) -> Iterator[None]:
    """`xpnet train`'s warnings: xpnet's log records and warnings as one-line messages while a run lasts
    (--quiet keeps only the CUDA fallback); NumPy's overflow warnings, which precede a divergence, are dropped."""
    notices = Notices(prog, quiet)
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


def run(prog: str, body: Callable[[], int]) -> int:
    """Run a command's body: UsageError → one line and exit 2; Ctrl-C → exit 130."""
    try:
        with one_line_warnings(prog):
            return body()
    except UsageError as exc:
        say(prog, f"error: {exc}")
        return EXIT_USAGE
    except KeyboardInterrupt:
        say(prog, "interrupted")
        return 130


def positive_int(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        v = 0
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {s!r}")
    return v


def model_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="RUN|CHECKPOINT",
                   help="a run folder (uses best.npz if the run kept one, else checkpoint.npz) or a checkpoint file")


def device_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", metavar="auto|cpu|cuda|cuda:N",
                   help="where to run the net (default auto: CUDA when usable)")


def load_model(path: str, device: str) -> Any:
    """The model at ``path`` on ``device``, every failure a UsageError."""
    from xpnet import backend
    from xpnet.model_io import ModelError, load_model

    try:
        dev = backend.device(device)
    except backend.DeviceError as exc:
        raise UsageError(f"--device: {first_line(exc)}") from None
    try:
        return load_model(path, dev)
    except ModelError as exc:
        raise UsageError(first_line(exc)) from None


def check_dataset(model: Any, requested: str | None, what: str) -> str:
    """The dataset to use: the model's own; another named one is refused (its classes are not the model's).
    A folder or .npz may stand in for a model's folder or .npz (its classes are checked once it is read)."""
    from xpnet.data import DataError
    from xpnet.data.catalog import NAMES, canonical

    if requested is None:
        return str(model.dataset)
    try:
        name = canonical(requested)
    except DataError as exc:
        raise UsageError(f"--dataset: {first_line(exc)}") from None
    if name != model.dataset and (name in NAMES or model.dataset in NAMES):
        kind = {"mnist": "digits", "fashion-mnist": "clothing", "cifar10": "CIFAR-10's photos"}
        raise UsageError(f"--dataset {requested}: the model {model.checkpoint} was trained on {model.dataset} "
                         f"({kind.get(model.dataset, model.dataset)}); it cannot {what} {name} "
                         f"({kind.get(name, name)})")
    return name


def writable_folder(flag: str, out: Path) -> Path:
    """``out`` if it is, or can be created as, a writable folder; else a UsageError naming ``flag``.
    Checked before anything is computed, so a bad folder costs no work and writes nothing."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"{flag} {out} exists and is not a folder")
    probe = out
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise UsageError(f"{flag} {out} cannot be created or written ({probe} is not a writable folder)")
    return out
