#!/usr/bin/env python3
"""Data-parallel training's GPU path on one rank (gpu-check's ``nccl`` stage).

NCCL refuses two ranks on one GPU, so a one-GPU host proves what it can: with ``XPNET_MPI=1`` (MPI without a
launcher: one rank) the rank takes the GPU of its local rank, the weights are broadcast and every step's gradients
go through CuPy's NCCL allreduce on the device; the weights after those steps must be the very weights of the
same steps without it. The multi-GPU path is the same code with more ranks.

    XPNET_MPI=1 python scripts/gpu_nccl.py --out nccl.json   # exit 0 when the weights match
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

STEPS = 20


def nccl_one_rank(steps: int) -> dict[str, Any]:
    """The data-parallel step's NCCL allreduce on one rank against the plain step."""
    import numpy as np

    from xpnet import backend, nets, optim
    from xpnet.dist.comm import world
    from xpnet.dist.nccl import device_for_rank
    from xpnet.dist.parallel import DataParallel

    comm = world()
    _, _, count = backend.cuda_status()
    dev = backend.device(f"cuda:{device_for_rank(comm.local_rank, comm.local_size, count)}")
    rng = np.random.default_rng(0)
    x = backend.to_device(rng.random((100, 784), dtype=np.float32), dev)
    t = backend.to_device(rng.integers(0, 10, 100), dev)
    weights = []
    for dist in (None, DataParallel(comm)):
        net, opt = nets.MultiLayerNet(784, [256, 128], 10, device=dev, seed=0), optim.SGD(lr=0.1)
        if dist is not None:
            comm.bcast_(net.params.flat)  # through NCCL too
        for _ in range(steps):
            grads = net.gradient(x, t)
            if dist is not None:
                grads, _ = dist.allreduce(grads, net.last_loss, 1.0)
            opt.update(net.params, grads)
        weights.append(backend.to_host(net.params.flat))
    same = bool(np.array_equal(weights[0], weights[1]))
    return {"ranks": comm.size, "mpi": comm.library, "device": dev.name, "steps": steps, "same_weights": same,
            "ok": same and comm.size == 1}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="gpu_nccl.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="where the result goes (JSON)")
    args = p.parse_args(argv)
    res = nccl_one_rank(STEPS)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{args.out.name}.", dir=args.out.parent)
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(res, indent=2) + "\n")
    os.replace(tmp, args.out)
    print(json.dumps(res))
    return 0 if res["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
