"""What the search tests share: tiny trials, the search's child processes, and polling the study.

A child's stdout and stderr go to files as it runs, so no pipe fills up and blocks it
however long the test polls; every child is reaped (killed first if it still runs)
when the test ends, passed or failed, so nothing it started outlives it. Every wait
polls for the state it needs: a study is read only once its record exists.
"""

from __future__ import annotations

import contextlib
import csv
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "search.py"
#: A trial of about a second: 300 training images, 2 epochs, validation on the held-out 20%.
TINY = ["--limit-train", "300", "--train-eval-size", "100", "--devices", "cpu"]
#: What the moments between "a worker looks" and "the trial's start is stored" may take on a loaded machine.
SLACK_S = 2.0


def env(**extra: str) -> dict[str, str]:
    e = dict(os.environ, XPNET_OFFLINE="1", PYTHONPATH=str(ROOT), MPLBACKEND="Agg", OMP_NUM_THREADS="1",
             OPENBLAS_NUM_THREADS="1", **extra)
    e.pop("COLUMNS", None)
    return e


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, every: float = 0.3) -> Any:
    """Poll ``predicate`` until it returns something true (a safety net of ``timeout`` s, not a bound)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = predicate()
        if got:
            return got
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def journal_trials(out: Path, name: str = "mlp-mnist") -> list[Any]:
    """The trials of the journal study in ``out``; none while the journal or the study's record is not there."""
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    path = out / "study.journal"
    if not path.exists():
        return []
    try:
        return optuna.load_study(study_name=name,
                                 storage=JournalStorage(JournalFileBackend(str(path)))).trials
    except KeyError:  # the journal is created a moment before the study's record is written into it
        return []


class Child:
    """One process, its output in two files."""

    def __init__(self, argv: Sequence[str], logs: Path, name: str, environ: dict[str, str]) -> None:
        logs.mkdir(parents=True, exist_ok=True)
        self.out_path, self.err_path = logs / f"{name}.out", logs / f"{name}.err"
        with open(self.out_path, "w") as out, open(self.err_path, "w") as err:
            # A process group of its own: the workers a search starts are reaped with it.
            self.proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=err, text=True,
                                         env=environ, cwd=ROOT, start_new_session=True)
        self.started = time.time()

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def stdout(self) -> str:
        return self.out_path.read_text()

    @property
    def stderr(self) -> str:
        return self.err_path.read_text()

    def wait(self, timeout: float) -> int:
        """The exit status (a safety-net timeout: the test fails, the child is reaped at the end)."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"pid {self.pid} still runs after {timeout}s; stderr:\n{self.stderr[-3000:]}"
                                 ) from None

    def signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signum)


class Children:
    """The processes one test starts; on exit every one still running, and every worker they started, is
    killed, and all are reaped."""

    def __init__(self, logs: Path) -> None:
        self.logs, self.started = logs, []  # type: list[Child]

    def start(self, argv: Sequence[str], name: str | None = None, environ: dict[str, str] | None = None) -> Child:
        child = Child(argv, self.logs, name or f"child{len(self.started)}", environ or env())
        self.started.append(child)
        return child

    def search(self, *args: str, name: str | None = None) -> Child:
        """``scripts/search.py ARGS``."""
        return self.start([sys.executable, str(SCRIPT), *args], name)

    def __enter__(self) -> Children:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        for child in self.started:
            with contextlib.suppress(ProcessLookupError, PermissionError):  # the group is gone: all ended
                os.killpg(child.pid, signal.SIGKILL)  # the child and any worker it left
        for child in self.started:
            child.proc.wait()


#: A search process that imports everything first, says so, then waits for the word to go: processes
#: started this way open the study at the same moment, as a cluster's job array does at its worst.
_TOGETHER = ("import sys, time\n"
             "from pathlib import Path\n"
             "import optuna, sqlalchemy\n"
             "from xpnet.cli.search import main\n"
             "Path(sys.argv[1]).touch()\n"
             "while not Path(sys.argv[2]).exists():\n"
             "    time.sleep(0.002)\n"
             "sys.exit(main(sys.argv[3:]))\n")


def start_together(children: Children, argvs: Sequence[Sequence[str]], tag: str) -> list[Child]:
    """One search process per argv, all released at once when every one is ready."""
    go = children.logs / f"{tag}-go"
    ready = [children.logs / f"{tag}-ready{i}" for i in range(len(argvs))]
    kids = [children.start([sys.executable, "-c", _TOGETHER, str(r), str(go), *argv], f"{tag}-{i}")
            for i, (r, argv) in enumerate(zip(ready, argvs, strict=True))]
    wait_for(lambda: all(r.exists() for r in ready) or any(k.proc.poll() is not None for k in kids), 300,
             "the processes to be ready")
    assert all(k.proc.poll() is None for k in kids), [k.stderr for k in kids]
    go.touch()
    return kids


def launched_at(pid: int) -> float | None:
    """When process ``pid`` started (time.time()'s clock, from /proc); None once it is gone."""
    try:
        ticks = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])  # field 22: starttime
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, IndexError, ValueError):
        return None
    return time.time() - (uptime - ticks / os.sysconf("SC_CLK_TCK"))


def started(t: Any) -> float:
    return float(t.datetime_start.timestamp())


def first_free(trials: Sequence[Any], pids: Sequence[int], at: float) -> float:
    """The first moment from ``at`` on when one of the processes ``pids`` asks for a trial: at once if it
    is waiting then, else when the trial it runs at ``at`` ends (a worker looks before every trial)."""
    moments = []
    for pid in pids:
        moment = at
        for t in sorted((t for t in trials if t.user_attrs.get("pid") == pid and t.datetime_complete), key=started):
            if started(t) <= moment < t.datetime_complete.timestamp():
                moment = t.datetime_complete.timestamp()
        moments.append(moment)
    return min(moments)


def assert_retried_by_the_heartbeat(retry: Any, killed_at: float, free_at: float) -> None:
    """A killed trial beat last before it was killed: it is stale GRACE_S later, not before the grace minus one
    beat, and a free worker (one that asks for a trial, or waits and looks every POLL_S) retries it then."""
    from xpnet.search.storage import GRACE_S, HEARTBEAT_S
    from xpnet.search.workers import POLL_S

    assert started(retry) >= killed_at + GRACE_S - HEARTBEAT_S - SLACK_S, started(retry) - killed_at
    assert started(retry) <= max(killed_at + GRACE_S, free_at) + POLL_S + SLACK_S, \
        (started(retry) - killed_at, free_at - killed_at)
