"""Where a study lives: a journal file (default, nothing to start), SQLite, or PostgreSQL.

Every worker on every machine that opens the same storage and study name joins
one study. Relational storages get Optuna's heartbeats: a worker that dies
(kill -9, a lost machine) stops beating, and the next worker that asks for a trial
marks its trial failed and queues a retry (within ``GRACE_S`` + one trial start).
A journal file has no heartbeats; there the search's supervisor notices dead local
worker processes itself (see :mod:`xpnet.search.workers`).
"""

from __future__ import annotations

import os
import random
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

#: Heartbeat every HEARTBEAT_S seconds; a trial silent for GRACE_S is stale (retried at the next look).
HEARTBEAT_S, GRACE_S = 5, 15
#: How often a trial may be retried after its worker died.
MAX_RETRY = 3
JOURNAL = "study.journal"
#: Processes started together on a fresh database race to create Optuna's tables and the study: the
#: losers see a unique violation or "already exists" and try again this many times, after a pause that
#: doubles each time, jittered so that they do not collide again in step.
RACE_TRIES, RACE_PAUSE_S = 8, 0.05
#: PostgreSQL's codes for "another session created it first": unique_violation, duplicate_table,
#: duplicate_object, duplicate_schema.
_RACE_SQLSTATES = frozenset({"23505", "42P07", "42710", "42P06"})
T = TypeVar("T")


class StorageError(ValueError):
    """A storage URL that cannot be used (one line naming the scheme, or the host and port)."""


def retry_callback() -> Any:
    """Optuna's stale-trial callback: re-queue the trial with its params and attributes (hence its folder)."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY,
                                                                inherit_intermediate_values=True)


def lost_a_creation_race(exc: BaseException) -> bool:
    """Whether ``exc`` says another process created the same table, row or study first."""
    import optuna

    seen: list[BaseException] = []
    e: BaseException | None = exc
    while e is not None and e not in seen:  # Optuna and SQLAlchemy wrap the driver's error
        seen.append(e)
        if isinstance(e, optuna.exceptions.DuplicatedStudyError) or \
                getattr(e, "sqlstate", None) in _RACE_SQLSTATES:
            return True
        text = str(e).lower()
        if "already exists" in text or "unique constraint" in text:  # SQLite says it in words
            return True
        e = getattr(e, "orig", None) or e.__cause__ or e.__context__
    return False


def retry_races(action: Callable[[], T], tries: int = RACE_TRIES) -> T:
    """``action()``, again after a jittered back-off while it loses a creation race (any other error
    is raised at once, as is the last race)."""
    for attempt in range(tries):
        try:
            return action()
        except Exception as exc:
            if attempt == tries - 1 or not lost_a_creation_race(exc):
                raise
        time.sleep(RACE_PAUSE_S * 2 ** attempt * random.uniform(0.5, 1.5))
    raise AssertionError("unreachable")


def describe(url: str | None, out: Path) -> str:
    """The storage as a person should read it (no password)."""
    if url is None:
        return str(out / JOURNAL)
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@")
    return url


class JournalLock:
    """The journal file's write lock, held with flock(2) so that the kernel drops it when its holder dies.

    Optuna's default lock is a file that a worker killed mid-write (kill -9) leaves behind: every other
    worker, and the supervisor that would retry the dead one's trial, then waits out its 30 s grace.
    """

    def __init__(self, path: Path) -> None:
        self.path, self._fd = path, -1

    def acquire(self) -> bool:
        import fcntl

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        self._fd = fd
        return True

    def release(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)  # closing the last descriptor releases the lock


def _journal_lock(path: Path) -> Any:
    try:
        import fcntl  # noqa: F401
    except ImportError:  # no flock (Windows): Optuna's own lock file
        return None
    return JournalLock(path.with_name(path.name + ".flock"))


def open_storage(url: str | None, out: Path) -> Any:
    """The Optuna storage for ``--storage`` (None: a journal file in the search folder)."""
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    if url is None or "://" not in url:
        path = out / JOURNAL if url is None else Path(url)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            return JournalStorage(JournalFileBackend(str(path), lock_obj=_journal_lock(path)))
        except OSError as exc:
            raise StorageError(f"--storage {path}: cannot create the journal file ({exc.strerror or exc})"
                               ) from None
    scheme = urlsplit(url).scheme.lower()
    if scheme == "sqlite":
        engine: dict[str, Any] = {}
    elif scheme.split("+")[0] in ("postgresql", "postgres"):
        url = _postgres_url(url)
        engine = {"connect_args": {"connect_timeout": 5}, "pool_pre_ping": True}
    else:
        raise StorageError(f"--storage {describe(url, out)}: unsupported scheme {scheme!r}; use a journal "
                           "file path, sqlite:///PATH or postgresql://USER@HOST:PORT/DB")
    from sqlalchemy.exc import SQLAlchemyError

    def rdb() -> Any:  # creates Optuna's tables on a fresh database
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(url, engine_kwargs=engine, heartbeat_interval=HEARTBEAT_S,
                                              grace_period=GRACE_S,
                                              heartbeat_stale_trial_callback=retry_callback())

    try:
        return retry_races(rdb)
    except (SQLAlchemyError, OSError, ImportError, ValueError) as exc:
        raise StorageError(_unreachable(url, exc)) from None


def _postgres_url(url: str) -> str:
    """postgresql://... through psycopg 3 (SQLAlchemy's bare scheme means psycopg2, which we do not ship)."""
    head, rest = url.split("://", 1)
    if "+" in head:
        return url
    return f"postgresql+psycopg://{rest}"


def _unreachable(url: str, exc: BaseException) -> str:
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    try:
        port = parts.port or (5432 if parts.scheme.startswith("postgres") else None)
    except ValueError:
        port = None
    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    why = reason[0] if reason else type(exc).__name__
    if parts.scheme.startswith("sqlite"):
        return f"--storage {url}: cannot open the SQLite database ({why})"
    where = f"{host}:{port}" if port else host
    db = parts.path.lstrip("/") or "?"
    return f"--storage: cannot use the PostgreSQL database {db!r} at {where}: {why}"
