"""Initial weights (book figs. 6-10 … 6-15): what the std of the initial weights does to a deep net.

Part 1: push 1000 random inputs through 5 hidden layers of 100 units and look at
each layer's activations. Too large a std saturates sigmoid/tanh (gradients
vanish); too small makes every unit say the same thing; Xavier (std √(1/n))
keeps sigmoid/tanh spread out and He (√(2/n)) does the same for ReLU.
Part 2: the same story as loss curves on MNIST: with std = 0.01 a 5-layer ReLU
net does not learn at all, Xavier learns, He learns fastest.
"""

from __future__ import annotations

import sys
from typing import Any

import _common as C
import matplotlib.pyplot as plt
import numpy as np

from xpnet import optim
from xpnet.backend import host_rng, to_host
from xpnet.layers import ACTIVATIONS
from xpnet.nets import MultiLayerNet

NAME = "weight_init"
INITS: dict[str, float | str] = {"std=1": 1.0, "std=0.01": 0.01, "Xavier": "xavier", "He": "he"}
ACTS = ("sigmoid", "tanh", "relu")
HIST_RANGE = {"sigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0), "relu": (0.0, 2.5)}
LAYERS, UNITS, SAMPLES = 5, 100, 1000
CURVE_INITS: dict[str, float | str] = {"std=0.01": 0.01, "Xavier": "xavier", "He": "he"}
LR, BATCH = 0.01, 128


def activations(ctx: C.Context, activation: str, init: float | str) -> list[np.ndarray]:
    """Each hidden layer's outputs for the same 1000 standard-normal inputs (the net's own forward pass)."""
    net = MultiLayerNet(UNITS, [UNITS] * LAYERS, 10, activation=activation, weight_init_std=init,
                        device=ctx.device, seed=ctx.seed)
    h = ctx.to_dev(host_rng(ctx.seed).standard_normal((SAMPLES, UNITS)).astype(np.float32))
    outs = []
    act_type = ACTIVATIONS[activation]
    for layer in net.layers:
        h = layer.forward(h)
        if isinstance(layer, act_type):
            outs.append(to_host(h).ravel())
    return outs


def layer_stats(activation: str, outs: list[np.ndarray]) -> dict[str, list[float]]:
    """Per layer: std of the activations and how many sit where a unit is useless.

    sigmoid/tanh: saturated (the derivative is < 4% of its peak); ReLU: exactly zero (dead for this input).
    """
    if activation == "sigmoid":
        useless = [float(np.mean((a < 0.04) | (a > 0.96))) for a in outs]
    elif activation == "tanh":
        useless = [float(np.mean(np.abs(a) > 0.98)) for a in outs]
    else:
        useless = [float(np.mean(a == 0)) for a in outs]
    return {"std": [float(np.std(a)) for a in outs], "mean": [float(np.mean(a)) for a in outs],
            ("saturated_fraction" if activation != "relu" else "zero_fraction"): useless}


def plot_histograms(ctx: C.Context, activation: str, all_outs: dict[str, list[np.ndarray]]) -> None:
    lo, hi = HIST_RANGE[activation]
    fig, axes = plt.subplots(len(all_outs), LAYERS, figsize=(10, 7.2), sharex=True)
    for r, (init, outs) in enumerate(all_outs.items()):
        for c, a in enumerate(outs):
            ax = axes[r, c]
            shown = a[a != 0] if activation == "relu" else a
            ax.hist(shown, bins=30, range=(lo, hi), color="#4477aa")
            off = np.mean((shown < lo) | (shown > hi)) if shown.size else 0.0
            note = f"σ = {np.std(a):.2g}" + (f"\n{off:.0%} off scale" if off > 0.01 else "")
            ax.text(0.97, 0.95, note, transform=ax.transAxes, ha="right", va="top", fontsize=7,
                    bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none", "pad": 1})
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"layer {c + 1}", fontsize=9)
            if c == 0:
                ax.set_ylabel(init, fontsize=10)
    what = "non-zero outputs" if activation == "relu" else "outputs"
    fig.suptitle(f"{activation}: histograms of each hidden layer's {what} (1000 random inputs, 100 units/layer)")
    fig.tight_layout()
    ctx.save_figure(fig, f"weight_init_hist_{activation}.png")


def mnist_curves(ctx: C.Context) -> dict[str, Any]:
    steps, n_train = (300, 5000) if ctx.quick else (2000, None)
    data = C.load_mnist(ctx, n_train=n_train, n_test=0)
    curves = {}
    for label, init in CURVE_INITS.items():
        net = MultiLayerNet(784, [100] * 4, 10, activation="relu", weight_init_std=init,
                            device=ctx.device, seed=ctx.seed)
        curves[label] = C.fit(net, optim.SGD(LR), data.x_train, data.t_train, steps=steps, batch_size=BATCH,
                              seed=ctx.seed)
        ctx.log(f"MNIST {label:<8}: loss {curves[label][0]:.3f} -> {np.mean(curves[label][-10:]):.3f}")
    C.plot_loss_curves(ctx, curves, steps, title=f"MNIST, 5-layer ReLU net, SGD lr {LR}, batch {BATCH}: weight init",
                       ylim=2.5, filename="weight_init_mnist.png", markers="os^")
    final = {k: float(np.mean(v[-max(10, v.size // 10):])) for k, v in curves.items()}
    return {"config": {"sizes": [784, 100, 100, 100, 100, 10], "activation": "relu", "optimizer": "SGD",
                       "lr": LR, "batch_size": BATCH, "steps": steps},
            "data": data.source, "final_loss": final, "losses_every_10": {k: v[::10] for k, v in curves.items()}}


def experiment(ctx: C.Context) -> dict[str, Any]:
    hist: dict[str, dict[str, Any]] = {}
    for activation in ACTS:
        outs = {label: activations(ctx, activation, init) for label, init in INITS.items()}
        hist[activation] = {label: layer_stats(activation, o) for label, o in outs.items()}
        for label, stats in hist[activation].items():
            ctx.log(f"{activation:<7} {label:<8}: std by layer " + " ".join(f"{s:.2g}" for s in stats["std"]))
        plot_histograms(ctx, activation, outs)
    return {"histograms": hist, "mnist": mnist_curves(ctx)}


def main(argv: list[str] | None = None) -> int:
    return C.main_for(NAME, __doc__.splitlines()[0], experiment, argv=argv)


if __name__ == "__main__":
    sys.exit(main())
