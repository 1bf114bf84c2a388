"""A command run as one rank of several: who speaks and writes, which GPU, and agreeing before going on.

Rank 0 alone prints and writes files; the other ranks' output goes to /dev/null (a traceback still
shows: it is printed after the command returns). A failure that one rank finds (a missing file on
its machine, a GPU it lacks) must reach every rank, or the others would wait in the next collective
for ever: the command stops at a few agreement points, where every rank says whether it can go on.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from xpnet import backend
from xpnet.dist.comm import world
from xpnet.dist.nccl import device_for_rank
from xpnet.dist.parallel import DataParallel


class Launch:
    """This process's place in the run: ``comm`` (default :func:`xpnet.dist.comm.world`)."""

    def __init__(self, comm: Any = None) -> None:
        self.comm = world() if comm is None else comm
        self.rank, self.size = int(self.comm.rank), int(self.comm.size)

    @property
    def parallel(self) -> bool:
        return self.size > 1

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    def data_parallel(self) -> DataParallel | None:
        """The Trainer's ``dist``: None for one rank (the plain one-process run)."""
        return DataParallel(self.comm) if self.parallel else None

    def words(self) -> str:
        """For the start line: ``data-parallel over 2 ranks (MPI MPICH Version: 4.2.0)``."""
        return f"data-parallel over {self.size} ranks (MPI {self.comm.library})"

    def summary(self) -> dict[str, Any]:
        """For summary.json: how many ranks trained, and on which MPI."""
        return {"ranks": self.size, "mpi": self.comm.library if self.parallel else None}

    @contextlib.contextmanager
    def quiet_others(self) -> Iterator[None]:
        """Within the block, ranks other than 0 print nothing (stdout and stderr go to /dev/null)."""
        if self.is_root:
            yield
            return
        with open(os.devnull, "w") as null, contextlib.redirect_stdout(null), contextlib.redirect_stderr(null):
            yield

    def device(self, spec: str) -> str:
        """The device this rank trains on: ``cuda`` (or ``auto`` with a GPU) means GPU ``local rank``."""
        kind = spec.strip().lower()
        if not self.parallel or kind == "cpu":
            return spec
        if kind.startswith("cuda:"):
            raise ValueError(f"--device {spec} under {self.size} ranks would put them all on one GPU; "
                             "use --device cuda (each rank takes the GPU of its local rank)")
        ok, _, count = backend.cuda_status()
        if not ok:
            return spec  # backend.device says why (auto: the CPU; cuda: a warning, then the CPU)
        local = device_for_rank(int(self.comm.local_rank), int(self.comm.local_size), count)
        return f"cuda:{local}"

    def same(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (e.g. a default output folder named after the clock)."""
        return self.comm.bcast_obj(obj)

    def agree(self, error: str | None) -> str | None:
        """Every rank says whether it can go on (``error`` None) or why not; the first reason, or None.

        A reason found on another rank than 0 names it, since only rank 0 prints.
        """
        errors = self.comm.allgather_obj(error)
        for rank, err in enumerate(errors):
            if err is not None:
                return err if rank == 0 else f"rank {rank}: {err}"
        return None

    def abort(self, code: int) -> None:
        """Under several ranks, end them all now with ``code`` (one failed mid-run; the rest would wait)."""
        if self.parallel:
            self.comm.abort(code)
