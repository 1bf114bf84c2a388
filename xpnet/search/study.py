"""A search, checked and opened: the study, its sampler and pruner, and the workers that run its trials.

:func:`prepare` checks the search's settings (:class:`SearchOptions`) and the train flags
every trial gets (read by :mod:`xpnet.runflags`, the parser of `xpnet train`), the space,
the devices and the storage, and opens the study; :func:`run_workers` runs trials in this
process or in local worker processes. Bad input is a :class:`SearchError` (one line).
`xpnet search` (:mod:`xpnet.cli.search`) is the command line on top.
"""

from __future__ import annotations

import dataclasses
import json
import re
import socket
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from xpnet import backend
from xpnet.runflags import FlagError, TrainFlags
from xpnet.search import space as spacemod
from xpnet.search import storage as storagemod
from xpnet.search import workers as workermod
from xpnet.train.config import ConfigError, RunConfig

SAMPLERS = ("random", "tpe")
PRUNERS = ("none", "median", "hyperband")
#: Train flags that belong to a single run, not to a search.
_NOT_IN_SEARCH = {"--device": "use --devices (one per worker)",
                  "--resume": "a search continues when the same command is run again"}


class SearchError(Exception):
    """Bad input (a flag, the space, a device, the storage or study): one line; `xpnet search` exits 2."""


@dataclasses.dataclass
class SearchOptions:
    """The search's own settings (`xpnet search`'s flags, without the train flags its trials get)."""

    space: str | None = None
    val_split: float = 0.2
    trials: int = 20
    timeout: float | None = None
    seed: int = 0
    sampler: str = "tpe"
    pruner: str = "median"
    workers: int = 1
    devices: str = "auto"
    storage: str | None = None
    study: str | None = None
    out: str | None = None
    final: bool = False
    quiet: bool = False
    worker_index: int | None = None

    @classmethod
    def of(cls, values: Any) -> SearchOptions:
        """The options held by any object with these attributes (an argparse namespace, say)."""
        return cls(**{f.name: getattr(values, f.name) for f in dataclasses.fields(cls) if hasattr(values, f.name)})


class Search:
    """Everything checked and opened; a worker or the coordinator runs from here."""

    args: SearchOptions
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


def prepare(args: Any, rest: Sequence[str], space: spacemod.Space | None = None) -> Search:
    """Check every flag, the space, the devices and the storage; open (or create) the study.

    ``space`` replaces --space and the default space (for programs that search a fixed space, such as
    the book's experiment).
    """
    s = Search()
    s.args, s.flags = SearchOptions.of(args), TrainFlags()
    for a in rest:
        name = a.split("=", 1)[0]
        if name in _NOT_IN_SEARCH:
            raise SearchError(f"{name} is not a search flag: {_NOT_IN_SEARCH[name]}")
    s.base_argv = [*rest, "--val-split", repr(args.val_split), "--seed", str(args.seed)]
    try:
        s.cfg = s.flags.config(s.base_argv)
    except (FlagError, ConfigError) as exc:
        raise SearchError(str(exc)) from None
    given = s.flags.given(rest)
    if space is not None:
        s.space, source = dict(space), "the search space"
    elif args.space:
        try:
            s.space = spacemod.load(args.space)
        except spacemod.SpaceError as exc:
            raise SearchError(str(exc)) from None
        both = [n for n in s.space if n in {spacemod.flag_name(g) for g in given}]
        if both:
            raise SearchError(f"--{both[0]} is both given and searched (--space {args.space}); drop one")
        source = f"--space {args.space}"
    else:
        s.space = spacemod.default_space(s.cfg.model, given)
        source = f"the default space of --model {s.cfg.model}"
    _check_space(s, source)
    s.devices = _devices(args.devices)
    data_name = Path(s.cfg.dataset).stem if s.cfg.dataset_is_path else s.cfg.dataset  # a folder: its name
    s.study_name = args.study or f"{s.cfg.model}-{data_name}"
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", s.study_name):
        raise SearchError(f"--study {s.study_name!r}: use letters, digits, '.', '_' and '-'")
    s.out = Path(args.out) if args.out else Path("runs") / "search" / s.study_name
    if s.out.exists() and not s.out.is_dir():
        raise SearchError(f"--out {s.out} exists and is not a folder")
    s.storage_url = args.storage
    try:
        s.storage = storagemod.open_storage(args.storage, s.out)
    except storagemod.StorageError as exc:
        raise SearchError(str(exc)) from None
    s.study = _open_study(s)
    return s


def _check_space(s: Search, source: str) -> None:
    try:
        spacemod.check(s.space, s.flags.parse, s.flags.is_switch, source)
    except spacemod.SpaceError as exc:
        raise SearchError(str(exc)) from None
    # Every value must also fit the fixed flags (e.g. --dropout needs --model mlp).
    for name, p in s.space.items():
        for v in (p.choices if p.kind == "choice" else (p.low, p.high)):
            try:
                s.flags.config([*s.base_argv, *spacemod.to_argv({name: p}, {name: v}, s.flags.is_switch)])
            except (FlagError, ConfigError) as exc:
                raise SearchError(f"{source}: --{name} {spacemod.format_value(v)}: {exc}") from None


def _devices(spec: str) -> list[str]:
    """The device names of ``--devices``, checked without touching a GPU: every worker (and the supervisor)
    reads this list, and resolving a GPU opens a CUDA context on it, so each worker resolves only its own
    (:func:`worker_device`). A numbered GPU is checked against the device count here."""
    names = [d.strip().lower() for d in spec.split(",") if d.strip()]
    if not names:
        raise SearchError("--devices is empty; give cpu, auto or cuda:0,cuda:1,...")
    for name in names:
        m = re.fullmatch(r"(cpu|auto|cuda)(?::(\d+))?", name)
        if not m or (m.group(1) != "cuda" and m.group(2) is not None):
            raise SearchError(f"--devices {name}: unknown device; expected cpu, auto, cuda or cuda:N")
        if m.group(2) is not None:  # a numbered GPU is a promise about this machine: no silent CPU fallback
            count, reason = backend.cuda_count()
            if count == 0:
                raise SearchError(f"--devices {name}: CUDA is unusable here: {reason}")
            if int(m.group(2)) >= count:
                raise SearchError(f"--devices {name}: this machine has {count} CUDA device(s) "
                                  f"(cuda:0..cuda:{count - 1})")
    return names


def worker_device(s: Search, worker: int) -> backend.Device:
    """Worker ``worker``'s device, resolved (and so opened) in that worker alone; a numbered GPU that cannot
    run a kernel is an error there, not a silent CPU run."""
    name = s.devices[worker % len(s.devices)]
    m = re.fullmatch(r"cuda:(\d+)", name)
    if m:
        ok, reason, _ = backend.cuda_status(int(m.group(1)))
        if not ok:
            raise SearchError(f"--devices {name}: CUDA is unusable here: {reason}")
    return backend.device(name)


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
        raise SearchError(f"--storage {storagemod.describe(s.storage_url, s.out)}: {_one_line(exc)}") from None
    attrs = study.user_attrs
    if "xpnet_space" not in attrs:
        study.set_user_attr("xpnet_space", space_sig)
        study.set_user_attr("xpnet_objective", objective)
        return study
    where = f"study {s.study_name!r} in {storagemod.describe(s.storage_url, s.out)}"
    if attrs["xpnet_space"] != space_sig:
        raise SearchError(f"{where} was created with a different search space "
                         f"({_diff(json.loads(attrs['xpnet_space']), json.loads(space_sig))}); "
                         "pass --study NEW_NAME to start a new study")
    if attrs.get("xpnet_objective") != objective:
        old = json.loads(attrs.get("xpnet_objective") or "{}")
        new = json.loads(objective)
        raise SearchError(f"{where} was created with a different objective "
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

    dev = worker_device(s, worker)
    setup = TrialSetup(base_argv=s.base_argv, space=s.space, out=s.out, device=dev.name,
                       worker=f"w{worker}@{socket.gethostname()}", quiet=s.args.quiet)
    if dev.is_host:
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
