"""Child processes that build one runner each and time it or measure its memory (one JSON line back).

A fresh process per repeat: on a virtual machine one process can run the same steps 10–25% slower than
the next, so timings inside one process sample one such draw.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from xpnet import backend

from .machine import set_threads
from .memory import measure_memory
from .runners import CONFIGS, POOL, Runner, TorchRunner, XpnetRunner, host_batches, torch_device, warm_up

BENCH = Path(__file__).resolve().parents[1] / "bench.py"  # the children run the entry point with a worker flag


def worker_runner(spec: dict[str, Any]) -> tuple[Runner, backend.Device]:
    """In a child process: the one runner ``spec`` names, built as the parent would build it (same seed,
    so xpnet and its PyTorch twin start from the same weights)."""
    set_threads(int(spec["threads"]), torch_too=spec["framework"] == "torch")
    dev = backend.device(spec["device"])
    cfg = CONFIGS[spec["config"]]
    batches = host_batches(cfg, spec["data"], POOL)
    runner: Runner
    if spec["framework"] == "torch":
        runner = TorchRunner(cfg.build(dev), torch_device(dev) or "cpu", batches, cfg)
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
    cmd = [sys.executable, str(BENCH), flag, json.dumps(spec)]
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

