"""What every net of the book facade adds to an xpnet net: the book's calling conventions.

The nets themselves are xpnet's (:mod:`xpnet.nets`); this mixin only adapts their doors:
host arrays in (moved to the net's device), Python floats out where the book prints or
plots, ``layers`` by the book's names, and ``save_params``/``load_params`` as ``.npz``.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterator
from typing import Any

import numpy as np

from xpnet.backend import to_device
from xpnet.book._device import current_device, current_dtype, host_seed, is_host
from xpnet.conv import Convolution, Pooling
from xpnet.layers import Affine, BatchNormalization, Dropout, Flatten, Relu, Sigmoid, Tanh
from xpnet.train.files import atomic_write

Array = Any

_BOOK_NAMES: dict[type, str] = {Affine: "Affine", Relu: "Relu", Sigmoid: "Sigmoid", Tanh: "Tanh",
                                BatchNormalization: "BatchNorm", Dropout: "Dropout", Convolution: "Conv",
                                Pooling: "Pool", Flatten: "Flatten"}


class LayerList(list):
    """The net's layers in order (a list, as xpnet's nets keep them) that also answers the book's
    OrderedDict spelling: ``layers['Affine1']``, ``layers.keys()``, ``.values()``, ``.items()``."""

    def __init__(self, layers: list[Any], names: list[str]) -> None:
        super().__init__(layers)
        self.names = list(names)

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            try:
                return list.__getitem__(self, self.names.index(key))
            except ValueError:
                raise KeyError(f"no layer {key!r}; layers: {', '.join(self.names)}") from None
        return list.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self.names)

    def values(self) -> list[Any]:
        return list(self)

    def items(self) -> Iterator[tuple[str, Any]]:
        return zip(self.names, self, strict=True)


def book_layer_names(layers: list[Any], activation_name: str | None = None) -> list[str]:
    """Affine1, Relu1, Affine2, ... counted per kind, as the book's nets name them; ``activation_name``
    replaces the activations' names (MultiLayerNet calls them Activation_function1, ...)."""
    counts: dict[str, int] = {}
    names = []
    for layer in layers:
        kind = _BOOK_NAMES.get(type(layer), type(layer).__name__)
        if activation_name and isinstance(layer, Relu | Sigmoid | Tanh):
            kind = activation_name
        counts[kind] = counts.get(kind, 0) + 1
        names.append(f"{kind}{counts[kind]}")
    return names


def build_kwargs(seed: int | None, device: Any, dtype: str | None) -> dict[str, Any]:
    """The facade's defaults for xpnet's keyword-only net arguments."""
    return {"seed": host_seed() if seed is None else seed,
            "device": current_device() if device is None else device,
            "dtype": current_dtype() if dtype is None else dtype}


class BookNet:
    """Mixin placed before an xpnet net class: same layers, parameters and math, the book's doors."""

    def _book_setup(self, activation_name: str | None = None) -> None:
        self.layers = LayerList(self.layers, book_layer_names(self.layers, activation_name))

    # -- inputs: the book's scripts hand over NumPy arrays (np.random.rand, load_mnist on the CPU) --
    def _in(self, a: Array) -> Array:
        if is_host(a) or isinstance(a, list | float | int):
            return to_device(np.asarray(a), self.device)
        return a

    # -- the book's API ----------------------------------------------------------------------
    def predict(self, x: Array, train_flg: bool = False) -> Array:
        return super().predict(self._in(x), train_flg)

    def loss(self, x: Array, t: Array, train_flg: bool = False) -> float:
        """The loss as a Python float (the book prints it and appends it to lists it plots)."""
        return float(super().loss(self._in(x), self._in(t), train_flg))

    def accuracy(self, x: Array, t: Array, batch_size: int = 100) -> float:
        return float(super().accuracy(self._in(x), self._in(t), batch_size))

    def gradient(self, x: Array, t: Array) -> dict[str, Array]:
        """Backprop gradients by parameter name, on the net's device. The dict and its arrays are
        reused by the next call (xpnet writes gradients in place): copy them to keep them."""
        return super().gradient(self._in(x), self._in(t))

    def numerical_gradient(self, x: Array, t: Array, h: float = 1e-4) -> dict[str, Array]:
        return super().numerical_gradient(self._in(x), self._in(t), h)

    # -- the book's pickle files, as npz ------------------------------------------------------
    def save_params(self, file_name: str | os.PathLike[str] = "params.pkl") -> None:
        """Write every parameter (and BatchNorm statistics, the dropout RNG) as ``.npz`` content to
        exactly ``file_name``, whatever its extension; atomically, so a crash never leaves half a file."""
        state = self.state_dict()
        atomic_write(file_name, lambda f: np.savez(f, **state))

    def load_params(self, file_name: str | os.PathLike[str] = "params.pkl") -> None:
        """Load what :meth:`save_params` wrote (from any device). Never unpickles: a pickle written by
        the book's own code is refused with a message, not executed."""
        try:
            data = np.load(file_name, allow_pickle=False)
            if not isinstance(data, np.lib.npyio.NpzFile):
                raise ValueError("a single .npy array, not an .npz archive")
            with data:
                state = {k: data[k] for k in data.files}
        except FileNotFoundError:
            raise FileNotFoundError(f"{file_name}: no such parameter file") from None
        except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
            raise ValueError(f"{file_name}: not a parameter file written by xpnet's save_params (npz); "
                             f"xpnet never loads pickles ({exc})") from None
        try:
            self.load_state_dict(state)
        except ValueError as exc:
            raise ValueError(f"{file_name}: {exc}") from None
