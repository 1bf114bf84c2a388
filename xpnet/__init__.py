"""xpnet: the book's layers, optimizers and nets, written once for NumPy and CuPy."""

from __future__ import annotations

import os
from typing import Any

from xpnet._version import __version__ as __version__
from xpnet.backend import Device, device, to_device, to_host

__all__ = ["Device", "device", "load", "to_device", "to_host"]


def load(path: str | os.PathLike[str], device: str | Device = "auto") -> Any:
    """The trained net of a run folder or checkpoint on ``device``: ``net.predict(x)`` gives logits.

    See :func:`xpnet.model_io.load`; imported on first use, so ``import xpnet`` stays light.
    """
    from xpnet.model_io.load import load as _load

    return _load(path, device)
