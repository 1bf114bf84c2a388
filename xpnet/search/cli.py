"""xpnet search: flags → a study (Optuna) → workers running `xpnet train` trials → results.

Every flag the search does not know is an `xpnet train` flag and goes to every
trial unchanged. Exit codes: 0 done, 2 bad input (one line, nothing started),
130 interrupted by Ctrl-C, 143 by SIGTERM (re-run the same command to continue), 1 anything else.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import re
import signal
import socket
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from xpnet import backend
from xpnet.search import space as spacemod
from xpnet.search import storage as storagemod
from xpnet.search import workers as workermod
from xpnet.search.trainflags import FlagError, TrainFlags
from xpnet.train import signals
from xpnet.train.config import ConfigError, RunConfig

PROG = "xpnet search"
EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
SAMPLERS = ("random", "tpe")
PRUNERS = ("none", "median", "hyperband")
#: Train flags that belong to a single run, not to a search.
_NOT_IN_SEARCH = {"--device": "use --devices (one per worker)",
                  "--resume": "a search continues when the same command is run again"}


class UsageError(Exception):
    """Bad input: one line, exit 2."""


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
                            "accuracy (the test set is never loaded). Every other flag is an xpnet train "
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


class Search:
    """Everything checked and opened; a worker or the coordinator runs from here."""

    args: argparse.Namespace
    flags: TrainFlags
    base_argv: list[str]
    cfg: RunConfig
    space: spacemod.Space
    devices: list[str]
    out: Path
    study_name: str
    storage_url: str | None
    storage: Any
    study: Any


def prepare(args: argparse.Namespace, rest: Sequence[str], space: spacemod.Space | None = None) -> Search:
    """Check every flag, the space, the devices and the storage; open (or create) the study.

    ``space`` replaces --space and the default space (for programs that search a fixed space, such as
    the book's experiment).
    """
    s = Search()
    s.args, s.flags = args, TrainFlags()
    for a in rest:
        name = a.split("=", 1)[0]
        if name in _NOT_IN_SEARCH:
            raise UsageError(f"{name} is not a search flag: {_NOT_IN_SEARCH[name]}")
    s.base_argv = [*rest, "--val-split", repr(args.val_split), "--seed", str(args.seed)]
    try:
        s.cfg = s.flags.config(s.base_argv)
    except (FlagError, ConfigError) as exc:
        raise UsageError(str(exc)) from None
    given = s.flags.given(rest)
    if space is not None:
        s.space, source = dict(space), "the search space"
    elif args.space:
        try:
            s.space = spacemod.load(args.space)
        except spacemod.SpaceError as exc:
            raise UsageError(str(exc)) from None
        both = [n for n in s.space if n in {spacemod.flag_name(g) for g in given}]
        if both:
            raise UsageError(f"--{both[0]} is both given and searched (--space {args.space}); drop one")
        source = f"--space {args.space}"
    else:
        s.space = spacemod.default_space(s.cfg.model, given)
        source = f"the default space of --model {s.cfg.model}"
    _check_space(s, source)
    s.devices = _devices(args.devices)
    s.study_name = args.study or f"{s.cfg.model}-{s.cfg.dataset}"
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", s.study_name):
        raise UsageError(f"--study {s.study_name!r}: use letters, digits, '.', '_' and '-'")
    s.out = Path(args.out) if args.out else Path("runs") / "search" / s.study_name
    if s.out.exists() and not s.out.is_dir():
        raise UsageError(f"--out {s.out} exists and is not a folder")
    s.storage_url = args.storage
    try:
        s.storage = storagemod.open_storage(args.storage, s.out)
    except storagemod.StorageError as exc:
        raise UsageError(str(exc)) from None
    s.study = _open_study(s)
    return s


def _check_space(s: Search, source: str) -> None:
    try:
        spacemod.check(s.space, s.flags.parse, s.flags.is_switch, source)
    except spacemod.SpaceError as exc:
        raise UsageError(str(exc)) from None
    # Every value must also fit the fixed flags (e.g. --dropout needs --model mlp).
    for name, p in s.space.items():
        for v in (p.choices if p.kind == "choice" else (p.low, p.high)):
            try:
                s.flags.config([*s.base_argv, *spacemod.to_argv({name: p}, {name: v}, s.flags.is_switch)])
            except (FlagError, ConfigError) as exc:
                raise UsageError(f"{source}: --{name} {spacemod.format_value(v)}: {exc}") from None


def _devices(spec: str) -> list[str]:
    names = [d.strip() for d in spec.split(",") if d.strip()]
    if not names:
        raise UsageError("--devices is empty; give cpu, auto or cuda:0,cuda:1,...")
    resolved = []
    for name in names:
        m = re.fullmatch(r"cuda:(\d+)", name.lower())
        if m:  # a numbered GPU is a promise about this machine: no silent CPU fallback for it
            ok, reason, count = backend.cuda_status()
            if not ok:
                raise UsageError(f"--devices {name}: CUDA is unusable here: {reason}")
            if int(m.group(1)) >= count:
                raise UsageError(f"--devices {name}: this machine has {count} CUDA device(s) "
                                 f"(cuda:0..cuda:{count - 1})")
        try:
            resolved.append(backend.device(name).name)
        except backend.DeviceError as exc:
            raise UsageError(f"--devices {name}: {exc}") from None
    return resolved


def objective_signature(s: Search) -> dict[str, Any]:
    """What a trial's value means: the metric and the fixed settings it is measured under."""
    fixed = s.cfg.hyper_parameters()
    for name in s.space:
        fixed.pop(name.replace("-", "_"), None)
    for field in ("data_dir", "eval_batch_size", "train_eval_size"):  # where the data is, how it is measured
        fixed.pop(field, None)
    return {"metric": "best validation accuracy of the trial", "direction": "maximize", "fixed": fixed}


def _open_study(s: Search) -> Any:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # the search says what happened, one line each
    space_sig = spacemod.signature(s.space)
    objective = json.dumps(objective_signature(s), sort_keys=True)
    try:
        study = optuna.create_study(study_name=s.study_name, storage=s.storage, direction="maximize",
                                    load_if_exists=True)
    except Exception as exc:  # a database that refuses the connection after all, a study of another direction
        raise UsageError(f"--storage {storagemod.describe(s.storage_url, s.out)}: {_one_line(exc)}") from None
    attrs = study.user_attrs
    if "xpnet_space" not in attrs:
        study.set_user_attr("xpnet_space", space_sig)
        study.set_user_attr("xpnet_objective", objective)
        return study
    where = f"study {s.study_name!r} in {storagemod.describe(s.storage_url, s.out)}"
    if attrs["xpnet_space"] != space_sig:
        raise UsageError(f"{where} was created with a different search space "
                         f"({_diff(json.loads(attrs['xpnet_space']), json.loads(space_sig))}); "
                         "pass --study NEW_NAME to start a new study")
    if attrs.get("xpnet_objective") != objective:
        old = json.loads(attrs.get("xpnet_objective") or "{}")
        new = json.loads(objective)
        raise UsageError(f"{where} was created with a different objective "
                         f"({_diff(old.get('fixed', {}), new['fixed'])}); pass --study NEW_NAME to start a new study")
    return study


def _diff(old: dict[str, Any], new: dict[str, Any]) -> str:
    for k in sorted(set(old) | set(new)):
        if old.get(k) != new.get(k):
            return f"{k}: study has {old.get(k)!r}, this command {new.get(k)!r}"
    return "they differ"


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def sampler(s: Search) -> Any:
    """--sampler, with draws that depend on (--seed, trial number) only (see :mod:`xpnet.search.sampler`)."""
    import optuna

    from xpnet.search.sampler import PerTrialSeed

    if s.args.sampler == "random":
        return PerTrialSeed(lambda seed: optuna.samplers.RandomSampler(seed=seed), s.args.seed)
    return PerTrialSeed(lambda seed: optuna.samplers.TPESampler(seed=seed), s.args.seed)


def pruner(s: Search) -> Any:
    import optuna

    if s.args.pruner == "none":
        return optuna.pruners.NopPruner()
    if s.args.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)
    return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=s.cfg.epochs, reduction_factor=3)


def worker_study(s: Search, worker: int) -> Any:
    """The study as one worker sees it (its own sampler and the pruner)."""
    import optuna

    return optuna.load_study(study_name=s.study_name, storage=s.storage, sampler=sampler(s),
                             pruner=pruner(s))


def run_in_process(s: Search, worker: int, dataset: Any = None, reap_local: bool = True) -> int:
    """Run one worker here: trials until the study has --trials finished ones (or --timeout).

    ``reap_local``: also fail the running trials of dead processes on this machine (for the journal
    file, which has no heartbeats; with a database the heartbeats do it, on any machine).
    """
    from xpnet.search.trial import Objective, TrialSetup

    device = s.devices[worker % len(s.devices)]
    setup = TrialSetup(base_argv=s.base_argv, space=s.space, out=s.out, device=device,
                       worker=f"w{worker}@{socket.gethostname()}", quiet=s.args.quiet)
    if backend.device(device).is_host:
        from xpnet.accel import tuning

        tuning.keep_freed_host_memory()  # as xpnet train does: an application's choice
    deadline = None if s.args.timeout is None else time.time() + s.args.timeout
    with workermod.sigterm_as_sigint():
        return workermod.run_worker(worker_study(s, worker), Objective(setup, dataset), s.args.trials, deadline,
                                    reap_local=reap_local)


def has_heartbeat(s: Search) -> bool:
    """Relational storages beat; the journal file does not (the supervisor watches its processes instead)."""
    from optuna.storages.journal import JournalStorage

    return not isinstance(s.storage, JournalStorage)


def recover(s: Search) -> list[int]:
    """Before starting: queue again the trials an earlier run left interrupted, or running in a dead process."""
    requeued = workermod.requeue_unfinished(s.study)
    if not has_heartbeat(s):
        requeued += workermod.reap_dead(s.study)
    return requeued


def workers_counts(s: Search) -> dict[str, int]:
    """The study's trials by how they ended (``done``: what --trials counts)."""
    return workermod.counts(s.study)


def run_workers(s: Search, worker_command: Any, dataset: Any = None) -> int:
    """--workers 1: trials in this process; K: K processes ``worker_command(i)`` under a supervisor.

    ``worker_command(i)`` is the command line of worker ``i``: a program that calls
    :func:`prepare` and :func:`run_in_process` with ``worker=i`` and ``reap_local=False``.
    """
    if s.args.workers == 1:
        return run_in_process(s, 0, dataset, reap_local=not has_heartbeat(s))
    return workermod.supervise([worker_command(i) for i in range(s.args.workers)], s.study,
                               reap_local=not has_heartbeat(s))


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
    code = run_workers(s, lambda i: [sys.executable, "-m", "xpnet.search", *argv, "--worker-index", str(i)])
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

