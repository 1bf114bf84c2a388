"""xpnet search on a real PostgreSQL: several processes join one study; a killed one's trial is retried.

A throw-away server is started for the module: ``initdb`` + ``pg_ctl`` in a temp folder,
listening on a free loopback port, run as the ``postgres`` user when the tests run as
root (the server refuses root). Everything is skipped, with the reason, where there is
no PostgreSQL server program or it cannot start.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

optuna = pytest.importorskip("optuna", reason="xpnet search needs Optuna (pip install 'xpnet[search]')")
pytest.importorskip("psycopg", reason="PostgreSQL storage needs psycopg (pip install 'psycopg[binary]')")

from tests.test_search import ROOT, SCRIPT, TINY, env, read_csv, wait_for  # noqa: E402


def _bindir() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return os.path.dirname(found[-1])
    initdb = shutil.which("initdb")
    return os.path.dirname(initdb) if initdb else None


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """postgresql://postgres@127.0.0.1:PORT/postgres of a server that lives as long as this module."""
    bindir = _bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server not installed (no initdb; Debian: apt-get install postgresql)")
    as_user: list[str] = []
    folder = tempfile.mkdtemp(prefix="xpnet-pg-", dir="/tmp")
    if os.geteuid() == 0:
        try:
            shutil.chown(folder, "postgres")
        except (LookupError, OSError) as exc:
            shutil.rmtree(folder, ignore_errors=True)
            pytest.skip(f"running as root and cannot hand a folder to the postgres user: {exc}")
        as_user = ["runuser", "-u", "postgres", "--"]
    os.chmod(folder, 0o700)
    data, port = f"{folder}/data", _free_port()
    pg_ctl = [*as_user, f"{bindir}/pg_ctl", "-D", data]
    try:
        init = subprocess.run([*as_user, f"{bindir}/initdb", "-D", data, "-U", "postgres", "--auth=trust",
                               "-E", "UTF8", "--no-sync"], capture_output=True, text=True, timeout=120)
        if init.returncode != 0:
            pytest.skip(f"initdb failed: {(init.stderr.strip().splitlines() or ['?'])[-1]}")
        up = subprocess.run([*pg_ctl, "-l", f"{folder}/server.log", "-w", "-t", "60", "-o",
                             f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off "
                             "-c max_connections=50", "start"], capture_output=True, text=True, timeout=120)
        if up.returncode != 0:
            pytest.skip(f"PostgreSQL did not start: {(up.stderr.strip().splitlines() or ['?'])[-1]}")
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*pg_ctl, "-m", "immediate", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def mnist(mnist_path: Path) -> None:
    """Real MNIST for the search processes (skipped without it)."""
    os.environ["XPNET_DATA_DIR"] = str(mnist_path.parent if mnist_path.name == "mnist" else mnist_path)


_STORAGES: dict[str, Any] = {}


def _study(url: str, name: str) -> Any:
    """The study as the test sees it, through one storage (one connection pool) per URL."""
    from xpnet.search.storage import _postgres_url

    if url not in _STORAGES:
        _STORAGES[url] = optuna.storages.RDBStorage(_postgres_url(url))
    return optuna.load_study(study_name=name, storage=_STORAGES[url])


def _start(url: str, study: str, out: Path, *extra: str) -> subprocess.Popen[str]:
    args = [*TINY, "--limit-train", "600", "--sampler", "random", "--pruner", "none", "--storage", url,
            "--study", study, "--out", str(out), *extra]
    return subprocess.Popen([sys.executable, str(SCRIPT), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env(), cwd=ROOT)


def test_processes_share_one_study_and_a_killed_one_s_trial_is_retried(postgres_url: str, tmp_path: Path,
                                                                        mnist: None) -> None:
    # Three "machines" run the same command; the third is killed -9 in the middle of a trial.
    common = ("--epochs", "30", "--trials", "5")
    procs = [_start(postgres_url, "shared", tmp_path / f"m{i}", *common) for i in range(3)]
    victim_pid = procs[2].pid
    try:
        def victim_trial() -> Any:
            try:
                trials = _study(postgres_url, "shared").trials
            except KeyError:  # the study does not exist yet
                return None
            for t in trials:
                if t.state.name == "RUNNING" and t.user_attrs.get("pid") == victim_pid \
                        and t.user_attrs.get("epochs", 0) >= 2:
                    return t
            return None

        victim = wait_for(victim_trial, 180, "the third process to be 2 epochs into a trial")
        procs[2].send_signal(signal.SIGKILL)
        killed_at = time.time()
        try:
            results = [p.communicate(timeout=300) for p in procs[:2]]
        except subprocess.TimeoutExpired:
            states = [(t.number, t.state.name, t.user_attrs.get("pid"), t.user_attrs.get("retry_of"))
                      for t in _study(postgres_url, "shared").trials]
            raise AssertionError(f"the search did not finish; trials: {states}") from None
        procs[2].wait(timeout=10)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (_, err) in zip(procs[:2], results, strict=True):
        assert p.returncode == 0, err
    trials = _study(postgres_url, "shared").trials
    # One study: trials from both surviving processes (and the dead one) in the same table.
    pids = {t.user_attrs.get("pid") for t in trials}
    assert {procs[0].pid, procs[1].pid, victim_pid} <= pids
    assert sum(t.state.name == "COMPLETE" for t in trials) >= 5
    # The killed trial was failed by the heartbeat and retried, with the same params, within 30 s.
    dead = trials[victim.number]
    assert dead.state.name == "FAIL"
    retries = [t for t in trials if t.user_attrs.get("retry_of") == victim.number]
    assert len(retries) == 1 and retries[0].state.name == "COMPLETE" and retries[0].params == victim.params
    assert retries[0].datetime_start.timestamp() - killed_at < 30
    # Every machine writes the same results from the database.
    rows = read_csv(tmp_path / "m0" / "trials.csv")
    assert {r["state"] for r in rows} >= {"completed", "died"}
    assert len(rows) == len(trials)


def test_rerunning_continues_and_another_objective_is_refused(postgres_url: str, tmp_path: Path,
                                                              mnist: None) -> None:
    first = _start(postgres_url, "again", tmp_path / "a", "--epochs", "2", "--trials", "2")
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    second = _start(postgres_url, "again", tmp_path / "b", "--epochs", "2", "--trials", "3")
    _, err = second.communicate(timeout=300)
    assert second.returncode == 0, err
    assert "2 of 3 trials done" in err
    assert len(_study(postgres_url, "again").trials) == 3
    other = _start(postgres_url, "again", tmp_path / "c", "--epochs", "5", "--trials", "3")
    _, err = other.communicate(timeout=120)
    assert other.returncode == 2
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1 and "different objective" in lines[0] and "127.0.0.1" in lines[0], err
