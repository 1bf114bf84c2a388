"""Which fast paths are on for a device (and a net): the doctor and the trainer's start line print it.

Why this floor: the answer asks every fast path, the net-level ones too (:mod:`xpnet.fusion`,
which sits above the layers), so it sits above them all; only the reports (the doctor, the
train command) import it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from xpnet import accel, fusion
from xpnet.accel import flat, jit, tuning
from xpnet.backend import Device


def describe(dev: Device, net: Any = None) -> dict[str, bool]:
    """Which fast paths are on for ``dev`` (and ``net``), by name."""
    lib = accel.native(dev.zeros(1, dev.dtype("float32")))
    on = {"flat buffers": flat.is_flat(net.params) if net is not None else flat.views_share_memory(dev)}
    if net is not None:
        on["fused conv block"] = fusion.has_fused_block(net)
    on["CuPy kernels"] = lib is not None and lib is not np
    on["NumPy out= updates"] = lib is np
    on["numba updates"] = lib is np and jit.wanted()  # compiled in the background at the first update
    on["allocator tuning"] = dev.is_host and tuning.host_memory_kept()
    return on


def describe_line(dev: Device, net: Any = None) -> str:
    """``describe`` as one line: 'fast paths: flat buffers on, fused conv block off, ...'."""
    return "fast paths: " + ", ".join(f"{k} {'on' if v else 'off'}" for k, v in describe(dev, net).items())
