"""Products on the cores that pay for their shape (xpnet.accel.gemm): same numbers, thread count restored."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from xpnet import accel, nets, optim
from xpnet.accel import gemm, tuning

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def planned() -> Iterator[int]:
    """Planning on two threads for the test, then off again with the BLAS's thread count as it was."""
    before = tuning.blas_info()["threads"]
    if before is None:
        pytest.skip(f"NumPy's BLAS is not an OpenBLAS xpnet can reach ({tuning.blas_info()['name']})")
    assert gemm.enable(2)
    try:
        yield 2
    finally:
        gemm.disable()
        tuning.set_blas_threads(before)


def test_threads_only_where_the_shape_pays() -> None:
    assert gemm.threads_for(100, 100, 100, 2) == 1  # small: 17 µs on one thread, 30 on two
    assert gemm.threads_for(784, 100, 100, 2) == 2  # the MLP's dW1: each core reads only the 100×100 gradient
    assert gemm.threads_for(100, 784, 100, 2) == 1  # its forward: each core would read all of W1
    assert gemm.threads_for(30, 25, 57600, 4) == 4  # a convolution: the shared filters are tiny
    assert gemm.threads_for(100, 784, 256, 2) == 2  # split the 784×256 weights, share the 100×784 batch
    assert gemm.threads_for(4000, 10, 4000, 2) == 1  # the 10×4000 shared is not under half of 4000×10


# The MLP's and SimpleConvNet's products, with the transposed operands the backward passes use.
SHAPES = [((100, 784), (784, 100), False, False), ((784, 100), (100, 100), True, False),
          ((100, 100), (100, 100), False, True), ((30, 25), (25, 3000), False, False),
          ((30, 3000), (3000, 25), False, True)]


@pytest.mark.parametrize(("a_shape", "b_shape", "a_t", "b_t"), SHAPES)
def test_a_planned_product_is_openblas_on_the_planned_thread_count(
        planned: int, a_shape: tuple[int, int], b_shape: tuple[int, int], a_t: bool, b_t: bool) -> None:
    rng = np.random.default_rng(0)
    a = rng.standard_normal(a_shape[::-1] if a_t else a_shape, dtype=np.float32)
    b = rng.standard_normal(b_shape[::-1] if b_t else b_shape, dtype=np.float32)
    a, b = (a.T if a_t else a), (b.T if b_t else b)
    threads = gemm.threads_for(a.shape[0], a.shape[1], b.shape[1], planned)
    tuning.set_blas_threads(threads)
    want = np.matmul(a, b)
    tuning.set_blas_threads(planned)
    got = accel.matmul(a, b)
    out = np.empty((a.shape[0], b.shape[1]), np.float32)
    assert accel.matmul(a, b, out=out) is out
    np.testing.assert_array_equal(got, want)  # the same numbers every run: the rule is by shape
    np.testing.assert_array_equal(out, want)
    assert tuning.blas_info()["threads"] == planned  # a one-thread product puts the count back


def test_planned_training_steps_are_the_same_in_every_run(planned: int) -> None:
    rng = np.random.default_rng(1)
    x = rng.random((100, 784), dtype=np.float32)
    t = rng.integers(0, 10, 100)
    results = []
    for _ in range(2):
        net, opt = nets.MultiLayerNet(784, [100, 100], 10, device="cpu", seed=3), optim.SGD(lr=0.1)
        for _ in range(3):
            opt.update(net.params, net.gradient(x, t))
        results.append({k: np.array(v) for k, v in net.params.items()})
    for k in results[0]:
        np.testing.assert_array_equal(results[0][k], results[1][k])


def test_planning_is_off_until_an_application_asks(tmp_path: Path) -> None:
    code = ("import numpy as np, xpnet.nets; from xpnet import accel; from xpnet.accel import gemm, tuning; "
            "accel.matmul(np.ones((64, 64), np.float32), np.ones((64, 64), np.float32)); "
            "before = gemm.enabled(); asked = tuning.tune_host()['product threads']; "
            "print(before, asked == gemm.enabled())")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path,
                         check=True)
    assert out.stdout.split() == ["False", "True"]  # importing and computing turn nothing on; asking does


def test_describe_says_whether_products_are_planned(planned: int) -> None:
    from xpnet import backend

    assert accel.describe(backend.cpu())["product threads"] is True
    gemm.disable()
    assert accel.describe(backend.cpu())["product threads"] is False
