"""Workers: the loop that runs trials until the study has enough, and the local process supervisor.

A worker asks Optuna for one trial at a time, so it can stop when the study (shared
with every other worker, on any machine) has ``--trials`` finished trials, or when
``--timeout`` has passed. ``--workers K`` starts K worker processes on this machine,
each on one of ``--devices``; the supervisor forwards Ctrl-C/SIGTERM and, for
storages without heartbeats (the journal file), fails and re-queues the trial of a
worker that died.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from xpnet.search.storage import MAX_RETRY, retry_callback
from xpnet.search.trial import Objective, TrialInterrupted
from xpnet.train import signals

EXIT_OK, EXIT_FAIL, EXIT_INTERRUPTED = 0, 1, 130
#: How often the supervisor looks for dead workers and stale trials.
POLL_S = 1.0


def _states() -> Any:
    from optuna.trial import TrialState

    return TrialState


def counts(study: Any) -> dict[str, int]:
    """Trials by how they ended; ``done`` counts those the --trials budget spends."""
    ts = _states()
    n = {"complete": 0, "pruned": 0, "fail": 0, "running": 0, "waiting": 0, "error": 0}
    for t in study.get_trials(deepcopy=False):
        if t.state == ts.COMPLETE:
            n["complete"] += 1
        elif t.state == ts.PRUNED:
            n["pruned"] += 1
        elif t.state == ts.RUNNING:
            n["running"] += 1
        elif t.state == ts.WAITING:
            n["waiting"] += 1
        elif t.state == ts.FAIL:
            n["fail"] += 1
            n["error"] += t.user_attrs.get("status") == "error"
    # A trial that raised (a bug, a config the space allows but the net refuses) is spent, not retried.
    n["done"] = n["complete"] + n["pruned"] + n["error"]
    return n


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a killed child its parent has not reaped yet, a zombie, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _retried(trials: Sequence[Any], t: Any) -> int:
    """How many later trials carry ``t``'s folder, i.e. retry it."""
    folder = t.user_attrs.get("dir")
    return sum(1 for u in trials if u.number > t.number and u.user_attrs.get("dir") == folder)


def _retry(study: Any, t: Any) -> bool:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        retry_callback()(study, t)
    return True


def reap_dead(study: Any, skip_pids: Sequence[int] = ()) -> list[int]:
    """Fail the running trials of this machine's dead worker processes and queue their retries.

    For storages without heartbeats; returns the numbers of the trials it failed.
    """
    ts, host, failed = _states(), socket.gethostname(), []
    for t in study.get_trials(deepcopy=False, states=(ts.RUNNING,)):
        pid = t.user_attrs.get("pid")
        # A retry starts with a copy of the dead trial's attributes: its pid counts only once set for it.
        if t.user_attrs.get("pid_of_trial") != t.number or t.user_attrs.get("host") != host \
                or not isinstance(pid, int) or pid in skip_pids or _alive(pid):
            continue
        try:
            study.tell(t.number, state=ts.FAIL, skip_if_finished=True)
        except Exception:  # another worker failed it first
            continue
        failed.append(t.number)
        _retry(study, t)
    return failed


def requeue_unfinished(study: Any) -> list[int]:
    """Queue again the failed trials that were interrupted or whose worker died (not those that raised)."""
    ts = _states()
    trials = study.get_trials(deepcopy=False)
    queued = []
    for t in trials:
        if t.state != ts.FAIL or t.user_attrs.get("status") not in ("running", "interrupted"):
            continue
        if _retried(trials, t):
            continue
        if sum(1 for u in trials if u.user_attrs.get("dir") == t.user_attrs.get("dir")) > MAX_RETRY:
            continue
        _retry(study, t)
        queued.append(t.number)
    return queued


def run_worker(study: Any, objective: Objective, trials: int, deadline: float | None,
               reap_local: bool) -> int:
    """Run trials until the study has ``trials`` finished ones (or the deadline); return the exit status.

    When the trials still running elsewhere would make up the count, the worker waits for them
    instead of leaving: one of them may belong to a dead worker and come back as a retry.
    """
    import optuna

    try:
        while True:
            if deadline is not None and time.time() >= deadline:
                return EXIT_OK
            _fail_stale(study)  # heartbeat storages: fail (and so re-queue) trials whose worker went silent
            if reap_local:
                reap_dead(study)
            n = counts(study)
            if n["done"] >= trials:
                return EXIT_OK
            if n["waiting"] == 0 and n["done"] + n["running"] >= trials:
                time.sleep(POLL_S)
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.optimize(objective, n_trials=1, catch=(Exception,), gc_after_trial=False)
    except (TrialInterrupted, KeyboardInterrupt) as exc:  # 130 for Ctrl-C, 143 for SIGTERM
        return signals.exit_status(signals.signum_of(exc))


# --- the local supervisor --------------------------------------------------------------------------

@contextlib.contextmanager
def sigterm_as_sigint() -> Iterator[None]:
    """SIGTERM does what Ctrl-C does while trials run: the trainer finishes its step and the trial is
    marked interrupted. The previous handler is restored afterwards."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGTERM"):
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise signals.Interrupted(signum)  # a KeyboardInterrupt that remembers it was SIGTERM

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def supervise(commands: Sequence[Sequence[str]], study: Any, reap_local: bool, restarts: int = MAX_RETRY) -> int:
    """Start one process per command, wait for all; a worker that dies is replaced (up to ``restarts``
    times per slot) so the retry of its trial has a worker to run it."""
    env = {**os.environ}
    # The workers import the same xpnet as this process, installed or not.
    root = str(Path(__file__).resolve().parents[2])  # the folder holding this xpnet/
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    # One BLAS thread per worker unless the user chose: K processes share the cores.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(var, "1")
    procs = [subprocess.Popen(list(cmd), env=env) for cmd in commands]
    started = [1] * len(procs)
    stopping = 0  # the signal that asked the workers to stop

    def forward(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = signum
        for p in procs:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    p.send_signal(signal.SIGTERM if signum == signal.SIGTERM else signal.SIGINT)

    old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        codes: list[int | None] = [None] * len(procs)
        while any(c is None for c in codes):
            time.sleep(POLL_S)
            for i, p in enumerate(procs):
                if codes[i] is None and p.poll() is not None:
                    codes[i] = p.returncode
                    if p.returncode < 0 and not stopping:
                        again = started[i] <= restarts
                        print(f"xpnet search: worker {i} died ({signal.Signals(-p.returncode).name}); its trial "
                              f"is retried{'; starting a new worker' if again else ''}", file=sys.stderr,
                              flush=True)
                        if again:
                            if reap_local:
                                reap_dead(study)
                            procs[i] = subprocess.Popen(list(commands[i]), env=env)
                            started[i] += 1
                            codes[i] = None
            if reap_local:
                reap_dead(study)
            else:
                _fail_stale(study)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    if stopping:
        return signals.exit_status(stopping)
    for code in (EXIT_INTERRUPTED, signals.exit_status(signal.SIGTERM)):
        if code in codes:
            return code
    if any(c not in (0, None) and c > 0 for c in codes):
        return EXIT_FAIL
    return EXIT_OK


def _fail_stale(study: Any) -> None:
    """Heartbeat storages: fail (and so re-queue) stale trials now rather than at the next trial start."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # A database hiccup is harmless here: the workers do the same before every trial.
        with contextlib.suppress(Exception):
            optuna.storages.fail_stale_trials(study)
