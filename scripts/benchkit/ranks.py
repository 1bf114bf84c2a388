"""``--ranks N``: data-parallel steps, 1 rank x T threads against N ranks x T/N threads (issue 26).

Each setting runs in fresh processes: ``bench.py --_ranks-worker SPEC`` alone, then the same under
``mpiexec -n N`` (the mpiexec beside this Python: ``pip install 'xpnet[mpi]'``). Every rank builds the
config's net, takes its part of one fixed global batch and times SGD steps with
:func:`xpnet.dist.timing.time_steps`; rank 0 prints one JSON line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from xpnet import backend
from xpnet.dist.comm import world
from xpnet.dist.timing import time_steps

from . import BenchError
from .machine import set_threads
from .runners import CONFIGS, host_batches

BENCH = Path(__file__).resolve().parents[1] / "bench.py"
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def ranks_worker(spec: dict[str, Any]) -> None:
    """One rank (of one or several): time the config's steps, rank 0 prints the result."""
    threads = set_threads(int(spec["threads"]), torch_too=False)
    cfg = CONFIGS[spec["config"]]
    [(x, t)] = host_batches(cfg, spec["data"], 1)
    res = time_steps(cfg.build(backend.cpu()), x, t, int(spec["steps"]), int(spec["warmup"]))
    if world().rank == 0:
        print(json.dumps({**res, "config": spec["config"], "batch": cfg.batch, "threads": threads["xpnet_blas"]}))


def mpiexec() -> Path:
    found = Path(sys.executable).parent / "mpiexec"
    if not found.exists():
        raise BenchError(f"--ranks needs mpiexec beside {sys.executable}: pip install 'xpnet[mpi]'")
    return found


def compare(name: str, ranks: int, threads: int, steps: int, data: str = "random") -> dict[str, Any]:
    """Config ``name`` as 1 rank x ``threads`` threads, then ``ranks`` ranks x ``threads // ranks`` threads."""
    launcher = [str(mpiexec()), "-n", str(ranks)]
    out: dict[str, Any] = {"config": name, "title": CONFIGS[name].title}
    for key, n in (("one", 1), ("many", ranks)):
        per_rank = threads // n
        spec = {"config": name, "threads": per_rank, "steps": steps, "warmup": max(2, steps // 10), "data": data}
        cmd = [*(launcher if n > 1 else []), sys.executable, str(BENCH), "--_ranks-worker", json.dumps(spec)]
        env = dict(os.environ, **{v: str(per_rank) for v in THREAD_VARS})  # read at start-up by each rank
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1200)
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise BenchError(f"--ranks: the {n}-rank run of {name} failed: {last}")
        out[key] = json.loads(proc.stdout.strip().splitlines()[-1])
    out["speedup"] = out["many"]["steps_per_s"] / out["one"]["steps_per_s"]
    return out


def print_ranks(rows: list[dict[str, Any]]) -> None:
    for r in rows:
        one, many = r["one"], r["many"]
        alone = f"{many['allreduce_alone_s'] * 1e3:.2f} ms" if many["allreduce_alone_s"] is not None else "-"
        print(f"{r['title']} (batch {one['batch']}, {many['allreduce_bytes'] / 1e6:.2f} MB of gradients): "
              f"1 rank x {one['threads']} threads {one['steps_per_s']:,.1f} steps/s | {many['ranks']} ranks x "
              f"{many['threads']} threads {many['steps_per_s']:,.1f} steps/s ({r['speedup']:.2f}x), allreduce "
              f"{many['allreduce_share']:.0%} of a step, {alone} alone")
