#!/usr/bin/env python
"""Training throughput of xpnet side by side with PyTorch eager, on one device, in one run (issue 6).

For each config it times full training steps (``net.gradient`` + ``SGD.update``) on device-resident
data, each repeat in a fresh process (``--one-process``: all in this one), and reports samples/s
(median of the repeats after a warm-up), the peak memory a run adds (host: the
resident-set high-water mark of a fresh worker process; CUDA: the memory pool), and the same for a
PyTorch twin of the net (same layers, same initial weights, same batch, dtype and thread count).
It also prints the compute ceiling: matmul/conv FLOPs per training sample divided by the device's
measured float32 GEMM rate, and how close each run gets to it.

    python scripts/bench.py                                 # all configs, CPU, all cores
    python scripts/bench.py --configs mlp --threads 1 --out bench.json
    python scripts/bench.py --tiny --no-torch --out /tmp/b.json   # a few steps: a smoke test
    python scripts/bench.py --e2e --threads 2               # the bare main job end to end vs scripts/torch_twin.py
    python scripts/bench.py --breakdown --configs mlp       # where xpnet's step goes, layer by layer
    python scripts/bench.py --ranks 2 --threads 2           # data-parallel: 1 rank x 2 threads vs 2 x 1

``--e2e`` times whole processes instead: the bare ``python scripts/train.py`` (load, train, per-epoch
evaluation, files) against ``scripts/torch_twin.py``, the same job written as a PyTorch user would (with
tutorials' ``DataLoader`` and with tensor slicing), alternating runs, each in a fresh folder, after one
untimed run of each (which fills the data caches both keep).

``--breakdown`` splits xpnet's step instead (:mod:`xpnet.breakdown`): each layer's forward and backward, the
loss and the update, in microseconds per step and as a share of it.

``--ranks N`` times data-parallel training steps instead (:mod:`benchkit.ranks`, docs/distributed.md): each
config as 1 rank with ``--threads`` T BLAS threads, then as N ranks under ``mpiexec`` with T/N threads each,
with the allreduce's share of a step and one allreduce of the gradient buffer timed alone.

On machines that pin OPENBLAS_CORETYPE for old OpenBLAS builds, prefix the command with
``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE`` to measure NumPy's native kernel (the machine line says
which ran, and whether it was pinned; PyTorch's MKL/oneDNN ignore the variable).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
for _path in (HERE.parent, HERE):  # xpnet itself, and benchkit/ beside this file (also when imported by a test)
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from benchkit import BenchError, e2e, machine, parts, ranks, runners, steps, workers  # noqa: E402

from xpnet import backend  # noqa: E402
from xpnet.accel import tuning  # noqa: E402

CONFIGS = runners.CONFIGS


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write to a temporary file beside ``path`` and rename it: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# -- command line ---------------------------------------------------------------------------------------

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--configs", default=",".join(CONFIGS),
                   help=f"comma-separated, from {', '.join(CONFIGS)} (default: all)")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats per framework (default 7; --tiny 5)")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads for both (default: usable cores)")
    p.add_argument("--tiny", action="store_true", help="a few steps only (for tests)")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch comparison")
    p.add_argument("--no-memory", action="store_true", help="skip the memory workers")
    p.add_argument("--data", choices=("random", "mnist"), default="random", help="batch contents (default random)")
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON here (atomically)")
    p.add_argument("--e2e", action="store_true",
                   help="time the bare main job end to end against scripts/torch_twin.py instead of the configs "
                        "(--repeats defaults to 3)")
    p.add_argument("--epochs", type=int, default=None, help="--e2e: epochs of both jobs (default: the job's 10)")
    p.add_argument("--breakdown", action="store_true",
                   help="split xpnet's step into each layer's forward and backward, the loss and the update "
                        "(no PyTorch run)")
    p.add_argument("--ranks", type=int, default=None, metavar="N",
                   help="time data-parallel steps: 1 rank x --threads T against N ranks x T/N threads (needs "
                        "xpnet[mpi]; no PyTorch run)")
    p.add_argument("--one-process", action="store_true",
                   help="time every repeat in this process (quicker) instead of each in a fresh one")
    p.add_argument("--_memory-worker", dest="memory_worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--_time-worker", dest="time_worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--_ranks-worker", dest="ranks_worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.memory_worker is not None or args.time_worker is not None or args.ranks_worker is not None:
        return args
    names = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [c for c in names if c not in CONFIGS]
    if unknown or not names:
        raise BenchError(f"--configs: unknown config(s) {unknown or names!r}; choose from {', '.join(CONFIGS)}")
    args.config_names = names
    if args.repeats is None:
        args.repeats = 1 if args.tiny and args.e2e else 3 if args.e2e else 5 if args.tiny else 7
    if args.breakdown and args.e2e:
        raise BenchError("--breakdown splits one step; --e2e times whole jobs: choose one")
    if args.epochs is not None and args.epochs < 1:
        raise BenchError(f"--epochs must be >= 1, got {args.epochs}")
    if args.repeats < 1:
        raise BenchError(f"--repeats must be >= 1, got {args.repeats}")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    args.threads = cores if args.threads is None else args.threads
    if args.threads < 1:
        raise BenchError(f"--threads must be >= 1, got {args.threads}")
    if args.ranks is not None:
        if args.e2e or args.breakdown:
            raise BenchError("--ranks times data-parallel steps; drop --e2e and --breakdown")
        if not 2 <= args.ranks <= args.threads:
            raise BenchError(f"--ranks {args.ranks}: needs 2 <= N <= --threads ({args.threads}), so that the "
                             "N ranks split the one rank's threads")
    return args


def resolve_device(spec: str) -> backend.Device:
    with warnings.catch_warnings():
        warnings.simplefilter("error", backend.CudaFallbackWarning)
        try:
            return backend.device(spec)
        except backend.CudaFallbackWarning as w:
            raise BenchError(str(w).replace(" Falling back to CPU.", "")) from None
        except backend.DeviceError as e:
            raise BenchError(str(e)) from None


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tuning.keep_freed_host_memory()  # as xpnet-train does: reuse freed temporaries (both frameworks gain)
    if args.memory_worker is not None:
        workers.memory_worker(json.loads(args.memory_worker))
        return 0
    if args.time_worker is not None:
        workers.time_worker(json.loads(args.time_worker))
        return 0
    if args.ranks_worker is not None:
        ranks.ranks_worker(json.loads(args.ranks_worker))
        return 0
    dev = resolve_device(args.device)
    use_torch = not args.no_torch and not args.breakdown and torch_available()
    if not args.no_torch and not args.breakdown and not use_torch:
        print("bench.py: PyTorch is not installed (pip install torch==2.13.0); timing xpnet alone", file=sys.stderr)
    if use_torch and runners.torch_device(dev) is None:
        print(f"bench.py: this PyTorch build cannot use {dev.name}; timing xpnet alone", file=sys.stderr)
        use_torch = False
    threads = machine.set_threads(args.threads, use_torch)
    rates = machine.gemm_rates(dev, use_torch, args.tiny)
    best_lib, best_shape = max(((lib, s) for lib in rates for s in rates[lib]), key=lambda ls: rates[ls[0]][ls[1]])
    rate = rates[best_lib][best_shape]
    result: dict[str, Any] = {
        "command": " ".join([Path(sys.argv[0]).name, *(sys.argv[1:] if argv is None else argv)]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine.machine(dev, threads), "gemm_gflops": rates, "matmul_gflops": rate,
        "matmul_best": f"{best_lib} {best_shape}", "repeats": args.repeats, "tiny": args.tiny, "data": args.data,
        "results": [],
    }
    if args.e2e:
        if dev.backend != "numpy":
            raise BenchError("--e2e times the CPU job; drop --device")
        result["e2e"] = e2e.run_e2e(args, use_torch)
        steps.print_table(result)
        e2e.print_e2e(result)
    elif args.ranks is not None:
        if dev.backend != "numpy":
            raise BenchError("--ranks times ranks on the CPU here; drop --device")
        steps_n = 5 if args.tiny else 200
        result["ranks"] = [ranks.compare(name, args.ranks, args.threads, steps_n, args.data)
                           for name in args.config_names]
        print(machine.machine_line(result))
        ranks.print_ranks(result["ranks"])
    elif args.breakdown:
        result["breakdown"] = [parts.breakdown_config(name, args, dev) for name in args.config_names]
        print(machine.machine_line(result))
        parts.print_breakdown(result)
    else:
        for name in args.config_names:
            row = steps.bench_config(name, args, dev, use_torch)
            row["ceiling_samples_per_s"] = rate * 1e9 / row["flops_per_sample"]
            result["results"].append(row)
        steps.print_table(result)
    if args.out is not None:
        write_json_atomic(args.out, result)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    from xpnet.train import signals

    try:
        with signals.raise_on_signals():  # SIGTERM (docker stop, a scheduler) stops it as Ctrl-C does
            sys.exit(main())
    except BenchError as exc:
        print(f"bench.py: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except OSError as exc:
        print(f"bench.py: error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt as exc:
        print(f"bench.py: interrupted by {signals.signal_name(signals.signum_of(exc))}", file=sys.stderr)
        sys.exit(signals.exit_status(signals.signum_of(exc)))
