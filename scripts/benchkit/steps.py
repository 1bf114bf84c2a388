"""Per-step throughput of each config, xpnet against its PyTorch twin, and the table that reports it."""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from xpnet import backend

from . import BenchError
from .floor import step_floor
from .machine import machine_line
from .runners import (
    CONFIGS,
    COOL_DOWN_S,
    POOL,
    Runner,
    TorchRunner,
    XpnetRunner,
    flops_per_sample,
    host_batches,
    torch_device,
    warm_up,
)
from .workers import in_worker, memory_in_worker


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
            runners.append(TorchRunner(xp_runner.net, torch_device(dev) or "cpu", batches, cfg))
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
    if dev.backend == "numpy":  # the floor's products and bandwidth are timed with NumPy on the host
        x, t = xp_runner.batches[0]
        row["floor"] = step_floor(xp_runner.net, xp_runner.opt, x, t, args.threads, args.tiny)
        row["xpnet"]["vs_floor"] = 1e3 * row["xpnet"]["step_ms"] / row["floor"]["floor_us"]
    return row


def fmt_mem(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


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
    print_floors(result)


def print_floors(result: dict[str, Any]) -> None:
    """Each config's step against its floor: products timed alone + element-wise traffic at the copy rate."""
    rows = [row for row in result["results"] if "floor" in row]
    if not rows:
        return
    print("floor: the step's matrix products timed alone in its shapes and layouts + its element-wise traffic "
          "at the measured copy bandwidth")
    print(f"{'config':34} {'step us':>8} {'floor us':>8} {'products':>8} {'elem-wise':>9} {'MB':>6} "
          f"{'GB/s':>6} {'step/floor':>10}")
    for row in rows:
        f = row["floor"]
        print(f"{row['title']:34} {1e3 * row['xpnet']['step_ms']:8.0f} {f['floor_us']:8.0f} {f['products_us']:8.0f} "
              f"{f['elementwise_us']:9.0f} {sum(f['traffic_bytes'].values()) / 1e6:6.2f} {f['bandwidth_gb_s']:6.1f} "
              f"{row['xpnet']['vs_floor']:9.2f}x")

