"""The floor of a training step: what the hardware allows for its work, with no Python and no passes wasted.

floor = its matrix products, each timed alone in the step's shapes and layouts (transposed views where the step
takes them, results into preallocated arrays), at the thread count of the run
      + its element-wise traffic (each array a layer, the loss and the update must read or write, moved once)
        at the measured memory bandwidth (a multi-threaded copy of arrays the size of the step's).

A step's distance from its floor is ``step / floor``: 1.0 would be every product at its alone-rate and every
element-wise pass fused into one read and one write of what it must touch. The products are read from the
net's layers after one step (their shapes are known then); the traffic from the arrays each layer receives and
returns in that step, by kind of layer (below).
"""

from __future__ import annotations

import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from xpnet.conv import Convolution, Pooling
from xpnet.fusion import ConvReluPool
from xpnet.layers import Affine, Flatten, Relu

Product = tuple[str, tuple[int, int], bool, tuple[int, int], bool]  # name, a's shape, a is a .T view, b, b .T


def products(net: Any, batch: int) -> list[Product]:
    """Every matrix product of one training step, in the layouts the layers use (after one step ran)."""
    out: list[Product] = []
    for i, layer in enumerate(net.plan):
        if isinstance(layer, Affine):
            n_in, n_out = layer.W.shape
            out += [(f"Affine {i} forward", (batch, n_in), False, (n_in, n_out), False),
                    (f"Affine {i} dW", (n_in, batch), True, (batch, n_out), False)]
            if layer.need_dx:
                out.append((f"Affine {i} dx", (batch, n_out), False, (n_out, n_in), True))
        elif isinstance(layer, (Convolution, ConvReluPool)):
            conv = layer.conv if isinstance(layer, ConvReluPool) else layer
            fn = conv.W.shape[0]
            k, p = conv.col.shape
            out.append((f"{type(layer).__name__} {i} forward", (fn, k), False, (k, p), False))
            parts = layer.k * layer.k if isinstance(layer, ConvReluPool) else 1  # dW by window position
            out += [(f"{type(layer).__name__} {i} dW", (fn, p // parts), False, (p // parts, k), True)] * parts
            if conv.need_dx:
                out.append((f"{type(layer).__name__} {i} dx", (k, fn), True, (fn, p), False))
    return out


def _operand(shape: tuple[int, int], transposed: bool, rng: np.random.Generator, dtype: Any) -> np.ndarray:
    if transposed:  # a .T view of a C-contiguous array, as the layer passes it
        return rng.random(shape[::-1], dtype=dtype).T
    return rng.random(shape, dtype=dtype)


def time_products(prods: list[Product], dtype: Any = np.float32, seconds: float = 0.05) -> list[float]:
    """Seconds each product takes alone (the best of 5 loops of about ``seconds``, result into one array: a
    floor is what the machine can do, so the fastest loop counts)."""
    rng = np.random.default_rng(3)
    times = []
    for _, sa, ta, sb, tb in prods:
        a, b = _operand(sa, ta, rng, dtype), _operand(sb, tb, rng, dtype)
        o = np.empty((sa[0], sb[1]), dtype)
        np.matmul(a, b, out=o)
        t0 = time.perf_counter()
        np.matmul(a, b, out=o)
        reps = max(3, int(seconds / max(time.perf_counter() - t0, 1e-7)))
        loops = []
        for _ in range(5):
            t0 = time.perf_counter()
            for _ in range(reps):
                np.matmul(a, b, out=o)
            loops.append((time.perf_counter() - t0) / reps)
        times.append(min(loops))
    return times


def _sizes(net: Any, run: Any) -> dict[int, tuple[int, int]]:
    """Layer index -> (input size, output size), in numbers, as ``run()`` passes them through ``net.plan``."""
    sizes: dict[int, tuple[int, int]] = {}
    for i, layer in enumerate(net.plan):
        def fwd(z: Any, *a: Any, _f: Any = layer.forward, _i: int = i, **k: Any) -> Any:
            y = _f(z, *a, **k)
            sizes[_i] = (int(z.size), int(y.size))
            return y
        layer.__dict__["forward"] = fwd
    try:
        run()
    finally:
        for layer in net.plan:
            layer.__dict__.pop("forward", None)
    return sizes


def traffic_bytes(net: Any, optimizer: Any, x: Any, t: Any) -> dict[str, int]:
    """Bytes one step's element-wise work must move at the least, by part: each layer's non-product work reads
    its inputs and writes its outputs once (forward and backward), the loss reads the logits and writes their
    gradient, the update reads the parameters, gradients and state and writes the parameters and state."""
    sizes = _sizes(net, lambda: optimizer.update(net.params, net.gradient(x, t)))
    item = np.dtype(net.params.flat.dtype if hasattr(net.params, "flat") else np.float32).itemsize
    parts: dict[str, int] = {}
    for i, layer in enumerate(net.plan):
        n_in, n_out = sizes[i]
        kind = type(layer).__name__
        if isinstance(layer, Affine):
            numbers = 2 * n_out + n_out  # bias add (read, write) + bias gradient (read)
        elif isinstance(layer, (Convolution, ConvReluPool)):
            conv = layer.conv if isinstance(layer, ConvReluPool) else layer
            numbers = n_in + conv.col.size  # im2col: read the image, write the columns
            if isinstance(layer, ConvReluPool):
                blocks = conv.W.shape[0] * conv.col.shape[1]  # the convolution's output, before the pool
                numbers += 2 * blocks + 5 * n_out  # pool reads the blocks twice; bias+ReLU fwd, then bwd
            else:
                numbers += 3 * n_out  # bias add and bias gradient
            if conv.need_dx:
                numbers += conv.col.size + n_in  # col2im
        elif isinstance(layer, Relu):
            numbers = 2 * n_in + 3 * n_in  # forward: read x, write y; backward: read dout and mask, write dx
        elif isinstance(layer, Pooling):
            numbers = n_in + n_out + n_out + 2 * n_in  # forward read/write; backward read dout, mask, write dx
        elif isinstance(layer, Flatten):
            numbers = 0  # a reshape
        else:
            numbers = 2 * n_in + 3 * n_out  # any other element-wise layer: like a ReLU
        parts[f"{kind} {i}"] = numbers * item
    logits = sizes[len(net.plan) - 1][1]
    parts["loss"] = 4 * logits * item  # forward: read logits, write softmax; backward: read it, write dL/dz
    n_params = sum(int(p.size) for p in net.params.values())
    parts[f"{type(optimizer).__name__}.update"] = (3 + 2 * len(optimizer.slots)) * n_params * item
    return parts


def copy_bandwidth(nbytes: int, threads: int, seconds: float = 0.2) -> float:
    """Bytes per second moved (read + written) by copying an array of ``nbytes``: the faster of one thread and
    the copy split over ``threads`` (for arrays of tens of kB, handing halves to a thread pool costs more
    than the copy, and a floor must not count that)."""
    n = max(1024, nbytes // 4)
    src, dst = np.random.default_rng(4).random(n, dtype=np.float32), np.empty(n, np.float32)
    chunks = np.array_split(np.arange(n), threads)
    spans = [(int(c[0]), int(c[-1]) + 1) for c in chunks if c.size]
    with ThreadPoolExecutor(threads) as pool:
        def split() -> None:
            list(pool.map(lambda ab: np.copyto(dst[ab[0]:ab[1]], src[ab[0]:ab[1]]), spans))

        ways = [lambda: np.copyto(dst, src)] + ([split] if len(spans) > 1 else [])
        return 2 * n * 4 / min(_best_loop(copy, seconds / len(ways)) for copy in ways)


def _best_loop(copy: Any, seconds: float) -> float:
    """Seconds per call of ``copy``: the fastest of 5 loops lasting ``seconds`` in all, after a warm-up."""
    copy()
    t0 = time.perf_counter()
    copy()
    reps = max(3, int(seconds / 5 / max(time.perf_counter() - t0, 1e-7)))
    loops = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(reps):
            copy()
        loops.append((time.perf_counter() - t0) / reps)
    return min(loops)


def step_floor(net: Any, optimizer: Any, x: Any, t: Any, threads: int, tiny: bool = False) -> dict[str, Any]:
    """The floor of one step of ``net`` with ``optimizer`` on batch (x, t), host arrays; see the module doc."""
    batch = int(x.shape[0])
    traffic = traffic_bytes(net, optimizer, x, t)
    prods = products(net, batch)
    secs = time_products(prods, seconds=0.005 if tiny else 0.05)
    biggest = max(traffic.values())
    bandwidth = copy_bandwidth(max(biggest // 3, 1 << 16), threads, seconds=0.02 if tiny else 0.2)
    products_s = float(sum(secs))
    elementwise_s = sum(traffic.values()) / bandwidth
    return {"products": [{"product": name, "shape": f"{sa[0]}x{sa[1]}{'ᵀ' if ta else ''} @ "
                                                      f"{sb[0]}x{sb[1]}{'ᵀ' if tb else ''}", "us": 1e6 * s}
                         for (name, sa, ta, sb, tb), s in zip(prods, secs, strict=True)],
            "products_us": 1e6 * products_s,
            "traffic_bytes": traffic, "bandwidth_gb_s": bandwidth / 1e9,
            "elementwise_us": 1e6 * elementwise_s, "floor_us": 1e6 * (products_s + elementwise_s)}


def forward_floor(net: Any, x: Any, threads: int, tiny: bool = False) -> float:
    """Seconds of one evaluation batch's floor: the forward products alone + bias adds, activations and the
    logits' read at the copy bandwidth."""
    sizes = _sizes(net, lambda: net.predict(x))
    item = np.dtype(x.dtype).itemsize
    numbers = 0
    for i, layer in enumerate(net.plan):
        n_in, n_out = sizes[i]
        numbers += 0 if isinstance(layer, Flatten) else 2 * n_out if isinstance(layer, Affine) else 2 * n_in
    numbers += sizes[len(net.plan) - 1][1]  # the accuracy reads the logits once
    prods = [p for p in products(net, int(x.shape[0])) if p[0].endswith("forward")]
    secs = time_products(prods, seconds=0.005 if tiny else 0.05)
    return float(sum(secs)) + numbers * item / copy_bandwidth(max(numbers * item // 4, 1 << 16), threads)


def start_up_floor(data_bytes: int, threads: int) -> float:
    """Seconds a job must spend before its first step: a fresh interpreter importing NumPy (the fastest of
    three) and reading its data's decoded bytes once at the copy bandwidth."""
    walls = []
    for _ in range(3):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import numpy"], check=True)
        walls.append(time.perf_counter() - t0)
    return min(walls) + data_bytes / copy_bandwidth(1 << 24, threads)
