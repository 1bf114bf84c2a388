"""Batch normalization (book figs. 6-18, 6-19): BN trains faster, at almost any initial weight scale.

Sixteen initial weight stds from 1 down to 1e-4, each used for a 6-layer net with and
without batch norm (same weights, same mini-batches). Without BN the net only learns
in a narrow band of scales; with BN it learns at nearly all of them, and sooner.
"""

from __future__ import annotations

import sys
from typing import Any

import _common as C
import matplotlib.pyplot as plt
import numpy as np

from xpnet import optim
from xpnet.nets import MultiLayerNet

NAME = "batch_norm"
N_TRAIN, BATCH, LR = 1000, 100, 0.01
SCALES = np.logspace(0, -4, 16)


def train_curve(ctx: C.Context, data: C.Mnist, scale: float, batchnorm: bool, epochs: int) -> list[float]:
    """Training-set accuracy after each epoch (and before the first)."""
    net = MultiLayerNet(784, [100] * 5, 10, weight_init_std=float(scale), use_batchnorm=batchnorm,
                        device=ctx.device, seed=ctx.seed)
    acc: list[float] = []
    per_epoch = N_TRAIN // BATCH
    C.fit(net, optim.SGD(LR), data.x_train, data.t_train, steps=epochs * per_epoch, batch_size=BATCH,
          seed=ctx.seed, every=per_epoch, on_eval=lambda _: acc.append(C.accuracy(net, data.x_train, data.t_train)))
    return acc


def experiment(ctx: C.Context) -> dict[str, Any]:
    epochs = 8 if ctx.quick else 20
    data = C.load_mnist(ctx, n_train=N_TRAIN, n_test=0)
    runs = []
    for i, scale in enumerate(SCALES):
        with np.errstate(over="ignore", invalid="ignore"):  # big scales blow up without BN: the point, not a bug
            bn = train_curve(ctx, data, scale, True, epochs)
            plain = train_curve(ctx, data, scale, False, epochs)
        # "Faster" = more area under the accuracy curve: ahead on average over the whole run.
        runs.append({"scale": float(scale), "bn": bn, "no_bn": plain, "bn_final": bn[-1], "no_bn_final": plain[-1],
                     "bn_faster": bool(np.mean(bn) > np.mean(plain))})
        ctx.log(f"{i + 1:>2}/16 W std {scale:.2e}: final train accuracy with BN {bn[-1]:.3f}, "
                f"without {plain[-1]:.3f}")
    wins = sum(r["bn_faster"] for r in runs)
    ctx.log(f"batch norm ahead at {wins}/16 scales")
    plot(ctx, runs, epochs)
    return {"config": {"sizes": [784, 100, 100, 100, 100, 100, 10], "train_samples": N_TRAIN, "batch_size": BATCH,
                       "optimizer": "SGD", "lr": LR, "epochs": epochs},
            "data": data.source, "scales": SCALES, "runs": runs, "bn_faster_count": wins,
            "bn_final_mean": float(np.mean([r["bn_final"] for r in runs])),
            "no_bn_final_mean": float(np.mean([r["no_bn_final"] for r in runs]))}


def plot(ctx: C.Context, runs: list[dict[str, Any]], epochs: int) -> None:
    fig, axes = plt.subplots(4, 4, figsize=(11, 9), sharex=True, sharey=True)
    x = np.arange(epochs + 1)
    for ax, r in zip(axes.ravel(), runs, strict=True):
        ax.plot(x, r["bn"], color="#0077bb", lw=1.6, label="with batch norm")
        ax.plot(x, r["no_bn"], color="#ee7733", lw=1.4, ls="--", label="without")
        ax.set_title(f"W std = {r['scale']:.2g}", fontsize=9)
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    for ax in axes[-1]:
        ax.set_xlabel("epochs")
    for ax in axes[:, 0]:
        ax.set_ylabel("train accuracy")
    axes[0, 0].legend(fontsize=7, loc="lower right")
    fig.suptitle(f"MNIST ({N_TRAIN} training images), 6-layer net, SGD lr {LR}: with vs without batch norm")
    fig.tight_layout()
    ctx.save_figure(fig, "batch_norm.png")


def main(argv: list[str] | None = None) -> int:
    return C.main_for(NAME, __doc__.splitlines()[0], experiment, argv=argv)


if __name__ == "__main__":
    sys.exit(main())
