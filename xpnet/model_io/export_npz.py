"""Export a trained net as plain weights: one .npz of arrays by the book's names, readable without xpnet.

``W1, b1, ...`` (Affine weights are (in, out), conv weights (FN, C, FH, FW)), ``gamma1, beta1,
running_mean1, running_var1`` for batch norm, and ``meta``: a JSON string naming the layers in
order and the input the net expects. No pickle: ``np.load(path)`` reads it anywhere.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np


def weights(net: Any) -> dict[str, np.ndarray]:
    """The net's parameters and BatchNorm running statistics as host arrays (no RNG state)."""
    state = net.state_dict()
    names = [*net.params, *(k for k in state if k.startswith(("running_mean", "running_var")))]
    return {k: np.asarray(state[k]) for k in names}


def arrays(net: Any, meta: dict[str, Any]) -> dict[str, np.ndarray]:
    """What the .npz holds: :func:`weights` plus ``meta`` (a 0-d string of JSON)."""
    layers = [type(layer).__name__ for layer in net.layers]
    return {**weights(net), "meta": np.asarray(json.dumps({**meta, "layers": layers}, sort_keys=True))}
