"""xpnet search as processes: no trial lost when a worker is killed, Ctrl-C and SIGTERM end it cleanly.

Each case runs ``scripts/search.py`` as a child process (real MNIST, tiny trials) whose
output goes to files as it runs, and reaps it, and every worker it started, however the
test ends. Times are bounded only by what the search promises, measured on this machine:
the heartbeat's grace, the supervisor's poll, and how long a process here takes to start.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

optuna = pytest.importorskip("optuna", reason="xpnet search needs Optuna (pip install 'xpnet[search]')")

from tests.search_runs import (  # noqa: E402
    SLACK_S,
    TINY,
    Children,
    assert_retried_by_the_heartbeat,
    first_free,
    journal_trials,
    launched_at,
    read_csv,
    started,
    wait_for,
)
from xpnet.search.storage import retry_races  # noqa: E402
from xpnet.search.workers import POLL_S  # noqa: E402
from xpnet.train import checkpoint as ckpt  # noqa: E402


def test_a_killed_worker_s_trial_is_retried_from_its_checkpoint(tmp_path: Path, mnist: None,
                                                                children: Children) -> None:
    out = tmp_path / "s"
    proc = children.search(*TINY, "--limit-train", "600", "--epochs", "40", "--trials", "3", "--workers", "2",
                           "--sampler", "random", "--pruner", "none", "--out", str(out))

    def running_with_epochs() -> Any:
        for t in journal_trials(out):
            if t.state.name == "RUNNING" and t.user_attrs.get("epochs", 0) >= 2:
                return t
        return None

    victim = wait_for(running_with_epochs, 300, "a trial with 2 epochs done")
    assert (Path(victim.user_attrs["dir"]) / ckpt.FILENAME).is_file()  # what the retry continues from
    os.kill(victim.user_attrs["pid"], signal.SIGKILL)
    killed_at = time.time()

    def retry_running() -> Any:  # once it has its own pid (a retry starts with a copy of the dead one's)
        for t in journal_trials(out):
            if t.user_attrs.get("retry_of") == victim.number and t.user_attrs.get("pid_of_trial") == t.number:
                return t
        return None

    taker = wait_for(retry_running, 300, "the retry").user_attrs["pid"]
    taker_launched = launched_at(taker)
    assert proc.wait(timeout=600) == 0, proc.stderr
    assert "died (SIGKILL)" in proc.stderr
    trials = journal_trials(out)
    dead = trials[victim.number]
    assert dead.state.name == "FAIL"
    retry = [t for t in trials if t.user_attrs.get("retry_of") == victim.number]
    assert len(retry) == 1 and retry[0].state.name == "COMPLETE", [(t.number, t.state) for t in trials]
    assert retry[0].params == victim.params
    if taker_launched is not None and taker_launched > killed_at - 1:
        # The worker that replaced the dead one: started at the supervisor's next poll, and the retry was the
        # first trial it ran (before it, only its start: the imports and opening the study).
        assert taker_launched - killed_at <= POLL_S + SLACK_S, taker_launched - killed_at
        assert min(started(t) for t in trials if t.user_attrs.get("pid") == taker) == started(retry[0])
    else:  # the other worker was free first and took it
        other = [t for t in trials if t.user_attrs.get("pid") == taker and t.number != retry[0].number]
        assert started(retry[0]) <= first_free(other, [taker], killed_at) + SLACK_S
    # It continued from the dead trial's checkpoint: its curve starts with the epochs done before.
    assert retry[0].user_attrs["curve"]["val"][:2] == dead.user_attrs["curve"]["val"][:2]
    rows = {r["number"]: r for r in read_csv(out / "trials.csv")}
    assert rows[str(victim.number)]["state"] == "died" and rows[str(retry[0].number)]["retry_of"] == \
        str(victim.number)
    assert not any(t.state.name == "RUNNING" for t in trials)
    assert not (Path(victim.user_attrs["dir"]) / ckpt.FILENAME).exists()  # the retry finished: no checkpoint


def test_sigterm_marks_the_trial_interrupted_and_a_rerun_resumes_it(tmp_path: Path, mnist: None,
                                                                   children: Children) -> None:
    out = tmp_path / "s"
    args = [*TINY, "--limit-train", "600", "--epochs", "60", "--trials", "1", "--pruner", "none", "--out", str(out)]
    proc = children.search(*args)
    wait_for(lambda: any(t.user_attrs.get("epochs", 0) >= 2 for t in journal_trials(out)), 300, "2 epochs")
    proc.signal(signal.SIGTERM)
    proc.wait(timeout=120)
    stderr = proc.stderr
    assert proc.proc.returncode == 143, stderr  # 128 + SIGTERM, as the trainer
    assert "run the same command again" in stderr
    (t,) = journal_trials(out)
    assert t.state.name == "FAIL" and t.user_attrs["status"] == "interrupted"
    assert read_csv(out / "trials.csv")[0]["state"] == "interrupted"
    done_before = t.user_attrs["epochs"]
    again = children.search(*args)
    assert again.wait(timeout=600) == 0, again.stderr
    assert "1 re-queued" in again.stderr
    trials = journal_trials(out)
    assert [x.state.name for x in trials] == ["FAIL", "COMPLETE"]
    assert trials[1].user_attrs["retry_of"] == 0 and trials[1].user_attrs["epochs"] == 60
    assert trials[1].user_attrs["curve"]["val"][:done_before] == t.user_attrs["curve"]["val"][:done_before]


def test_ctrl_c_marks_the_trial_interrupted_and_exits_130(tmp_path: Path, mnist: None, children: Children) -> None:
    out = tmp_path / "s"
    proc = children.search(*TINY, "--limit-train", "600", "--epochs", "60", "--trials", "1", "--pruner", "none",
                           "--out", str(out))
    wait_for(lambda: any(t.user_attrs.get("epochs", 0) >= 1 for t in journal_trials(out)), 300, "1 epoch")
    proc.signal(signal.SIGINT)
    assert proc.wait(timeout=120) == 130, proc.stderr  # 128 + SIGINT; SIGTERM gives 143
    assert "run the same command again" in proc.stderr and "Traceback" not in proc.stderr
    assert "warning" not in proc.stderr  # no trial finished: nothing to draw, nothing to warn about
    (t,) = journal_trials(out)
    assert t.state.name == "FAIL" and t.user_attrs["status"] == "interrupted"
    assert (Path(t.user_attrs["dir"]) / ckpt.FILENAME).is_file()  # kept for the rerun to resume from


def test_sqlite_heartbeats_retry_the_trial_of_a_killed_search(tmp_path: Path, mnist: None,
                                                              children: Children) -> None:
    """SQLite beats as PostgreSQL does: only the heartbeat can tell that the killed search's trial is dead."""
    out = tmp_path / "s"
    args = [*TINY, "--limit-train", "600", "--epochs", "12", "--trials", "1", "--pruner", "none", "--storage",
            f"sqlite:///{tmp_path / 'search.db'}", "--out", str(out)]
    first = children.search(*args)
    db = tmp_path / "search.db"
    storages: list[Any] = []  # one connection pool for every look, closed at the end

    def trials() -> list[Any]:
        if not db.exists():
            return []
        if not storages:
            # The search may be creating the tables this very moment: the same race any second process meets.
            storages.append(retry_races(lambda: optuna.storages.RDBStorage(f"sqlite:///{db}")))
        try:
            return optuna.load_study(study_name="mlp-mnist", storage=storages[0]).trials
        except KeyError:  # the file is there a moment before the study is
            return []

    try:
        victim = wait_for(lambda: next((t for t in trials() if t.user_attrs.get("epochs", 0) >= 2), None), 300,
                          "2 epochs")
        first.signal(signal.SIGKILL)
        killed_at = time.time()
        assert first.wait(timeout=60) == -signal.SIGKILL
        again = children.search(*args)
        wait_for(lambda: "0 of 1 trials done" in again.stderr, 300, "the rerun to open the study")
        ready_at = time.time()
        assert again.wait(timeout=600) == 0, again.stderr
        done = trials()
        assert [t.state.name for t in done] == ["FAIL", "COMPLETE"], done
        retry = done[1]
        assert retry.user_attrs["retry_of"] == victim.number and retry.params == victim.params
        assert retry.user_attrs["curve"]["val"][:2] == victim.user_attrs["curve"]["val"][:2]  # from the checkpoint
        assert_retried_by_the_heartbeat(retry, killed_at, free_at=ready_at)
    finally:
        for st in storages:
            st.engine.dispose()


def test_the_journal_lock_dies_with_a_killed_worker(tmp_path: Path, children: Children) -> None:
    """A worker killed while it writes the journal must not leave a lock that stalls every other one."""
    import fcntl
    import sys

    from xpnet.search.storage import JournalLock, open_storage

    storage = open_storage(None, tmp_path)
    lock = storage._backend._lock  # what the search's journal writes take
    assert isinstance(lock, JournalLock) and lock.path == tmp_path / "study.journal.flock"
    ready = tmp_path / "holding"
    holder = children.start([sys.executable, "-c", "import sys, time\nfrom pathlib import Path\n"
                             "from xpnet.search.storage import JournalLock\n"
                             "JournalLock(Path(sys.argv[1])).acquire()\nPath(sys.argv[2]).touch()\ntime.sleep(600)\n",
                             str(lock.path), str(ready)])
    wait_for(ready.exists, 120, "the holder to take the lock")

    def free() -> bool:
        fd = os.open(lock.path, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False
        finally:
            os.close(fd)

    assert not free()  # held: writers wait
    holder.signal(signal.SIGKILL)
    assert holder.wait(timeout=60) == -signal.SIGKILL
    assert free()  # its holder died: the next writer goes on at once
    lock.acquire()
    lock.release()
