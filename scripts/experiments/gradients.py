"""Gradients (book ch. 4–5): backprop agrees with the numerical gradient; the gradient field of x0² + x1².

Backprop is fast but easy to get wrong; central differences are slow but obviously
right. Checking one against the other (in float64, where the difference quotient
is good to ~1e-10) is how the book — and this project — trusts its layers.
"""

from __future__ import annotations

import sys
from typing import Any

import _common as C
import matplotlib.pyplot as plt
import numpy as np

from xpnet import gradcheck
from xpnet.backend import to_host
from xpnet.nets import TwoLayerNet

NAME = "gradients"
TOLERANCE = 1e-6  # float64 backprop vs central differences must agree to this (max relative error)


def check_two_layer_net(ctx: C.Context) -> dict[str, Any]:
    """The book's gradient_check.py: TwoLayerNet on the first 3 training images, float64."""
    hidden = 10 if ctx.quick else 50  # the numerical gradient costs two forward passes per weight
    data = C.load_mnist(ctx, n_train=3, n_test=0)
    net = TwoLayerNet(784, hidden, 10, weight_init_std=0.01, device=ctx.device, seed=ctx.seed, dtype="float64")
    x = ctx.xp.astype(data.x_train, ctx.device.dtype("float64"))
    errors = gradcheck.gradient_check(net, x, data.t_train)
    for key, err in errors.items():
        ctx.log(f"{key:>3} {tuple(net.params[key].shape)!s:>10}: max relative error {err:.2e}")
    return {"net": {"class": "TwoLayerNet", "sizes": [784, hidden, 10], "dtype": "float64", "samples": 3,
                    "params": {k: list(v.shape) for k, v in net.params.items()}},
            "data": data.source, "relative_error": errors, "max_relative_error": max(errors.values()),
            "tolerance": TOLERANCE}


def gradient_field(ctx: C.Context) -> dict[str, Any]:
    """Numerical gradients of f = x0² + x1² on the book's grid (fig. 4-9); arrows point downhill, −∇f."""
    xp = ctx.xp
    axis = np.arange(-2.0, 2.5, 0.25)
    gx, gy = np.meshgrid(axis, axis)
    points = np.stack([gx.ravel(), gy.ravel()], axis=1)
    grads = np.empty_like(points)
    for i, p in enumerate(points):
        v = ctx.to_dev(p.copy(), "float64")
        grads[i] = to_host(gradcheck.numerical_gradient(lambda a: xp.sum(a * a), v))
    err = float(np.max(np.abs(grads - 2.0 * points)))  # the exact gradient is (2·x0, 2·x1)
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.quiver(points[:, 0], points[:, 1], -grads[:, 0], -grads[:, 1], angles="xy", color="#555555")
    ax.set(xlim=(-2, 2), ylim=(-2, 2), xlabel="x0", ylabel="x1", aspect="equal",
           title="−∇f for f(x0, x1) = x0² + x1² (numerical)")
    ax.grid(alpha=0.3)
    ctx.save_figure(fig, "gradient_field.png")
    ctx.log(f"gradient field: {len(points)} points, max |numerical − exact| = {err:.1e}")
    return {"points": len(points), "max_abs_error_vs_exact": err}


def plot_check(ctx: C.Context, check: dict[str, Any]) -> None:
    errors = check["relative_error"]
    fig, ax = plt.subplots(figsize=(5.5, 4))
    names = list(errors)
    values = [max(errors[k], 1e-14) for k in names]  # an exact zero cannot sit on a log axis
    ax.bar(names, values, color="#4477aa")
    ax.axhline(TOLERANCE, color="#cc3311", ls="--", label=f"tolerance {TOLERANCE:g}")
    for i, v in enumerate(values):
        ax.text(i, v * 1.5, f"{errors[names[i]]:.1e}", ha="center", fontsize=8)
    sizes = "-".join(map(str, check["net"]["sizes"]))
    n = check["net"]["samples"]
    ax.set(yscale="log", ylim=(1e-14, 1e-3), ylabel="max relative error",
           title=f"Backprop vs numerical gradient\nTwoLayerNet {sizes}, float64, {n} MNIST images")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    ctx.save_figure(fig, "gradient_check.png")


def experiment(ctx: C.Context) -> dict[str, Any]:
    check = check_two_layer_net(ctx)
    plot_check(ctx, check)
    field = gradient_field(ctx)
    return {"gradient_check": check, "gradient_field": field,
            "agree": bool(check["max_relative_error"] < TOLERANCE)}


def main(argv: list[str] | None = None) -> int:
    return C.main_for(NAME, __doc__.splitlines()[0], experiment, argv=argv)


if __name__ == "__main__":
    sys.exit(main())
