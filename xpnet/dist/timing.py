"""How fast data-parallel steps run here: 1 rank x T threads against N ranks x T/N threads.

``python -m xpnet.dist.timing --model mlp --batch 100 --threads 2`` (one rank) or the same under
``mpiexec -n 2 ... --threads 1`` times training steps of one of the book's nets on random data and
prints one JSON line (rank 0): steps per second, the allreduce's share of a step, and one allreduce
of the gradient buffer timed alone. Inside the step the allreduce's time includes waiting for the
slowest rank, so on a busy machine it also measures the imbalance between the ranks, not only the
bytes moved; timed alone, it is the collective's own cost. ``bench.py --ranks N`` runs both.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from xpnet import backend, nets, optim
from xpnet.accel import tuning
from xpnet.dist.comm import world
from xpnet.dist.parallel import DataParallel
from xpnet.dist.shard import span

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
MODELS = ("mlp", "convnet")


def _net(model: str, dtype: str) -> Any:
    dev = backend.cpu()
    if model == "mlp":  # the main job's net
        return nets.MultiLayerNet(784, [256, 128], 10, activation="relu", weight_init_std="he", device=dev,
                                  seed=0, dtype=dtype)
    return nets.SimpleConvNet(device=dev, seed=0, dtype=dtype)


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
    if buf is None:
        return None
    work = buf + 0  # a copy: the weights stay as they are
    comm.sum([0.0])
    t0 = time.perf_counter()
    for _ in range(repeats):
        comm.allreduce_(work)
    return float(np.max(comm.allgather_obj((time.perf_counter() - t0) / repeats)))


def time_steps(model: str, batch: int, steps: int, warmup: int, dtype: str = "float32") -> dict[str, Any]:
    """Train ``steps`` steps (after ``warmup``) of ``model`` on a global batch of ``batch`` random samples."""
    comm = world()
    clocked = _Clocked(comm)
    dist = DataParallel(clocked) if comm.size > 1 else None
    net = _net(model, dtype)
    opt = optim.SGD(lr=0.01)
    rng = np.random.default_rng(0)
    a, b = span(0, batch, comm.rank, comm.size)
    shape = (batch, 784) if model == "mlp" else (batch, 1, 28, 28)
    x = backend.to_device(rng.random(shape, dtype=np.float32)[a:b], net.device, dtype=dtype)
    t = backend.to_device(rng.integers(0, 10, batch)[a:b], net.device)
    for i in range(warmup + steps):
        if i == warmup:
            comm.sum([0.0])  # start the clock together
            clocked.seconds, t0 = 0.0, time.perf_counter()
        grads = net.gradient(x, t)
        if dist is not None:
            grads, _ = dist.allreduce(grads, net.last_loss, (b - a) / batch)
        opt.update(net.params, grads)
    seconds = time.perf_counter() - t0
    slowest = float(np.max(comm.allgather_obj(seconds)))
    alone = _allreduce_alone(comm, net.params.flat if dist is not None else None, repeats=20)
    n_params = sum(int(np.prod(p.shape)) for p in net.params.values())
    return {"model": model, "batch": batch, "ranks": comm.size, "threads": tuning.blas_info()["threads"],
            "steps": steps, "steps_per_s": steps / slowest, "allreduce_share": clocked.seconds / seconds,
            "allreduce_alone_s": alone,
            "allreduce_bytes": n_params * np.dtype(dtype).itemsize, "mpi": comm.library}


def compare(ranks: int, threads: int, model: str, batch: int, steps: int, warmup: int = 5) -> dict[str, Any]:
    """The two timings in fresh processes: 1 rank x ``threads``, then ``ranks`` ranks x ``threads // ranks``."""
    if ranks < 2 or threads < ranks:
        raise ValueError(f"--ranks {ranks} needs at least 2 ranks and --threads >= --ranks (got --threads {threads})")
    mpiexec = Path(sys.executable).parent / "mpiexec"
    if not mpiexec.exists():
        raise ValueError(f"no mpiexec beside {sys.executable}: pip install 'xpnet[mpi]'")
    worker = [sys.executable, "-m", "xpnet.dist.timing", "--model", model, "--batch", str(batch),
              "--steps", str(steps), "--warmup", str(warmup)]
    out = {}
    for name, n, cmd in (("one", 1, worker), ("many", ranks, [str(mpiexec), "-n", str(ranks), *worker])):
        per_rank = threads // n
        env = dict(os.environ, **{v: str(per_rank) for v in THREAD_VARS})
        proc = subprocess.run([*cmd, "--threads", str(per_rank)], env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd[:4])} ... failed: {(proc.stderr or proc.stdout).strip()[-500:]}")
        out[name] = json.loads(proc.stdout.strip().splitlines()[-1])
    out["speedup"] = out["many"]["steps_per_s"] / out["one"]["steps_per_s"]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m xpnet.dist.timing", description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=MODELS, default="mlp")
    p.add_argument("--batch", type=int, default=100, help="the global batch")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", type=int, default=1, help="BLAS threads of each rank")
    args = p.parse_args(argv)
    tuning.set_blas_threads(args.threads)
    res = time_steps(args.model, args.batch, args.steps, args.warmup)
    if world().rank == 0:
        print(json.dumps(res), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
