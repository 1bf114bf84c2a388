"""xpnet search: flags → a study (Optuna) → workers running `xpnet train` trials → results.

The flags and the messages live here; the search itself is :mod:`xpnet.search.study`
(prepare, workers), :mod:`xpnet.search.results` and :mod:`xpnet.search.final`.

Every flag the search does not know is an `xpnet train` flag and goes to every
trial unchanged. Exit codes: 0 done, 2 bad input (one line, nothing started),
130 interrupted by Ctrl-C, 143 by SIGTERM (re-run the same command to continue), 1 anything else.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import re
import signal
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

from xpnet import backend
from xpnet.search import storage as storagemod
from xpnet.search import workers as workermod
from xpnet.search.study import (
    PRUNERS,
    SAMPLERS,
    Search,
    SearchOptions,
    recover,
    run_in_process,
    run_workers,
)
from xpnet.search.study import SearchError as UsageError  # bad input: one line, exit 2
from xpnet.search.study import prepare as _prepare
from xpnet.train import signals

PROG = "xpnet search"
EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def _duration(s: str) -> float:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", s)
    if not m or float(m.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"must be a duration like 90s, 30m or 2h, got {s!r}")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def _positive_int(s: str) -> int:
    if not s.strip().isdigit() or int(s) < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {s!r}")
    return int(s)


def _nonneg_int(s: str) -> int:
    if not s.strip().isdigit():
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {s!r}")
    return int(s)


def _val_split(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        v = math.nan
    if not 0.0 < v < 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1): trials are judged on validation data, got {s!r}")
    return v


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, allow_abbrev=False,
                description="Search hyper-parameters of `xpnet train` with Optuna, judged on validation "
                            "accuracy (the test set is never used). Every other flag is an xpnet train "
                            "flag (--model, --dataset, --epochs, --limit-train, ...) given to every trial.",
                epilog="exit status: 0 done, 2 bad input, 130 or 143 interrupted by Ctrl-C or SIGTERM (run it again to "
                       "continue the study)")
    g = p.add_argument_group("what to search")
    g.add_argument("--space", metavar="FILE.toml", help="train flags and their distributions (default: a "
                   "space per model: lr, weight decay, dropout, hidden sizes, batch size, optimizer)")
    g.add_argument("--val-split", type=_val_split, default=0.2, metavar="R",
                   help="fraction of the training set held out to judge trials (default 0.2, as the book)")
    g.add_argument("--trials", type=_positive_int, default=20, metavar="N",
                   help="finished trials the study should have in all (default 20)")
    g.add_argument("--timeout", type=_duration, metavar="DURATION",
                   help="start no trial after this long (90s, 30m, 2h)")
    g.add_argument("--seed", type=_nonneg_int, default=0,
                   help="seeds the sampler and every trial's weights and shuffling (default 0)")
    g.add_argument("--sampler", choices=SAMPLERS, default="tpe", help="random: the book's; tpe (default)")
    g.add_argument("--pruner", choices=PRUNERS, default="median",
                   help="stop unpromising trials on their per-epoch validation accuracy (default median)")
    g = p.add_argument_group("where it runs")
    g.add_argument("--workers", type=_positive_int, default=1, metavar="K",
                   help="worker processes on this machine (default 1: in this process)")
    g.add_argument("--devices", default="auto", metavar="cpu|cuda:0,cuda:1,...",
                   help="devices, one per worker in turn (default auto)")
    g.add_argument("--storage", metavar="URL", help="default: a journal file in the search folder; or "
                   "sqlite:///PATH; or postgresql://USER:PASSWORD@HOST:PORT/DB shared by many machines")
    g.add_argument("--study", metavar="NAME", help="study name (default MODEL-DATASET); the same name and "
                   "storage join one study, a new name starts over")
    g.add_argument("--out", metavar="DIR", help="search folder: trials, results, figures (default "
                   "runs/search/STUDY)")
    g.add_argument("--final", action="store_true",
                   help="afterwards train the best config on train+val and evaluate the test set once")
    g.add_argument("--quiet", action="store_true", help="print only errors and the final line")
    p.add_argument("--worker-index", type=int, default=None, help=argparse.SUPPRESS)
    return p


def _say(msg: str) -> None:
    print(f"{PROG}: {msg}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _one_line_warnings(quiet: bool) -> Iterator[None]:
    seen: set[str] = set()

    def show(message: Any, category: type[Warning], filename: str, lineno: int, file: Any = None,
             line: str | None = None) -> None:
        text = (str(message).strip().splitlines() or [category.__name__])[0]
        if text not in seen and (not quiet or issubclass(category, backend.CudaFallbackWarning)):
            seen.add(text)
            _say(f"warning: {text}")

    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.filterwarnings("ignore", r"(overflow|invalid value|divide by zero) encountered", RuntimeWarning)
        warnings.filterwarnings("ignore", module=r"optuna.*")
        # Python hides these by default: they speak to a program's author (an unclosed file, a process never
        # waited for, found by the garbage collector at any moment), not to the person running a search.
        warnings.filterwarnings("ignore", category=ResourceWarning)
        warnings.showwarning = show
        yield


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``xpnet search`` / ``scripts/search.py``; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    try:
        with _one_line_warnings(args.quiet):
            return _main(args, rest, argv)
    except UsageError as exc:
        _say(f"error: {exc}")
        return EXIT_USAGE
    except KeyboardInterrupt as exc:
        _say("interrupted")
        return signals.exit_status(signals.signum_of(exc))


def prepare(args: argparse.Namespace, rest: Sequence[str], space: Any = None) -> Search:
    """The search that parsed flags (``build_parser().parse_known_args``) describe, checked and opened."""
    return _prepare(SearchOptions.of(args), rest, space)


def _main(args: argparse.Namespace, rest: Sequence[str], argv: Sequence[str]) -> int:
    s = prepare(args, rest)
    if args.worker_index is not None:  # a worker process started by the supervisor below
        return run_in_process(s, args.worker_index, reap_local=False)
    s.out.mkdir(parents=True, exist_ok=True)
    requeued = recover(s)
    n = workermod.counts(s.study)
    if not args.quiet:
        _say(f"study {s.study_name} in {storagemod.describe(s.storage_url, s.out)}: {n['done']} of {args.trials} "
             f"trials done{f', {len(requeued)} re-queued' if requeued else ''}; searching "
             f"{', '.join(f'{k} {p.describe()}' for k, p in s.space.items()) or 'nothing'} with "
             f"{args.sampler}/{args.pruner}, {args.workers} worker(s) on {','.join(s.devices)} | out: {s.out}")
    t0 = time.perf_counter()
    code = run_workers(s, lambda i: [sys.executable, "-m", "xpnet", "search", *argv, "--worker-index", str(i)])
    elapsed = time.perf_counter() - t0
    from xpnet.search import results

    line = results.write_all(s.out, s.study, s.space, storagemod.describe(s.storage_url, s.out), elapsed)
    print(line, flush=True)
    if code in (EXIT_INTERRUPTED, signals.exit_status(signal.SIGTERM)):  # Ctrl-C or SIGTERM
        _say("interrupted; run the same command again to continue the study (interrupted trials resume from "
             "their checkpoints)")
        return code
    if args.final:
        best = results.best_trial(s.study.get_trials(deepcopy=False))
        if best is None:
            raise UsageError("--final: the study has no completed trial to train")
        return _final(s, best)
    return code


def _final(s: Search, best: Any) -> int:
    from xpnet.search.final import run_final

    out = s.out / "final"
    if not s.args.quiet:
        _say(f"--final: training trial {best.number}'s config on train+val, then testing once | out: {out}")
    rec = run_final(best, out, s.devices[0])
    if rec["test_acc"] is None:
        _say(f"error: the final run ended {rec['status']}; no test accuracy (see {out / 'metrics.csv'})")
        return EXIT_FAIL
    print(f"final {s.study_name}: trial {best.number} on train+val ({rec['n_train']} images, {rec['epochs']} "
          f"epochs): test {rec['test_acc']:.4f} (evaluated once)  val in search {best.value:.4f}  "
          f"{rec['seconds']:.0f}s  {out / 'final.json'}", flush=True)
    return EXIT_OK

