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

``--e2e`` times whole processes instead: the bare ``python scripts/train.py`` (load, train, per-epoch
evaluation, files) against ``scripts/torch_twin.py``, the same job written as a PyTorch user would (with
tutorials' ``DataLoader`` and with tensor slicing), alternating runs, each in a fresh folder, after one
untimed run of each (which fills the data caches both keep).

``--breakdown`` splits xpnet's step instead (:mod:`xpnet.breakdown`): each layer's forward and backward, the
loss and the update, in microseconds per step and as a share of it.

On machines that pin OPENBLAS_CORETYPE for old OpenBLAS builds, prefix the command with
``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE`` to measure NumPy's native kernel (the machine line says
which ran, and whether it was pinned; PyTorch's MKL/oneDNN ignore the variable).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import xpnet  # noqa: E402
from xpnet import backend, breakdown, nets, optim  # noqa: E402
from xpnet.accel import tuning  # noqa: E402
from xpnet.conv import Convolution, Pooling, out_size  # noqa: E402
from xpnet.layers import Affine, Flatten, Relu  # noqa: E402

LR = 0.01
COOL_DOWN_S = 0.25
POOL = 4  # distinct device-resident batches cycled through, so no step reuses the previous step's input


class BenchError(Exception):
    """A problem with the request (bad flag value, unusable device, missing data): one line, exit 2."""


@dataclass(frozen=True)
class Config:
    """One benchmark: a net builder, its batch size and its input shape per sample."""

    title: str
    batch: int
    input_shape: tuple[int, ...]
    build: Callable[[backend.Device], nets.Sequential]


CONFIGS: dict[str, Config] = {
    "mlp": Config("MLP 784-100-100-10", 100, (784,),
                  lambda dev: nets.MultiLayerNet(784, [100, 100], 10, device=dev, seed=0)),
    "mlp4": Config("MLP 784-[100]*4-10", 128, (784,),
                   lambda dev: nets.MultiLayerNet(784, [100] * 4, 10, device=dev, seed=0)),
    "conv": Config("SimpleConvNet 30x5x5, hidden 100", 100, (1, 28, 28),
                   lambda dev: nets.SimpleConvNet(device=dev, seed=0)),
}


# -- data ----------------------------------------------------------------------------------------

def host_batches(cfg: Config, data: str, pool: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``pool`` host batches of float32 images in [0, 1) and int64 labels: random, or the first MNIST images."""
    n = cfg.batch * pool
    if data == "mnist":
        from xpnet.data import load_mnist

        with warnings.catch_warnings():
            warnings.simplefilter("error")  # the bundled 10k-image sample would be a silent substitute
            try:
                (x, t), _ = load_mnist(normalize=True, flatten=len(cfg.input_shape) == 1)
            except Warning as w:
                raise BenchError(f"--data mnist: real MNIST not found ({w}); set XPNET_DATA_DIR") from None
        x, t = np.resize(x, (n, *cfg.input_shape)), np.resize(t.astype(np.int64), n)
    else:
        rng = np.random.default_rng(0)
        x = rng.random((n, *cfg.input_shape), dtype=np.float32)
        t = rng.integers(0, 10, n, dtype=np.int64)
    b = cfg.batch
    return [(np.ascontiguousarray(x[i * b:(i + 1) * b]), t[i * b:(i + 1) * b].copy()) for i in range(pool)]


# -- the two frameworks ----------------------------------------------------------------------------

class Runner:
    """Something that can run ``steps`` training steps and say how much work one sample is."""

    name = ""

    def run(self, steps: int) -> None:
        raise NotImplementedError

    def loss(self) -> float:
        raise NotImplementedError


class XpnetRunner(Runner):
    name = "xpnet"

    def __init__(self, cfg: Config, dev: backend.Device, batches: list[tuple[np.ndarray, np.ndarray]]) -> None:
        self.net = cfg.build(dev)
        self.opt = optim.SGD(lr=LR)
        self.dev = dev
        self.batches = [(xpnet.to_device(x, dev), xpnet.to_device(t, dev)) for x, t in batches]
        self.i = 0

    def run(self, steps: int) -> None:
        net, opt, batches = self.net, self.opt, self.batches
        for _ in range(steps):
            x, t = batches[self.i % len(batches)]
            self.i += 1
            opt.update(net.params, net.gradient(x, t))
        self.dev.synchronize()

    def loss(self) -> float:
        return float(self.net.last_loss)


def torch_device(dev: backend.Device) -> str | None:
    """The torch device that matches an xpnet one, or None when this torch build cannot reach it."""
    import torch

    if dev.backend == "numpy":
        return "cpu"
    if dev.backend == "cupy" and torch.cuda.is_available():
        return dev.name
    return None


def torch_twin(net: nets.Sequential, device: str) -> Any:
    """A hand-written ``nn.Sequential`` with the same layers and the same initial weights as ``net``."""
    import torch
    from torch import nn

    def tensor(a: Any) -> Any:
        return torch.from_numpy(np.ascontiguousarray(backend.to_host(a, copy=True)))

    mods: list[Any] = []
    for layer in net.layers:
        if isinstance(layer, Affine):
            lin = nn.Linear(*layer.W.shape)
            lin.weight.data = tensor(layer.W).T.contiguous()
            lin.bias.data = tensor(layer.b)
            mods.append(lin)
        elif isinstance(layer, Convolution):
            fn, c, fh, fw = layer.W.shape
            conv = nn.Conv2d(c, fn, (fh, fw), stride=layer.stride, padding=layer.pad)
            conv.weight.data, conv.bias.data = tensor(layer.W), tensor(layer.b)
            mods.append(conv)
        elif isinstance(layer, Relu):
            mods.append(nn.ReLU())
        elif isinstance(layer, Pooling):
            mods.append(nn.MaxPool2d((layer.pool_h, layer.pool_w), stride=layer.stride, padding=layer.pad))
        elif isinstance(layer, Flatten):
            mods.append(nn.Flatten())
        else:
            raise BenchError(f"no PyTorch twin for layer {type(layer).__name__}")
    return nn.Sequential(*mods).to(device)


class TorchRunner(Runner):
    name = "torch"

    def __init__(self, net: nets.Sequential, device: str, batches: list[tuple[np.ndarray, np.ndarray]]) -> None:
        import torch

        self.torch = torch
        self.model = torch_twin(net, device)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=LR)
        self.lossf = torch.nn.CrossEntropyLoss()
        self.device = device
        self.batches = [(torch.from_numpy(x).to(device), torch.from_numpy(t).to(device)) for x, t in batches]
        self.i = 0
        self.last: Any = None

    def run(self, steps: int) -> None:
        model, opt, lossf, batches = self.model, self.opt, self.lossf, self.batches
        for _ in range(steps):
            x, t = batches[self.i % len(batches)]
            self.i += 1
            opt.zero_grad(set_to_none=True)
            loss = lossf(model(x), t)
            loss.backward()
            opt.step()
            self.last = loss
        if self.device != "cpu":
            self.torch.cuda.synchronize()

    def loss(self) -> float:
        return float(self.last.detach())


# -- the compute ceiling -------------------------------------------------------------------------------

def flops_per_sample(net: nets.Sequential) -> int:
    """Matmul/conv FLOPs of one training sample: forward + 2x backward, minus skipped input gradients.

    Needs one forward pass first (a convolution learns its output size from its input).
    """
    total = 0
    for layer in net.layers:
        if isinstance(layer, Affine):
            fwd = 2 * layer.W.shape[0] * layer.W.shape[1]
        elif isinstance(layer, Convolution):
            fn, c, fh, fw = layer.W.shape
            _, _, h, w = layer.x_shape
            fwd = 2 * fn * c * fh * fw * out_size(h, fh, layer.stride, layer.pad) * out_size(w, fw, layer.stride,
                                                                                             layer.pad)
        else:
            continue
        total += fwd + fwd + (fwd if getattr(layer, "need_dx", True) else 0)  # forward, dW, dx
    return total


GEMM_SHAPES = ((100, 784, 100), (784, 100, 100), (512, 512, 512))


def gemm_rates(dev: backend.Device, with_torch: bool, tiny: bool) -> dict[str, dict[str, float]]:
    """Float32 GEMM GFLOP/s for a few relevant shapes (median of 5), on xpnet's device and in torch."""
    rng = np.random.default_rng(1)
    out: dict[str, dict[str, float]] = {}
    for m, k, n in GEMM_SHAPES:
        a, b = rng.random((m, k), dtype=np.float32), rng.random((k, n), dtype=np.float32)
        reps = 2 if tiny else max(5, int(3e8 / (2 * m * k * n)))
        key = f"{m}x{k}x{n}"
        xa, xb = xpnet.to_device(a, dev), xpnet.to_device(b, dev)
        out.setdefault("xpnet", {})[key] = _gemm_rate(xa, xb, dev.synchronize, reps)
        if with_torch:
            import torch

            tdev = torch_device(dev)
            ta, tb = torch.from_numpy(a).to(tdev), torch.from_numpy(b).to(tdev)
            sync = torch.cuda.synchronize if tdev != "cpu" else (lambda: None)
            out.setdefault("torch", {})[key] = _gemm_rate(ta, tb, sync, reps)
    return out


def _gemm_rate(a: Any, b: Any, sync: Callable[[], None], reps: int) -> float:
    a @ b
    sync()
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(reps):
            a @ b
        sync()
        times.append((time.perf_counter() - t0) / reps)
    return 2 * a.shape[0] * a.shape[1] * b.shape[1] / statistics.median(times) / 1e9


# -- memory: a fresh worker process per (framework, config) ---------------------------------------------

def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"{field} not in /proc/self/status")


def measure_memory(runner: Runner, steps: int, dev: backend.Device) -> float:
    """MiB a training run adds on top of model + data: the peak over a warm-up and ``steps`` steps."""
    if dev.backend == "cupy" or (isinstance(runner, TorchRunner) and runner.device != "cpu"):
        return _device_memory(runner, steps)
    import resource

    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets the peak-RSS mark (Linux >= 4.0), so the delta is this run's alone
        before = _rss_kib("VmRSS")
        runner.run(1 + steps)
        return (_rss_kib("VmHWM") - before) / 1024
    except OSError:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        runner.run(1 + steps)
        return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024


def _device_memory(runner: Runner, steps: int) -> float:
    if isinstance(runner, TorchRunner):
        torch = runner.torch
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        runner.run(1 + steps)
        return (torch.cuda.max_memory_allocated() - before) / 2**20
    import cupy

    pool = cupy.get_default_memory_pool()
    runner.dev.synchronize()
    pool.free_all_blocks()  # cached free blocks would count as use: start with total == used
    before = pool.total_bytes()
    runner.run(1 + steps)
    # The pool only grows when what is in use does not fit, so its total now is the run's peak (plus block
    # rounding): total - before is what the run added at its peak, not counting blocks cached before it.
    return (pool.total_bytes() - before) / 2**20


def worker_runner(spec: dict[str, Any]) -> tuple[Runner, backend.Device]:
    """In a child process: the one runner ``spec`` names, built as the parent would build it (same seed,
    so xpnet and its PyTorch twin start from the same weights)."""
    set_threads(int(spec["threads"]), torch_too=spec["framework"] == "torch")
    dev = backend.device(spec["device"])
    cfg = CONFIGS[spec["config"]]
    batches = host_batches(cfg, spec["data"], POOL)
    runner: Runner
    if spec["framework"] == "torch":
        runner = TorchRunner(cfg.build(dev), torch_device(dev) or "cpu", batches)
        runner.torch.ones(8, 8) @ runner.torch.ones(8, 8)  # BLAS buffers exist before the baseline
    else:
        runner = XpnetRunner(cfg, dev, batches)
        dev.synchronize()
        np.ones((8, 8), np.float32) @ np.ones((8, 8), np.float32)
    return runner, dev


def memory_worker(spec: dict[str, Any]) -> None:
    """Child process: build one runner, measure its memory, print one JSON line."""
    runner, dev = worker_runner(spec)
    print(json.dumps({"peak_mem_mib": measure_memory(runner, int(spec["steps"]), dev)}))


def time_worker(spec: dict[str, Any]) -> None:
    """Child process: build one runner, warm it up, time about ``spec["seconds"]`` of steps, print one JSON line."""
    runner, _ = worker_runner(spec)
    steps, first_loss = warm_up(runner, tiny=False, seconds=float(spec["seconds"]))
    t0 = time.perf_counter()
    runner.run(steps)
    print(json.dumps({"step_s": (time.perf_counter() - t0) / steps, "first_loss": first_loss}))


def in_worker(flag: str, spec: dict[str, Any]) -> dict[str, Any] | None:
    """Run this script as a child with ``flag`` and ``spec``; its last JSON line, or None (with a warning)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), flag, json.dumps(spec)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        print(f"bench.py: warning: {flag.strip('-_')} for {spec['framework']}/{spec['config']} failed: {last}",
              file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def memory_in_worker(spec: dict[str, Any]) -> float | None:
    got = in_worker("--_memory-worker", spec)
    return None if got is None else float(got["peak_mem_mib"])


# -- timing -------------------------------------------------------------------------------------------

def set_threads(n: int, torch_too: bool) -> dict[str, Any]:
    """Same intra-op thread count for NumPy's BLAS and for torch; returns what each really uses."""
    tuning.set_blas_threads(n)
    got: dict[str, Any] = {"xpnet_blas": tuning.blas_info()["threads"]}
    if torch_too:
        import torch

        torch.set_num_threads(n)
        got["torch"] = torch.get_num_threads()
    return got


def warm_up(r: Runner, tiny: bool, seconds: float) -> tuple[int, float]:
    """Run the first steps untimed; (steps that take about ``seconds``, the first step's loss)."""
    r.run(1)  # same weights, same batch: the first loss agrees between frameworks (a sanity check)
    first_loss = r.loss()
    r.run(0 if tiny else 3)  # warm-up: first-call allocations, BLAS buffers, lazy kernels
    t0 = time.perf_counter()
    r.run(1)
    once = time.perf_counter() - t0
    return (1 if tiny else max(3, min(5000, round(seconds / max(once, 1e-6))))), first_loss


def time_in_processes(name: str, frameworks: list[str], args: argparse.Namespace, dev: backend.Device
                      ) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Seconds per step for each framework, every repeat in a fresh process, alternating (a, b, b, a, ...).

    Why: on a virtual machine one process can run the same steps 10–25% slower than the next (where its
    threads land; measured with both frameworks), so timings inside one process sample one such draw.
    """
    per_step: dict[str, list[float]] = {f: [] for f in frameworks}
    first_loss: dict[str, float] = {}
    for rep in range(args.repeats):
        for fw in frameworks if rep % 2 == 0 else frameworks[::-1]:
            spec = {"framework": fw, "config": name, "device": dev.name, "threads": args.threads,
                    "data": args.data, "seconds": 0.5}
            got = in_worker("--_time-worker", spec)
            if got is None:
                raise BenchError(f"timing {fw} on {name} in a fresh process failed (see the warning above)")
            per_step[fw].append(float(got["step_s"]))
            first_loss[fw] = float(got["first_loss"])
    return per_step, first_loss


def time_runners(runners: list[Runner], repeats: int, tiny: bool) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Seconds per step for each runner, repeats interleaved (a, b, b, a, ...) so load drift hits both alike."""
    steps: dict[str, int] = {}
    first_loss = {}
    for r in runners:
        steps[r.name], first_loss[r.name] = warm_up(r, tiny, seconds=0.3)
    per_step: dict[str, list[float]] = {r.name: [] for r in runners}
    for rep in range(repeats):
        for r in runners if rep % 2 == 0 else runners[::-1]:
            if len(runners) > 1 and not tiny:
                # Idle BLAS/OpenMP workers spin for up to ~0.1 s before sleeping; let the other
                # framework's pool park first, or its spinning threads steal this one's cores.
                time.sleep(COOL_DOWN_S)
            t0 = time.perf_counter()
            r.run(steps[r.name])
            per_step[r.name].append((time.perf_counter() - t0) / steps[r.name])
    return per_step, first_loss


def bench_config(name: str, args: argparse.Namespace, dev: backend.Device, use_torch: bool) -> dict[str, Any]:
    cfg = CONFIGS[name]
    batches = host_batches(cfg, args.data, POOL)
    xp_runner = XpnetRunner(cfg, dev, batches)
    frameworks = ["xpnet", "torch"] if use_torch else ["xpnet"]
    if args.tiny or args.one_process:
        runners: list[Runner] = [xp_runner]
        if use_torch:
            runners.append(TorchRunner(xp_runner.net, torch_device(dev) or "cpu", batches))
        per_step, first_loss = time_runners(runners, args.repeats, args.tiny)
    else:  # each worker builds its own runner; here the net only gives the FLOP count
        per_step, first_loss = time_in_processes(name, frameworks, args, dev)
        xp_runner.run(1)  # the FLOP count reads the shapes a forward pass leaves on the layers
    flops = flops_per_sample(xp_runner.net)
    row: dict[str, Any] = {"config": name, "title": cfg.title, "batch": cfg.batch, "dtype": "float32",
                           "flops_per_sample": flops}
    mem_steps = 1 if args.tiny else 5
    for fw in frameworks:
        sps = cfg.batch / statistics.median(per_step[fw])
        spec = {"framework": fw, "config": name, "device": dev.name, "threads": args.threads,
                "data": args.data, "steps": mem_steps}
        row[fw] = {"samples_per_s": sps, "step_ms": 1e3 * statistics.median(per_step[fw]),
                   "repeats_step_ms": [1e3 * s for s in per_step[fw]], "first_loss": first_loss[fw],
                   "peak_mem_mib": None if args.no_memory else memory_in_worker(spec)}
    if use_torch:
        row["ratio"] = row["xpnet"]["samples_per_s"] / row["torch"]["samples_per_s"]
    return row


# -- end to end: whole processes -------------------------------------------------------------------------

E2E_JOBS = ("xpnet", "torch", "torch-slicing")


def e2e_commands(mnist_dir: Path, cache: Path, epochs: int | None, tiny: bool) -> dict[str, list[str]]:
    """The processes ``--e2e`` times; each gets a fresh working folder, so every output is new."""
    root = Path(__file__).resolve().parent
    more = ([] if epochs is None else ["--epochs", str(epochs)]) + (["--limit-train", "1000"] if tiny else [])
    twin = [sys.executable, str(root / "torch_twin.py"), "--data-dir", str(mnist_dir), "--cache",
            str(cache / "torch-twin"), "--out", "run", *more]
    return {"xpnet": [sys.executable, str(root / "train.py"), *more],  # the bare job: writes runs/<stamp>/
            "torch": [*twin, "--loader", "dataloader"], "torch-slicing": [*twin, "--loader", "slicing"]}


def e2e_env(threads: int, cache: Path) -> dict[str, str]:
    """Same thread count for NumPy's BLAS and torch (both read these at start-up); private caches."""
    env = dict(os.environ, XDG_CACHE_HOME=str(cache), MPLBACKEND="Agg", PYTHONPATH=str(Path(__file__).resolve()
                                                                                         .parents[1]))
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
    root = str(Path(__file__).resolve().parents[1]) + os.sep
    out: dict[str, Any] = {"jobs": {j: {"command": " ".join(["python", *(c.replace(root, "") for c in cmds[j][1:])]),
                                        "wall_s": walls[j], "median_wall_s": med[j]} for j in jobs},
                           "epochs": epochs if epochs is not None else 10}
    for j in jobs[1:]:
        out[f"ratio_vs_{j}"] = med[j] / med["xpnet"]  # > 1: xpnet is faster by that factor
    return out


def print_e2e(result: dict[str, Any]) -> None:
    e2e = result["e2e"]
    print(f"end to end, {e2e['epochs']} epochs, median wall of {result['repeats']} alternating runs each:")
    for job, r in e2e["jobs"].items():
        ratio = e2e.get(f"ratio_vs_{job}")
        print(f"  {job:13} {r['median_wall_s']:7.2f} s  (runs: {', '.join(f'{w:.2f}' for w in r['wall_s'])})"
              + (f"  xpnet is {ratio:.2f}x as fast" if ratio else "")
              + f"  [{r['command']}]")


# -- where the step goes -----------------------------------------------------------------------------------

def breakdown_config(name: str, args: argparse.Namespace, dev: backend.Device) -> dict[str, Any]:
    """xpnet's step on one config split into its parts (about a second of clocked steps)."""
    cfg = CONFIGS[name]
    r = XpnetRunner(cfg, dev, host_batches(cfg, args.data, POOL))
    steps, _ = warm_up(r, args.tiny, seconds=1.0)
    got = breakdown.step_breakdown(r.net, r.opt, r.batches, steps, dev.synchronize, warm_up=0 if args.tiny else 20)
    return {"config": name, "title": cfg.title, "batch": cfg.batch, "steps": steps,
            "bare_step_us": 1e6 * got.bare_s, "clocked_step_us": 1e6 * got.clocked_s,
            "parts": [{"part": part, "us": 1e6 * s} for part, s in got.rows()]}


def print_breakdown(result: dict[str, Any]) -> None:
    for row in result["breakdown"]:
        print(f"{row['title']}, batch {row['batch']}: bare step {row['bare_step_us']:.1f} us, "
              f"clocked {row['clocked_step_us']:.1f} us ({row['steps']} steps each)")
        print(f"  {'part':50} {'us/step':>8} {'share':>6}")
        for part in row["parts"]:
            print(f"  {part['part']:50} {part['us']:8.1f} {100 * part['us'] / row['clocked_step_us']:5.1f}%")


# -- report -------------------------------------------------------------------------------------------

def machine(dev: backend.Device, threads: dict[str, Any]) -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
    info: dict[str, Any] = {"cpu": cpu, "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                            else os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__,
                            "blas": tuning.blas_info(), "device": dev.name, "threads": threads,
                            "load_avg": os.getloadavg() if hasattr(os, "getloadavg") else None}
    if "torch" in threads:
        import torch

        info["torch"] = torch.__version__
    return info


def fmt_mem(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def machine_line(result: dict[str, Any]) -> str:
    """One line naming the machine and the software a result was measured with, and when."""
    m = result["machine"]
    blas = m["blas"]
    return (f"{result['date']} | device {m['device']} | {m['cpu']}, {m['cores']} cores | numpy {m['numpy']}, "
            f"BLAS {blas['name'].split('  ')[0]} kernel {blas['core']}"
            + (" (pinned by OPENBLAS_CORETYPE)" if blas.get("pinned") else "")
            + f", {m['threads'].get('xpnet_blas')} threads"
            + (f" | torch {m['torch']}, {m['threads']['torch']} threads" if "torch" in m else "")
            + (f" | load {m['load_avg'][0]:.2f}" if m["load_avg"] else "")
            + f" | best float32 GEMM {result['matmul_gflops']:.0f} GFLOP/s ({result['matmul_best']})")


def print_table(result: dict[str, Any]) -> None:
    print(machine_line(result))
    if not result["results"]:
        return
    rate = result["matmul_gflops"]
    print(f"compute ceiling: FLOPs per sample / {rate:.0f} GFLOP/s")
    has_torch = any("torch" in row for row in result["results"])
    head = f"{'config':34} {'batch':>5} {'xpnet/s':>9} {'mem MiB':>7}"
    if has_torch:
        head += f" {'torch/s':>9} {'mem MiB':>7} {'xpnet/torch':>11}"
    head += f" {'MFLOP/sample':>12} {'ceiling/s':>9} {'xpnet %':>7}" + (f" {'torch %':>7}" if has_torch else "")
    print(head)
    for row in result["results"]:
        ceiling = row["ceiling_samples_per_s"]
        x = row["xpnet"]
        line = f"{row['title']:34} {row['batch']:5d} {x['samples_per_s']:9.0f} {fmt_mem(x['peak_mem_mib']):>7}"
        if has_torch:
            t = row.get("torch")
            line += (f" {t['samples_per_s']:9.0f} {fmt_mem(t['peak_mem_mib']):>7} {row['ratio']:10.2f}x" if t
                     else f" {'-':>9} {'-':>7} {'-':>11}")
        line += f" {row['flops_per_sample'] / 1e6:12.2f} {ceiling:9.0f} {100 * x['samples_per_s'] / ceiling:6.1f}%"
        if has_torch:
            line += f" {100 * row['torch']['samples_per_s'] / ceiling:6.1f}%" if "torch" in row else f" {'-':>7}"
        print(line)


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
    p.add_argument("--one-process", action="store_true",
                   help="time every repeat in this process (quicker) instead of each in a fresh one")
    p.add_argument("--_memory-worker", dest="memory_worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--_time-worker", dest="time_worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.memory_worker is not None or args.time_worker is not None:
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
        memory_worker(json.loads(args.memory_worker))
        return 0
    if args.time_worker is not None:
        time_worker(json.loads(args.time_worker))
        return 0
    dev = resolve_device(args.device)
    use_torch = not args.no_torch and not args.breakdown and torch_available()
    if not args.no_torch and not args.breakdown and not use_torch:
        print("bench.py: PyTorch is not installed (pip install torch==2.13.0); timing xpnet alone", file=sys.stderr)
    if use_torch and torch_device(dev) is None:
        print(f"bench.py: this PyTorch build cannot use {dev.name}; timing xpnet alone", file=sys.stderr)
        use_torch = False
    threads = set_threads(args.threads, use_torch)
    rates = gemm_rates(dev, use_torch, args.tiny)
    best_lib, best_shape = max(((lib, s) for lib in rates for s in rates[lib]), key=lambda ls: rates[ls[0]][ls[1]])
    rate = rates[best_lib][best_shape]
    result: dict[str, Any] = {
        "command": " ".join([Path(sys.argv[0]).name, *(sys.argv[1:] if argv is None else argv)]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine(dev, threads), "gemm_gflops": rates, "matmul_gflops": rate,
        "matmul_best": f"{best_lib} {best_shape}", "repeats": args.repeats, "tiny": args.tiny, "data": args.data,
        "results": [],
    }
    if args.e2e:
        if dev.backend != "numpy":
            raise BenchError("--e2e times the CPU job; drop --device")
        result["e2e"] = run_e2e(args, use_torch)
        print_table(result)
        print_e2e(result)
    elif args.breakdown:
        result["breakdown"] = [breakdown_config(name, args, dev) for name in args.config_names]
        print(machine_line(result))
        print_breakdown(result)
    else:
        for name in args.config_names:
            row = bench_config(name, args, dev, use_torch)
            row["ceiling_samples_per_s"] = rate * 1e9 / row["flops_per_sample"]
            result["results"].append(row)
        print_table(result)
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
