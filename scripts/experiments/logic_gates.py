"""Logic gates (book ch. 2–3): one layer learns AND, OR and NAND but never XOR; two layers learn XOR.

A single Affine layer draws one straight line through the input plane, and XOR's
two classes cannot be split by a line: the best a softmax layer can do is say
50/50 everywhere (loss ln 2 ≈ 0.693). A hidden layer bends the boundary. How fast
the 2-layer net gets there depends on the learning rate (0.1 vs 0.3).
"""

from __future__ import annotations

import sys
from typing import Any

import _common as C
import matplotlib.pyplot as plt
import numpy as np

from xpnet import optim
from xpnet.backend import to_host
from xpnet.nets import MultiLayerNet

NAME = "logic_gates"
INPUTS = np.array([[0, 0], [1, 0], [0, 1], [1, 1]], dtype=np.float32)  # the book's truth-table order
GATES = {"AND": (0, 0, 0, 1), "OR": (0, 1, 1, 1), "NAND": (1, 1, 1, 0), "XOR": (0, 1, 1, 0)}
SINGLE_LR = 1.0
XOR_LRS = (0.1, 0.3)
XOR_HIDDEN = 4
SOLVED_LOSS = 0.1  # below this every one of the 4 points is classified with confidence > 0.9 on average


def train_gate(ctx: C.Context, net: MultiLayerNet, labels: tuple[int, ...], lr: float, steps: int,
               seed: int) -> dict[str, Any]:
    """Full-batch SGD on the 4 rows of a truth table."""
    x, t = ctx.to_dev(INPUTS), ctx.to_dev(np.array(labels, dtype=np.int64))
    losses = C.fit(net, optim.SGD(lr), x, t, steps=steps, batch_size=4, seed=seed)
    below = np.flatnonzero(losses < SOLVED_LOSS)
    return {"losses": losses, "final_loss": float(losses[-1]), "accuracy": C.accuracy(net, x, t),
            "steps_to_solve": int(below[0]) + 1 if below.size else None}


def decision_map(ctx: C.Context, net: MultiLayerNet, n: int = 81) -> np.ndarray:
    """P(class 1) on a grid over [-0.5, 1.5]²: the net's view of the whole plane."""
    axis = np.linspace(-0.5, 1.5, n, dtype=np.float32)
    gx, gy = np.meshgrid(axis, axis)
    grid = ctx.to_dev(np.stack([gx.ravel(), gy.ravel()], axis=1))
    y = net.predict(grid)
    xp = ctx.xp
    p = xp.exp(y - xp.max(y, axis=1, keepdims=True))
    p = p / xp.sum(p, axis=1, keepdims=True)
    return to_host(p[:, 1]).reshape(n, n)


def experiment(ctx: C.Context) -> dict[str, Any]:
    single_steps, xor_steps = (600, 1500) if ctx.quick else (2000, 3000)
    seeds = range(ctx.seed, ctx.seed + (4 if ctx.quick else 10))

    single: dict[str, Any] = {}
    single_nets = {}
    for gate, labels in GATES.items():
        net = MultiLayerNet(2, [], 2, device=ctx.device, seed=ctx.seed)  # [] hidden: one Affine + softmax
        single[gate] = train_gate(ctx, net, labels, SINGLE_LR, single_steps, ctx.seed)
        single_nets[gate] = net
        ctx.log(f"1 layer  {gate:<4}: loss {single[gate]['final_loss']:.3f}, accuracy {single[gate]['accuracy']:.2f}")

    two: dict[str, list[dict[str, Any]]] = {}
    best_net = None
    for lr in XOR_LRS:
        runs = []
        for s in seeds:
            net = MultiLayerNet(2, [XOR_HIDDEN], 2, activation="sigmoid", weight_init_std="xavier",
                                device=ctx.device, seed=s)
            runs.append({"seed": s, **train_gate(ctx, net, GATES["XOR"], lr, xor_steps, s)})
            if lr == max(XOR_LRS) and best_net is None:
                best_net = net
        two[str(lr)] = runs
        solved = [r for r in runs if r["accuracy"] == 1.0]
        ctx.log(f"2 layers XOR lr {lr}: {len(solved)}/{len(runs)} seeds at 100% accuracy, median final loss "
                f"{np.median([r['final_loss'] for r in runs]):.3f}")

    plot(ctx, single, two, decision_map(ctx, single_nets["XOR"]), decision_map(ctx, best_net), xor_steps)

    summary_two = {}
    for lr, runs in two.items():
        steps = [r["steps_to_solve"] for r in runs if r["steps_to_solve"] is not None]
        summary_two[lr] = {"seeds": len(runs), "solved_fraction": float(np.mean([r["accuracy"] == 1.0 for r in runs])),
                           "median_final_loss": float(np.median([r["final_loss"] for r in runs])),
                           "reached_loss_0.1": len(steps),
                           "median_steps_to_loss_0.1": float(np.median(steps)) if steps else None,
                           "accuracy": [r["accuracy"] for r in runs]}
    return {"config": {"single_layer": {"sizes": [2, 2], "lr": SINGLE_LR, "steps": single_steps},
                       "two_layer": {"sizes": [2, XOR_HIDDEN, 2], "activation": "sigmoid", "init": "xavier",
                                     "lrs": list(XOR_LRS), "steps": xor_steps, "seeds": list(seeds)}},
            "single_layer": {g: {k: v for k, v in r.items() if k != "losses"} for g, r in single.items()},
            "two_layer_xor": summary_two}


def plot(ctx: C.Context, single: dict[str, Any], two: dict[str, list[dict[str, Any]]], map1: np.ndarray,
         map2: np.ndarray, xor_steps: int) -> None:
    fig, axes = plt.subplots(2, 2, figsize=(10, 8))
    ax = axes[0, 0]
    for gate, r in single.items():
        ax.plot(r["losses"], label=f"{gate} (acc {r['accuracy']:.2f})", lw=2 if gate == "XOR" else 1.2)
    ax.axhline(np.log(2), color="gray", ls=":", lw=1)
    ax.text(len(single["XOR"]["losses"]) * 0.55, np.log(2) + 0.03, "ln 2 = chance", color="gray", fontsize=8)
    ax.set(title=f"One layer (Affine + softmax), SGD lr {SINGLE_LR}", xlabel="step", ylabel="loss", ylim=(0, 1))
    ax.legend(fontsize=8)

    ax = axes[0, 1]
    colors = {str(XOR_LRS[0]): "#ee7733", str(XOR_LRS[1]): "#0077bb"}
    for lr, runs in two.items():
        curves = np.array([r["losses"] for r in runs])
        for c in curves:
            ax.plot(c, color=colors[lr], alpha=0.25, lw=0.8)
        solved = sum(r["accuracy"] == 1.0 for r in runs)
        ax.plot(np.median(curves, axis=0), color=colors[lr], lw=2,
                label=f"lr {lr}: median; {solved}/{len(runs)} seeds solve XOR")
    ax.set(title=f"Two layers on XOR (2-{XOR_HIDDEN}-2, sigmoid), SGD", xlabel="step", ylabel="loss",
           ylim=(0, 0.8), xlim=(0, xor_steps))
    ax.legend(fontsize=8)

    for ax, m, title in ((axes[1, 0], map1, "One layer on XOR: P ≈ 0.5 everywhere (no line fits)"),
                         (axes[1, 1], map2, f"Two layers on XOR (lr {max(XOR_LRS)})")):
        im = ax.imshow(m, origin="lower", extent=(-0.5, 1.5, -0.5, 1.5), vmin=0, vmax=1, cmap="RdBu_r")
        if np.ptp(m) > 0.05:  # a flat map has no boundary worth drawing
            axis = np.linspace(-0.5, 1.5, m.shape[0])
            ax.contour(axis, axis, m, levels=[0.5], colors="k", linewidths=1)
        for (x0, x1), label in zip(INPUTS, GATES["XOR"], strict=True):
            if label:
                ax.scatter(x0, x1, s=120, marker="o", facecolors="white", edgecolors="k", linewidths=2)
            else:
                ax.scatter(x0, x1, s=120, marker="x", color="k", linewidths=2)
        ax.set(title=title, xlabel="x1", ylabel="x2")
        fig.colorbar(im, ax=ax, label="P(output = 1)")
    fig.tight_layout()
    ctx.save_figure(fig, "logic_gates.png")


def main(argv: list[str] | None = None) -> int:
    return C.main_for(NAME, __doc__.splitlines()[0], experiment, argv=argv)


if __name__ == "__main__":
    sys.exit(main())
