"""What one benchmark config runs: the nets, their batches, xpnet's runner and its PyTorch twin."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

import xpnet
from xpnet import accel, backend, nets, optim
from xpnet.conv import Convolution, Pooling, out_size
from xpnet.layers import Affine, Flatten, Relu

from . import BenchError

LR = 0.01
COOL_DOWN_S = 0.25
POOL = 4  # distinct device-resident batches cycled through, so no step reuses the previous step's input


@dataclass(frozen=True)
class Config:
    """One benchmark: a net builder, its batch size and its input shape per sample."""

    title: str
    batch: int
    input_shape: tuple[int, ...]
    build: Callable[[backend.Device], nets.Sequential]
    optimizer: str = "sgd"
    lr: float = LR


CONFIGS: dict[str, Config] = {
    "mlp": Config("MLP 784-100-100-10", 100, (784,),
                  lambda dev: nets.MultiLayerNet(784, [100, 100], 10, device=dev, seed=0)),
    "mlp4": Config("MLP 784-[100]*4-10", 128, (784,),
                   lambda dev: nets.MultiLayerNet(784, [100] * 4, 10, device=dev, seed=0)),
    "conv": Config("SimpleConvNet 30x5x5, hidden 100", 100, (1, 28, 28),
                   lambda dev: nets.SimpleConvNet(device=dev, seed=0)),
    # the main job's step (xpnet-train's defaults): the one --e2e runs 6,000 times
    "main": Config("main job: MLP 784-256-128-10, Adam", 100, (784,),
                   lambda dev: nets.MultiLayerNet(784, [256, 128], 10, device=dev, seed=0), "adam", 0.001),
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
        self.opt = optim.create(cfg.optimizer, cfg.lr)
        if dev.backend == "numpy":
            accel.prepare(self.opt, wait=True)  # time the steady state, not steps beside a compiling thread
        self.dev = dev
        self.batches = [(xpnet.to_device(x, dev), xpnet.to_device(t, dev)) for x, t in batches]
        self.i = 0
        # The loss layer's label check reads the labels back (a device->host sync) on every step; the Trainer
        # skips it for a DataLoader's labels, checked once. Here too: the same check once per pooled batch,
        # then off, so xpnet is timed running ahead of the GPU as asynchronously as PyTorch is.
        for x, t in self.batches:
            self.net.loss(x, t)
        self.net.last_layer.check_labels = False

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

    def __init__(self, net: nets.Sequential, device: str, batches: list[tuple[np.ndarray, np.ndarray]],
                 cfg: Config | None = None) -> None:
        import torch

        self.torch = torch
        self.model = torch_twin(net, device)
        name, lr = (cfg.optimizer, cfg.lr) if cfg is not None else ("sgd", LR)
        if name == "adam":  # xpnet's Adam is torch's (eps added to √v; bias correction folded into the step)
            self.opt = torch.optim.Adam(self.model.parameters(), lr=lr, eps=1e-7)
        else:
            self.opt = torch.optim.SGD(self.model.parameters(), lr=lr)
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


def warm_up(r: Runner, tiny: bool, seconds: float) -> tuple[int, float]:
    """Run the first steps untimed; (steps that take about ``seconds``, the first step's loss)."""
    r.run(1)  # same weights, same batch: the first loss agrees between frameworks (a sanity check)
    first_loss = r.loss()
    r.run(0 if tiny else 3)  # warm-up: first-call allocations, BLAS buffers, lazy kernels
    t0 = time.perf_counter()
    r.run(1)
    once = time.perf_counter() - t0
    return (1 if tiny else max(3, min(5000, round(seconds / max(once, 1e-6))))), first_loss

