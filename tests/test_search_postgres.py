"""xpnet search on a real PostgreSQL: processes started together join one study; a killed one's trial is retried.

A throw-away server is started for the module: ``initdb`` + ``pg_ctl`` in a temp folder,
listening on a free loopback port (another one if that port is taken meanwhile), run as
the ``postgres`` user when the tests run as root (the server refuses root). Each case gets
a fresh database, as a new study on a new cluster would. Everything is skipped, with the
reason, where there is no PostgreSQL server program or it cannot start.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

optuna = pytest.importorskip("optuna", reason="xpnet search needs Optuna (pip install 'xpnet[search]')")
psycopg = pytest.importorskip("psycopg", reason="PostgreSQL storage needs psycopg (pip install 'psycopg[binary]')")

from tests.search_runs import (  # noqa: E402
    TINY,
    Children,
    assert_retried_by_the_heartbeat,
    first_free,
    read_csv,
    start_together,
    wait_for,
)
from xpnet.search.storage import _postgres_url  # noqa: E402

#: How many times the server is started on another port when the free one it was given is taken meanwhile.
PORT_TRIES = 5


def _bindir() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return os.path.dirname(found[-1])
    initdb = shutil.which("initdb")
    return os.path.dirname(initdb) if initdb else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclasses.dataclass
class Server:
    """The module's server, fresh databases on it, and the test's own look at a study."""

    port: int
    storages: dict[str, Any] = dataclasses.field(default_factory=dict)
    databases: int = 0

    def url(self, db: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{db}"

    def fresh_database(self) -> str:
        self.databases += 1
        name = f"xps{self.databases}"
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def study(self, url: str, name: str) -> Any:
        """The study through one storage (one connection pool) per URL, closed with the server."""
        if url not in self.storages:
            self.storages[url] = optuna.storages.RDBStorage(_postgres_url(url))
        return optuna.load_study(study_name=name, storage=self.storages[url])

    def trials(self, url: str, name: str) -> list[Any]:
        """The study's trials; none while the study is not there yet."""
        try:
            return self.study(url, name).trials
        except KeyError:
            return []


@pytest.fixture(scope="module")
def pg() -> Iterator[Server]:
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
    data, log = f"{folder}/data", Path(folder) / "server.log"
    pg_ctl = [*as_user, f"{bindir}/pg_ctl", "-D", data]
    server: Server | None = None
    try:
        init = subprocess.run([*as_user, f"{bindir}/initdb", "-D", data, "-U", "postgres", "--auth=trust",
                               "-E", "UTF8", "--no-sync"], capture_output=True, text=True, timeout=120)
        if init.returncode != 0:
            pytest.skip(f"initdb failed: {(init.stderr.strip().splitlines() or ['?'])[-1]}")
        for _ in range(PORT_TRIES):  # a free port may be taken between our look and the server's bind
            port = _free_port()
            up = subprocess.run([*pg_ctl, "-l", str(log), "-w", "-t", "60", "-o",
                                 f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off "
                                 "-c max_connections=50", "start"], capture_output=True, text=True, timeout=120)
            if up.returncode == 0:
                server = Server(port)
                break
            if "could not bind" not in (log.read_text() if log.exists() else ""):
                break
        if server is None:
            pytest.skip(f"PostgreSQL did not start: {(up.stderr.strip().splitlines() or ['?'])[-1]}")
        yield server
    finally:
        for storage in (server.storages.values() if server else ()):
            storage.engine.dispose()
        subprocess.run([*pg_ctl, "-m", "immediate", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def postgres_url(pg: Server) -> str:
    return pg.fresh_database()


def _args(url: str, study: str, out: Path, *extra: str) -> list[str]:
    return [*TINY, "--limit-train", "600", "--sampler", "random", "--pruner", "none", "--storage", url,
            "--study", study, "--out", str(out), *extra]


def test_processes_started_together_on_a_fresh_database_share_one_study(pg: Server, tmp_path: Path, mnist: None,
                                                                        children: Children) -> None:
    """Issue 24: the first processes on an empty database race to create Optuna's tables and the study."""
    for round_ in range(3):  # each round on a new database: the race is there only once per database
        url = pg.fresh_database()
        outs = [tmp_path / f"r{round_}m{i}" for i in range(3)]
        kids = start_together(children, [_args(url, "race", out, "--epochs", "1", "--trials", "3", "--quiet")
                                         for out in outs], f"round{round_}")
        for kid in kids:
            assert kid.wait(timeout=600) == 0, kid.stderr
            assert kid.stderr == "", kid.stderr  # --quiet: no error, no warning, no retry noise
            assert kid.stdout.startswith("search race: best trial "), kid.stdout
        trials = pg.trials(url, "race")
        assert optuna.get_all_study_names(pg.storages[url]) == ["race"]
        assert [t.state.name for t in trials] == ["COMPLETE"] * 3
        assert {t.user_attrs["pid"] for t in trials} <= {k.pid for k in kids}
        # Every process wrote its results from the one study.
        tables = [read_csv(out / "trials.csv") for out in outs]
        assert all(table == tables[0] for table in tables) and len(tables[0]) == 3


def test_processes_share_one_study_and_a_killed_one_s_trial_is_retried(pg: Server, postgres_url: str,
                                                                        tmp_path: Path, mnist: None,
                                                                        children: Children) -> None:
    # Three "machines" start the same command together; the third is killed -9 in the middle of a trial.
    procs = start_together(children, [_args(postgres_url, "shared", tmp_path / f"m{i}", "--epochs", "30",
                                            "--trials", "5") for i in range(3)], "machines")
    victim_pid = procs[2].pid

    def victim_trial() -> Any:
        for t in pg.trials(postgres_url, "shared"):
            if t.state.name == "RUNNING" and t.user_attrs.get("pid") == victim_pid \
                    and t.user_attrs.get("epochs", 0) >= 2:
                return t
        return None

    victim = wait_for(victim_trial, 300, "the third process to be 2 epochs into a trial")
    procs[2].signal(signal.SIGKILL)
    killed_at = time.time()
    assert procs[2].wait(timeout=60) == -signal.SIGKILL
    for p in procs[:2]:
        assert p.wait(timeout=600) == 0, p.stderr
    trials = pg.study(postgres_url, "shared").trials
    # One study: trials from both surviving processes (and the dead one) in the same table.
    pids = {t.user_attrs.get("pid") for t in trials}
    assert {procs[0].pid, procs[1].pid, victim_pid} <= pids
    assert sum(t.state.name == "COMPLETE" for t in trials) >= 5
    assert not any(t.state.name == "RUNNING" for t in trials), [(t.number, t.state.name) for t in trials]
    # The killed trial was failed by the heartbeat and retried with the same params, by the first survivor
    # to look once it was stale.
    dead = trials[victim.number]
    assert dead.state.name == "FAIL"
    retries = [t for t in trials if t.user_attrs.get("retry_of") == victim.number]
    assert len(retries) == 1 and retries[0].state.name == "COMPLETE" and retries[0].params == victim.params
    from xpnet.search.storage import GRACE_S

    free_at = first_free(trials, [procs[0].pid, procs[1].pid], killed_at + GRACE_S)
    assert_retried_by_the_heartbeat(retries[0], killed_at, free_at)
    # Every machine writes the same results from the database.
    rows = read_csv(tmp_path / "m0" / "trials.csv")
    assert {r["state"] for r in rows} >= {"completed", "died"}
    assert len(rows) == len(trials)


def test_rerunning_continues_and_another_objective_is_refused(pg: Server, postgres_url: str, tmp_path: Path,
                                                              mnist: None, children: Children) -> None:
    first = children.search(*_args(postgres_url, "again", tmp_path / "a", "--epochs", "2", "--trials", "2"))
    assert first.wait(timeout=600) == 0, first.stderr
    second = children.search(*_args(postgres_url, "again", tmp_path / "b", "--epochs", "2", "--trials", "3"))
    assert second.wait(timeout=600) == 0, second.stderr
    assert "2 of 3 trials done" in second.stderr
    assert len(pg.study(postgres_url, "again").trials) == 3
    other = children.search(*_args(postgres_url, "again", tmp_path / "c", "--epochs", "5", "--trials", "3"))
    assert other.wait(timeout=300) == 2
    err = other.stderr
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1 and "different objective" in lines[0] and "127.0.0.1" in lines[0], err
