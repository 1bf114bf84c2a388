"""Plumbing shared by every experiment script (issue 5), so each script holds only its experiment.

What lives here: the command line (``--device --seed --out --quick --data-dir``)
with one-line errors, atomic JSON/PNG/JSONL writing, MNIST as device arrays, the
book's loss-curve smoothing, and the book's small mini-batch training loop.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# One BLAS thread unless the user says otherwise: these nets are small, and on a shared or busy CPU a
# multi-threaded BLAS spends its time waiting (measured: ~10x slower per step on 2 busy cores).
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

# The scripts run from a checkout (``python scripts/experiments/x.py``) whether or not xpnet is installed.
REPO_ROOT = Path(__file__).resolve().parents[2]
try:
    import xpnet  # noqa: F401
except ImportError:
    sys.path.insert(0, str(REPO_ROOT))

import matplotlib  # noqa: E402

matplotlib.use("Agg")  # files only: experiments never open windows

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from xpnet.accel.tuning import keep_freed_host_memory  # noqa: E402
from xpnet.backend import (  # noqa: E402
    Device,
    DeviceError,
    device,
    host_rng,
    to_device,
    to_host,
)
from xpnet.data import DataError  # noqa: E402
from xpnet.train import signals  # noqa: E402

Array = Any
FIG_DPI = 80  # small PNGs for the README gallery (each well under 150 KB)


class ExperimentError(Exception):
    """Something the user can fix (missing data, a bad flag combination): reported as one line, no traceback."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag in one line (usage text only with --help)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse ``type`` for whole numbers >= ``minimum`` (its message names what was wrong)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a number >= {minimum}, got {value}")
        return value

    return parse


positive_int = int_at_least(1)  # --trials, --workers, --epochs


def make_parser(name: str, description: str) -> argparse.ArgumentParser:
    """The flags every experiment takes; a script adds its own before parsing."""
    p = _Parser(prog=f"{name}.py", description=description)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (cuda without a GPU warns "
                                                    "and runs on the CPU)")
    p.add_argument("--seed", type=int_at_least(0), default=0, help="seed for initial weights, batches and data subsets")
    p.add_argument("--out", type=Path, default=Path("runs") / "experiments" / name,
                   help="folder for the figure(s) and results.json (default: %(default)s)")
    p.add_argument("--quick", action="store_true",
                   help="a small version (seconds on 2 CPU cores) that still shows the finding; used by tests")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="folder holding mnist/ (default: $XPNET_DATA_DIR, then xpnet's usual places)")
    return p


# -- the run: context, outputs, errors -------------------------------------------------------------

@dataclass
class Context:
    """What an experiment gets: its parsed flags, the device, and where to write."""

    name: str
    args: argparse.Namespace
    device: Device
    out: Path
    figures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def xp(self) -> Any:
        return self.device.xp

    @property
    def quick(self) -> bool:
        return bool(self.args.quick)

    @property
    def seed(self) -> int:
        return int(self.args.seed)

    def to_dev(self, a: Any, dtype: str | None = None) -> Array:
        """A host array (or Python data) on this experiment's device."""
        return to_device(a, self.device, dtype=None if dtype is None else self.device.dtype(dtype))

    def save_figure(self, fig: Any, filename: str) -> Path:
        """Write ``fig`` as a PNG under --out (atomically) and remember it for results.json."""
        path = self.out / filename
        atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=FIG_DPI), binary=True)
        plt.close(fig)
        self.figures.append(filename)
        return path

    def log(self, message: str) -> None:
        """Progress for people; stdout, one line each."""
        print(f"[{self.name}] {message}", flush=True)


def atomic_write(path: Path, write: Callable[[Any], Any], binary: bool = False) -> None:
    """Write via a temp file in the same folder + ``os.replace``: ``path`` is old or new, never half-written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def jsonable(obj: Any) -> Any:
    """Plain JSON data: NumPy scalars/arrays become Python numbers/lists, NaN and ±inf become null."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return jsonable(obj.item())
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_json(path: Path, data: dict[str, Any]) -> None:
    """One top-level key per line (long curves stay on one line each: readable and diff-friendly)."""
    clean = jsonable(data)
    body = ",\n".join(f"  {json.dumps(k)}: {json.dumps(v, allow_nan=False)}" for k, v in clean.items())
    text = "{\n" + body + "\n}\n"
    atomic_write(path, lambda f: f.write(text))


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    """One JSON line, flushed and fsynced, so a killed run keeps every record written so far."""
    line = json.dumps(jsonable(record), allow_nan=False, separators=(",", ":"))
    with open(path, "a", encoding="utf-8") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


def _one_line_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                      line: str | None = None) -> str:
    return f"warning: {message}\n"


def run(name: str, experiment: Callable[[Context], dict[str, Any]], args: argparse.Namespace) -> int:
    """Resolve the device, run ``experiment``, write results.json; user errors become one line on stderr.

    results.json always holds: experiment, device, seed, quick, elapsed_s, figures, notes,
    plus whatever the experiment returned (its numbers).
    """
    warnings.formatwarning = _one_line_warning
    prog = f"{name}.py"
    try:
        dev = device(args.device)
        if dev.is_host:
            keep_freed_host_memory()  # every step reallocates the same temporaries: skip the page faults
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        ctx = Context(name, args, dev, out)
        ctx.log(f"device {dev.name}, seed {args.seed}, {'quick' if args.quick else 'full'} mode -> {out}")
        start = time.perf_counter()
        results = experiment(ctx)
        elapsed = time.perf_counter() - start
        summary = {"experiment": name, "device": dev.name, "seed": ctx.seed, "quick": ctx.quick,
                   "elapsed_s": round(elapsed, 2), "figures": ctx.figures, "notes": ctx.notes, **results}
        write_json(out / "results.json", summary)
        ctx.log(f"done in {elapsed:.1f} s: {', '.join(ctx.figures)} and results.json in {out}")
        return 0
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (docker stop, a scheduler): main() made them alike
        signum = signals.signum_of(exc)
        print(f"{prog}: interrupted by {signals.signal_name(signum)}", file=sys.stderr)
        return signals.exit_status(signum)
    except (ExperimentError, DeviceError, DataError, OSError) as exc:
        # Messages written for users (xpnet's DataError names the file and the fix); anything else is a bug.
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1


def main_for(name: str, description: str, experiment: Callable[[Context], dict[str, Any]],
             add_flags: Callable[[argparse.ArgumentParser], None] | None = None,
             argv: Sequence[str] | None = None) -> int:
    """The whole entry point of a script: parse its flags, then :func:`run`."""
    parser = make_parser(name, description)
    if add_flags is not None:
        add_flags(parser)
    args = parser.parse_args(argv)
    with signals.raise_on_signals():  # SIGTERM stops an experiment as Ctrl-C does (also as a container's PID 1)
        return run(name, experiment, args)


# -- data ------------------------------------------------------------------------------------------

@dataclass
class Mnist:
    """MNIST subsets as device arrays (float images in [0, 1], flattened; int64 class indices)."""

    x_train: Array
    t_train: Array
    x_test: Array
    t_test: Array
    source: dict[str, Any]


@functools.lru_cache(maxsize=2)
def mnist_dataset(data_dir: str | None, quick: bool) -> Any:
    """xpnet.data's MNIST (uint8 host arrays), loaded once per process.

    Full mode insists on the real MNIST (a figure labelled MNIST must be made from it);
    quick mode takes it when it is found and otherwise xpnet's bundled sample.
    """
    from xpnet.data import load_dataset

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = load_dataset("mnist", data_dir, download=False if quick else None)
    if ds.is_sample and not quick:
        raise ExperimentError("the full MNIST was not found (set XPNET_DATA_DIR or --data-dir to a folder "
                              "holding mnist/ with its four .gz files), and full mode needs it; --quick runs "
                              "on the bundled sample")
    for w in caught:  # the sample warning is reported by load_mnist below, in one line
        if w.category.__name__ != "SampleDataWarning":
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return ds


def mnist_arrays(data_dir: str | None, quick: bool, n_train: int | None, n_test: int | None
                 ) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray], dict[str, Any]]:
    """Host arrays of the first ``n_train``/``n_test`` images of each split, as the book slices ``x[:n]``:
    float32 in [0, 1], flattened to 784; int64 labels. Plus where they came from.
    """
    ds = mnist_dataset(data_dir, quick)

    def take(x: np.ndarray, t: np.ndarray, n: int | None) -> tuple[np.ndarray, np.ndarray]:
        if n is not None and n > x.shape[0]:
            raise ExperimentError(f"asked for {n} images but {ds.name} ({ds.source}) has {x.shape[0]}")
        x, t = x[:n], t[:n]
        xf = x.reshape(x.shape[0], int(np.prod(x.shape[1:]))).astype(np.float32) / np.float32(255.0)
        return xf, t.astype(np.int64)

    train, test = take(ds.x_train, ds.t_train, n_train), take(ds.x_test, ds.t_test, n_test)
    source = {**ds.summary(), "used_train": int(train[0].shape[0]), "used_test": int(test[0].shape[0])}
    return train, test, source


def load_mnist(ctx: Context, n_train: int | None = None, n_test: int | None = None) -> Mnist:
    """MNIST subsets on the experiment's device (see :func:`mnist_arrays`)."""
    data_dir = None if ctx.args.data_dir is None else str(ctx.args.data_dir)
    (x_train, t_train), (x_test, t_test), source = mnist_arrays(data_dir, ctx.quick, n_train, n_test)
    if source["is_sample"]:
        note = "MNIST not found: quick mode ran on xpnet's bundled sample (MNIST t10k split 8000/2000)"
        if note not in ctx.notes:
            ctx.notes.append(note)
            ctx.log(note)
    return Mnist(ctx.to_dev(x_train), ctx.to_dev(t_train), ctx.to_dev(x_test), ctx.to_dev(t_test), source)


# -- curves and training ---------------------------------------------------------------------------

def smooth(y: Sequence[float] | np.ndarray, window: int = 11) -> np.ndarray:
    """A Kaiser-window (β = 2) moving average with mirrored ends, as the book smooths loss curves.

    Mini-batch losses jump from batch to batch; the trend is what the figures compare.
    The result has the input's length.
    """
    y = np.asarray(y, dtype=np.float64)
    window = min(window, y.size if y.size % 2 else y.size - 1)
    if window < 3:
        return y.copy()
    w = np.kaiser(window, 2.0)
    half = window // 2
    padded = np.pad(y, half, mode="reflect")
    return np.convolve(padded, w / w.sum(), mode="valid")


def plot_loss_curves(ctx: Context, curves: dict[str, np.ndarray], steps: int, *, title: str, ylim: float,
                     filename: str, markers: str = "o^sDvx") -> None:
    """Smoothed mini-batch loss per iteration, one marked line per curve (the book's figs. 6-9 and 6-15)."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for (label, losses), marker in zip(curves.items(), markers, strict=False):
        ax.plot(smooth(losses), marker=marker, markevery=max(1, steps // 10), ms=5, lw=1.2, label=label)
    ax.set(xlabel="iterations", ylabel="loss (smoothed)", ylim=(0, ylim), xlim=(0, steps), title=title)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    ctx.save_figure(fig, filename)


def batches(rng: np.random.Generator, n: int, batch_size: int, steps: int) -> list[np.ndarray]:
    """Index arrays for ``steps`` mini-batches drawn at random from ``n`` samples (as the book does)."""
    size = min(batch_size, n)
    return [rng.choice(n, size, replace=False) for _ in range(steps)]


def fit(net: Any, optimizer: Any, x: Array, t: Array, *, steps: int, batch_size: int, seed: int,
        every: int = 0, on_eval: Callable[[int], None] | None = None) -> np.ndarray:
    """The book's loop: random mini-batch → ``net.gradient`` → ``optimizer.update``, ``steps`` times.

    ``on_eval(k)`` runs before the first step (k = 0) and after every ``every`` steps
    (k = 1, 2, ...): where accuracies are recorded per epoch. Same ``seed``, same batches,
    so nets compared side by side see identical data. Returns the per-step losses
    (kept on the device and read back once, so a GPU is not synchronised every step).
    """
    xp = net.device.xp
    rng = host_rng(seed)
    losses = []
    if on_eval is not None and every:
        on_eval(0)
    for i, idx in enumerate(batches(rng, x.shape[0], batch_size, steps), start=1):
        sel = to_device(idx, net.device)
        grads = net.gradient(xp.take(x, sel, axis=0), xp.take(t, sel, axis=0))
        optimizer.update(net.params, grads)
        losses.append(net.last_loss)
        if on_eval is not None and every and i % every == 0:
            on_eval(i // every)
    return to_host(xp.stack(losses)).astype(np.float64) if losses else np.zeros(0)


def accuracy(net: Any, x: Array, t: Array) -> float:
    return float(net.accuracy(x, t, batch_size=1000))
