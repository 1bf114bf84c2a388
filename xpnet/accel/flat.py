"""Flat buffers: a net's parameters (and gradients, and optimizer state) as views of ONE 1-D array.

To everyone else ``net.params`` is a plain dict of the book's names; but an optimizer that sees
two flat-backed dicts with the same layout updates every parameter in a handful of operations
on the whole buffer, however deep the net, and weight decay is one slice (weights come first).
Layers write their gradients straight into views of the gradient buffer (``Layer.grad_out``).
Used wherever a device's views share memory with their base (NumPy, CuPy, array_api_strict).
The gradient buffer keeps :data:`SPARE` slots after the gradients (``grads.buffer``), so a
data-parallel step sends its loss and its votes (stop, save) in the same allreduce as the gradients.
On accel's lower floor: it knows arrays and names, not layers or optimizers (imports only backend).
"""

from __future__ import annotations

import math
from typing import Any

from xpnet.backend import Device, device_of, to_device

Array = Any


#: Slots after a net's gradients in ``FlatNet.grads.buffer``: scalars that travel with the gradients.
SPARE = 4

_WRITE_THROUGH: dict[tuple[str, str], bool] = {}


def views_share_memory(dev: Device) -> bool:
    """Capability check: does writing into a reshaped slice of an array change the array itself?

    NumPy, CuPy and array_api_strict say yes; the Array API leaves it to the library, so we ask
    once per device by trying it, and parameters only share one flat buffer where it holds.
    """
    key = (dev.backend, str(dev.native))
    if key not in _WRITE_THROUGH:
        xp = dev.xp
        buf = dev.zeros(6, xp.float32)
        view = xp.reshape(buf[2:6], (2, 2))
        try:
            view[...] = xp.ones((2, 2), dtype=xp.float32, device=dev.native)
            view += 1.0
        except (TypeError, ValueError, NotImplementedError):  # arrays that refuse in-place writes
            _WRITE_THROUGH[key] = False
        else:  # anything else (a GPU that cannot compile a kernel) is raised, never cached as "no"
            _WRITE_THROUGH[key] = float(xp.sum(buf)) == 8.0 and float(buf[0]) == 0.0
    return _WRITE_THROUGH[key]


class FlatParams(dict):
    """Named arrays that are all views into ONE contiguous 1-D buffer, ``flat``.

    It is a plain dict to everyone (``params["W1"]`` is an array the layer uses), but an optimizer
    that sees ``flat`` can update every parameter in a handful of vectorised operations instead of
    a few per parameter. ``order`` sets the buffer order (weights first, so weight decay is one slice);
    the dict keeps the order of ``shapes`` (the book's W1, b1, W2, ...). ``buffer`` is ``flat`` plus
    ``spare`` more slots after it (see :data:`SPARE`).
    """

    def __init__(self, shapes: dict[str, tuple[int, ...]], dev: Device, dtype: Any,
                 order: list[str] | None = None) -> None:
        super().__init__()
        sizes = {k: math.prod(s) for k, s in shapes.items()}
        spans: dict[str, tuple[int, int]] = {}
        start = 0
        for k in order if order is not None else shapes:
            spans[k] = (start, start + sizes[k])
            start += sizes[k]
        if set(spans) != set(shapes):
            raise ValueError("FlatParams: order must name every parameter exactly once")
        self.device, self.dtype = dev, dtype
        self.layout = tuple((k, spans[k], tuple(shapes[k])) for k in shapes)
        self.buffer = dev.zeros(start, dtype)
        self.flat = self.buffer
        xp = dev.xp
        for k, (a, b), shape in self.layout:
            super().__setitem__(k, xp.reshape(self.flat[a:b], shape))
        self._views = dict(self)

    @classmethod
    def like(cls, other: FlatParams, spare: int = 0) -> FlatParams:
        """A zero-filled buffer with the same names, shapes and order (for gradients, optimizer state)."""
        new = cls.__new__(cls)
        dict.__init__(new)
        new.device, new.dtype, new.layout = other.device, other.dtype, other.layout
        n = other.flat.shape[0]
        new.buffer = other.device.zeros(n + spare, other.dtype)
        new.flat = new.buffer[:n] if spare else new.buffer
        xp = other.device.xp
        for k, (a, b), shape in new.layout:
            dict.__setitem__(new, k, xp.reshape(new.flat[a:b], shape))
        new._views = dict(new)
        return new

    def span(self, key: str) -> tuple[int, int]:
        for k, ab, _ in self.layout:
            if k == key:
                return ab
        raise KeyError(key)

    def intact(self) -> bool:
        """True while every name still maps to its view (nobody rebound ``params[key]`` to another array)."""
        views = self._views
        return len(self) == len(views) and all(self.get(k) is v for k, v in views.items())


def is_flat(params: Any) -> bool:
    return isinstance(params, FlatParams)


def same_layout(a: Any, b: FlatParams) -> bool:
    """``a`` is flat-backed, intact, with ``b``'s names, shapes and order: one buffer-wide update fits both."""
    return (isinstance(a, FlatParams) and (a.layout is b.layout or a.layout == b.layout)
            and a.intact() and b.intact())


def whole_buffers(params: Any, grads: Any) -> tuple[Array, Array] | None:
    """(params.flat, grads.flat) when an optimizer can update every parameter at once, else None."""
    if isinstance(grads, FlatParams) and same_layout(params, grads):
        return params.flat, grads.flat
    return None


def state_like(params: FlatParams, old: dict[str, Array], pending: dict[str, Array], slot: str) -> FlatParams:
    """Zeroed optimizer state laid out like ``params``, carrying over per-key state (``old``) or state
    loaded from a state_dict and not yet placed (``pending["slot/key"]``)."""
    buf = FlatParams.like(params)
    for key, view in buf.items():
        value = old.get(key)
        if value is None:
            value = pending.pop(f"{slot}/{key}", None)
        if value is not None:
            view[...] = to_device(value, device_of(view), dtype=view.dtype)
    return buf


class FlatNet:
    """A net's parameters and gradients moved into two flat buffers, weights first.

    ``slots`` are the net's (name, layer, attribute, gradient attribute, decayed) rows. Each layer's
    parameter attribute becomes a view of ``params.flat``, and its ``grad_out`` names views of
    ``grads.flat`` for the layer to write into.
    """

    def __init__(self, slots: list[tuple[str, Any, str, str, bool]], dev: Device) -> None:
        decayed = [name for name, *_, d in slots if d]
        order = decayed + [name for name, *_, d in slots if not d]
        shapes = {name: tuple(getattr(layer, attr).shape) for name, layer, attr, _, _ in slots}
        dtype = getattr(slots[0][1], slots[0][2]).dtype
        self.params = FlatParams(shapes, dev, dtype, order)
        self.grads = FlatParams.like(self.params, spare=SPARE)
        self.slots = slots
        for name, layer, attr, grad_attr, _ in slots:
            self.params[name][...] = getattr(layer, attr)
            setattr(layer, attr, self.params[name])
            layer.grad_out = {**(layer.grad_out or {}), grad_attr: self.grads[name]}
        self.n_decayed = sum(math.prod(shapes[name]) for name in decayed)

    def gradients(self, weight_decay_lambda: float) -> FlatParams:
        """The gradient buffer after a backward pass, with weight decay λW added (one slice)."""
        grads = self.grads
        for name, layer, _, grad_attr, _ in self.slots:
            g = getattr(layer, grad_attr)
            if g is not grads[name]:  # a layer that allocated its own gradient: copy it in
                grads[name][...] = g
        n = self.n_decayed
        if weight_decay_lambda and n:
            grads.flat[:n] += weight_decay_lambda * self.params.flat[:n]
        return grads

    def sum_of_squared_weights(self, xp: Any) -> Array:
        """Σ‖W‖² over every decayed weight (one slice of the buffer)."""
        w = self.params.flat[:self.n_decayed]
        return xp.sum(w * w)
