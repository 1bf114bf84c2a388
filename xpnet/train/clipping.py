"""Gradient clipping by the global L2 norm (Pascanu et al. 2013), on the device.

All gradients together are treated as one vector g; when ‖g‖ exceeds ``max_norm``
every gradient is scaled by ``max_norm / ‖g‖``, so the step keeps its direction.
The norm stays a 0-d device array: clipping never reads a value back to the host.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from array_api_compat import array_namespace

Array = Any


def global_norm(grads: MutableMapping[str, Array]) -> Array:
    """‖g‖ over every gradient in ``grads``, as a 0-d array on their device."""
    arrays = _buffers(grads)
    xp = array_namespace(*arrays)
    total = None
    for g in arrays:
        s = xp.sum(g * g)
        total = s if total is None else total + s
    return xp.sqrt(total)


def clip_grad_norm(grads: MutableMapping[str, Array], max_norm: float, eps: float = 1e-6) -> Array:
    """Scale ``grads`` in place so their global L2 norm is at most ``max_norm``; return the norm before.

    In place matters: the optimizer's fast path reads the gradient buffer the net wrote, so
    replacing the arrays would bypass it.
    """
    if not max_norm > 0:
        raise ValueError(f"max_norm must be > 0, got {max_norm!r}")
    arrays = _buffers(grads)
    xp = array_namespace(*arrays)
    norm = global_norm(grads)
    scale = xp.minimum(max_norm / (norm + eps), xp.ones_like(norm))
    for g in arrays:
        g *= xp.astype(scale, g.dtype)
    return norm


def _buffers(grads: MutableMapping[str, Array]) -> list[Array]:
    """The arrays to touch: a flat-backed gradient dict's one buffer (one operation), else each gradient."""
    flat = getattr(grads, "flat", None)
    intact = getattr(grads, "intact", None)  # a flat dict whose entries were not rebound since
    if flat is not None and (intact is None or intact()):
        return [flat]
    if not grads:
        raise ValueError("no gradients to clip")
    return list(grads.values())
