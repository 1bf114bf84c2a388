"""Optimizers on MNIST (book fig. 6-9): a 5-layer net trained by SGD, Momentum, Nesterov, AdaGrad, RMSprop, Adam.

Same net (784-100-100-100-100-10, ReLU, He init), same initial weights, same
mini-batches, each optimizer at its default learning rate (the book's: 0.01, and
0.001 for Adam). The adaptive and momentum methods reach a lower loss than plain
SGD in the same number of steps.
"""

from __future__ import annotations

import sys
from typing import Any

import _common as C
import numpy as np

from xpnet import optim
from xpnet.nets import MultiLayerNet

NAME = "optimizer_compare"
HIDDEN = [100, 100, 100, 100]
BATCH = 128
NAMES = {"sgd": "SGD", "momentum": "Momentum", "nesterov": "Nesterov", "adagrad": "AdaGrad",
         "rmsprop": "RMSprop", "adam": "Adam"}


def tail_mean(losses: np.ndarray) -> float:
    """Mean of the last 10% of the per-step losses: the end of a noisy curve, not one lucky batch."""
    n = max(10, losses.size // 10)
    return float(np.mean(losses[-n:]))


def experiment(ctx: C.Context) -> dict[str, Any]:
    steps, n_train, n_test = (300, 5000, 2000) if ctx.quick else (2000, None, None)
    data = C.load_mnist(ctx, n_train=n_train, n_test=n_test)
    curves, results = {}, {}
    for key, label in NAMES.items():
        net = MultiLayerNet(784, HIDDEN, 10, device=ctx.device, seed=ctx.seed)
        opt = optim.create(key)  # its default learning rate
        losses = C.fit(net, opt, data.x_train, data.t_train, steps=steps, batch_size=BATCH, seed=ctx.seed)
        curves[label] = losses
        results[label] = {"lr": opt.lr, "final_loss": tail_mean(losses),
                          "test_accuracy": C.accuracy(net, data.x_test, data.t_test)}
        ctx.log(f"{label:<8} lr {opt.lr:<6}: loss over the last steps {results[label]['final_loss']:.3f}, "
                f"test accuracy {results[label]['test_accuracy']:.3f}")
    C.plot_loss_curves(ctx, curves, steps, title=f"MNIST, 5-layer net, batch {BATCH}: optimizers at their default lr",
                       ylim=1.0, filename="optimizer_compare.png")
    return {"config": {"sizes": [784, *HIDDEN, 10], "batch_size": BATCH, "steps": steps}, "data": data.source,
            "optimizers": results, "final_loss": {k: v["final_loss"] for k, v in results.items()},
            "losses_every_10": {k: v[::10] for k, v in curves.items()}}


def main(argv: list[str] | None = None) -> int:
    return C.main_for(NAME, __doc__.splitlines()[0], experiment, argv=argv)


if __name__ == "__main__":
    sys.exit(main())
