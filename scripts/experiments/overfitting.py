"""Overfitting (book figs. 6-20 … 6-23): a big net on 300 images memorises them; weight decay and dropout fight back.

A 7-layer net ([100]*6 hidden) reaches 100% training accuracy on 300 MNIST images
while test accuracy stalls far below: overfitting. Weight decay (λ = 0.1) and
dropout (ratio 0.15, 0.5) keep training accuracy down and narrow the train/test gap.
"""

from __future__ import annotations

import sys
from typing import Any

import _common as C
import matplotlib.pyplot as plt
import numpy as np

from xpnet import optim
from xpnet.nets import MultiLayerNet

NAME = "overfitting"
N_TRAIN, BATCH, LR = 300, 100, 0.01
VARIANTS: dict[str, dict[str, Any]] = {
    "baseline": {},
    "weight decay λ=0.1": {"weight_decay_lambda": 0.1},
    "dropout 0.15": {"use_dropout": True, "dropout_ratio": 0.15},
    "dropout 0.5": {"use_dropout": True, "dropout_ratio": 0.5},
}


def run_variant(ctx: C.Context, data: C.Mnist, options: dict[str, Any], epochs: int, lr: float) -> dict[str, Any]:
    net = MultiLayerNet(784, [100] * 6, 10, device=ctx.device, seed=ctx.seed, **options)
    train_acc: list[float] = []
    test_acc: list[float] = []

    def evaluate(_: int) -> None:
        train_acc.append(C.accuracy(net, data.x_train, data.t_train))
        test_acc.append(C.accuracy(net, data.x_test, data.t_test))

    per_epoch = N_TRAIN // BATCH
    C.fit(net, optim.SGD(lr), data.x_train, data.t_train, steps=epochs * per_epoch, batch_size=BATCH,
          seed=ctx.seed, every=per_epoch, on_eval=evaluate)
    tail = max(1, epochs // 10)  # the gap over the last 10% of epochs, not one epoch's wobble
    gap = float(np.mean(np.array(train_acc[-tail:]) - np.array(test_acc[-tail:])))
    return {"options": options, "train_acc": train_acc, "test_acc": test_acc, "final_train": train_acc[-1],
            "final_test": test_acc[-1], "gap": gap}


def experiment(ctx: C.Context) -> dict[str, Any]:
    # Quick mode: fewer epochs at a larger step, so the baseline still gets to memorise its 300 images.
    epochs, lr, n_test = (50, 0.05, 2000) if ctx.quick else (200, LR, None)
    data = C.load_mnist(ctx, n_train=N_TRAIN, n_test=n_test)
    runs = {}
    for label, options in VARIANTS.items():
        runs[label] = run_variant(ctx, data, options, epochs, lr)
        r = runs[label]
        ctx.log(f"{label:<19}: train {r['final_train']:.3f}, test {r['final_test']:.3f}, gap {r['gap']:.3f}")
    plot(ctx, runs, epochs, lr)
    return {"config": {"sizes": [784, *([100] * 6), 10], "train_samples": N_TRAIN, "batch_size": BATCH,
                       "optimizer": "SGD", "lr": lr, "epochs": epochs},
            "data": data.source, "runs": runs, "gap": {k: v["gap"] for k, v in runs.items()}}


def plot(ctx: C.Context, runs: dict[str, dict[str, Any]], epochs: int, lr: float) -> None:
    fig, axes = plt.subplots(1, len(runs), figsize=(13, 3.8), sharey=True)
    x = np.arange(epochs + 1)
    for ax, (label, r) in zip(axes, runs.items(), strict=True):
        ax.plot(x, r["train_acc"], color="#0077bb", lw=1.4, label="train")
        ax.plot(x, r["test_acc"], color="#ee7733", lw=1.4, label="test")
        ax.set(title=f"{label}\ngap {r['gap']:.2f} (train {r['final_train']:.2f}, test {r['final_test']:.2f})",
               xlabel="epochs", ylim=(0, 1.02))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy")
    axes[0].legend(loc="lower right")
    fig.suptitle(f"MNIST, {N_TRAIN} training images, 7-layer net, SGD lr {lr}, batch {BATCH}", y=1.0)
    fig.tight_layout()
    ctx.save_figure(fig, "overfitting.png")


def main(argv: list[str] | None = None) -> int:
    return C.main_for(NAME, __doc__.splitlines()[0], experiment, argv=argv)


if __name__ == "__main__":
    sys.exit(main())
