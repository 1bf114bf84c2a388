"""``--breakdown``: xpnet's step on one config split into each layer's forward and backward, loss and update."""

from __future__ import annotations

import argparse
from typing import Any

from xpnet import backend, breakdown

from .floor import step_floor
from .runners import CONFIGS, POOL, XpnetRunner, host_batches, warm_up


def breakdown_config(name: str, args: argparse.Namespace, dev: backend.Device) -> dict[str, Any]:
    """xpnet's step on one config split into its parts (about a second of clocked steps)."""
    cfg = CONFIGS[name]
    r = XpnetRunner(cfg, dev, host_batches(cfg, args.data, POOL))
    steps, _ = warm_up(r, args.tiny, seconds=1.0)
    got = breakdown.step_breakdown(r.net, r.opt, r.batches, steps, dev.synchronize, warm_up=0 if args.tiny else 20)
    row = {"config": name, "title": cfg.title, "batch": cfg.batch, "steps": steps,
           "bare_step_us": 1e6 * got.bare_s, "clocked_step_us": 1e6 * got.clocked_s,
           "parts": [{"part": part, "us": 1e6 * s} for part, s in got.rows()]}
    if dev.backend == "numpy":  # beside each part, what its products alone and its bytes at the copy rate need
        x, t = r.batches[0]
        row["floor"] = step_floor(r.net, r.opt, x, t, args.threads, args.tiny)
    return row


def print_breakdown(result: dict[str, Any]) -> None:
    for row in result["breakdown"]:
        print(f"{row['title']}, batch {row['batch']}: bare step {row['bare_step_us']:.1f} us, "
              f"clocked {row['clocked_step_us']:.1f} us ({row['steps']} steps each)")
        print(f"  {'part':50} {'us/step':>8} {'share':>6}")
        for part in row["parts"]:
            print(f"  {part['part']:50} {part['us']:8.1f} {100 * part['us'] / row['clocked_step_us']:5.1f}%")
        f = row.get("floor")
        if f:
            print(f"  floor {f['floor_us']:.1f} us (bare step / floor {row['bare_step_us'] / f['floor_us']:.2f}x): "
                  f"products alone {f['products_us']:.1f} us, element-wise {f['elementwise_us']:.1f} us "
                  f"({sum(f['traffic_bytes'].values()) / 1e6:.2f} MB at {f['bandwidth_gb_s']:.1f} GB/s)")
            for p in f["products"]:
                print(f"    {p['product']:30} {p['shape']:26} {p['us']:8.1f} us")
            for part, nbytes in f["traffic_bytes"].items():
                print(f"    {part:30} {nbytes / 1e3:9.1f} kB   {1e6 * nbytes / 1e9 / f['bandwidth_gb_s']:8.1f} us")

