"""A net of the learner's own (the book's contract) as xpnet's training loop sees it.

The book's Trainer takes any object with ``params``, ``gradient(x, t)``, ``loss(x, t)`` and
``accuracy(x, t)``: the nets the book's notebooks write cell by cell from ``common.layers``.
xpnet's loop needs a little more (``device``, ``last_loss``, ``state_dict``); :class:`OwnNet`
supplies it from the contract alone. Such a net keeps its arrays where the book makes them,
in NumPy (``np.random.randn``, ``np.zeros``), so :func:`place` moves them once to the facade's
device before training, keeping every shared reference shared.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import array_api_compat

from xpnet.backend import Device, array_namespace, to_device, to_host
from xpnet.book._device import is_host

CONTRACT = ("params", "gradient", "loss", "accuracy")


def missing_contract(net: Any) -> list[str]:
    """What of the book's net contract ``net`` lacks (empty when it can be trained)."""
    missing = [a for a in CONTRACT[1:] if not callable(getattr(net, a, None))]
    if not isinstance(getattr(net, "params", None), Mapping):
        missing.insert(0, "params (a dict of arrays)")
    return missing


class OwnNet:
    """``net`` with the extra doors xpnet's :class:`~xpnet.train.Trainer` uses, built on the contract.

    ``last_loss`` is computed when it is read: the loop reads it right after the update, so a
    step's loss is ``net.loss`` of that batch on the updated weights, as the book's Trainer records
    it (xpnet's own nets report their single forward pass's loss instead).
    """

    def __init__(self, net: Any, device: Device) -> None:
        self.net, self.device = net, device
        self._batch: tuple[Any, Any] | None = None

    @property
    def params(self) -> Any:
        return self.net.params

    def gradient(self, x: Any, t: Any) -> Any:
        self._batch = (x, t)
        return self.net.gradient(x, t)

    @property
    def last_loss(self) -> Any:
        if self._batch is None:
            raise RuntimeError("OwnNet.last_loss read before any gradient() call")
        loss = self.net.loss(*self._batch)
        if array_api_compat.is_array_api_obj(loss) and not (is_host(loss) and not self.device.is_host):
            return array_namespace(loss).reshape(loss, ())
        return self.device.asarray(float(loss))  # a Python or NumPy number: one tiny copy

    def state_dict(self) -> dict[str, Any]:
        """The parameters as host arrays (the loop checks them for NaN after each epoch)."""
        return {k: to_host(v) for k, v in self.net.params.items()}


def place(net: Any, dev: Device) -> None:
    """Move every NumPy array ``net`` holds (in ``params``, in its own attributes and in its layers'
    attributes: a dict or list of layers, ``last_layer``) to ``dev``, one copy per array, so a
    layer and ``params`` that shared an array share its copy. Nothing moves on the host device.

    Raises a one-line TypeError naming the first parameter that is still not on ``dev``.
    """
    if not dev.is_host:
        copies: dict[int, tuple[Any, Any]] = {}  # id -> (original, copy): the original keeps its id taken

        def move(a: Any) -> Any:
            if id(a) not in copies:
                copies[id(a)] = (a, to_device(a, dev))
            return copies[id(a)][1]

        params = net.params
        for key, value in list(params.items()):
            if is_host(value):
                params[key] = move(value)
        for holder in _holders(net):
            for name, value in list(getattr(holder, "__dict__", {}).items()):
                if is_host(value):
                    setattr(holder, name, move(value))
    for key, value in net.params.items():
        if not _on(value, dev):
            raise TypeError(f"Trainer: network.params[{key!r}] is {_describe(value)}, not an array on the "
                            f"facade's device {dev.name}")


def _holders(net: Any) -> Iterator[Any]:
    """The net and the layers it keeps: attributes with forward/backward, alone or in a dict or list."""
    yield net
    for value in getattr(net, "__dict__", {}).values():  # (a net with __slots__ has only its params)
        items = value.values() if isinstance(value, Mapping) else value if isinstance(value, list | tuple) else [value]
        for item in items:
            if callable(getattr(item, "forward", None)) and callable(getattr(item, "backward", None)):
                yield item


def _on(a: Any, dev: Device) -> bool:
    try:
        return array_namespace(a) is dev.xp and (dev.is_host or a.device == dev.native)
    except TypeError:
        return False


def _describe(a: Any) -> str:
    try:
        return f"a {array_namespace(a).__name__} array on {a.device}"
    except TypeError:
        return f"a {type(a).__name__}"
