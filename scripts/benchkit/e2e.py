"""``--e2e``: whole processes, the bare main job (``scripts/train.py``) against ``scripts/torch_twin.py``."""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from xpnet import backend

from . import BenchError
from .floor import forward_floor, start_up_floor, step_floor
from .runners import CONFIGS, COOL_DOWN_S, POOL, XpnetRunner, host_batches

SCRIPTS = Path(__file__).resolve().parents[1]  # the scripts both jobs run live beside bench.py

E2E_JOBS = ("xpnet", "torch", "torch-slicing")


def e2e_commands(mnist_dir: Path, cache: Path, epochs: int | None, tiny: bool) -> dict[str, list[str]]:
    """The processes ``--e2e`` times; each gets a fresh working folder, so every output is new."""
    root = SCRIPTS
    more = ([] if epochs is None else ["--epochs", str(epochs)]) + (["--limit-train", "1000"] if tiny else [])
    twin = [sys.executable, str(root / "torch_twin.py"), "--data-dir", str(mnist_dir), "--cache",
            str(cache / "torch-twin"), "--out", "run", *more]
    return {"xpnet": [sys.executable, str(root / "train.py"), *more],  # the bare job: writes runs/<stamp>/
            "torch": [*twin, "--loader", "dataloader"], "torch-slicing": [*twin, "--loader", "slicing"]}


def e2e_env(threads: int, cache: Path) -> dict[str, str]:
    """Same thread count for NumPy's BLAS and torch (both read these at start-up); private caches."""
    env = dict(os.environ, XDG_CACHE_HOME=str(cache), MPLBACKEND="Agg", PYTHONPATH=str(SCRIPTS.parent))
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    return env


def mnist_folder() -> Path:
    from xpnet.data import sources

    found, looked = sources.locate(sources.get_spec("mnist"))
    if found is None or found.origin == "sample":
        raise BenchError(f"--e2e needs the real MNIST (looked in: {looked}); set XPNET_DATA_DIR")
    folders = {p.parent for p in found.files.values()}
    names = {p.name for p in found.files.values()}
    want = {f"{n}.gz" for n in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                                 "t10k-labels-idx1-ubyte")}
    if len(folders) != 1 or names != want:
        raise BenchError(f"--e2e needs MNIST's four .gz files in one folder; found "
                         f"{sorted(map(str, found.files.values()))}")
    return folders.pop()


def run_e2e(args: argparse.Namespace, use_torch: bool) -> dict[str, Any]:
    """Median wall seconds of each job over ``args.repeats`` alternating runs (x, t, t', t', t, x, ...)."""
    mnist = mnist_folder()
    jobs = [j for j in E2E_JOBS if use_torch or j == "xpnet"]
    epochs = 1 if args.tiny else args.epochs
    with tempfile.TemporaryDirectory(prefix="xpnet-e2e-") as tmp:
        cache = Path(tmp) / "cache"
        cmds, env = e2e_commands(mnist, cache, epochs, args.tiny), e2e_env(args.threads, cache)
        walls: dict[str, list[float]] = {j: [] for j in jobs}
        for rep in range(args.repeats + 1):  # the first round is the untimed warm-up
            for job in jobs if rep % 2 == 0 else jobs[::-1]:
                work = Path(tmp) / f"{job}-{rep}"
                work.mkdir()
                time.sleep(COOL_DOWN_S)
                t0 = time.perf_counter()
                proc = subprocess.run(cmds[job], cwd=work, env=env, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE, text=True)
                wall = time.perf_counter() - t0
                if proc.returncode != 0:
                    last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
                    raise BenchError(f"--e2e: {job} exited {proc.returncode}: {last}")
                if rep > 0:
                    walls[job].append(wall)
                    print(f"e2e run {rep}/{args.repeats} {job:13} {wall:6.2f} s", file=sys.stderr, flush=True)
                shutil.rmtree(work)
    med = {j: statistics.median(w) for j, w in walls.items()}
    root = str(SCRIPTS.parent) + os.sep
    out: dict[str, Any] = {"jobs": {j: {"command": " ".join(["python", *(c.replace(root, "") for c in cmds[j][1:])]),
                                        "wall_s": walls[j], "median_wall_s": med[j]} for j in jobs},
                           "epochs": epochs if epochs is not None else 10}
    for j in jobs[1:]:
        out[f"ratio_vs_{j}"] = med[j] / med["xpnet"]  # > 1: xpnet is faster by that factor
    out["floor"] = job_floor(out["epochs"], 1000 if args.tiny else 60000, 10000, args.threads, args.tiny)
    out["floor"]["xpnet_vs_floor"] = med["xpnet"] / out["floor"]["floor_s"]
    return out


def job_floor(epochs: int, n_train: int, n_test: int, threads: int, tiny: bool) -> dict[str, Any]:
    """The main job's floor: its training steps at the step's floor, its per-epoch evaluation passes (train
    and test, batches of 1000) at the forward pass's floor, and the start-up (:mod:`.floor`)."""
    cfg = CONFIGS["main"]
    runner = XpnetRunner(cfg, backend.cpu(), host_batches(cfg, "random", POOL))
    x, t = runner.batches[0]
    step = step_floor(runner.net, runner.opt, x, t, threads, tiny)
    steps = -(-n_train // cfg.batch) * epochs
    eval_x = np.random.default_rng(5).random((1000, 784), dtype=np.float32)
    eval_s = forward_floor(runner.net, eval_x, threads, tiny) * (-(-n_train // 1000) + -(-n_test // 1000)) * epochs
    start_s = start_up_floor((n_train + n_test) * (784 + 1), threads)  # uint8 images and labels, decoded
    train_s = steps * step["floor_us"] / 1e6
    return {"steps": steps, "step_floor_us": step["floor_us"], "train_s": train_s, "eval_s": eval_s,
            "start_up_s": start_s, "floor_s": train_s + eval_s + start_s}


def print_e2e(result: dict[str, Any]) -> None:
    e2e = result["e2e"]
    print(f"end to end, {e2e['epochs']} epochs, median wall of {result['repeats']} alternating runs each:")
    for job, r in e2e["jobs"].items():
        ratio = e2e.get(f"ratio_vs_{job}")
        print(f"  {job:13} {r['median_wall_s']:7.2f} s  (runs: {', '.join(f'{w:.2f}' for w in r['wall_s'])})"
              + (f"  xpnet is {ratio:.2f}x as fast" if ratio else "")
              + f"  [{r['command']}]")
    f = e2e.get("floor")
    if f:
        print(f"  main job's floor {f['floor_s']:.2f} s = {f['steps']} steps x {f['step_floor_us']:.0f} us "
              f"({f['train_s']:.2f} s) + evaluation passes {f['eval_s']:.2f} s + start-up {f['start_up_s']:.2f} s;"
              f" xpnet's wall / floor = {f['xpnet_vs_floor']:.2f}x")

