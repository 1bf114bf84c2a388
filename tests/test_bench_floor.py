"""scripts/benchkit/floor.py: the floor counts the step's products in their layouts and its element-wise bytes.

No timing is asserted (a shared machine's speed says nothing about correctness): the shapes, the layouts and
the byte counts are, and that a tiny bench run reports the floor beside the step.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from tests.helpers import load_script
from xpnet import backend, nets, optim

ROOT = Path(__file__).resolve().parents[1]
load_script(ROOT / "scripts" / "bench.py", "xpnet_bench")  # puts scripts/ on the path for benchkit
from benchkit import floor  # noqa: E402


def _stepped(opt: optim.Optimizer) -> tuple[nets.MultiLayerNet, np.ndarray, np.ndarray]:
    net = nets.MultiLayerNet(784, [256, 128], 10, device=backend.cpu(), seed=0)
    x = np.random.default_rng(0).random((100, 784), dtype=np.float32)
    t = np.arange(100) % 10
    opt.update(net.params, net.gradient(x, t))
    return net, x, t


def test_products_are_the_steps_in_their_layouts() -> None:
    net, _, _ = _stepped(optim.SGD(0.01))
    got = [(name.split()[-1], sa, ta, sb, tb) for name, sa, ta, sb, tb in floor.products(net, 100)]
    assert got == [("forward", (100, 784), False, (784, 256), False), ("dW", (784, 100), True, (100, 256), False),
                   # the first layer's input gradient is skipped, as the net skips it
                   ("forward", (100, 256), False, (256, 128), False), ("dW", (256, 100), True, (100, 128), False),
                   ("dx", (100, 128), False, (128, 256), True),
                   ("forward", (100, 128), False, (128, 10), False), ("dW", (128, 100), True, (100, 10), False),
                   ("dx", (100, 10), False, (10, 128), True)]


def test_traffic_counts_each_array_once() -> None:
    opt = optim.Adam()
    net, x, t = _stepped(opt)
    parts = floor.traffic_bytes(net, opt, x, t)
    n_params = 784 * 256 + 256 + 256 * 128 + 128 + 128 * 10 + 10
    assert parts["Adam.update"] == 7 * n_params * 4  # read p, g, m, v; write p, m, v
    assert parts["loss"] == 4 * 100 * 10 * 4
    assert parts["Relu 1"] == 5 * 100 * 256 * 4 and parts["Affine 0"] == 3 * 100 * 256 * 4
    sgd = optim.SGD(0.01)
    assert floor.traffic_bytes(net, sgd, x, t)["SGD.update"] == 3 * n_params * 4


def test_a_tiny_run_prints_the_floor(tmp_path: Path) -> None:
    out = tmp_path / "b.json"
    p = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench.py"), "--tiny", "--no-torch", "--no-memory",
                        "--configs", "main", "--threads", "1", "--out", str(out)], capture_output=True, text=True,
                       cwd=ROOT, timeout=300)
    assert p.returncode == 0, p.stderr
    row = json.loads(out.read_text())["results"][0]
    f = row["floor"]
    assert abs(f["floor_us"] - f["products_us"] - f["elementwise_us"]) < 1e-6 * f["floor_us"]
    assert f["bandwidth_gb_s"] > 0
    assert len(f["products"]) == 8 and row["xpnet"]["vs_floor"] > 0
    assert "step/floor" in p.stdout and "main job: MLP 784-256-128-10, Adam" in p.stdout
