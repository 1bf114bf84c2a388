"""Optimizer paths (book figs. 6-3 … 6-8): six update rules on f(x, y) = x²/20 + y² from (-7, 2), 30 steps.

The bowl is 20× steeper in y than in x, so the gradient points mostly across the
valley, not along it. Plain SGD therefore zig-zags in y while crawling in x;
Momentum rolls like a ball; AdaGrad/RMSprop/Adam rescale each coordinate and
head more directly for the minimum. The arrays are device arrays updated by
xpnet.optim, exactly as in training.
"""

from __future__ import annotations

import sys
from typing import Any

import _common as C
import matplotlib.pyplot as plt
import numpy as np

from xpnet import optim
from xpnet.backend import to_host

NAME = "optimizer_paths"
START = (-7.0, 2.0)
STEPS = 30
# The book's learning rates for SGD, Momentum, AdaGrad and Adam; Nesterov and RMSprop chosen here so that
# they too get close to the minimum in 30 steps (RMSprop's first steps are ~10·lr long: h starts at 0).
LRS = {"SGD": 0.95, "Momentum": 0.1, "Nesterov": 0.1, "AdaGrad": 1.5, "RMSprop": 0.2, "Adam": 0.3}


def f_host(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return x**2 / 20.0 + y**2


def descend(ctx: C.Context, name: str, lr: float) -> np.ndarray:
    """The (STEPS + 1, 2) path of one optimizer; the gradient (x/10, 2y) is computed on the device."""
    p = ctx.to_dev(np.array(START), "float64")
    scale = ctx.to_dev(np.array([0.1, 2.0]), "float64")  # ∂f/∂x = x/10, ∂f/∂y = 2y
    opt = optim.create(name, lr)
    path = [to_host(p).copy()]
    for _ in range(STEPS):
        opt.update({"xy": p}, {"xy": p * scale})
        path.append(to_host(p).copy())
    return np.array(path)


def experiment(ctx: C.Context) -> dict[str, Any]:
    paths = {name: descend(ctx, name, lr) for name, lr in LRS.items()}
    results = {}
    for name, path in paths.items():
        fvals = f_host(path[:, 0], path[:, 1])
        y = np.where(np.abs(path[:, 1]) > 1e-3, path[:, 1], 0.0)  # jitter at the minimum is not a zig-zag
        y_flips = int(np.sum(y[1:] * y[:-1] < 0))
        results[name] = {"lr": LRS[name], "final_xy": path[-1], "final_f": float(fvals[-1]),
                         "f": fvals, "y_sign_changes": y_flips,
                         "path_length": float(np.sum(np.linalg.norm(np.diff(path, axis=0), axis=1)))}
        ctx.log(f"{name:<8} lr {LRS[name]:<4}: f after {STEPS} steps {fvals[-1]:.4f}, "
                f"y changed sign {y_flips} times, path length {results[name]['path_length']:.1f}")
    plot(ctx, paths)
    return {"function": "x**2/20 + y**2", "start": START, "steps": STEPS, "optimizers": results,
            "final_f": {k: v["final_f"] for k, v in results.items()}}


def plot(ctx: C.Context, paths: dict[str, np.ndarray]) -> None:
    gx, gy = np.meshgrid(np.linspace(-10, 10, 401), np.linspace(-5, 5, 201))
    z = f_host(gx, gy)
    levels = [0.05, 0.2, 0.5, 1, 2, 3.5, 5, 7]
    fig, axes = plt.subplots(2, 3, figsize=(12, 6.5), sharex=True, sharey=True)
    for ax, (name, path) in zip(axes.ravel(), paths.items(), strict=True):
        ax.contour(gx, gy, z, levels=levels, colors="#bbbbbb", linewidths=0.8)
        ax.plot(path[:, 0], path[:, 1], "o-", color="#cc3311", ms=3, lw=1)
        ax.plot(0, 0, "+", color="k", ms=10)
        f_end = f_host(path[-1, 0], path[-1, 1])
        ax.set(title=f"{name} (lr {LRS[name]}): f = {f_end:.3g}", xlim=(-10, 10), ylim=(-5, 5))
    for ax in axes[-1]:
        ax.set_xlabel("x")
    for ax in axes[:, 0]:
        ax.set_ylabel("y")
    fig.suptitle(f"f(x, y) = x²/20 + y² from {START}, {STEPS} steps")
    fig.tight_layout()
    ctx.save_figure(fig, "optimizer_paths.png")


def main(argv: list[str] | None = None) -> int:
    return C.main_for(NAME, __doc__.splitlines()[0], experiment, argv=argv)


if __name__ == "__main__":
    sys.exit(main())
