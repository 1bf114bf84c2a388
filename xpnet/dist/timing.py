"""How long a data-parallel step takes here, and how much of it the allreduce is.

:func:`time_steps` runs on every rank of a run (or alone, as the one-rank baseline): it trains a net on
its part of one fixed global batch and reports, from rank 0's view, steps per second (the slowest
rank's), the allreduce's share of a step and one allreduce of the gradient buffer timed alone. Inside
the step the allreduce's time includes waiting for the slowest rank, so on a busy machine it also
measures the imbalance between the ranks, not only the bytes moved; timed alone, it is the collective's
own cost. ``scripts/bench.py --ranks N`` runs it as 1 rank x T threads and as N ranks x T/N threads.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from xpnet import backend, optim
from xpnet.dist.comm import world
from xpnet.dist.parallel import DataParallel
from xpnet.dist.shard import span


class _Clocked:
    """Wraps a communicator: the seconds spent in allreduce_ (host collectives return when done)."""

    def __init__(self, comm: Any) -> None:
        self.comm, self.seconds = comm, 0.0
        self.rank, self.size = comm.rank, comm.size

    def allreduce_(self, buf: Any) -> None:
        t0 = time.perf_counter()
        self.comm.allreduce_(buf)
        self.seconds += time.perf_counter() - t0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.comm, name)


def _allreduce_alone(comm: Any, buf: Any, repeats: int) -> float | None:
    """Seconds of one allreduce of ``buf`` with no compute around it (the ranks start together)."""
    if comm.size == 1 or buf is None:
        return None
    work = buf + 0  # a copy: the weights stay as they are
    comm.sum([0.0])
    t0 = time.perf_counter()
    for _ in range(repeats):
        comm.allreduce_(work)
    return float(np.max(comm.allgather_obj((time.perf_counter() - t0) / repeats)))


def time_steps(net: Any, x: np.ndarray, t: np.ndarray, steps: int, warmup: int, comm: Any = None
               ) -> dict[str, Any]:
    """Train ``steps`` SGD steps (after ``warmup``) of ``net`` on this rank's part of the global batch (x, t)."""
    comm = world() if comm is None else comm
    clocked = _Clocked(comm)
    dist = DataParallel(clocked) if comm.size > 1 else None
    a, b = span(0, int(x.shape[0]), comm.rank, comm.size)
    xb, tb = backend.to_device(x[a:b], net.device), backend.to_device(t[a:b], net.device)
    opt = optim.SGD(lr=0.01)
    t0 = time.perf_counter()
    for i in range(warmup + steps):
        if i == warmup:
            comm.sum([0.0])  # start the clock together
            clocked.seconds, t0 = 0.0, time.perf_counter()
        grads = net.gradient(xb, tb)
        if dist is not None:
            grads, _ = dist.allreduce(grads, net.last_loss, (b - a) / x.shape[0])
        opt.update(net.params, grads)
    net.device.synchronize()
    seconds = time.perf_counter() - t0
    slowest = float(np.max(comm.allgather_obj(seconds)))
    n_params = sum(int(np.prod(tuple(p.shape))) for p in net.params.values())
    return {"ranks": comm.size, "steps": steps, "steps_per_s": steps / slowest,
            "allreduce_share": clocked.seconds / seconds,
            "allreduce_alone_s": _allreduce_alone(comm, getattr(net.params, "flat", None), repeats=20),
            "allreduce_bytes": n_params * np.dtype(str(next(iter(net.params.values())).dtype)).itemsize,
            "mpi": comm.library if comm.size > 1 else None}
