"""``--breakdown``: xpnet's step on one config split into each layer's forward and backward, loss and update."""

from __future__ import annotations

import argparse
from typing import Any

from xpnet import backend, breakdown

from .runners import CONFIGS, POOL, XpnetRunner, host_batches, warm_up


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

